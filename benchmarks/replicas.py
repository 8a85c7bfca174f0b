"""Replicas on PostgreSQL: a decision posted to replica B → the MCP call waiting on replica A, with 1000 waiting.

Everything runs on loopback. `--replicas` servers (3) run `python -m approval_server serve` (the tests'
`ServerProcess`) with the same `DATABASE_URL`, a new database on the PostgreSQL server of `--postgres-url`
(default: `APPROVAL_TEST_POSTGRES_URL`), migrated first with `approval-server db upgrade` and dropped at the end.
They share their tokens; each has its own port and data directory.

`--pending` `permissions__approve` calls (1000) are opened on replica A over streamable HTTP with fastmcp's
`Client`, spread over `--sessions` client sessions, exactly as `decision_latency.py` opens them. Once A's API lists
them all as pending, `--samples` of them (200, chosen at random, seeded) are decided one at a time with
`POST /api/requests/{id}/decision` on replica B; each is timed from just before the POST is sent to the moment the
client holds A's MCP answer, which is checked. The others stay pending, so 1000 to 800 wait throughout. Interleaved
with them, `--control-samples` (50) are decided on A itself: the same database, no other replica in the path.
A thread of this process `LISTEN`s on the servers' channel, on a connection of its own, and notes when each
"closed" notice arrives: that splits a decision on B into what happens up to the notice and what A does after.
The remaining calls are then cancelled and the servers stopped.

Then the same on one server with its default SQLite database: `--pending` calls, `--samples` decided on that
server, one at a time.

Run (about 2 minutes): `bash -c 'source scripts/postgres.sh; .venv/bin/python benchmarks/replicas.py'`, which starts
a throwaway PostgreSQL on loopback, or `.venv/bin/python benchmarks/replicas.py --postgres-url postgresql://…` with a
server whose user may create databases. `--help` lists every option.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import sqlalchemy as sa
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboard import Stats, load_average, settle_client_gc
from decision_latency import (
    OpenCall,
    ProgressCounter,
    Say,
    decide_one_by_one,
    machine,
    ms,
    open_calls,
    wait_until_pending,
)

from approval_server.notices import NOTICE_CHANNEL
from tests.support import ServerProcess

P99_TARGET_MS = 20.0
NO_POSTGRES = (
    "No PostgreSQL server: give --postgres-url postgresql://user:password@127.0.0.1:port/postgres (its user must be "
    "allowed to create databases) or set APPROVAL_TEST_POSTGRES_URL, or run\n"
    "  bash -c 'source scripts/postgres.sh; .venv/bin/python benchmarks/replicas.py'\n"
    "which starts a throwaway PostgreSQL on 127.0.0.1 and removes it afterwards."
)


# ---------------------------------------------------------------------------------------------------------------
# A database of its own, and the replicas on it


class Database:
    """A new database on the given PostgreSQL server, dropped by `drop`."""

    def __init__(self, server_url: str) -> None:
        server = sa.make_url(server_url).set(drivername="postgresql+psycopg")
        self.name = f"bench_replicas_{uuid.uuid4().hex[:12]}"
        self.url = server.set(database=self.name).render_as_string(hide_password=False)
        self._admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        with self._admin.connect() as connection:
            connection.execute(sa.text(f"CREATE DATABASE {self.name}"))

    @property
    def libpq_url(self) -> str:
        return sa.make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)

    def server_version(self) -> str:
        with self._admin.connect() as connection:
            return str(connection.execute(sa.text("SHOW server_version")).scalar_one())

    def drop(self) -> None:
        with self._admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)"))
        self._admin.dispose()


def db_upgrade(server: ServerProcess) -> str:
    """`approval-server db upgrade` with the settings `server` will run with; returns what it printed."""
    server.data_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "approval_server", "db", "upgrade"],
        cwd=server.data_dir,
        env=server.environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"approval-server db upgrade failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout.strip()


def server_env(args: argparse.Namespace) -> dict[str, str]:
    return {"APPROVAL_TIMEOUT_SECONDS": "3600", "APPROVAL_LOG_LEVEL": args.server_log_level}


class NoticeClock(threading.Thread):
    """A `LISTEN` of its own on the servers' channel: when each "closed" notice reached this process."""

    def __init__(self, libpq_url: str) -> None:
        super().__init__(name="notice-clock", daemon=True)
        self.heard: dict[str, float] = {}
        self._connection = psycopg.connect(libpq_url, autocommit=True, application_name="benchmark notice clock")
        self._connection.execute(f"LISTEN {NOTICE_CHANNEL}")
        self._finished = threading.Event()

    def run(self) -> None:
        while not self._finished.is_set():
            for message in self._connection.notifies(timeout=0.2):
                at = time.perf_counter()
                payload = json.loads(message.payload)
                if payload.get("kind") == "closed":
                    self.heard.setdefault(payload["id"], at)

    def close(self) -> None:
        self._finished.set()
        self.join(5)
        self._connection.close()


# ---------------------------------------------------------------------------------------------------------------
# One setup: calls waiting on one server, decisions posted to it or to another


@dataclass
class Setup:
    name: str
    open_seconds: float
    pending: int
    latency: Stats  # POST sent → MCP answer received
    post: Stats  # the POST's round trip
    notice: Stats | None = None  # POST sent → the "closed" notice heard here
    control: Stats | None = None  # decided on the waiting server itself
    control_post: Stats | None = None


async def measure(
    args: argparse.Namespace,
    name: str,
    waiting: ServerProcess,
    deciding: ServerProcess,
    say: Say,
    clock: NoticeClock | None = None,
    control_samples: int = 0,
) -> Setup:
    """`--pending` calls waiting on `waiting`; `--samples` decided on `deciding` and `control_samples` on `waiting`,
    interleaved, one at a time; the rest cancelled at the end."""
    calls: list[OpenCall] = []
    timed: dict[str, list[float]] = {"latency": [], "post": [], "control": [], "control_post": [], "notice": []}
    open_seconds = 0.0
    async with contextlib.AsyncExitStack() as stack:
        api = await stack.enter_async_context(waiting.api())
        other = await stack.enter_async_context(deciding.api()) if deciding is not waiting else api
        clients: list[Client[StreamableHttpTransport]] = [
            await stack.enter_async_context(waiting.mcp()) for _ in range(args.sessions)
        ]
        try:
            started = time.perf_counter()
            calls = open_calls(clients, args.pending, "replicas", ProgressCounter())
            request_ids = await wait_until_pending(api, calls, args.pending_timeout)
            open_seconds = time.perf_counter() - started
            where = "on the same server" if deciding is waiting else "on another replica"
            say(f"  {len(calls)} calls pending after {open_seconds:.1f} s; deciding {args.samples} {where}")
            await asyncio.sleep(args.settle)  # the replicas' "created" notices are all handled
            picked = random.Random(args.seed).sample(calls, args.samples + control_samples)
            control_every = (len(picked) // control_samples) if control_samples else 0
            settle_client_gc()
            for index, call in enumerate(picked):
                on_waiting = bool(control_every) and index % control_every == control_every - 1
                latencies, posts = await decide_one_by_one(api if on_waiting else other, [call], request_ids)
                timed["control" if on_waiting else "latency"] += latencies
                timed["control_post" if on_waiting else "post"] += posts
                if clock is not None and not on_waiting:
                    await asyncio.sleep(0.002)  # the notice may reach this process's clock after the answer
                    sent = call.task.result()[0] - latencies[0]
                    heard = clock.heard.get(request_ids[call.tool_use_id])
                    if heard is not None:
                        timed["notice"].append(heard - sent)
            say(f"  {len(timed['latency'])} decisions, p99 {ms(Stats.of(timed['latency']).p99)}")
        finally:
            for call in calls:
                call.task.cancel()
            await asyncio.gather(*(call.task for call in calls), return_exceptions=True)
    return Setup(
        name=name,
        open_seconds=open_seconds,
        pending=len(calls),
        latency=Stats.of(timed["latency"]),
        post=Stats.of(timed["post"]),
        notice=Stats.of(timed["notice"]) if timed["notice"] else None,
        control=Stats.of(timed["control"]) if timed["control"] else None,
        control_post=Stats.of(timed["control_post"]) if timed["control_post"] else None,
    )


async def run_replicas(args: argparse.Namespace, postgres_url: str, work_dir: Path, say: Say) -> tuple[Setup, str]:
    database = Database(postgres_url)
    try:
        servers = [
            ServerProcess(data_dir=work_dir / f"replica-{index}", database_url=database.url, env=server_env(args))
            for index in range(args.replicas)
        ]
        say(f"database {database.name}: {db_upgrade(servers[0])}")
        await asyncio.gather(*(asyncio.to_thread(server.start, 60) for server in servers))
        for server, label in zip(servers, "ABCDEFGHIJ", strict=False):
            pid = server.process.pid if server.process else "?"
            print(f"  replica {label}: pid {pid} on {server.url}, log {server.log_path}")
        clock = NoticeClock(database.libpq_url)
        clock.start()
        try:
            say(f"PostgreSQL, {args.replicas} replicas: {args.pending} calls waiting on A, decisions on B")
            setup = await measure(
                args,
                f"PostgreSQL {server_version(database)}, {args.replicas} replicas",
                servers[0],
                servers[1],
                say,
                clock,
                args.control_samples,
            )
        except BaseException:
            for server in servers:
                print(f"server log tail ({server.url}):\n{server.log()[-3000:]}", file=sys.stderr)
            raise
        finally:
            clock.close()
            await asyncio.gather(*(asyncio.to_thread(server.stop) for server in servers))
        return setup, database.name
    finally:
        database.drop()


def server_version(database: Database) -> str:
    return database.server_version().split()[0]


async def run_sqlite(args: argparse.Namespace, work_dir: Path, say: Say) -> Setup:
    server = ServerProcess(data_dir=work_dir / "sqlite", env=server_env(args))
    await asyncio.to_thread(server.start, 60)
    print(f"  SQLite server: pid {server.process.pid if server.process else '?'} on {server.url}")
    try:
        say(f"SQLite, one server: {args.pending} calls waiting, decisions on the same server")
        return await measure(args, "SQLite, one server", server, server, say)
    except BaseException:
        print(f"server log tail:\n{server.log()[-3000:]}", file=sys.stderr)
        raise
    finally:
        await asyncio.to_thread(server.stop)


# ---------------------------------------------------------------------------------------------------------------
# Report


def report_lines(args: argparse.Namespace, setups: Sequence[Setup]) -> Iterator[str]:
    yield ""
    yield f"Decision -> waiting MCP answer, {args.pending} calls pending (over {args.sessions} MCP sessions)"
    yield "  timed from just before the decision POST is sent to the moment the client holds the MCP answer"
    yield f"  {'setup':<58} {'decided':>7} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}"

    def row(label: str, stats: Stats) -> str:
        figures = " ".join(f"{ms(value):>8}" for value in (stats.p50, stats.p90, stats.p99, stats.max))
        return f"  {label:<58} {stats.count:>7} {figures}"

    for setup in setups:
        where = "decided on B, waiting on A" if setup.notice is not None or setup.control else "decided on it"
        yield row(f"{setup.name}: {where}", setup.latency)
        yield row("    the decision POST's round trip", setup.post)
        if setup.notice is not None:
            yield row("    POST sent -> 'closed' notice heard by this process", setup.notice)
        if setup.control is not None and setup.control_post is not None:
            yield row(f"{setup.name}: decided on A itself (control)", setup.control)
            yield row("    the decision POST's round trip", setup.control_post)
    yield ""
    for setup in setups:
        left = setup.pending - setup.latency.count - (setup.control.count if setup.control else 0)
        opened = f"{setup.pending} pending after {setup.open_seconds:.1f} s"
        yield f"  {setup.name}: {opened}; {left} still pending at the end"


def summary(replicas: Setup | None, sqlite: Setup | None, count: int) -> tuple[str, bool]:
    parts, met = [], True
    if replicas is not None:
        met = replicas.latency.p99 * 1000 < P99_TARGET_MS
        parts.append(f"PostgreSQL {count} replicas p99 {replicas.latency.p99 * 1000:.1f} ms")
    if sqlite is not None:
        parts.append(f"SQLite single p99 {sqlite.latency.p99 * 1000:.1f} ms")
    verdict = ("PASS" if met else "FAIL") if replicas is not None else "no replicas measured"
    return f"SUMMARY replicas: {' vs '.join(parts)} (target < {P99_TARGET_MS:g} ms): {verdict}", met


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("APPROVAL_TEST_POSTGRES_URL"),
        help="PostgreSQL server whose user may create databases (default: $APPROVAL_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--replicas", type=int, default=3, help="servers on the PostgreSQL database (default 3)")
    parser.add_argument("--pending", type=int, default=1000, help="MCP calls waiting (default 1000)")
    parser.add_argument("--samples", type=int, default=200, help="decisions timed per setup (default 200)")
    parser.add_argument(
        "--control-samples",
        type=int,
        default=50,
        help="PostgreSQL: decisions also timed on replica A itself, interleaved (default 50; 0: none)",
    )
    parser.add_argument("--sessions", type=int, default=20, help="MCP client sessions on A (default 20)")
    parser.add_argument("--seed", type=int, default=20261125, help="which calls are decided")
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds between all pending and the first decision (default 2)"
    )
    parser.add_argument("--pending-timeout", type=float, default=180.0, help="seconds to wait for the calls pending")
    parser.add_argument("--server-log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--skip-sqlite", action="store_true", help="only the replicas")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (the servers' logs)")
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 1 if the replicas' p99 misses the target")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if not 1 <= args.pending <= 1000:
        parser.error("--pending must be from 1 to 1000 (the API lists at most 1000 pending requests)")
    if args.samples < 1 or args.control_samples < 0 or args.samples + args.control_samples > args.pending:
        parser.error("--samples (at least 1) plus --control-samples must not exceed --pending")
    if not 2 <= args.replicas <= 10 or args.sessions < 1:
        parser.error("--replicas must be from 2 to 10, --sessions at least 1")
    if not args.postgres_url:
        parser.exit(2, NO_POSTGRES + "\n")
    return args


async def main_async(args: argparse.Namespace) -> int:
    say = Say(args.quiet)
    began = time.monotonic()
    work_dir = Path(tempfile.mkdtemp(prefix="approval-bench-replicas-"))
    print("approval-server replicas benchmark")
    print(f"  date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"  machine: {machine()}")
    print(f"  load average (1 min) at the start: {load_average()}")
    try:
        replicas, name = await run_replicas(args, args.postgres_url, work_dir, say)
        print(f"  database {name} dropped")
        sqlite = None if args.skip_sqlite else await run_sqlite(args, work_dir, say)
        for line in report_lines(args, [setup for setup in (replicas, sqlite) if setup is not None]):
            print(line)
        text, met = summary(replicas, sqlite, args.replicas)
        print("")
        print(f"Load average (1 min) at the end: {load_average()}")
        print(f"Run time: {time.monotonic() - began:.0f} s" + (f"; files kept in {work_dir}" if args.keep else ""))
        print(text)
        return 1 if args.fail_on_miss and not met else 0
    finally:
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)


def main() -> None:
    sys.exit(asyncio.run(main_async(parse_args())))


if __name__ == "__main__":
    main()
