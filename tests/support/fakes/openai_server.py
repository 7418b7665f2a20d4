"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, for tests and benchmarks.

It speaks real HTTP, so the code under test runs unchanged through `langchain_openai.ChatOpenAI`,
the `openai` SDK and httpx. Replies are scripted per request, in order::

    with FakeOpenAI() as srv:
        srv.worker(Reply.tool_call("navigate", {"url": "https://example.com"}), Reply.text("Done."))
        srv.evaluator(Reply.json({"success": True, "feedback": "ok"}))
        llm = ChatOpenAI(model="gpt-4.1-mini", base_url=srv.base_url, api_key="test", max_retries=0)
        ...
        assert srv.requests[0]["tools"]

Two queues, chosen by the request alone: a request with `response_format` (structured output, i.e.
the evaluator) takes the next `srv.evaluator(...)` reply; any other request (plain chat or tools,
i.e. the worker) takes the next `srv.worker(...)` reply. When the queue is empty, `srv.handler`
(`fn(request_dict) -> Reply`) answers if set; otherwise the fake answers HTTP 500 saying it had no
scripted reply, so a test that forgot to script a turn fails loudly instead of hanging.

Replies: `Reply.text`, `Reply.tool_call`, `Reply.tool_calls`, `Reply.json` (JSON text as content),
`Reply.error(status)` (an OpenAI-style error body), `Reply.hang()` (never answers; released by
`stop()` or by the client going away) and `Reply.slow(seconds, reply)`. `srv.delay` makes every
reply wait first, like a slow model. Streaming (`"stream": true`) is answered as SSE chunks, with a
usage chunk when `stream_options.include_usage` is set. Every `/v1/chat/completions` body is kept
in `srv.requests`; `srv.reset()` clears queues, handler and requests between tests.

Every response carries `Connection: close`, so clients never keep a pooled socket to the fake and a
stopped fake leaves nothing open behind it.
"""

from __future__ import annotations

import itertools
import json
import select
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self

__all__ = ["FakeOpenAI", "Reply"]

JSON = dict[str, Any]

MODEL_ID = "gpt-4.1-mini"

# (type, code) of the error body OpenAI sends for each status; anything else is a server error.
_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    429: ("requests", "rate_limit_exceeded"),
}

_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class Reply:
    """One scripted answer. Build it with the classmethods, not the constructor."""

    kind: Literal["message", "error", "hang", "slow"]
    content: str | None = None
    calls: tuple[tuple[str, str], ...] = ()  # (function name, JSON arguments)
    status: int = 200
    message: str = ""
    seconds: float = 0.0
    then: Reply | None = None

    @classmethod
    def text(cls, content: str) -> Reply:
        return cls("message", content=content)

    @classmethod
    def json(cls, obj: Any) -> Reply:
        return cls("message", content=json.dumps(obj))

    @classmethod
    def tool_call(cls, name: str, args: Mapping[str, Any]) -> Reply:
        return cls.tool_calls([(name, args)])

    @classmethod
    def tool_calls(cls, calls: list[tuple[str, Mapping[str, Any]]]) -> Reply:
        return cls("message", calls=tuple((name, json.dumps(dict(args))) for name, args in calls))

    @classmethod
    def error(cls, status: int, message: str = "") -> Reply:
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        return cls("error", status=status, message=message or f"{status} {phrase} (scripted by FakeOpenAI)")

    @classmethod
    def hang(cls) -> Reply:
        return cls("hang")

    @classmethod
    def slow(cls, seconds: float, reply: Reply) -> Reply:
        return cls("slow", seconds=seconds, then=reply)


class FakeOpenAI:
    """The fake server. `start()` binds a free port; `stop()` is idempotent and never blocks long."""

    def __init__(self) -> None:
        self.handler: Callable[[JSON], Reply] | None = None
        self.delay = 0.0
        self._lock = threading.Lock()
        self._worker: deque[Reply] = deque()
        self._evaluator: deque[Reply] = deque()
        self._requests: list[JSON] = []
        self._counters: dict[str, itertools.count[int]] = {}
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._started = False

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        with self._lock:
            if self._started:
                raise RuntimeError("FakeOpenAI can only be started once")
            self._started = True
        server = _Server(("127.0.0.1", 0), _Handler, self)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeOpenAI:{server.server_port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving, drop hanging requests, and release the port. Safe to call twice."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None or thread is None:
            return
        self._stopping.set()  # hanging and slow replies notice this within _POLL_SECONDS
        server.shutdown()
        server.server_close()
        thread.join(timeout=2.0)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not running: call start() first")
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    # --- scripting -------------------------------------------------------------------------------

    def worker(self, *replies: Reply) -> None:
        """Queue replies for requests without `response_format` (plain chat and tool calls)."""
        with self._lock:
            self._worker.extend(replies)

    def evaluator(self, *replies: Reply) -> None:
        """Queue replies for requests with `response_format` (structured output)."""
        with self._lock:
            self._evaluator.extend(replies)

    @property
    def requests(self) -> list[JSON]:
        """A snapshot of every chat-completions request body received, oldest first."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._worker.clear()
            self._evaluator.clear()
            self._requests.clear()
            self.handler = None
            self.delay = 0.0

    # --- used by the request handler -------------------------------------------------------------

    def _take(self, request: JSON) -> Reply:
        structured = request.get("response_format") is not None
        name = "evaluator" if structured else "worker"
        with self._lock:
            self._requests.append(request)
            queue = self._evaluator if structured else self._worker
            if queue:
                return queue.popleft()
            handler = self.handler
        if handler is not None:
            try:
                return handler(request)
            except Exception as exc:
                return Reply.error(500, f"FakeOpenAI handler raised {exc!r}")
        which = "with" if structured else "without"
        return Reply.error(
            500,
            f"FakeOpenAI had no scripted reply: the {name} queue (requests {which} response_format) "
            f"is empty and no handler is set. Queue one with srv.{name}(Reply...).",
        )

    def _next_id(self, prefix: str) -> str:
        """`prefix1`, `prefix2`, ...: unique per server and prefix, never reset."""
        with self._lock:
            return f"{prefix}{next(self._counters.setdefault(prefix, itertools.count(1)))}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], fake: FakeOpenAI) -> None:
        self.fake = fake
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), which can stall offline.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away is normal here (timeouts, cancelled streams); anything else is a
        # bug in the fake and should be seen.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30.0  # an idle or half-sent request must not pin a thread forever
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request on stderr is noise in test output

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError:
            self.close_connection = True

    def finish(self) -> None:
        try:
            super().finish()
        except ConnectionError:
            pass

    # --- routes ----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        if self._route() == "/v1/models":
            model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "fake-openai"}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_error(404, f"Unknown path: GET {self.path}")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self._route() != "/v1/chat/completions":
            self._send_error(404, f"Unknown path: POST {self.path}")
            return
        try:
            request = json.loads(body)
        except ValueError as exc:
            self._send_error(400, f"Request body is not JSON: {exc}")
            return
        if not isinstance(request, dict):
            self._send_error(400, "Request body must be a JSON object")
            return
        fake = self.server.fake
        reply = fake._take(request)
        if not self._wait(fake.delay):
            return
        while reply.kind in ("slow", "hang"):
            if not self._wait(reply.seconds if reply.kind == "slow" else None):
                return
            assert reply.then is not None
            reply = reply.then
        if reply.kind == "error":
            self._send_error(reply.status, reply.message)
        elif request.get("stream"):
            self._send_stream(request, reply)
        else:
            self._send_json(200, self._completion(request, reply))

    def _route(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    # --- waiting ---------------------------------------------------------------------------------

    def _wait(self, seconds: float | None) -> bool:
        """Wait `seconds` (forever if None). False if the server stopped or the client left first."""
        if seconds is not None and seconds <= 0:
            return True
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            step = _POLL_SECONDS if deadline is None else min(_POLL_SECONDS, deadline - time.monotonic())
            if step <= 0:
                return True
            if self.server.fake._stopping.wait(step) or self._client_gone():
                self.close_connection = True
                return False

    def _client_gone(self) -> bool:
        # The request is fully read, so a readable socket means EOF (or a reset) from the client.
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            return True

    # --- responses -------------------------------------------------------------------------------

    def _send_json(self, status: int, obj: JSON) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, message: str) -> None:
        kind, code = _ERROR_KINDS.get(status, ("server_error", None))
        self._send_json(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})

    def _send_stream(self, request: JSON, reply: Reply) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in self._chunks(request, reply):
            self._write_chunk(f"data: {json.dumps(chunk)}\n\n")
        self._write_chunk("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _write_chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _completion(self, request: JSON, reply: Reply) -> JSON:
        message: JSON = {"role": "assistant", "content": reply.content, "refusal": None}
        if reply.calls:
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
                for call_id, (name, args) in zip(self._call_ids(reply), reply.calls, strict=True)
            ]
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(reply)}
        return {
            **self._envelope(request, "chat.completion"),
            "choices": [choice],
            "usage": _usage(request, reply),
        }

    def _chunks(self, request: JSON, reply: Reply) -> Iterator[JSON]:
        envelope = self._envelope(request, "chat.completion.chunk")

        def chunk(delta: JSON, finish_reason: str | None = None) -> JSON:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return {**envelope, "choices": [choice]}

        yield chunk({"role": "assistant", "content": None if reply.calls else "", "refusal": None})
        for piece in _pieces(reply.content or ""):
            yield chunk({"content": piece})
        for index, (call_id, (name, args)) in enumerate(zip(self._call_ids(reply), reply.calls, strict=True)):
            function = {"name": name, "arguments": ""}
            yield chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function", "function": function}]})
            for piece in _pieces(args):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, _finish(reply))
        if (request.get("stream_options") or {}).get("include_usage"):
            yield {**envelope, "choices": [], "usage": _usage(request, reply)}

    def _envelope(self, request: JSON, obj: str) -> JSON:
        return {
            "id": self.server.fake._next_id("chatcmpl-fake"),
            "object": obj,
            "created": int(time.time()),
            "model": request.get("model") or MODEL_ID,
            "system_fingerprint": None,
        }

    def _call_ids(self, reply: Reply) -> list[str]:
        return [self.server.fake._next_id("call_") for _ in reply.calls]


def _finish(reply: Reply) -> str:
    return "tool_calls" if reply.calls else "stop"


def _usage(request: JSON, reply: Reply) -> JSON:
    # About four characters a token, like English text; never zero.
    prompt = max(1, len(json.dumps(request.get("messages", []))) // 4)
    completion = max(1, (len(reply.content or "") + sum(len(n) + len(a) for n, a in reply.calls)) // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _pieces(text: str, count: int = 3) -> list[str]:
    """Split `text` into up to `count` consecutive non-empty pieces, as a model streams tokens."""
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)]
