"""Test support: the real server in a subprocess, a real MCP client over HTTP, and an API client."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

API_TOKEN = "test-api-token-0123456789abcdef"
MCP_TOKEN = "test-mcp-token-0123456789abcdef"
SHARED_DASHBOARD_TOKEN = "test-shared-dashboard-token-0123456789"
REPO = Path(__file__).resolve().parent.parent


def _ephemeral_ports() -> range:
    """The kernel's range of ports for the local end of outgoing connections (Linux's default when unreadable)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


_EPHEMERAL = _ephemeral_ports()
_FREE_PORTS = [port for port in range(10000, 65536) if port not in _EPHEMERAL]
_given: set[int] = set()


def free_port() -> int:
    """A loopback port no one listens on now, for a server a test starts later, never one this process gave before.

    Not a port bound to 0: the kernel gives one of its ephemeral range, which it also gives as the local port of every
    outgoing connection. The runs of the suite that go on beside this one connect all the time, so such a port was
    at times taken again by the time the server bound it. A random port outside that range is only ever taken by a
    server, and two runs picking the same one at the same moment is unlikely."""
    while _FREE_PORTS:
        port = random.choice(_FREE_PORTS)
        if port in _given:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    with socket.socket() as sock:  # a kernel whose ephemeral range is every port: the kernel's choice, then
        sock.bind(("127.0.0.1", 0))
        given: int = sock.getsockname()[1]
        return given


async def send_recorded(server: ServerProcess, sid: str, within: float = 10) -> None:
    """Wait until the server has recorded the message it sent as `sid`: a fake service holds a message as soon as
    the real one would take it, the server only once that service's answer is back, and an answer to a message it has
    not recorded yet is refused."""
    from approval_server.store import Store

    store = Store(server.database_url or f"sqlite:///{server.data_dir / 'approval.db'}")
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if await store.outbound(sid) is not None:
                return
            await asyncio.sleep(0.02)
    finally:
        await store.aclose()
    raise AssertionError(f"the server never recorded sending {sid}")


STARTED: list[ServerProcess] = []  # the servers the running test started: their logs are shown if it fails


@dataclass
class ServerProcess:
    """`approval-server serve` running in its own process, as a user would run it."""

    data_dir: Path
    database_url: str | None = None  # None: the server's default, SQLite in the data directory
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    open_files: tuple[int, int] | None = None  # the limit on open files (soft, hard) the server starts under
    args: tuple[str, ...] = ()  # options of `serve`, such as ("--port", "18080")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.data_dir),
            "APPROVAL_DATA_DIR": str(self.data_dir),
            "SERVER_PORT": str(self.port),
            "APPROVAL_API_TOKEN": API_TOKEN,
            "APPROVAL_MCP_TOKEN": MCP_TOKEN,
            "APPROVAL_LOG_LEVEL": "debug",
        }
        if self.database_url is not None:
            env["DATABASE_URL"] = self.database_url
            if self.database_url.startswith("postgres"):  # replicas share their secrets through the settings
                env["APPROVAL_DASHBOARD_TOKEN"] = SHARED_DASHBOARD_TOKEN
        env.update(self.env)
        return env

    def start_expecting_failure(self) -> subprocess.CompletedProcess[str]:
        """`approval-server serve` run to its end, for a start that is expected to stop (its output captured)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            [sys.executable, "-m", "approval_server", "serve", *self.args],
            cwd=self.data_dir,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self, timeout: float = 30) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / f"server-{time.monotonic_ns()}.log"
        STARTED.append(self)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "approval_server", "serve", *self.args],
                cwd=self.data_dir,
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self._limit_open_files if self.open_files else None,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.process.kill()  # never left running behind the failure
        self.process.wait()
        raise RuntimeError(f"server did not start within {timeout} s:\n{self.log()}")

    def _limit_open_files(self) -> None:
        import resource

        assert self.open_files is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, self.open_files)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def api(self, token: str = API_TOKEN) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def mcp(self, token: str = MCP_TOKEN, **kwargs: Any) -> Client[StreamableHttpTransport]:
        transport = StreamableHttpTransport(f"{self.url}/mcp", headers={"Authorization": f"Bearer {token}"})
        return Client(transport, **kwargs)


async def wait_for_pending(
    api: httpx.AsyncClient, match: Mapping[str, Any] | None = None, within: float = 10
) -> dict[str, Any]:
    """The pending request whose fields include `match`, as soon as the server has recorded it."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        response = await api.get("/api/requests", params={"status": "pending", "limit": 1000})
        for row in response.json()["requests"]:
            if all(row.get(key) == value for key, value in (match or {}).items()):
                return dict(row)
        await asyncio.sleep(0.02)
    raise AssertionError(f"no pending request matching {match} within {within} s")


async def wait_for_status(api: httpx.AsyncClient, request_id: str, status: str, within: float = 15) -> dict[str, Any]:
    """The request once it has `status` (polled: for changes no event announces to a test, such as a lease expiry)."""
    deadline = time.monotonic() + within
    while True:
        row: dict[str, Any] = (await api.get(f"/api/requests/{request_id}")).json()
        if row["status"] == status:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"request {request_id} is {row['status']}, not {status}, after {within} s")
        await asyncio.sleep(0.1)
