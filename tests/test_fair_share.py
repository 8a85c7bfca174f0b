"""Fair share: one agent (or one token, whatever names it gives) cannot have more than its share waiting at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from approval_server.fair_share import Limits, Share, Turns
from approval_server.models import ApprovalRequest, ToolCall
from approval_server.store import Store
from tests.support import ServerProcess, wait_for_pending

ASK = {"command": "rm -rf build"}  # asks a human under the default policy
CWD = "/work/project"


def hook_input(tool: str = "Bash", tool_input: dict[str, Any] | None = None, session: str = "s-1") -> dict[str, Any]:
    return {
        "hook_event_name": "PreToolUse",
        "tool_name": tool,
        "tool_input": tool_input or ASK,
        "session_id": session,
        "cwd": CWD,
    }


async def ask(api: httpx.AsyncClient, agent: str | None, **fields: Any) -> dict[str, Any]:
    """One hook call, as `approval-server hook --agent <agent>` makes it; returns the hook's output."""
    headers = {"X-Agent-Name": agent} if agent else {}
    response = await api.post("/api/hook", json=hook_input(**fields), headers=headers)
    assert response.status_code == 200, response.text
    output: dict[str, Any] = response.json()["hookSpecificOutput"]
    return output


async def count_pending(api: httpx.AsyncClient, want: int, within: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        rows = (await api.get("/api/requests", params={"status": "pending", "limit": 1000})).json()["requests"]
        if len(rows) >= want or time.monotonic() > deadline:
            return list(rows)
        await asyncio.sleep(0.05)


async def test_the_21st_waiting_request_of_an_agent_is_denied_at_once_and_the_others_are_not(
    server: ServerProcess,
) -> None:
    async with server.api() as api:
        waiting = [asyncio.create_task(ask(api, "flood", session=f"s-{n}")) for n in range(20)]
        assert len(await count_pending(api, 20)) == 20

        started = time.monotonic()
        output = await ask(api, "flood", session="s-new")
        assert time.monotonic() - started < 1
        assert output["permissionDecision"] == "deny"
        assert "20 requests of agent 'flood' already wait" in output["permissionDecisionReason"]
        assert "APPROVAL_MAX_PENDING_PER_AGENT=20" in output["permissionDecisionReason"]
        denied = (await api.get("/api/requests", params={"status": "denied"})).json()["requests"]
        assert [(row["decided_by"], row["decided_via"], row["session"]) for row in denied] == [
            ("approval-server", "fair share", "s-new")
        ]
        assert denied[0]["reason"] in output["permissionDecisionReason"]

        # What the policy allows never waits, so it is never refused for this, even for the agent at its limit.
        read = {"file_path": f"{CWD}/README.md"}
        assert (await ask(api, "flood", tool="Read", tool_input=read))["permissionDecision"] == "allow"
        # Another agent asks and waits as usual.
        other = asyncio.create_task(ask(api, "other"))
        row = await wait_for_pending(api, {"agent": "other"})
        # Once one of the agent's requests is answered, it may ask again.
        first = (await count_pending(api, 21))[-1]
        assert first["agent"] == "flood"
        await api.post(f"/api/requests/{first['id']}/decision", json={"decision": "deny"})
        again = asyncio.create_task(ask(api, "flood", session="s-again"))
        await wait_for_pending(api, {"agent": "flood", "session": "s-again"})

        for request in [*await count_pending(api, 21), row]:
            await api.post(f"/api/requests/{request['id']}/decision", json={"decision": "deny"})
        await asyncio.gather(*waiting, other, again)


async def test_new_names_do_not_escape_the_limit_of_their_token(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(APPROVAL_MAX_PENDING_PER_AGENT="2", APPROVAL_MAX_PENDING_PER_TOKEN="5")
    async with server.api() as api:
        waiting = [asyncio.create_task(ask(api, f"name-{n}")) for n in range(5)]
        assert len(await count_pending(api, 5)) == 5
        output = await ask(api, "yet-another-name")
        assert output["permissionDecision"] == "deny"
        assert "5 requests made with the API token already wait" in output["permissionDecisionReason"]
        # Without a name, a session is a share of its own, under the same token limit.
        unnamed = await ask(api, None, session="fresh")
        assert "APPROVAL_MAX_PENDING_PER_TOKEN=5" in unnamed["permissionDecisionReason"]
        for row in await count_pending(api, 5):
            await api.post(f"/api/requests/{row['id']}/decision", json={"decision": "deny"})
        await asyncio.gather(*waiting)


async def test_racing_requests_of_one_agent_never_pass_the_limit(server: ServerProcess) -> None:
    async with server.api() as api:
        outputs = [asyncio.create_task(ask(api, "racer", session=f"s-{n}")) for n in range(25)]
        await count_pending(api, 20)
        await asyncio.sleep(0.5)  # every one of the 25 has been admitted or refused by now
        pending = await count_pending(api, 21, within=0)
        assert len(pending) == 20
        refused = [task.result() for task in outputs if task.done()]
        assert len(refused) == 5
        assert all("already wait" in output["permissionDecisionReason"] for output in refused)
        for row in pending:
            await api.post(f"/api/requests/{row['id']}/decision", json={"decision": "deny"})
        await asyncio.gather(*outputs)


async def test_replicas_sharing_a_database_admit_no_more_than_the_limit_together(database_url: str) -> None:
    """Two stores stand for two replicas: their admissions of 40 racing requests let exactly 20 wait."""
    stores = [Store(database_url), Store(database_url)]
    stores[0].prepare()
    now = datetime.now(UTC)
    call = ToolCall("Bash", ASK, agent="racer", credential="mcp")
    requests = [ApprovalRequest.open(call, "rm -rf build", now, 300) for _ in range(40)]
    try:
        for request in requests:
            await stores[0].insert(request)
        limits = Limits(per_agent=20, per_token=100)
        results = await asyncio.gather(
            *(stores[n % 2].admit(request.id, Share.of(call), limits) for n, request in enumerate(requests))
        )
        assert sum(result is None for result in results) == 20
        assert {result for result in results if result is not None} <= {(20, 20)}
    finally:
        for store in stores:
            await store.aclose()


def test_who_shares_a_limit() -> None:
    assert Share.of(ToolCall("Bash", {}, agent="a", session="s", credential="mcp")) == Share("agent:a", "mcp")
    assert Share.of(ToolCall("Bash", {}, session="s", credential="api")) == Share("session:s", "api")
    assert Share.of(ToolCall("Bash", {}, credential="mcp")) == Share("token:mcp", "mcp")
    # The agent's free text (a session id) is never repeated in the message.
    message = Limits(1, 1).refusal(Share("session:<b>evil</b>", "api"), 1, 1)
    assert "evil" not in message
    assert "this session" in message


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"APPROVAL_MAX_PENDING_PER_AGENT": "0"}, "APPROVAL_MAX_PENDING_PER_AGENT: Input should be greater than"),
        ({"APPROVAL_MAX_PENDING_PER_AGENT": "many"}, "APPROVAL_MAX_PENDING_PER_AGENT: Input should be a valid"),
        ({"APPROVAL_MAX_PENDING_PER_TOKEN": "10"}, "APPROVAL_MAX_PENDING_PER_TOKEN (10) is below"),
    ],
)
def test_a_bad_limit_stops_the_server_with_a_readable_message(
    tmp_path: Path, environment: dict[str, str], expected: str
) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "APPROVAL_DATA_DIR": str(tmp_path), **environment}
    result = subprocess.run(
        [sys.executable, "-m", "approval_server", "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


async def test_one_agent_has_at_most_two_calls_being_decided_at_once_and_others_are_not_held() -> None:
    """Why `benchmarks/fair_share.py` passes with 8 flooding connections (p99 113 ms without turns, 25 ms with):
    each call of one agent waits its turn before any database work, so a flood queues behind itself."""
    turns, busy, most = Turns(), {"flood": 0, "quiet": 0}, {"flood": 0, "quiet": 0}
    quiet_done = asyncio.Event()

    async def call(agent: str) -> None:
        async with turns.turn(ToolCall("Bash", {}, agent=agent, credential="mcp")):
            busy[agent] += 1
            most[agent] = max(most[agent], busy[agent])
            if agent == "flood":
                await quiet_done.wait()  # the flood's turns stay taken until the quiet agent is through
            busy[agent] -= 1

    flood = [asyncio.create_task(call("flood")) for _ in range(8)]
    await asyncio.sleep(0.05)
    await asyncio.wait_for(call("quiet"), 1)  # not held behind the flood
    quiet_done.set()
    await asyncio.gather(*flood)
    assert most == {"flood": 2, "quiet": 1}
    assert turns._gates == {}  # nothing kept once an agent's calls are through
