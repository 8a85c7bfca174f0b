"""One agent at its fair share, flooding: how long another agent's policy-allowed call takes meanwhile.

The real server runs as a subprocess on a free loopback port (SQLite, built-in default policy: a `Read` inside the
agent's directory is allowed by policy). The flooding agent ("flood") first opens its maximum of waiting requests
(`APPROVAL_MAX_PENDING_PER_AGENT`, 20) through `/api/hook`, then keeps `--flooders` connections sending requests
that the server denies at once ("fair share"). Meanwhile the other agent ("quiet") makes `--calls` policy-allowed
calls, one after another; each is timed from send to its parsed allow. The target: quiet's p99 under 50 ms.

Run: `uv run python benchmarks/fair_share.py [--calls 500] [--flooders 8]` (about 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
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


async def flood(http: httpx.AsyncClient, agent_dir: Path, stop: asyncio.Event, counts: dict[str, int]) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        response = await http.post("/api/hook", json=hook(agent_dir, "Bash", n), headers={"X-Agent-Name": "flood"})
        reason = response.json()["hookSpecificOutput"].get("permissionDecisionReason", "")
        counts["denied" if "fair share" in reason.lower() or "waiting" in reason.lower() else "other"] += 1


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
        stop, counts = asyncio.Event(), {"denied": 0, "other": 0}
        flooding = [asyncio.create_task(flood(http, agent_dir, stop, counts)) for _ in range(flooders)]
        await asyncio.sleep(1)
        samples = []
        for n in range(calls):
            started = time.perf_counter()
            response = await http.post("/api/hook", json=hook(agent_dir, "Read", n), headers={"X-Agent-Name": "quiet"})
            output = response.json()["hookSpecificOutput"]
            samples.append((time.perf_counter() - started) * 1000)
            assert output["permissionDecision"] == "allow", output
        stop.set()
        await asyncio.gather(*flooding)
        print(f"flood was denied at once {counts['denied']} times during {calls} quiet calls ({counts['other']} other)")
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
