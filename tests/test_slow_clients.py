"""Slow clients: 2,000 connections that never finish their request (unauthenticated) do not stop the server.

The server starts under the common soft limit of 1,024 open files, as on a default Linux or macOS login; the slow
connections are plain sockets of this process, which raises its own limit to hold them.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from approval_server.entry.connections import REQUEST_SECONDS
from tests.support import API_TOKEN, ServerProcess

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="open-file limits are POSIX")

SLOW = 2000
COMMON_SOFT_LIMIT = 1024
# Half-sent requests, none with a token: headers cut short, bodies cut short (one the server answers 401 without
# reading, one it reads: the login form), and connections that send nothing at all.
HALF_SENT = (
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    b"POST /api/hook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
    b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 100000\r\n\r\ntoken=",
    b"",
)
CWD = "/work/project"
ALLOWED = {  # a read in the agent's working directory: allowed by the default policy, answered at once
    "hook_event_name": "PreToolUse",
    "tool_name": "Read",
    "tool_input": {"file_path": f"{CWD}/README.md"},
    "session_id": "s-1",
    "cwd": CWD,
}


def _hard_limit() -> int:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 20 if hard == resource.RLIM_INFINITY else hard


@pytest.fixture
def own_files() -> Iterator[None]:
    """This process may open what the slow connections need (and its limit is as it was afterwards)."""
    import resource

    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    if _hard_limit() < SLOW + 500:
        pytest.skip(f"the hard limit on open files ({_hard_limit()}) is too low for {SLOW} connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(_hard_limit(), 1 << 16), before[1]))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


def open_slow_connections(port: int) -> list[socket.socket]:
    sockets = []
    for n in range(SLOW):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if HALF_SENT[n % len(HALF_SENT)]:
            sock.sendall(HALF_SENT[n % len(HALF_SENT)])
        sockets.append(sock)
    return sockets


def assert_still_answers(server: ServerProcess) -> None:
    """`/healthz` and an agent's allowed call, each on a new connection, answer within 1 s."""
    for _ in range(3):
        started = time.monotonic()
        with httpx.Client(timeout=2) as client:
            assert client.get(f"{server.url}/healthz").status_code == 200
        assert time.monotonic() - started < 1
        started = time.monotonic()
        with httpx.Client(timeout=2, headers={"Authorization": f"Bearer {API_TOKEN}", "X-Agent-Name": "other"}) as c:
            response = c.post(f"{server.url}/api/hook", json=ALLOWED)
        assert response.status_code == 200, response.text
        assert response.json()["hookSpecificOutput"]["permissionDecision"] == "allow"
        assert time.monotonic() - started < 1


def assert_closed_by_the_server(sockets: list[socket.socket], within: float) -> None:
    """Each slow connection is closed by the server (after an answer, for a request it could refuse at once)."""
    deadline = time.monotonic() + within
    for sock in sockets:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            pass


def soft_limit_of(pid: int) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError("no open-file limit in /proc")


@pytest.mark.usefixtures("own_files")
def test_slow_connections_do_not_stop_the_server(tmp_path: Path, database_url: str) -> None:
    """The server raises its soft limit to the hard limit, serves others meanwhile, and closes each slow connection
    once its time to send a request whole is up."""
    limit = (COMMON_SOFT_LIMIT, _hard_limit())
    server = ServerProcess(data_dir=tmp_path / "data", database_url=database_url, open_files=limit)
    server.start()
    sockets: list[socket.socket] = []
    try:
        assert server.process is not None
        if Path("/proc").is_dir():
            soft_now, hard_now = soft_limit_of(server.process.pid)
            assert soft_now == hard_now, f"the soft limit {soft_now} was not raised to the hard limit {hard_now}"
        sockets = open_slow_connections(server.port)
        opened = time.monotonic()
        time.sleep(2)  # the server has taken them all in from the listen queue
        assert_still_answers(server)
        # Each held past the time a request has to arrive whole, then closed.
        assert_closed_by_the_server(sockets, within=REQUEST_SECONDS + 5 - (time.monotonic() - opened))
        assert time.monotonic() - opened > REQUEST_SECONDS - 3
        assert_still_answers(server)
    finally:
        for sock in sockets:
            sock.close()
        server.stop()
