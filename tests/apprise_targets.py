"""Local targets for Apprise's `json://` and `form://` services: the endpoints a notice is posted to.

Apprise's JSON and Form services post every notification to a URL of the user's choice, in a format of Apprise's own
(see apprise/plugins/custom_json.py and custom_form.py):

* `json://host:port/path` → `POST http://host:port/path`, `Content-Type: application/json`,
  `{"version": "1.0", "title": …, "message": …, "attachments": [], "type": "info"}`
* `form://host:port/path` → `POST http://host:port/path`, `Content-Type: application/x-www-form-urlencoded`,
  `version=1.0&title=…&message=…&type=info`
* `json://user:password@host/path` adds HTTP Basic auth.

`AppriseTargets` serves any number of such targets, one per path, on one 127.0.0.1 port from a background thread, and
records what each received. A target with credentials (`url(name, user=…, password=…)`) answers 401 to a post
without them, as a protected endpoint would; a body that is not Apprise's format answers 400. Neither is recorded.

    with AppriseTargets() as targets:
        apprise.Apprise(targets.url("alice")).notify("hello", title="hi")
        assert targets.wait_for("alice")[0].message == "hello"

Failure injection: `fail(name, status)` (every post answered with that status), `hang(name, seconds)` (answered
only after that long, or when the targets stop), `refuse_connections()` / `accept_connections()` (the port kept),
`clear_failures()`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.fake_twilio import LoopbackFake, LoopbackServer

Kind = Literal["json", "form"]
FIELDS = ("version", "title", "message", "type")


@dataclass(frozen=True)
class Notice:
    """One notification a target accepted, as Apprise posted it."""

    target: str
    kind: Kind
    title: str
    message: str
    type: str  # Apprise's notification type: info, success, warning or failure
    headers: Mapping[str, str]
    user: str | None  # from HTTP Basic auth, when the URL carried it


class AppriseTargets(LoopbackFake):
    def __init__(self) -> None:
        app = Starlette(routes=[Route("/{target}", self._receive, methods=["POST"])])
        self._server = LoopbackServer(app, name="apprise-targets")
        self._lock = threading.Condition()
        self._notices: list[Notice] = []
        self._credentials: dict[str, tuple[str, str]] = {}
        self._failing: dict[str, int] = {}
        self._hanging: dict[str, float] = {}
        self.refused = 0  # posts answered 400 or 401
        self.posts: list[str] = []  # the target of each post, as it begins (before any hang)
        self._release: asyncio.Event | None = None  # set when the targets stop: a hanging post is answered

    def url(self, target: str, kind: Kind = "json", *, user: str | None = None, password: str | None = None) -> str:
        """The Apprise URL of `target`; with `user` and `password`, posts must carry them (HTTP Basic auth)."""
        auth = ""
        if user is not None and password is not None:
            self._credentials[target] = (user, password)
            auth = f"{quote(user, safe='')}:{quote(password, safe='')}@"
        return f"{kind}://{auth}{self._server.host}:{self._server.port}/{target}"

    @property
    def notices(self) -> list[Notice]:
        with self._lock:
            return list(self._notices)

    def received(self, target: str) -> list[Notice]:
        return [notice for notice in self.notices if notice.target == target]

    def wait_for(self, target: str, count: int = 1, timeout: float = 10) -> list[Notice]:
        """The first `count` notices `target` accepted, once it has; AssertionError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(got := [n for n in self._notices if n.target == target]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{target} received {len(got)} notice(s), not {count}, in {timeout} s")
                self._lock.wait(left)
            return got[:count]

    async def arrived(self, target: str, count: int = 1, within: float = 10) -> list[Notice]:
        """`wait_for` from a coroutine."""
        return await asyncio.to_thread(self.wait_for, target, count, within)

    def fail(self, target: str, status: int = 500) -> None:
        self._failing[target] = status

    def hang(self, target: str, seconds: float) -> None:
        self._hanging[target] = seconds

    def clear_failures(self) -> None:
        self._failing.clear()
        self._hanging.clear()

    def refuse_connections(self) -> None:
        """Stop listening, keeping the port: every post is refused until `accept_connections`."""
        self.stop()

    def accept_connections(self) -> None:
        self._server.start()

    async def _receive(self, request: Request) -> PlainTextResponse:
        target = request.path_params["target"]
        self.posts.append(target)
        if (seconds := self._hanging.get(target)) is not None:
            if self._release is None:  # made in the server's loop, which it belongs to
                self._release = asyncio.Event()
            with contextlib.suppress(TimeoutError):  # or released when the targets stop
                await asyncio.wait_for(self._release.wait(), seconds)
        if (status := self._failing.get(target)) is not None:
            return PlainTextResponse("failing on purpose", status_code=status)
        user = _basic_user(request.headers.get("authorization"), self._credentials.get(target))
        if target in self._credentials and user is None:
            return self._refuse("wrong or missing credentials", 401)
        kind, fields = _parse(request.headers.get("content-type", ""), await request.body())
        if kind is None or fields is None:
            return self._refuse("not an Apprise notification", 400)
        notice = Notice(target, kind, fields["title"], fields["message"], fields["type"], dict(request.headers), user)
        with self._lock:
            self._notices.append(notice)
            self._lock.notify_all()
        return PlainTextResponse("ok")

    def _refuse(self, why: str, status: int) -> PlainTextResponse:
        with self._lock:
            self.refused += 1
        return PlainTextResponse(why, status_code=status)

    def stop(self) -> None:
        """Stop serving, answering each hanging post first, so that no connection outlives the server's loop."""
        loop, release = self._server.loop, self._release
        if loop is not None and release is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(release.set)
        self._server.stop()
        self._release = None


def _basic_user(header: str | None, expected: tuple[str, str] | None) -> str | None:
    """The user of a Basic `header` that carries `expected` (user, password); None otherwise."""
    if header is None or expected is None or not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user if (user, password) == expected else None


def _parse(content_type: str, body: bytes) -> tuple[Kind | None, dict[str, str] | None]:
    """Apprise's fields from a post's body, by its content type; (None, None) when it is not Apprise's format."""
    media = content_type.split(";")[0].strip().lower()
    data: Any
    kind: Kind
    try:
        if media == "application/json":
            data, kind = json.loads(body), "json"
        elif media == "application/x-www-form-urlencoded":
            form = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
            data, kind = {key: values[0] for key, values in form.items() if len(values) == 1}, "form"
        else:
            return None, None
    except ValueError:  # UnicodeDecodeError is one
        return None, None
    if not isinstance(data, dict) or not all(isinstance(data.get(key), str) for key in FIELDS):
        return None, None
    return kind, {key: data[key] for key in FIELDS}
