"""How many signed Twilio webhooks the server handles per second, and how fast a request reaches WhatsApp.

Everything runs on loopback: the real server as a subprocess with WhatsApp on, pointed at the tests' fake Twilio
(`tests/fake_twilio.py`), which signs its webhooks exactly as Twilio does.

1. Tool call → outbound Twilio request: one MCP `tools/call` at a time; timed from just before the call is sent
   to the moment the fake Twilio has accepted the `POST …/Messages.json` for it (seen within 0.2 ms).
2. Webhook throughput: N requests wait; then N signed `APPROVE <id>` replies from an approver are delivered with
   `--concurrency` in flight. Each one is a signature check, a duplicate check and a decision written to the
   database, and wakes its waiting MCP call. Prints webhooks handled per second and the time until every MCP
   call had its answer.

Run: `uv run python benchmarks/webhook_throughput.py [--calls 200] [--webhooks 500] [--concurrency 20]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fake_twilio import FakeTwilio
from tests.support import ServerProcess, wait_for_pending
from tests.whatsapp_support import ALICE, PUBLIC_URL, whatsapp_env

TOOL = "permissions__approve"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def outbound_latency(server: ServerProcess, fake: FakeTwilio, calls: int) -> list[float]:
    latencies: list[float] = []
    async with server.mcp() as mcp, server.api() as api:
        for i in range(calls):
            before = len(fake.sent)
            sent_at = time.perf_counter()
            call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": f"o{i}"}}))
            # The fake records a message when it accepts it; the benchmark looks every 0.2 ms (the server never polls).
            while len(fake.sent) <= before:  # noqa: ASYNC110
                await asyncio.sleep(0.0002)
            latencies.append(time.perf_counter() - sent_at)
            pending = await wait_for_pending(api)
            await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "deny"})
            await call
            while len(fake.sent) < before + 4:  # noqa: ASYNC110 (the request to both approvers, then both notices)
                await asyncio.sleep(0.001)
    return latencies


async def webhook_throughput(server: ServerProcess, fake: FakeTwilio, count: int, concurrency: int) -> dict[str, Any]:
    # One MCP client session holds at most 100 open HTTP requests: spread the waiting calls over several.
    async with contextlib.AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(server.mcp()) for _ in range(count // 50 + 1)]
        api = await stack.enter_async_context(server.api())
        calls = [
            asyncio.create_task(
                sessions[i % len(sessions)].call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": f"w{i}"}})
            )
            for i in range(count)
        ]
        while True:
            rows = (await api.get("/api/requests", params={"status": "pending", "limit": 1000})).json()["requests"]
            if len(rows) == count:
                break
            await asyncio.sleep(0.2)
        webhooks = [fake.inbound_message(from_=ALICE, body=f"APPROVE {row['id']}") for row in rows]
        statuses: list[int] = []
        gate = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:

            async def deliver(webhook: Any) -> None:
                async with gate:
                    statuses.append((await fake.deliver(webhook, client=http)).status_code)

            started = time.perf_counter()
            await asyncio.gather(*(deliver(webhook) for webhook in webhooks))
            handled = time.perf_counter() - started
            answers = await asyncio.gather(*calls)
            answered = time.perf_counter() - started
    allowed = sum('"allow"' in answer.content[0].text for answer in answers)
    return {"handled_s": handled, "answered_s": answered, "statuses": statuses, "allowed": allowed}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="tool calls timed one at a time (default 200)")
    parser.add_argument("--webhooks", type=int, default=500, help="signed webhooks in the throughput run (≤1000)")
    parser.add_argument("--concurrency", type=int, default=20, help="webhooks in flight at once (default 20)")
    args = parser.parse_args()

    print("approval-server webhook benchmark")
    print(f"  date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"  machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp, FakeTwilio(auto_callbacks=False) as fake:
        server = ServerProcess(
            data_dir=Path(tmp) / "data",
            env=whatsapp_env(fake, APPROVAL_TIMEOUT_SECONDS="3600", APPROVAL_LOG_LEVEL="warning"),
        )
        server.start()
        fake.configure_webhook(f"{PUBLIC_URL}/twilio-webhook", deliver_to=f"{server.url}/twilio-webhook")
        try:
            latencies = await outbound_latency(server, fake, args.calls)
            result = await webhook_throughput(server, fake, args.webhooks, args.concurrency)
        finally:
            server.stop()

    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    print(f"\nTool call -> outbound Twilio request ({args.calls} calls, one at a time)")
    print(f"  p50 {p50:.1f} ms   p99 {p99:.1f} ms   mean {statistics.mean(latencies) * 1000:.1f} ms")
    rate = args.webhooks / result["handled_s"]
    print(f"\nSigned webhooks ({args.webhooks} APPROVE replies, {args.concurrency} in flight)")
    print(f"  all answered 200 in {result['handled_s']:.2f} s: {rate:.0f} webhooks/s")
    print(f"  every waiting MCP call had its answer after {result['answered_s']:.2f} s; allowed: {result['allowed']}")
    bad = [status for status in result["statuses"] if status != 200]
    if bad or result["allowed"] != args.webhooks:
        print(f"  PROBLEM: {len(bad)} non-200 answers, {result['allowed']} of {args.webhooks} allowed")
    to_twilio = f"tool call -> Twilio p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    print(f"SUMMARY {rate:.0f} signed webhooks/s (decision written, waiter woken); {to_twilio}")


if __name__ == "__main__":
    asyncio.run(main())
