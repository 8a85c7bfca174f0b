"""What one hook call costs the agent when the policy allows it at once: the command hook (`approval-server hook`,
a Python process started per tool call, then an HTTP request) against an HTTP hook (Claude Code POSTs to
`/api/hook` itself: only the request).

The real server runs as a subprocess on a free loopback port (built-in default policy: a `Read` inside the agent's
directory is allowed by policy, no human). Command hook: the exact command `approval-server hook-config` prints
(`python -I -m approval_server hook --url …`), run through `sh -c` as Claude Code runs it, the hook's JSON on
stdin, timed from spawn to exit. HTTP hook: one POST per call on a new connection (as a hook each time), with the
MCP token, timed from send to the parsed answer. Both check that the answer is an allow.

Run: `uv run python benchmarks/hook_overhead.py [--calls 30] [--http-calls 300]` (about 30 s).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from approval_server.entry.agent_setup import own_command
from tests.support import MCP_TOKEN, ServerProcess


def hook_input(cwd: Path, n: int) -> dict[str, object]:
    return {
        "session_id": "bench",
        "cwd": str(cwd),
        "hook_event_name": "PreToolUse",
        "tool_name": "Read",
        "tool_input": {"file_path": str(cwd / "README.md")},
        "tool_use_id": f"toolu_bench_{n}",
    }


def summary(name: str, samples: list[float]) -> float:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    print(f"{name:<14} n={len(ordered):<4} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   max {ordered[-1]:7.1f} ms")
    return p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30, help="command-hook calls")
    parser.add_argument("--http-calls", type=int, default=300, help="HTTP-hook calls")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        server = ServerProcess(data_dir=Path(temp) / "data", env={"APPROVAL_LOG_LEVEL": "warning"})
        server.start()
        try:
            agent_dir = Path(temp) / "project"
            agent_dir.mkdir()
            command = shlex.join(own_command("hook", "--url", server.url))
            env = {"PATH": "/usr/bin:/bin", "HOME": str(server.data_dir)}
            command_ms: list[float] = []
            for n in range(args.calls):
                started = time.perf_counter()
                done = subprocess.run(
                    ["sh", "-c", command],
                    input=json.dumps(hook_input(agent_dir, n)),
                    env=env,
                    cwd=agent_dir,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                command_ms.append((time.perf_counter() - started) * 1000)
                assert json.loads(done.stdout)["hookSpecificOutput"]["permissionDecision"] == "allow", done.stdout
            http_ms: list[float] = []
            headers = {"Authorization": f"Bearer {MCP_TOKEN}"}
            for n in range(args.http_calls):
                with httpx.Client(base_url=server.url, headers=headers, trust_env=False) as http:
                    started = time.perf_counter()
                    answer = http.post("/api/hook", json=hook_input(agent_dir, n)).json()
                    http_ms.append((time.perf_counter() - started) * 1000)
                assert answer["hookSpecificOutput"]["permissionDecision"] == "allow", answer
        finally:
            server.stop()
    print(f"{platform.machine()}, Python {platform.python_version()}; policy-allowed PreToolUse Read calls")
    command_p50 = summary("command hook", command_ms)
    http_p50 = summary("HTTP hook", http_ms)
    print(
        f"Summary: the HTTP hook answers a policy-allowed call in {http_p50:.1f} ms (p50) against "
        f"{command_p50:.0f} ms for the command hook: {command_p50 - http_p50:.0f} ms saved per tool call."
    )


if __name__ == "__main__":
    main()
