"""Talking to an ntfy server: publishing a message as JSON, and the checks `setup` and `doctor` make.

Written over httpx by hand: a publish is one JSON POST to the server's root (ntfy's "publish as JSON"), and the
Python clients bring more than they save here (aiontfy needs Python 3.12; the others are synchronous).

Every failure is one `NtfyFailed` whose text is fit for the log and the audit trail: the HTTP status and ntfy's own
error, or why the server could not be reached. It never holds the topic or the token (on the public server a topic is
a secret), nor more than a line of what the server said.
"""

from __future__ import annotations

import asyncio
import json
from types import TracebackType
from typing import Any, Self

import httpx

USER_AGENT = "approval-server"
_SHOWN = 160  # characters of a server's error kept


class NtfyFailed(Exception):
    """ntfy did not take what was sent; `str(exc)` says why. `status` is the HTTP status, if any answer came."""

    def __init__(self, why: str, status: int | None = None) -> None:
        super().__init__(why)
        self.status = status


def _plain(text: object) -> str:
    """A server's words, on one line of printable ASCII, cut short: they reach a log and a record."""
    shown = "".join(char if " " <= char <= "~" else "?" for char in str(text))
    return shown if len(shown) <= _SHOWN else shown[:_SHOWN] + "…"


class Publisher:
    """One ntfy server, with the access token (if any) every call carries."""

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        headers = {"User-Agent": USER_AGENT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        self.timeout = timeout
        # Redirects are not followed: the token would go with them.
        self._http = httpx.AsyncClient(headers=headers, timeout=timeout, follow_redirects=False)

    async def publish(self, message: dict[str, Any]) -> dict[str, Any]:
        """Publish `message` (ntfy's JSON: topic, title, message, actions, …); returns the message as ntfy took it.
        Raises `NtfyFailed`, also when ntfy answers with anything but that message, whole (not made a file)."""
        body = json.dumps(message, ensure_ascii=False).encode()
        answer = await self._call("POST", "/", content=body, headers={"Content-Type": "application/json"})
        if answer.get("event") != "message" or "attachment" in answer:
            raise NtfyFailed("ntfy did not take it as a notification")
        return answer

    async def health(self) -> None:
        """Whether the server answers as ntfy does (`/v1/health`); raises `NtfyFailed` if not."""
        answer = await self._call("GET", "/v1/health")
        if answer.get("healthy") is not True:
            raise NtfyFailed("the server says it is not healthy")

    async def may_read(self, topic: str) -> None:
        """Whether this token (or anonymous, without one) may read `topic`: ntfy's `/<topic>/auth`, which also
        refuses a token it does not know (401). Raises `NtfyFailed`."""
        await self._call("GET", f"/{topic}/auth")

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        # httpx's timeout bounds each step (connect, each read, …); `asyncio.timeout` bounds the whole call, so that
        # a server that answers a byte at a time is no answer either.
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._http.request(method, self.url + path, **kwargs)
        except (TimeoutError, httpx.TimeoutException):
            raise NtfyFailed(f"no answer from ntfy within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise NtfyFailed(f"ntfy unreachable ({exc.__class__.__name__})") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not response.is_success:
            raise NtfyFailed(_refusal(response.status_code, answer), response.status_code)
        if not isinstance(answer, dict):
            raise NtfyFailed(f"the server's answer (HTTP {response.status_code}) is not ntfy's JSON")
        return answer

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _refusal(status: int, answer: object) -> str:
    """ntfy's error answer (`{"code", "http", "error"}`) in words."""
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return f"ntfy refused it: HTTP {status}, {_plain(answer['error'])} (ntfy error {_plain(answer.get('code'))})"
    return f"ntfy refused it: HTTP {status}"
