"""A scripted fake of the Anthropic Messages API for driving the real `claude` CLI.

The fake serves ``POST /v1/messages`` on 127.0.0.1 from a background thread. It is
stateless, like the real API: the CLI resends the whole conversation every turn, so the
fake picks the next scripted turn from the number of assistant turns already in the
request's ``messages``. Once the script is used up it answers a plain text ``end_turn``.

Every request (any method, any path) is recorded. Anything other than
``POST /v1/messages`` gets a 404 JSON error, so a test can assert that the CLI asked for
nothing unexpected.

Example::

    script = [[text("Writing the marker."), tool_use("Bash", {"command": "echo hi > /x"})]]
    with FakeAnthropic(script) as fake:
        result = run_claude("go", base_url=fake.base_url, cwd=work_dir, ...)
    assert fake.tool_results()[0].content == "nope"
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "Block",
    "FakeAnthropic",
    "RecordedRequest",
    "Script",
    "TextBlock",
    "ToolResult",
    "ToolUseBlock",
    "Turn",
    "text",
    "tool_use",
]

MESSAGES_PATH = "/v1/messages"


@dataclass(frozen=True)
class TextBlock:
    """A text content block the fake model says."""

    text: str


@dataclass(frozen=True)
class ToolUseBlock:
    """A tool_use block; ``id`` defaults to ``toolu_e2e_<turn>_<n>`` (n-th tool_use)."""

    name: str
    input: Mapping[str, Any]
    id: str | None = None


Block = TextBlock | ToolUseBlock
Turn = Sequence[Block]
Script = Sequence[Turn]


def text(value: str) -> TextBlock:
    """Build a text block."""
    return TextBlock(value)


def tool_use(name: str, input: Mapping[str, Any], id: str | None = None) -> ToolUseBlock:
    """Build a tool_use block (``name`` is the CLI's tool name, e.g. ``"Bash"``)."""
    return ToolUseBlock(name=name, input=dict(input), id=id)


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request the fake received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    """The parsed JSON body, or the raw text when it was not JSON (``None`` if empty)."""

    @property
    def is_messages(self) -> bool:
        """True for ``POST /v1/messages`` (with any query string)."""
        return self.method == "POST" and self.path == MESSAGES_PATH

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The ``messages`` list of a Messages API request body (empty otherwise)."""
        if isinstance(self.body, dict):
            messages = self.body.get("messages")
            if isinstance(messages, list):
                return [m for m in messages if isinstance(m, dict)]
        return []

    @property
    def tool_names(self) -> list[str]:
        """Names of the tools the CLI offered the model in this request."""
        tools = self.body.get("tools") if isinstance(self.body, dict) else None
        if not isinstance(tools, list):
            return []
        return [str(t["name"]) for t in tools if isinstance(t, dict) and "name" in t]


@dataclass(frozen=True)
class ToolResult:
    """A ``tool_result`` block that the CLI sent back to the model."""

    tool_use_id: str
    is_error: bool
    content: str
    """The text of the result: the string itself, or its text blocks joined by newlines."""
    raw: dict[str, Any] = field(compare=False, repr=False)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"]
        return "\n".join(parts)
    return ""


def _blocks(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return []


def assistant_turns(messages: Sequence[Mapping[str, Any]]) -> int:
    """Count assistant turns: runs of consecutive assistant messages count once."""
    turns = 0
    previous_role: Any = None
    for message in messages:
        role = message.get("role")
        if role == "assistant" and previous_role != "assistant":
            turns += 1
        previous_role = role
    return turns


def extract_tool_results(messages: Sequence[Mapping[str, Any]]) -> list[ToolResult]:
    """All ``tool_result`` blocks in the user messages of a conversation, in order."""
    results: list[ToolResult] = []
    for message in messages:
        if message.get("role") != "user":
            continue
        for block in _blocks(message):
            if block.get("type") != "tool_result":
                continue
            results.append(
                ToolResult(
                    tool_use_id=str(block.get("tool_use_id", "")),
                    is_error=bool(block.get("is_error", False)),
                    content=_content_text(block.get("content")),
                    raw=block,
                )
            )
    return results


def _sse(event: str, data: Mapping[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


class FakeAnthropic:
    """Scripted, recording fake of ``POST /v1/messages`` on a free loopback port.

    Use it as a context manager (or call :meth:`start` / :meth:`stop`); it works the
    same from sync and async tests because it serves from its own thread.
    """

    def __init__(
        self,
        script: Script = (),
        *,
        final_text: str = "Done.",
        host: str = "127.0.0.1",
    ) -> None:
        self.script: list[list[Block]] = [list(turn) for turn in script]
        self.final_text = final_text
        self.host = host
        self.port = 0
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._message_count = 0

    # -- lifecycle -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, the value for ``ANTHROPIC_BASE_URL``."""
        if not self.port:
            raise RuntimeError("FakeAnthropic is not running")
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> Self:
        """Bind a free port and serve in a daemon thread; returns once accepting."""
        if self._thread is not None:
            raise RuntimeError("FakeAnthropic already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._app(),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name="fake-anthropic",
            daemon=True,
        )
        self._server, self._thread, self._socket = server, thread, sock
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("FakeAnthropic failed to start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop the server thread (idempotent)."""
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=10)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what was received ---------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def messages_requests(self) -> list[RecordedRequest]:
        """The ``POST /v1/messages`` requests, in arrival order."""
        return [r for r in self.requests if r.is_messages]

    @property
    def unexpected_requests(self) -> list[RecordedRequest]:
        """Requests to anything but ``POST /v1/messages`` (each was answered 404)."""
        return [r for r in self.requests if not r.is_messages]

    def tool_results(self) -> list[ToolResult]:
        """Every distinct ``tool_result`` the CLI sent back, in first-seen order.

        The conversation is resent each turn, so results are de-duplicated by the
        CLI session (``X-Claude-Code-Session-Id``) and ``tool_use_id``.
        """
        seen: set[tuple[str, str]] = set()
        results: list[ToolResult] = []
        for request in self.messages_requests:
            session = request.headers.get("x-claude-code-session-id", "")
            for result in extract_tool_results(request.messages):
                key = (session, result.tool_use_id)
                if key not in seen:
                    seen.add(key)
                    results.append(result)
        return results

    def tool_result(self, tool_use_id: str) -> ToolResult:
        """The tool_result for one tool_use id; raises ``KeyError`` if none was sent."""
        for result in self.tool_results():
            if result.tool_use_id == tool_use_id:
                return result
        raise KeyError(tool_use_id)

    # -- the app -------------------------------------------------------------------

    def _app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
        return Starlette(
            routes=[
                Route(MESSAGES_PATH, self._messages, methods=["POST"]),
                Route("/{path:path}", self._not_found, methods=methods),
            ]
        )

    async def _record(self, request: Request) -> RecordedRequest:
        raw = await request.body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        with self._lock:
            self._requests.append(recorded)
        return recorded

    async def _not_found(self, request: Request) -> Response:
        await self._record(request)
        error = {
            "type": "not_found_error",
            "message": f"fake: no route {request.url.path}",
        }
        return JSONResponse({"type": "error", "error": error}, status_code=404)

    def _turn_for(self, index: int) -> list[Block]:
        if index < len(self.script):
            return self.script[index]
        return [TextBlock(self.final_text)]

    async def _messages(self, request: Request) -> Response:
        recorded = await self._record(request)
        if not isinstance(recorded.body, dict):
            error = {
                "type": "invalid_request_error",
                "message": "fake: body is not JSON",
            }
            return JSONResponse({"type": "error", "error": error}, status_code=400)
        turn = assistant_turns(recorded.messages)
        blocks = self._turn_for(turn)
        with self._lock:
            self._message_count += 1
            message_id = f"msg_fake_{self._message_count:04d}"
        model = str(recorded.body.get("model") or "claude-fake")
        content = self._content(turn, blocks)
        stop_reason = "tool_use" if any(isinstance(b, ToolUseBlock) for b in blocks) else "end_turn"
        usage = {
            "input_tokens": 10,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        if not recorded.body.get("stream"):
            message = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": usage,
            }
            return JSONResponse(message)

        async def events() -> AsyncIterator[str]:
            start: dict[str, Any] = {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage,
            }
            yield _sse("message_start", {"type": "message_start", "message": start})
            yield _sse("ping", {"type": "ping"})
            for index, block in enumerate(content):
                if block["type"] == "text":
                    opening: dict[str, Any] = {"type": "text", "text": ""}
                    delta: dict[str, Any] = {
                        "type": "text_delta",
                        "text": block["text"],
                    }
                else:
                    opening = {**block, "input": {}}
                    delta = {
                        "type": "input_json_delta",
                        "partial_json": json.dumps(block["input"]),
                    }
                yield _sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": opening,
                    },
                )
                yield _sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
                yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
            yield _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": 7},
                },
            )
            yield _sse("message_stop", {"type": "message_stop"})

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "request-id": f"req_{message_id}"},
        )

    @staticmethod
    def _content(turn: int, blocks: Sequence[Block]) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        uses = 0
        for block in blocks:
            if isinstance(block, TextBlock):
                content.append({"type": "text", "text": block.text})
                continue
            content.append(
                {
                    "type": "tool_use",
                    "id": block.id or f"toolu_e2e_{turn}_{uses}",
                    "name": block.name,
                    "input": dict(block.input),
                }
            )
            uses += 1
        return content
