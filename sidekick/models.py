"""Chat models from settings, through langchain-openai (OpenAI or any OpenAI-compatible server).

:class:`Models` owns one async HTTP client for the worker and the evaluator. It must be made and
closed on the loop thread: httpx clients are bound to the loop that first used them (and
langchain-openai's default client is a process-wide cache, so it is never used here).
"""

from __future__ import annotations

import openai
from langchain_openai import ChatOpenAI

from sidekick.config import Settings
from sidekick.errors import ConfigError, ModelError

NO_MODEL = (
    "No model is configured. Set OPENAI_API_KEY for OpenAI, or OPENAI_BASE_URL for a local "
    "OpenAI-compatible server (Ollama, vLLM, LM Studio), in the environment or .streamlit/secrets.toml."
)


def model_configured(settings: Settings) -> bool:
    return bool(settings.openai_api_key or settings.openai_base_url)


class Models:
    """The worker and evaluator chat models and the HTTP client they share. Close with aclose()."""

    def __init__(self, settings: Settings) -> None:
        if not model_configured(settings):
            raise ConfigError(NO_MODEL)
        self.settings = settings
        self._client = openai.DefaultAsyncHttpxClient()
        common = {
            "base_url": settings.openai_base_url,
            # Local servers usually take any key; langchain-openai insists on one.
            "api_key": settings.openai_api_key or "not-needed",
            "timeout": settings.model_timeout_seconds,
            "max_retries": settings.model_retries,
            "http_async_client": self._client,
            "use_responses_api": False,
        }
        # Streamed, so the answer appears as it is written; usage comes in the stream's last chunk.
        self.worker = ChatOpenAI(model=settings.model, stream_usage=True, **common)  # type: ignore[arg-type]
        self.evaluator = ChatOpenAI(model=settings.evaluator, temperature=0, **common)  # type: ignore[arg-type]
        self.closed = False

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self._client.aclose()


def explain_model_error(exc: BaseException, settings: Settings) -> ModelError | None:
    """A plain message for a model-server failure, or None if ``exc`` is not one."""
    where = settings.openai_base_url or "OpenAI"
    if isinstance(exc, openai.APITimeoutError):
        return ModelError(
            f"The model server ({where}) did not answer within {settings.model_timeout_seconds:g} s. "
            "Try again, or raise SIDEKICK_MODEL_TIMEOUT."
        )
    if isinstance(exc, openai.APIConnectionError):
        return ModelError(f"Could not reach the model server at {where}. Is it running, and is OPENAI_BASE_URL right?")
    if isinstance(exc, openai.AuthenticationError):
        return ModelError("The model server rejected the API key (401). Check OPENAI_API_KEY.")
    if isinstance(exc, openai.PermissionDeniedError):
        return ModelError("The model server refused access (403). Check the key's permissions.")
    if isinstance(exc, openai.NotFoundError):
        return ModelError(
            f"The model server does not know model {settings.model!r} (404). Check SIDEKICK_MODEL and OPENAI_BASE_URL."
        )
    if isinstance(exc, openai.RateLimitError):
        return ModelError("The model server is rate-limiting requests (429). Wait a moment and try again.")
    if isinstance(exc, openai.APIStatusError):
        return ModelError(f"The model server failed ({exc.status_code}). Try again in a moment.")
    if isinstance(exc, openai.OpenAIError):
        return ModelError(f"The model call failed: {str(exc).splitlines()[0][:200]}")
    return None
