"""Slow and numerous clients: each request must arrive whole in time, open connections are capped, and the
open-file limit is raised so that the cap, not the system, is what says no.

Anyone who can reach the port can open connections and send a request a byte at a time, or never finish it. Uvicorn
has no timeout for that (its keep-alive timeout only covers the idle time between two requests, and it reads headers
with no deadline), and ASGI middleware cannot help: the application only sees a request once its headers are in.
So this module wraps uvicorn's HTTP protocol (h11), the one place that sees a connection's bytes arrive:

- A connection the server waits on (for a request, or for the rest of one) gets `REQUEST_SECONDS` to send it whole,
  headers and body; then it is closed. A request received whole is never timed: an answer may take minutes.
- When as many connections are open as `max_connections`, a new one closes the oldest of those still sending their
  request, so the slow ones give way to the next client instead of the other way round. Uvicorn's own
  `limit_concurrency` (the same number) answers 503 once the connections are all busy with real requests.
- At start the soft open-file limit is raised to the hard limit (the common soft default, 1,024, is what 1,100 slow
  connections exhausted), and `max_connections` leaves room under it for the database, logs and outbound calls.

Behind a buffering reverse proxy (README: "Exposed to the internet") none of this is reached: the proxy sends each
request whole. It is the server's own defence when its port is reached directly.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

REQUEST_SECONDS = 10.0
MOST_CONNECTIONS = 10_000
# Open files kept for everything but client connections: the database, logs, outbound calls, and the connections
# accepted in one go before any of them is looked at.
RESERVED_FILES = 384


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit (to enough for `MOST_CONNECTIONS` where the hard limit is
    unlimited, as on macOS); returns the soft limit in force, 0 when there is none."""
    if sys.platform == "win32":
        return 0
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = MOST_CONNECTIONS + RESERVED_FILES if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return 0 if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:  # e.g. macOS refuses more than its per-process maximum
        logger.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft
    return target


def max_connections(open_files: int) -> int:
    """How many client connections to keep open at most, under the soft open-file limit `open_files` (0: none)."""
    if open_files <= 0:
        return MOST_CONNECTIONS
    return max(16, min(MOST_CONNECTIONS, open_files - RESERVED_FILES))


class ConnectionGuard:
    """The connections the server waits on, oldest first, each with its deadline; one per server."""

    def __init__(self, max_connections: int, request_seconds: float = REQUEST_SECONDS) -> None:
        self.max_connections = max_connections
        self.request_seconds = request_seconds
        self._waiting: dict[_GuardedProtocol, asyncio.TimerHandle] = {}

    def protocol_class(self) -> type[asyncio.Protocol]:
        """Uvicorn's HTTP protocol, watched by this guard (for `uvicorn.Config(http=...)`)."""
        guard = self

        class GuardedProtocol(_GuardedProtocol):
            _guard = guard

        return GuardedProtocol

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def make_room(self, open_connections: int) -> None:
        """Before a new connection is served: at the cap, close the oldest connection still sending its request."""
        if open_connections >= self.max_connections and self._waiting:
            oldest = next(iter(self._waiting))
            logger.debug("closing a connection that has not sent its request yet, to make room for a new one")
            self._expire(oldest)

    def wait_on(self, protocol: _GuardedProtocol) -> None:
        if protocol not in self._waiting:
            loop = asyncio.get_running_loop()
            self._waiting[protocol] = loop.call_later(self.request_seconds, self._expire, protocol)

    def done_waiting(self, protocol: _GuardedProtocol) -> None:
        timer = self._waiting.pop(protocol, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, protocol: _GuardedProtocol) -> None:
        self.done_waiting(protocol)
        logger.debug("closing a connection that did not send its request within %g s", self.request_seconds)
        protocol.transport.close()


class _GuardedProtocol(H11Protocol):
    """Uvicorn's h11 protocol, telling its guard whether it waits on the client (relies on `conn`, h11's state)."""

    _guard: ClassVar[ConnectionGuard]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._guard.make_room(len(self.connections))
        super().connection_made(transport)
        self._follow()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.done_waiting(self)
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Waiting on the client: for a request (IDLE) or the rest of its body (SEND_BODY); the deadline runs from
        the moment the wait began, however the bytes trickle in."""
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            self._guard.wait_on(self)
        else:
            self._guard.done_waiting(self)
