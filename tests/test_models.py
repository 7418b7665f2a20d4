"""Chat models from settings, and plain messages for real model-server failures.

The failures are real ``openai`` exceptions: an ``AsyncOpenAI`` client talks HTTP to the fake server
scripted to fail, to a server that never answers, or to a closed port.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest

from sidekick.config import Settings
from sidekick.errors import ConfigError, ModelError
from sidekick.models import NO_MODEL, Models, explain_model_error, model_configured
from tests.support.fakes.openai_server import FakeOpenAI, Reply

SECRET = "sk-test-very-secret-key"


def test_a_model_is_configured_by_a_key_or_a_server(tmp_path: Path) -> None:
    assert model_configured(Settings(data_dir=tmp_path, openai_api_key="k"))
    assert model_configured(Settings(data_dir=tmp_path, openai_base_url="http://127.0.0.1:1/v1"))
    assert not model_configured(Settings(data_dir=tmp_path))


async def test_models_without_a_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Models(Settings(data_dir=tmp_path))
    assert str(info.value) == NO_MODEL


async def test_models_are_built_from_settings_and_share_one_client(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        openai_base_url="http://127.0.0.1:1/v1",
        model="worker-model",
        evaluator_model="judge-model",
        model_timeout_seconds=7,
        model_retries=3,
    )
    models = Models(settings)
    try:
        worker, evaluator = models.worker, models.evaluator
        assert (worker.model_name, evaluator.model_name) == ("worker-model", "judge-model")
        assert evaluator.temperature == 0
        for model in (worker, evaluator):
            assert model.openai_api_base == "http://127.0.0.1:1/v1"
            assert model.request_timeout == 7 and model.max_retries == 3
            assert model.use_responses_api is False
            # A local server takes any key; langchain-openai insists on one.
            assert model.openai_api_key is not None and model.openai_api_key.get_secret_value() == "not-needed"
        assert worker.http_async_client is evaluator.http_async_client is not None
    finally:
        await models.aclose()
    assert models.closed and worker.http_async_client.is_closed  # type: ignore[union-attr]
    await models.aclose()  # idempotent


async def test_the_evaluator_defaults_to_the_worker_model_and_the_key_is_used(tmp_path: Path) -> None:
    models = Models(Settings(data_dir=tmp_path, openai_api_key=SECRET, model="only-model"))
    try:
        assert models.evaluator.model_name == "only-model"
        assert models.worker.openai_api_key is not None
        assert models.worker.openai_api_key.get_secret_value() == SECRET
    finally:
        await models.aclose()


# -- explain_model_error on real failures ----------------------------------------------------------
@pytest.fixture
async def client(llm: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=llm.base_url, api_key=SECRET, max_retries=0, timeout=0.5) as c:
        yield c


async def failure(client: openai.AsyncOpenAI) -> openai.OpenAIError:
    with pytest.raises(openai.OpenAIError) as info:
        await client.chat.completions.create(model="gpt-4.1-mini", messages=[{"role": "user", "content": "hi"}])
    return info.value


def settings_for(tmp_path: Path, base_url: str) -> Settings:
    return Settings(data_dir=tmp_path, openai_base_url=base_url, openai_api_key=SECRET, model_timeout_seconds=0.5)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, "The model server rejected the API key (401). Check OPENAI_API_KEY."),
        (403, "The model server refused access (403). Check the key's permissions."),
        (404, "The model server does not know model 'gpt-4.1-mini' (404). Check SIDEKICK_MODEL and OPENAI_BASE_URL."),
        (429, "The model server is rate-limiting requests (429). Wait a moment and try again."),
        (500, "The model server failed (500). Try again in a moment."),
        (400, "The model server failed (400). Try again in a moment."),
    ],
)
async def test_http_failures_become_plain_model_errors(
    tmp_path: Path, llm: FakeOpenAI, client: openai.AsyncOpenAI, status: int, expected: str
) -> None:
    llm.worker(Reply.error(status, f"upstream said no; key {SECRET}"))
    error = explain_model_error(await failure(client), settings_for(tmp_path, llm.base_url))
    assert isinstance(error, ModelError) and str(error) == expected
    assert SECRET not in str(error)


async def test_a_server_that_does_not_answer_is_a_timeout_naming_the_setting(
    tmp_path: Path, llm: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    llm.worker(Reply.hang())
    exc = await failure(client)
    assert isinstance(exc, openai.APITimeoutError)
    error = explain_model_error(exc, settings_for(tmp_path, llm.base_url))
    assert str(error) == (
        f"The model server ({llm.base_url}) did not answer within 0.5 s. Try again, or raise SIDEKICK_MODEL_TIMEOUT."
    )


async def test_a_closed_port_is_a_connection_error_naming_the_address(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"  # nothing listens there any more
    async with openai.AsyncOpenAI(base_url=base_url, api_key=SECRET, max_retries=0, timeout=2) as c:
        exc = await failure(c)
    assert type(exc) is openai.APIConnectionError
    error = explain_model_error(exc, settings_for(tmp_path, base_url))
    assert str(error) == f"Could not reach the model server at {base_url}. Is it running, and is OPENAI_BASE_URL right?"
    assert SECRET not in str(error)


def test_other_openai_errors_keep_their_first_line_and_the_rest_is_not_a_model_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, openai_api_key=SECRET)
    error = explain_model_error(openai.OpenAIError("bad things\nwith details"), settings)
    assert str(error) == "The model call failed: bad things"
    assert explain_model_error(RuntimeError("not the model's"), settings) is None
    assert explain_model_error(KeyboardInterrupt(), settings) is None
