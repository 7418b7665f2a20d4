"""The fake OpenAI server, driven through the real `langchain_openai.ChatOpenAI` and `openai` SDK."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.support.fakes import FakeOpenAI, Reply

pytestmark = pytest.mark.timeout(30)

MakeLLM = Callable[..., ChatOpenAI]


class Verdict(BaseModel):
    success: bool
    feedback: str


def navigate(url: str) -> str:
    """Open a URL in the browser."""
    return url


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def srv(server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
async def make_llm() -> AsyncIterator[MakeLLM]:
    # ChatOpenAI's default async httpx client is cached and shared by every instance with the same
    # base_url and timeout, so closing `llm.root_async_client` would break the next test. Each LLM
    # gets its own client instead, closed here.
    clients: list[openai.DefaultAsyncHttpxClient] = []

    def make(fake: FakeOpenAI, **kwargs: Any) -> ChatOpenAI:
        client = openai.DefaultAsyncHttpxClient()
        clients.append(client)
        options: dict[str, Any] = {"model": "gpt-4.1-mini", "api_key": "test", "max_retries": 0}
        return ChatOpenAI(base_url=fake.base_url, http_async_client=client, **(options | kwargs))

    yield make
    for client in clients:
        await client.aclose()


async def collect(stream: AsyncIterator[Any]) -> tuple[AIMessageChunk, int]:
    total: AIMessageChunk | None = None
    count = 0
    async for chunk in stream:
        total = chunk if total is None else total + chunk
        count += 1
    assert total is not None
    return total, count


# --- replies through ChatOpenAI ----------------------------------------------------------------------


async def test_text_reply(srv: FakeOpenAI, make_llm: MakeLLM) -> None:
    srv.worker(Reply.text("hello"))
    message = await make_llm(srv).ainvoke("hi")
    assert message.content == "hello"
    assert message.usage_metadata is not None and message.usage_metadata["total_tokens"] > 0
    [request] = srv.requests
    assert request["model"] == "gpt-4.1-mini"
    assert request["messages"] == [{"role": "user", "content": "hi"}]


async def test_tool_call_reply(srv: FakeOpenAI, make_llm: MakeLLM) -> None:
    srv.worker(Reply.tool_call("navigate", {"url": "https://example.com"}))
    message = await make_llm(srv).bind_tools([navigate]).ainvoke("open example.com")
    [call] = message.tool_calls
    assert (call["name"], call["args"]) == ("navigate", {"url": "https://example.com"})
    assert call["id"] and call["id"].startswith("call_")
    [request] = srv.requests
    assert [tool["function"]["name"] for tool in request["tools"]] == ["navigate"]
    assert "response_format" not in request


async def test_several_tool_calls_get_unique_ids(srv: FakeOpenAI, make_llm: MakeLLM) -> None:
    srv.worker(
        Reply.tool_calls([("navigate", {"url": "a"}), ("navigate", {"url": "b"})]),
        Reply.tool_call("navigate", {"url": "c"}),
    )
    llm = make_llm(srv).bind_tools([navigate])
    first, second = await llm.ainvoke("go"), await llm.ainvoke("go")
    calls = first.tool_calls + second.tool_calls
    assert [call["args"]["url"] for call in calls] == ["a", "b", "c"]
    assert len({call["id"] for call in calls}) == 3


async def test_structured_output_uses_the_evaluator_queue(srv: FakeOpenAI, make_llm: MakeLLM) -> None:
    srv.worker(Reply.text("not for the evaluator"))
    srv.evaluator(Reply.json({"success": True, "feedback": "looks done"}))
    verdict = await make_llm(srv).with_structured_output(Verdict).ainvoke("judge this")
    assert verdict == Verdict(success=True, feedback="looks done")
    [request] = srv.requests
    assert request["response_format"]["type"] == "json_schema"
    assert "tools" not in request
    # The worker reply is still queued for the next plain request.
    assert (await make_llm(srv).ainvoke("hi")).content == "not for the evaluator"


async def test_stream_text_with_usage(srv: FakeOpenAI, make_llm: MakeLLM) -> None:
    srv.worker(Reply.text("streamed hello world"))
    message, count = await collect(make_llm(srv, stream_usage=True).astream("hi"))
    assert message.content == "streamed hello world"
    assert count > 3  # the content arrived in several pieces
    assert message.usage_metadata is not None and message.usage_metadata["total_tokens"] > 0
    assert srv.requests[-1]["stream_options"] == {"include_usage": True}


async def test_stream_without_usage(srv: FakeOpenAI, make_llm: MakeLLM) -> None:
    srv.worker(Reply.text("no usage"))
    message, _ = await collect(make_llm(srv, stream_usage=False).astream("hi"))
    assert message.content == "no usage"
    assert message.usage_metadata is None


async def test_stream_tool_call(srv: FakeOpenAI, make_llm: MakeLLM) -> None:
    srv.worker(Reply.tool_call("navigate", {"url": "https://example.com/long/enough/to/split"}))
    message, _ = await collect(make_llm(srv, stream_usage=True).bind_tools([navigate]).astream("go"))
    [call] = message.tool_calls
    assert (call["name"], call["args"]) == ("navigate", {"url": "https://example.com/long/enough/to/split"})
    assert message.response_metadata["finish_reason"] == "tool_calls"
    assert message.usage_metadata is not None


async def test_handler_answers_when_the_queue_is_empty(srv: FakeOpenAI, make_llm: MakeLLM) -> None:
    srv.worker(Reply.text("queued first"))
    srv.handler = lambda request: Reply.text(f"echo {request['messages'][-1]['content']}")
    llm = make_llm(srv)
    assert (await llm.ainvoke("one")).content == "queued first"
    assert (await llm.ainvoke("two")).content == "echo two"


# --- failures ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, openai.InternalServerError),
        (429, openai.RateLimitError),
        (401, openai.AuthenticationError),
    ],
)
async def test_error_reply(srv: FakeOpenAI, make_llm: MakeLLM, status: int, error: type[Exception]) -> None:
    srv.worker(Reply.error(status, "scripted failure"))
    with pytest.raises(error, match="scripted failure") as caught:
        await make_llm(srv).ainvoke("hi")
    assert isinstance(caught.value, openai.APIStatusError)
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict) and caught.value.body["message"] == "scripted failure"


async def test_empty_queue_says_so(srv: FakeOpenAI, make_llm: MakeLLM) -> None:
    with pytest.raises(openai.InternalServerError, match=r"no scripted reply.*worker queue"):
        await make_llm(srv).ainvoke("hi")
    with pytest.raises(openai.InternalServerError, match=r"no scripted reply.*evaluator queue"):
        await make_llm(srv).with_structured_output(Verdict).ainvoke("judge")
    assert len(srv.requests) == 2


async def test_handler_exception_becomes_a_500(srv: FakeOpenAI, make_llm: MakeLLM) -> None:
    def broken(request: dict[str, Any]) -> Reply:
        raise ValueError("oops")

    srv.handler = broken
    with pytest.raises(openai.InternalServerError, match="handler raised ValueError"):
        await make_llm(srv).ainvoke("hi")


async def test_hang_times_out_and_stop_is_prompt(make_llm: MakeLLM) -> None:
    with FakeOpenAI() as fake:
        fake.worker(Reply.hang())
        with pytest.raises(openai.APITimeoutError):
            await make_llm(fake, timeout=0.5).ainvoke("hi")
        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < 2.0


async def test_stop_releases_a_hanging_request(make_llm: MakeLLM) -> None:
    fake = FakeOpenAI().start()
    try:
        arrived = threading.Event()

        def hang(request: dict[str, Any]) -> Reply:
            arrived.set()
            return Reply.hang()

        fake.handler = hang
        call = asyncio.create_task(make_llm(fake, timeout=20).ainvoke("hi"))
        assert await asyncio.to_thread(arrived.wait, 5.0)
        started = time.monotonic()
        await asyncio.to_thread(fake.stop)
        with pytest.raises(openai.APIConnectionError) as caught:
            await asyncio.wait_for(call, timeout=2.0)
        assert not isinstance(caught.value, openai.APITimeoutError)
        assert time.monotonic() - started < 2.0
    finally:
        fake.stop()


async def test_slow_reply_and_delay(srv: FakeOpenAI, make_llm: MakeLLM) -> None:
    srv.worker(Reply.slow(0.3, Reply.text("late")), Reply.text("delayed"))
    llm = make_llm(srv)
    started = time.monotonic()
    assert (await llm.ainvoke("hi")).content == "late"
    assert time.monotonic() - started >= 0.3
    srv.delay = 0.2
    started = time.monotonic()
    assert (await llm.ainvoke("hi")).content == "delayed"
    assert time.monotonic() - started >= 0.2


# --- plain HTTP and lifecycle ------------------------------------------------------------------------


def test_models_and_unknown_paths(srv: FakeOpenAI) -> None:
    with urllib.request.urlopen(f"{srv.base_url}/models", timeout=5) as response:
        assert [model["id"] for model in json.load(response)["data"]] == ["gpt-4.1-mini"]
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{srv.base_url}/responses", data=b"{}", timeout=5)
    assert caught.value.code == 404
    assert "Unknown path" in json.load(caught.value)["error"]["message"]
    caught.value.close()
    assert srv.requests == []


def test_client_disconnects_are_silent(srv: FakeOpenAI, capfd: pytest.CaptureFixture[str]) -> None:
    body = json.dumps({"model": "m", "messages": [], "stream": True}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    srv.worker(Reply.text("x" * 100_000), Reply.slow(0.2, Reply.text("gone")), Reply.text("still here"))
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", urllib.parse.urlsplit(srv.base_url).port or 0)) as sock:
            sock.sendall(request)
            # Abort with a reset rather than a graceful close, as a killed client would.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    while len(srv.requests) < 2:
        time.sleep(0.01)
    time.sleep(0.3)
    assert post(srv, {"messages": []})["choices"][0]["message"]["content"] == "still here"
    assert capfd.readouterr().err == ""


def test_lifecycle() -> None:
    fake = FakeOpenAI()
    with pytest.raises(RuntimeError, match="not running"):
        _ = fake.base_url
    fake.stop()  # stopping a server that never started is a no-op
    assert fake.start() is fake
    assert fake.base_url.startswith("http://127.0.0.1:") and fake.base_url.endswith("/v1")
    with pytest.raises(RuntimeError, match="once"):
        fake.start()
    fake.stop()
    fake.stop()


def post(fake: FakeOpenAI, body: dict[str, Any]) -> dict[str, Any]:
    """A chat-completions request through plain urllib; HTTP errors come back as their JSON body."""
    request = urllib.request.Request(f"{fake.base_url}/chat/completions", data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return dict(json.load(response))
    except urllib.error.HTTPError as error:
        with error:
            return dict(json.load(error))


def test_reset_clears_everything(srv: FakeOpenAI) -> None:
    srv.worker(Reply.text("a"), Reply.text("b"))
    srv.evaluator(Reply.json({}))
    srv.handler = lambda request: Reply.text("h")
    srv.delay = 1.0
    srv.reset()
    assert srv.handler is None and srv.delay == 0.0
    assert "no scripted reply" in post(srv, {"messages": []})["error"]["message"]
    assert "no scripted reply" in post(srv, {"messages": [], "response_format": {}})["error"]["message"]
    assert len(srv.requests) == 2
    srv.reset()
    assert srv.requests == []
