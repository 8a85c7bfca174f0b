"""One agent at its fair share, flooding: how long another agent's policy-allowed call takes meanwhile.

The real server runs as a subprocess on a free loopback port (SQLite, built-in default policy: a `Read` inside the
agent's directory is allowed by policy). The flooding agent ("flood") first opens its maximum of waiting requests
(`APPROVAL_MAX_PENDING_PER_AGENT`, 20) through `/api/hook`, then keeps `--flooders` connections sending requests
that the server denies at once ("fair share"), from a process of its own (so that the flood's client does not slow
the measuring one). Meanwhile the other agent ("quiet") makes `--calls` policy-allowed
calls, one after another; each is timed from send to its parsed allow. The target: quiet's p99 under 50 ms.

Run: `uv run python benchmarks/fair_share.py [--calls 500] [--flooders 8]` (about 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import platform
import statistics
import sys
import tempfile
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support import MCP_TOKEN, ServerProcess

TARGET_P99_MS = 50.0
HEADERS = {"Authorization": f"Bearer {MCP_TOKEN}"}


def hook(agent_dir: Path, tool: str, n: int) -> dict[str, object]:
    tool_input = {"file_path": str(agent_dir / "README.md")} if tool == "Read" else {"command": f"make flood-{n}"}
    return {
        "session_id": f"bench-{tool}",
        "cwd": str(agent_dir),
        "hook_event_name": "PreToolUse",
        "tool_name": tool,
        "tool_input": tool_input,
        "tool_use_id": f"toolu_{tool}_{n}",
    }


async def flood(url: str, agent_dir: Path, flooders: int, stop: EventType) -> tuple[int, int]:
    counts = {"denied": 0, "other": 0}

    async def one() -> None:
        n = 0
        async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=600) as http:
            while not stop.is_set():
                n += 1
                body = hook(agent_dir, "Bash", n)
                response = await http.post("/api/hook", json=body, headers={"X-Agent-Name": "flood"})
                reason = response.json()["hookSpecificOutput"].get("permissionDecisionReason", "")
                counts["denied" if "APPROVAL_MAX_PENDING_PER_AGENT" in reason else "other"] += 1

    await asyncio.gather(*(one() for _ in range(flooders)))
    return counts["denied"], counts["other"]


def flood_process(url: str, agent_dir: Path, flooders: int, stop: EventType, result: Queue[tuple[int, int]]) -> None:
    result.put(asyncio.run(flood(url, agent_dir, flooders, stop)))


async def run(server: ServerProcess, agent_dir: Path, calls: int, flooders: int) -> list[float]:
    limits = httpx.Limits(max_connections=flooders + 40)
    async with httpx.AsyncClient(base_url=server.url, headers=HEADERS, timeout=600, limits=limits) as http:
        held = [
            asyncio.create_task(
                http.post("/api/hook", json=hook(agent_dir, "Bash", -n), headers={"X-Agent-Name": "flood"})
            )
            for n in range(1, 21)
        ]
        api = {"Authorization": f"Bearer {server.environment()['APPROVAL_API_TOKEN']}"}
        for _ in range(500):
            pending = (await http.get("/api/requests", params={"status": "pending"}, headers=api)).json()["requests"]
            if len(pending) >= 20:
                break
            await asyncio.sleep(0.02)
        print(f"flood holds {len(pending)} waiting requests")
        context = multiprocessing.get_context("spawn")
        stop, result = context.Event(), context.Queue()
        flooding = context.Process(target=flood_process, args=(server.url, agent_dir, flooders, stop, result))
        flooding.start()
        await asyncio.sleep(2)
        samples = []
        for n in range(calls):
            started = time.perf_counter()
            response = await http.post("/api/hook", json=hook(agent_dir, "Read", n), headers={"X-Agent-Name": "quiet"})
            output = response.json()["hookSpecificOutput"]
            samples.append((time.perf_counter() - started) * 1000)
            assert output["permissionDecision"] == "allow", output
        stop.set()
        denied, other = await asyncio.to_thread(result.get)
        flooding.join()
        print(f"flood was denied at once {denied} times during {calls} quiet calls ({other} other)")
        for row in pending:
            await http.post(f"/api/requests/{row['id']}/decision", json={"decision": "deny"}, headers=api)
        await asyncio.gather(*held)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="the quiet agent's policy-allowed calls")
    parser.add_argument("--flooders", type=int, default=8, help="connections flooding denied requests")
    args = parser.parse_args()
    print(f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}")
    with tempfile.TemporaryDirectory() as temp:
        agent_dir = Path(temp) / "agent"
        agent_dir.mkdir()
        server = ServerProcess(data_dir=Path(temp) / "data", env={"APPROVAL_LOG_LEVEL": "warning"})
        server.start()
        try:
            samples = asyncio.run(run(server, agent_dir, args.calls, args.flooders))
        finally:
            server.stop()
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"quiet agent: n={len(ordered)} p50 {p50:.1f} ms  p99 {p99:.1f} ms  max {ordered[-1]:.1f} ms")
    verdict = "PASS" if p99 < TARGET_P99_MS else "FAIL"
    print(f"SUMMARY fair share: another agent's allowed call p99 {p99:.1f} ms under a flood (target < 50 ms) {verdict}")


if __name__ == "__main__":
    main()
