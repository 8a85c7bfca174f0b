"""A steady stream for a long time: does the server stay flat (memory, open files, latency) and is every request
closed?

The real server runs as a subprocess on a free loopback port (SQLite in a temporary data directory, or the
PostgreSQL database in `--database-url`). Agents send Claude Code hook calls to `/api/hook` at `--rate` a second,
spread over `--agents` agents: about half are decided by the policy at once (allowed or denied), a third wait and a
"human" decides them through the API after 0.1 to 2 s, and the rest are left to expire (`--expiry` seconds). Every
minute it prints the server's resident memory and open files, and p50/p99 of two latencies: a policy decision
(hook sent to hook answered) and a human one (decision posted to hook answered). At the end every request must be
closed (`allowed`, `denied` or `expired`) and every hook answered as it was decided.

Run: `uv run python benchmarks/soak.py --minutes 30` (`--minutes 1` for a quick look).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support import API_TOKEN, MCP_TOKEN, ServerProcess

POLICY = """
[permissions]
allow = ["Bash(echo:*)"]
deny = ["Bash(shred:*)"]
"""
HOOK = {"Authorization": f"Bearer {MCP_TOKEN}"}
API = {"Authorization": f"Bearer {API_TOKEN}"}


@dataclass
class Minute:
    policy_ms: list[float] = field(default_factory=list)
    human_ms: list[float] = field(default_factory=list)
    calls: int = 0


def percentiles(samples: list[float]) -> str:
    if not samples:
        return "      -        -"
    ordered = sorted(samples)
    return f"{statistics.median(ordered):7.1f} {ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]:8.1f}"


def server_usage(pid: int) -> tuple[float, int]:
    """The server's resident memory (MiB) and open files, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd"))


class Soak:
    def __init__(self, server: ServerProcess, agents: int, expiry: float) -> None:
        self.server = server
        self.agents = agents
        self.minutes: list[Minute] = [Minute()]
        self.kinds: dict[str, str] = {}  # tool_use_id -> what the run means to happen to it
        self.decided_at: dict[str, float] = {}
        self.mismatches: list[str] = []
        limits = httpx.Limits(max_connections=1000)
        self.http = httpx.AsyncClient(base_url=server.url, timeout=expiry + 60, limits=limits)

    async def call(self, n: int) -> None:
        kind = random.choices(["allow", "deny", "human-allow", "human-deny", "expire"], [30, 20, 17, 17, 16])[0]
        use = f"toolu_soak_{n}"
        self.kinds[use] = kind
        body = {
            "session_id": f"soak-{n % self.agents}",
            "cwd": "/srv/soak",
            "hook_event_name": "PreToolUse",
            "tool_name": "Bash",
            "tool_input": {"command": {"allow": "echo", "deny": "shred"}.get(kind, "make") + f" soak-{n}"},
            "tool_use_id": use,
        }
        started = time.perf_counter()
        headers = HOOK | {"X-Agent-Name": f"agent-{n % self.agents}"}
        response = await self.http.post("/api/hook", json=body, headers=headers)
        answered = time.perf_counter()
        decision = response.json()["hookSpecificOutput"]["permissionDecision"]
        want = "allow" if kind in ("allow", "human-allow") else "deny"
        if decision != want:
            self.mismatches.append(f"{use} ({kind}): {decision}")
        minute = self.minutes[-1]
        if kind in ("allow", "deny"):
            minute.policy_ms.append((answered - started) * 1000)
        elif use in self.decided_at:
            minute.human_ms.append((answered - self.decided_at.pop(use)) * 1000)
        minute.calls += 1

    async def human(self, stop: asyncio.Event) -> None:
        """Answers each waiting request meant for a human after 0.1 to 2 s; leaves those meant to expire."""
        seen: set[str] = set()
        answering: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            response = await self.http.get("/api/requests", params={"status": "pending", "limit": 1000}, headers=API)
            for row in response.json()["requests"]:
                kind = self.kinds.get(row["tool_use_id"], "expire")
                if row["id"] in seen or kind == "expire":
                    continue
                seen.add(row["id"])
                task = asyncio.create_task(self.answer(row["id"], row["tool_use_id"], kind))
                answering.add(task)
                task.add_done_callback(answering.discard)
            await asyncio.sleep(0.05)
        await asyncio.gather(*answering)

    async def answer(self, request_id: str, use: str, kind: str) -> None:
        await asyncio.sleep(random.uniform(0.1, 2.0))
        self.decided_at[use] = time.perf_counter()
        decision = "allow" if kind == "human-allow" else "deny"
        await self.http.post(f"/api/requests/{request_id}/decision", json={"decision": decision}, headers=API)

    def report(self, number: int) -> str:
        assert self.server.process is not None
        rss, files = server_usage(self.server.process.pid)
        minute = self.minutes[-1]
        line = (
            f"{number:4d} {rss:9.1f} {files:6d}   {percentiles(minute.policy_ms)}   {percentiles(minute.human_ms)} "
            f"{minute.calls:7d}"
        )
        print(line, flush=True)
        return line


async def soak(server: ServerProcess, minutes: float, rate: float, agents: int, expiry: float) -> Soak:
    run = Soak(server, agents, expiry)
    stop = asyncio.Event()
    human = asyncio.create_task(run.human(stop))
    calls: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    next_minute = started + 60
    n = 0
    print(" min   RSS MiB  files   policy p50      p99   human p50      p99   calls")
    while time.monotonic() - started < minutes * 60:
        n += 1
        task = asyncio.create_task(run.call(n))
        calls.add(task)
        task.add_done_callback(calls.discard)
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        if time.monotonic() >= next_minute:
            run.report(len(run.minutes))
            run.minutes.append(Minute())
            next_minute += 60
    await asyncio.gather(*calls)
    stop.set()
    await human
    run.report(len(run.minutes))
    return run


def statuses(database_url: str) -> Counter[str]:
    """How many requests the database holds in each status."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT status, count(*) FROM requests GROUP BY status"))
            return Counter({status: int(count) for status, count in rows})
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30, help="how long to run")
    parser.add_argument("--rate", type=float, default=20, help="hook calls a second")
    parser.add_argument("--agents", type=int, default=10, help="agents sharing the stream")
    parser.add_argument("--expiry", type=float, default=5, help="APPROVAL_TIMEOUT_SECONDS")
    parser.add_argument("--database-url", help="a migrated PostgreSQL database (default: SQLite in a temp dir)")
    args = parser.parse_args()
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"
    )
    print(f"{args.rate:g} calls/s for {args.minutes:g} min, {args.agents} agents, expiry {args.expiry:g} s")
    with tempfile.TemporaryDirectory() as temp:
        policy = Path(temp) / "policy.toml"
        policy.write_text(POLICY)
        env = {
            "APPROVAL_LOG_LEVEL": "warning",
            "APPROVAL_TIMEOUT_SECONDS": str(args.expiry),
            "POLICY_FILE": str(policy),
            "APPROVAL_MAX_PENDING_PER_AGENT": "1000",
            "APPROVAL_MAX_PENDING_PER_TOKEN": "10000",
        }
        server = ServerProcess(data_dir=Path(temp) / "data", database_url=args.database_url, env=env)
        server.start()
        try:
            run = asyncio.run(soak(server, args.minutes, args.rate, args.agents, args.expiry))
            counts = statuses(args.database_url or f"sqlite:///{server.data_dir / 'approval.db'}")
        finally:
            server.stop()
    every = [sample for minute in run.minutes for sample in minute.policy_ms]
    human = [sample for minute in run.minutes for sample in minute.human_ms]
    total = sum(minute.calls for minute in run.minutes)
    print(f"requests by status: {dict(counts)}; hook answers not as decided: {len(run.mismatches)}")
    for mismatch in run.mismatches[:10]:
        print(f"  {mismatch}")
    ok = counts["pending"] == 0 and not run.mismatches
    print(
        f"SUMMARY soak: {total:,} calls in {args.minutes:g} min at {args.rate:g}/s; policy p50/p99 "
        f"{percentiles(every).split()[0]}/{percentiles(every).split()[1]} ms, human decision to agent p50/p99 "
        f"{percentiles(human).split()[0]}/{percentiles(human).split()[1]} ms; "
        f"{counts['pending']} left pending; {'PASS' if ok else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
