"""How fast a human decision reaches a waiting agent, and what waiting costs, against the seed's polling design.

Event-driven side (the real server, as Claude Code sees it): `python -m approval_server serve` runs as a
subprocess on a free loopback port with a temporary data directory and APPROVAL_TIMEOUT_SECONDS=3600. For each
N, N `tools/call`s of `permissions__approve` are opened concurrently over streamable HTTP with fastmcp's
`Client`, spread round-robin over a pool of client sessions (20 by default: 50 calls each at N=1000), each call
with a progress handler, so it carries a `progressToken` as Claude Code's calls do. Once
`GET /api/requests?status=pending` lists all N, decisions are posted one after another through
`POST /api/requests/{id}/decision`; each is timed from just before its POST is sent to the moment the client
holds the MCP answer. Small N is repeated until at least `--min-decisions` decisions are timed.

With the largest N waiting, the server's RSS (VmRSS) is read, then its CPU time (utime+stime of every thread,
from `/proc/<pid>/stat`) over a settle window (each call's first progress notification, which also commits its
response to SSE) and over an idle window, with the number of progress notifications the client received.

Polling baseline (the seed design, rebuilt here, not in `src/`): N waiters on asyncio, each running
`SELECT status FROM approvals WHERE id = ?` on a SQLite file in a worker thread (`asyncio.to_thread`) every 2 s,
with random (seeded) phases; a decision is an `UPDATE`. Timed from just before the UPDATE to the moment the
waiter notices. At most `--baseline-samples` decisions per N are timed.

`--what-if-*` start the server with a constant replaced, to measure a proposed change before it is made.

Run: `uv run python benchmarks/decision_latency.py [--sizes 1,100,1000] [--idle-seconds 20]` (about 6 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from mcp.types import CallToolResult, TextContent

from approval_server.entry import mcp_tool

TOOL = "permissions__approve"
P99_TARGET_MS = 20.0
IDLE_CPU_TARGET_PERCENT = 2.0
# The API lists at most this many requests at once, so no round can be larger.
MAX_SIZE = 1000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# What-if runs: the server is started through this launcher with module constants replaced, to measure a change
# before anyone makes it in src/. Only with --what-if-*; the report then says the server was patched.
WHAT_IF_LAUNCHER = """\
import importlib, sys
for module_name, name, value in {patches!r}:
    module = importlib.import_module(module_name)
    if not hasattr(module, name):
        raise SystemExit(f"what-if: {{module_name}}.{{name}} does not exist in this version")
    setattr(module, name, value)
from approval_server.entry.cli import main
sys.argv = ["approval-server", "serve"]
main()
"""


# ---------------------------------------------------------------------------------------------------------------
# Figures


@dataclass(frozen=True)
class Stats:
    count: int
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        if not values:
            raise ValueError("no samples")
        ordered = sorted(values)
        return cls(len(ordered), percentile(ordered, 50), percentile(ordered, 99), ordered[-1])


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) on already sorted values."""
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


@dataclass
class RoundResult:
    size: int
    repeats: int
    open_seconds: float
    latency: Stats
    post: Stats


def repeats(size: int, min_decisions: int) -> int:
    """Rounds of `size` pending requests needed to time at least `min_decisions` decisions."""
    return max(1, -(-min_decisions // size))


@dataclass
class IdleWindow:
    pending: int
    wall_seconds: float
    cpu_seconds: float
    progress_notifications: int

    @property
    def cpu_percent(self) -> float:
        return 100 * self.cpu_seconds / self.wall_seconds


@dataclass
class EventDrivenResult:
    protocol: str
    sessions: int
    rounds: list[RoundResult] = field(default_factory=list)
    rss_before_largest_kib: int = 0
    rss_largest_kib: int = 0
    largest: int = 0
    idle: list[IdleWindow] = field(default_factory=list)
    settle: IdleWindow | None = None
    healthz: Stats | None = None


@dataclass
class BaselineRound:
    size: int
    repeats: int
    sampled: int  # decisions timed in each round
    latency: Stats


@dataclass
class BaselineResult:
    interval: float
    rounds: list[BaselineRound] = field(default_factory=list)
    idle: IdleWindow | None = None


# ---------------------------------------------------------------------------------------------------------------
# The process under test


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the whole process (every thread), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class ServerProcess:
    """`python -m approval_server serve` in its own process, on loopback only, with throwaway tokens and data."""

    def __init__(self, data_dir: Path, timeout_seconds: float, log_level: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.api_token = secrets.token_urlsafe(24)
        self.mcp_token = secrets.token_urlsafe(24)
        self.timeout_seconds = timeout_seconds
        self.log_level = log_level
        self.log_path = data_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.command = [sys.executable, "-m", "approval_server", "serve"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.data_dir),
            "APPROVAL_DATA_DIR": str(self.data_dir),
            "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": str(self.port),
            "APPROVAL_API_TOKEN": self.api_token,
            "APPROVAL_MCP_TOKEN": self.mcp_token,
            "APPROVAL_TIMEOUT_SECONDS": str(self.timeout_seconds),
            "APPROVAL_LOG_LEVEL": self.log_level,
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.data_dir,  # so no stray .env from the caller's directory is read
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"server did not start within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------------------------------------------------------
# Event-driven: the real server over MCP


class ProgressCounter:
    """Counts `notifications/progress` received for every call of every session."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.count += 1


@dataclass
class OpenCall:
    tool_use_id: str
    arguments: dict[str, Any]
    task: asyncio.Task[tuple[float, CallToolResult]]


async def _call_tool(
    client: Client[StreamableHttpTransport], arguments: dict[str, Any], progress: ProgressCounter
) -> tuple[float, CallToolResult]:
    result = await client.call_tool_mcp(TOOL, arguments, progress_handler=progress)
    return time.perf_counter(), result


def open_calls(
    clients: Sequence[Client[StreamableHttpTransport]], size: int, tag: str, progress: ProgressCounter
) -> list[OpenCall]:
    calls = []
    for index in range(size):
        tool_use_id = f"bench-{tag}-{index}"
        arguments = {
            "tool_name": "Bash",
            "input": {"command": f"echo benchmark {tag} {index}", "description": "decision latency benchmark"},
            "tool_use_id": tool_use_id,
        }
        task = asyncio.create_task(_call_tool(clients[index % len(clients)], arguments, progress))
        calls.append(OpenCall(tool_use_id, arguments, task))
    return calls


async def wait_until_pending(api: httpx.AsyncClient, calls: Sequence[OpenCall], within: float) -> dict[str, str]:
    """Request id by tool_use_id, once the API lists every call as pending."""
    wanted = {call.tool_use_id for call in calls}
    deadline = time.monotonic() + within
    while True:
        response = await api.get("/api/requests", params={"status": "pending", "limit": MAX_SIZE})
        response.raise_for_status()
        found = {row["tool_use_id"]: row["id"] for row in response.json()["requests"] if row["tool_use_id"] in wanted}
        if len(found) == len(wanted):
            return found
        failed = [call.task for call in calls if call.task.done()]
        if failed:
            await failed[0]  # raises what went wrong
            raise RuntimeError("a call was answered before any decision was posted")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(found)} of {len(wanted)} calls pending after {within} s")
        await asyncio.sleep(0.25 if len(wanted) > 1 else 0.01)


def answer_of(result: CallToolResult) -> dict[str, Any]:
    if result.is_error or len(result.content) != 1 or not isinstance(result.content[0], TextContent):
        raise RuntimeError(f"unexpected MCP result: {result!r}")
    answer: dict[str, Any] = json.loads(result.content[0].text)
    return answer


async def decide_one_by_one(
    api: httpx.AsyncClient, calls: Sequence[OpenCall], request_ids: dict[str, str]
) -> tuple[list[float], list[float]]:
    """Post the decisions sequentially; per call, (POST sent → MCP answer received) and the POST's round trip."""
    latencies, posts = [], []
    for call in calls:
        request_id = request_ids[call.tool_use_id]
        sent = time.perf_counter()
        response = await api.post(
            f"/api/requests/{request_id}/decision", json={"decision": "allow", "actor": "benchmark"}
        )
        posted = time.perf_counter()
        if response.status_code != 200:
            raise RuntimeError(f"decision for {request_id} answered {response.status_code}: {response.text}")
        received, result = await asyncio.wait_for(call.task, timeout=60)
        answer = answer_of(result)
        if answer != {"behavior": "allow", "updatedInput": call.arguments["input"]}:
            raise RuntimeError(f"wrong answer for {request_id}: {answer}")
        latencies.append(received - sent)
        posts.append(posted - sent)
    return latencies, posts


async def idle_window(pid: int, seconds: float, pending: int, progress: ProgressCounter) -> IdleWindow:
    before_cpu, before_progress, started = cpu_seconds(pid), progress.count, time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - started
    return IdleWindow(pending, wall, cpu_seconds(pid) - before_cpu, progress.count - before_progress)


async def run_event_driven(args: argparse.Namespace, server: ServerProcess, say: Say) -> EventDrivenResult:
    sizes: list[int] = args.sizes
    largest = max(sizes)
    progress = ProgressCounter()
    headers = {"Authorization": f"Bearer {server.mcp_token}"}
    async with contextlib.AsyncExitStack() as stack:
        api = await stack.enter_async_context(
            httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {server.api_token}"}, timeout=60)
        )
        clients: list[Client[StreamableHttpTransport]] = []
        for _ in range(args.sessions):
            transport = StreamableHttpTransport(f"{server.url}/mcp", headers=headers)
            clients.append(
                await stack.enter_async_context(Client(transport, progress_handler=progress, mode=args.mcp_mode))
            )
        result = EventDrivenResult(protocol=clients[0].protocol_version or "?", sessions=len(clients))
        say(f"  {len(clients)} MCP sessions open (protocol {result.protocol})")

        calls = []
        try:
            # Warm up every session and the server's lazy paths; not measured.
            calls = open_calls(clients, len(clients), "warmup", progress)
            await decide_one_by_one(api, calls, await wait_until_pending(api, calls, args.pending_timeout))

            # The fixed cost of one HTTP round trip through this client and the server's middleware, for reference.
            round_trips = []
            for _ in range(50):
                sent = time.perf_counter()
                (await api.get("/healthz")).raise_for_status()
                round_trips.append(time.perf_counter() - sent)
            result.healthz = Stats.of(round_trips)
            floor_seconds = min(args.idle_seconds, 20.0)  # nothing periodic to wait for with 0 pending
            say(f"  idle window, 0 pending ({floor_seconds:g} s)")
            result.idle.append(await idle_window(server.pid, floor_seconds, 0, progress))

            # The largest N runs first, so its RSS is not flattered by memory that smaller rounds left free.
            for size in sorted(sizes, reverse=True):
                latencies: list[float] = []
                posts: list[float] = []
                open_times: list[float] = []
                for repeat in range(repeats(size, args.min_decisions)):
                    rss_before = rss_kib(server.pid)
                    started = time.perf_counter()
                    calls = open_calls(clients, size, f"n{size}r{repeat}", progress)
                    request_ids = await wait_until_pending(api, calls, args.pending_timeout)
                    open_times.append(time.perf_counter() - started)
                    if size == largest and repeat == 0:
                        rss_pending = rss_kib(server.pid)
                        say(f"  N={size}: all pending after {open_times[-1]:.2f} s, RSS {rss_pending / 1024:.1f} MiB")
                        result.largest = size
                        result.rss_before_largest_kib = rss_before
                        if args.settle_seconds > 0:
                            # The first progress notification of a call commits its response to SSE (headers,
                            # access log line): a one-off per call, measured apart from the steady state.
                            say(f"  settling, {size} pending ({args.settle_seconds:g} s)")
                            result.settle = await idle_window(server.pid, args.settle_seconds, size, progress)
                        say(f"  idle window, {size} pending ({args.idle_seconds:g} s)")
                        result.idle.append(await idle_window(server.pid, args.idle_seconds, size, progress))
                        result.rss_largest_kib = rss_kib(server.pid)
                    round_latencies, round_posts = await decide_one_by_one(api, calls, request_ids)
                    latencies += round_latencies
                    posts += round_posts
                mean_open = sum(open_times) / len(open_times)
                result.rounds.append(
                    RoundResult(size, len(open_times), mean_open, Stats.of(latencies), Stats.of(posts))
                )
                latency = result.rounds[-1].latency
                say(f"  N={size}: {latency.count} decisions, p50 {ms(latency.p50)}, p99 {ms(latency.p99)}")
        finally:
            for call in calls:
                call.task.cancel()
            await asyncio.gather(*(call.task for call in calls), return_exceptions=True)
    result.rounds.sort(key=lambda r: r.size)
    return result


# ---------------------------------------------------------------------------------------------------------------
# Polling baseline: the seed's design


class PollingBaseline:
    """The seed's wait: each waiter reads its row's status every `interval` seconds until it is no longer pending.

    The seed (FastMCP + SQLModel on SQLite, default rollback journal) ran `select(...).where(id == short_id)`
    each 2 s in the tool coroutine; here the same SELECT runs in a worker thread (`asyncio.to_thread`), each
    thread reusing one connection as SQLAlchemy's pool did. A decision is an UPDATE, as the seed's webhook did.
    """

    def __init__(self, path: Path, interval: float) -> None:
        self.path = path
        self.interval = interval
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS approvals (id TEXT PRIMARY KEY, request_id TEXT UNIQUE, "
                "description TEXT NOT NULL, requester TEXT NOT NULL, phone_number TEXT NOT NULL, "
                "status TEXT NOT NULL DEFAULT 'pending', created_at TEXT NOT NULL, responded_at TEXT, "
                "response TEXT, expires_at TEXT NOT NULL)"
            )

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, check_same_thread=False)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def insert(self, ids: Sequence[str]) -> None:
        now = datetime.now(UTC)
        rows = [
            (i, f"{i}-full", "Execute command: `echo hi`", "Claude", "+10000000000", now.isoformat(),
             (now + timedelta(minutes=5)).isoformat())
            for i in ids
        ]  # fmt: skip
        with contextlib.closing(sqlite3.connect(self.path)) as db, db:
            db.executemany(
                "INSERT INTO approvals (id, request_id, description, requester, phone_number, created_at, "
                "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def _status(self, request_id: str) -> str:
        row = self._connection().execute("SELECT status FROM approvals WHERE id = ?", (request_id,)).fetchone()
        return str(row[0])

    def _decide(self, request_id: str) -> None:
        connection = self._connection()
        with connection:
            connection.execute(
                "UPDATE approvals SET status = 'approved', response = 'APPROVE', responded_at = ? WHERE id = ?",
                (datetime.now(UTC).isoformat(), request_id),
            )

    async def wait(self, request_id: str, arrival_delay: float) -> float:
        """Poll until decided; returns the moment the waiter noticed."""
        await asyncio.sleep(arrival_delay)
        while True:
            if await asyncio.to_thread(self._status, request_id) != "pending":
                return time.perf_counter()
            await asyncio.sleep(self.interval)

    async def decide(self, request_id: str) -> None:
        await asyncio.to_thread(self._decide, request_id)

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()


async def run_baseline(args: argparse.Namespace, work_dir: Path, say: Say) -> BaselineResult:
    result = BaselineResult(interval=args.poll_interval)
    rng = random.Random(1234)
    largest = max(args.sizes)
    for size in args.sizes:
        baseline = PollingBaseline(work_dir / f"baseline-{size}.db", args.poll_interval)
        latencies: list[float] = []
        sample_size = min(size, args.baseline_samples)
        rounds = repeats(size, args.min_decisions) if size <= args.baseline_samples else 1
        try:
            for repeat in range(rounds):
                ids = [secrets.token_hex(8) for _ in range(size)]
                baseline.insert(ids)
                # Requests arrive at random moments, so each waiter polls with its own phase within the interval.
                waiters = {i: asyncio.create_task(baseline.wait(i, rng.uniform(0, args.poll_interval))) for i in ids}
                try:
                    await asyncio.sleep(args.poll_interval)  # every waiter has started polling
                    if size == largest and repeat == 0 and args.baseline_idle:
                        say(f"  idle window, {size} polling waiters in this process ({args.idle_seconds:g} s)")
                        result.idle = await idle_window(os.getpid(), args.idle_seconds, size, ProgressCounter())
                    for request_id in rng.sample(ids, sample_size):
                        written = time.perf_counter()
                        await baseline.decide(request_id)
                        noticed = await asyncio.wait_for(waiters[request_id], timeout=args.poll_interval * 5 + 30)
                        latencies.append(noticed - written)
                finally:
                    for task in waiters.values():
                        task.cancel()
                    await asyncio.gather(*waiters.values(), return_exceptions=True)
        finally:
            baseline.close()
        result.rounds.append(BaselineRound(size, rounds, sample_size, Stats.of(latencies)))
        latency = result.rounds[-1].latency
        say(f"  N={size}: {latency.count} decisions, p50 {ms(latency.p50)}, p99 {ms(latency.p99)}")
    return result


# ---------------------------------------------------------------------------------------------------------------
# Report


class Say:
    """Progress lines on stderr, so stdout holds only the report."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.started:6.1f} s] {text}", file=sys.stderr, flush=True)


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = "? GiB"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return f"{os.cpu_count()} CPUs ({model}), {ram} RAM, Linux {platform.release()}, Python {platform.python_version()}"


def decisions_label(count: int, size: int, rounds: int) -> str:
    if rounds > 1:
        return f"{count} ({rounds} rounds)"
    return f"{count}" if count == size else f"{count} of {size}"


def report_lines(event: EventDrivenResult, baseline: BaselineResult | None) -> Iterator[str]:
    yield ""
    yield f"Event-driven: real server, MCP over streamable HTTP ({event.protocol}), {event.sessions} client sessions"
    yield "  latency = just before POST /decision is sent -> MCP answer received by the client; one decision at a time"
    yield (
        f"  {'N':>5}  {'decisions':>16}  {'all pending after':>17}  {'p50':>8}  {'p99':>8}  {'max':>8}  {'POST p50':>8}"
    )
    for r in event.rounds:
        yield (
            f"  {r.size:>5}  {decisions_label(r.latency.count, r.size, r.repeats):>16}  {r.open_seconds:>15.2f} s  "
            f"{ms(r.latency.p50):>8}  {ms(r.latency.p99):>8}  {ms(r.latency.max):>8}  {ms(r.post.p50):>8}"
        )
    if event.healthz is not None:
        yield f"  for reference, GET /healthz round trip with 0 pending: p50 {ms(event.healthz.p50)}"
    per_pending = (event.rss_largest_kib - event.rss_before_largest_kib) / event.largest
    yield ""
    yield (
        f"Server RSS: {event.rss_before_largest_kib / 1024:.1f} MiB with 0 pending (after warm-up), "
        f"{event.rss_largest_kib / 1024:.1f} MiB with {event.largest} pending "
        f"-> {per_pending:.1f} KiB per pending request"
    )
    windows = [(f"idle, {w.pending} pending", w) for w in event.idle]
    if event.settle is not None:
        name = f"first {event.settle.wall_seconds:.0f} s, {event.settle.pending} pending"
        windows.insert(1, (name, event.settle))
    for name, window in windows:
        rate = window.progress_notifications / window.wall_seconds
        yield (
            f"Server CPU, {name + ':':<26} {window.cpu_percent:5.2f}% of one core "
            f"({window.cpu_seconds:.2f} s CPU in {window.wall_seconds:.1f} s); "
            f"client received {window.progress_notifications} progress notifications ({rate:.1f}/s)"
        )
    if baseline is None:
        return
    yield ""
    yield (
        f"Polling baseline (seed design): each waiter runs a SQLite SELECT every {baseline.interval:g} s "
        "(asyncio + to_thread)"
    )
    yield "  latency = just before the UPDATE -> the waiter notices; one decision at a time"
    yield f"  {'N':>5}  {'decisions':>16}  {'p50':>8}  {'p99':>8}  {'max':>8}"
    for b in baseline.rounds:
        label = decisions_label(b.latency.count, b.size, b.repeats)
        yield f"  {b.size:>5}  {label:>16}  {ms(b.latency.p50):>8}  {ms(b.latency.p99):>8}  {ms(b.latency.max):>8}"
    if baseline.idle is not None:
        w = baseline.idle
        yield (
            f"Baseline CPU, idle, {w.pending} polling waiters (this process): {w.cpu_percent:.2f}% of one core "
            f"({w.cpu_seconds:.2f} s CPU in {w.wall_seconds:.1f} s)"
        )
    yield ""
    yield "Ratio event-driven / polling latency (the event-driven server is 'x' times faster):"
    by_size = {r.size: r for r in event.rounds}
    for b in baseline.rounds:
        e = by_size[b.size]
        yield (
            f"  N={b.size:>4}: p50 {e.latency.p50 / b.latency.p50:.4f} ({b.latency.p50 / e.latency.p50:.0f}x), "
            f"p99 {e.latency.p99 / b.latency.p99:.4f} ({b.latency.p99 / e.latency.p99:.0f}x)"
        )


def summary(event: EventDrivenResult, baseline: BaselineResult | None) -> tuple[str, bool]:
    largest = max(event.rounds, key=lambda r: r.size)
    busy = max(event.idle, key=lambda w: w.pending)
    per_pending = (event.rss_largest_kib - event.rss_before_largest_kib) / event.largest
    text = f"SUMMARY p99@{largest.size}={largest.latency.p99 * 1000:.1f}ms"
    if baseline is not None:
        polled = {b.size: b for b in baseline.rounds}.get(largest.size)
        if polled is not None:
            speedup = polled.latency.p99 / largest.latency.p99
            text += f" (polling baseline {polled.latency.p99 * 1000:.0f}ms, {speedup:.0f}x)"
    text += (
        f", idle CPU {busy.cpu_percent:.1f}% with {busy.pending} waiting "
        f"({busy.progress_notifications / busy.wall_seconds:.0f} progress notifications/s), "
        f"RSS {per_pending:.0f} KiB/pending"
    )
    met = largest.latency.p99 * 1000 < P99_TARGET_MS and busy.cpu_percent < IDLE_CPU_TARGET_PERCENT
    return text, met


# ---------------------------------------------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of whole numbers: {text!r}") from None
    if not sizes or sizes[0] < 1 or sizes[-1] > MAX_SIZE:
        raise argparse.ArgumentTypeError(f"sizes must be from 1 to {MAX_SIZE}")
    return sizes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=parse_sizes, default=[1, 100, 1000], help="pending counts (default 1,100,1000)")
    parser.add_argument(
        "--idle-seconds",
        type=float,
        help="length of each idle CPU window (default: 20, or two progress intervals if that is longer)",
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        help="with the largest N pending, wait this long before the idle window, so that every call has sent its "
        "first progress notification and committed its SSE response; measured and shown apart "
        "(default: the server's progress interval + 2 s)",
    )
    parser.add_argument(
        "--sessions", type=int, default=20, help="MCP client sessions the calls are spread over (default 20)"
    )
    parser.add_argument(
        "--mcp-mode",
        default="auto",
        help="fastmcp Client mode: 'auto' negotiates 2026-07-28 as Claude Code does; 'legacy' uses initialize",
    )
    parser.add_argument("--server-log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--min-decisions",
        type=int,
        default=20,
        help="repeat a round of N until at least this many decisions are timed (N=1: 20 rounds; default 20)",
    )
    parser.add_argument("--pending-timeout", type=float, default=120.0, help="seconds to wait for N pending")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="baseline poll interval (default 2 s)")
    parser.add_argument(
        "--baseline-samples",
        type=int,
        default=100,
        help="at most this many baseline decisions per N, each waits ~interval/2 (default 100)",
    )
    parser.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the polling baseline")
    parser.add_argument(
        "--no-baseline-idle", dest="baseline_idle", action="store_false", help="skip the baseline's idle CPU window"
    )
    parser.add_argument(
        "--what-if-progress-interval",
        type=float,
        metavar="SECONDS",
        help="run the server with approval_server.entry.mcp_tool.PROGRESS_INTERVAL_SECONDS replaced (an experiment)",
    )
    parser.add_argument(
        "--what-if-sse-ping-interval",
        type=float,
        metavar="SECONDS",
        help="run the server with the MCP SDK's SSE keepalive interval (mcp.server._streamable_http_modern."
        "_SSE_PING_INTERVAL, 15 s) replaced (an experiment)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server log, databases)")
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 1 if an acceptance target is missed")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if min(args.sessions, args.baseline_samples, args.min_decisions) < 1:
        parser.error("--sessions, --baseline-samples and --min-decisions must be at least 1")
    interval = progress_interval(args)
    if args.idle_seconds is None:
        args.idle_seconds = max(20.0, 2 * interval)
    if args.settle_seconds is None:
        args.settle_seconds = interval + 2
    return args


def progress_interval(args: argparse.Namespace) -> float:
    """Seconds between two progress notifications of one waiting call, in the server under test."""
    if args.what_if_progress_interval is not None:
        return float(args.what_if_progress_interval)
    return float(getattr(mcp_tool, "PROGRESS_INTERVAL_SECONDS", 10.0))


def what_if_label(args: argparse.Namespace) -> str:
    changes = []
    if args.what_if_progress_interval is not None:
        changes.append(f"progress every {args.what_if_progress_interval:g} s")
    if args.what_if_sse_ping_interval is not None:
        changes.append(f"SDK SSE ping every {args.what_if_sse_ping_interval:g} s")
    return ", ".join(changes)


def what_if_command(args: argparse.Namespace) -> list[str] | None:
    patches: list[tuple[str, str, float]] = []
    if args.what_if_progress_interval is not None:
        patches.append(("approval_server.entry.mcp_tool", "PROGRESS_INTERVAL_SECONDS", args.what_if_progress_interval))
    if args.what_if_sse_ping_interval is not None:
        patches.append(("mcp.server._streamable_http_modern", "_SSE_PING_INTERVAL", args.what_if_sse_ping_interval))
    if not patches:
        return None
    return [sys.executable, "-c", WHAT_IF_LAUNCHER.format(patches=patches)]


async def main_async(args: argparse.Namespace) -> int:
    say = Say(args.quiet)
    began = time.monotonic()
    work_dir = Path(tempfile.mkdtemp(prefix="approval-bench-"))
    print("approval-server decision latency benchmark")
    print(f"  date: {datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(f"  machine: {machine()}")
    server = ServerProcess(work_dir / "server", timeout_seconds=3600, log_level=args.server_log_level)
    server.data_dir.mkdir()
    patched = what_if_command(args)
    if patched is not None:
        server.command = patched
    say(f"starting the server in {server.data_dir}")
    await asyncio.to_thread(server.start)
    print(f"  server: pid {server.pid} on {server.url}, APPROVAL_TIMEOUT_SECONDS=3600, log level {server.log_level}")
    print(
        f"  progress notification every {progress_interval(args):g} s per waiting call; "
        f"idle windows {args.idle_seconds:g} s, settle {args.settle_seconds:g} s"
    )
    if patched is not None:
        print(f"  WHAT-IF: the server runs patched ({what_if_label(args)}); these are not the shipped settings")
    try:
        event = await run_event_driven(args, server, say)
    except BaseException:
        print(f"server log tail:\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        await asyncio.to_thread(server.stop)
    baseline = None
    if args.baseline:
        say("polling baseline")
        baseline = await run_baseline(args, work_dir, say)
    for line in report_lines(event, baseline):
        print(line)
    text, met = summary(event, baseline)
    if patched is not None:
        text += f" [WHAT-IF: {what_if_label(args)}]"
    print("")
    print(
        f"Targets: p99@{max(args.sizes)} < {P99_TARGET_MS:g} ms and idle CPU with {max(args.sizes)} waiting "
        f"< {IDLE_CPU_TARGET_PERCENT:g}%: {'met' if met else 'MISSED'}"
    )
    print(f"Run time: {time.monotonic() - began:.0f} s" + (f"; files kept in {work_dir}" if args.keep else ""))
    print(text)
    if not args.keep:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 1 if args.fail_on_miss and not met else 0


def main() -> None:
    sys.exit(asyncio.run(main_async(parse_args())))


if __name__ == "__main__":
    main()
