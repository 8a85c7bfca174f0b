"""The hook protocol: a hook's input becomes a tool call; a decision becomes the hook's output, through /api/hook."""

from __future__ import annotations

import asyncio
import json

import pytest

from approval_server.agents.claude_code import hook_output, parse_hook_input
from approval_server.decision import Decision
from tests.support import ServerProcess, wait_for_pending

PRE = {
    "session_id": "4bb0",
    "transcript_path": "/home/u/.claude/projects/x/4bb0.jsonl",
    "cwd": "/srv/app",
    "permission_mode": "default",
    "hook_event_name": "PreToolUse",
    "tool_name": "Bash",
    "tool_input": {"command": "npm test", "description": "run the tests"},
    "tool_use_id": "toolu_1",
}


def test_a_hook_input_becomes_a_tool_call_with_its_session_and_directory() -> None:
    event, call = parse_hook_input(PRE | {"tool_input": json.dumps(PRE["tool_input"])}, "laptop")
    assert event == "PreToolUse"
    assert (call.tool_name, call.input, call.tool_use_id) == ("Bash", PRE["tool_input"], "toolu_1")
    assert (call.session, call.cwd, call.agent) == ("4bb0", "/srv/app", "laptop")
    assert call.extra["permission_mode"] == "default"


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (PRE | {"hook_event_name": "PostToolUse"}, "hook_event_name"),
        (PRE | {"tool_input": "{not json"}, "not JSON"),
        (PRE | {"tool_input": [1]}, "tool_input"),
        (PRE | {"cwd": "relative"}, "absolute"),
        ({"tool_name": "Bash"}, "hook_event_name"),
        ([1, 2], "input"),
    ],
)
def test_a_bad_hook_input_is_refused(payload: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_hook_input(payload)


def test_the_outputs_bind_the_run_to_the_approved_input() -> None:
    allow = Decision(behavior="allow", updated_input={"command": "npm test"})
    deny = Decision.deny("not tonight")
    assert hook_output("PreToolUse", allow)["hookSpecificOutput"] == {
        "hookEventName": "PreToolUse",
        "permissionDecision": "allow",
        "permissionDecisionReason": "approved through approval-server",
        "updatedInput": {"command": "npm test"},
    }
    assert hook_output("PreToolUse", deny)["hookSpecificOutput"]["permissionDecisionReason"] == "not tonight"
    assert hook_output("PermissionRequest", allow)["hookSpecificOutput"]["decision"] == {
        "behavior": "allow",
        "updatedInput": {"command": "npm test"},
    }
    assert hook_output("PermissionRequest", deny)["hookSpecificOutput"]["decision"] == {
        "behavior": "deny",
        "message": "not tonight",
    }


async def test_the_hook_endpoint_waits_for_the_decision(server: ServerProcess) -> None:
    async with server.api() as api:
        call = asyncio.create_task(api.post("/api/hook", json=PRE, headers={"X-Agent-Name": "laptop"}))
        pending = await wait_for_pending(api, {"tool_use_id": "toolu_1"})
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "deny", "message": "no"})
        response = await call
    assert response.status_code == 200
    output = response.json()["hookSpecificOutput"]
    assert output["permissionDecision"] == "deny"
    assert output["permissionDecisionReason"].startswith("Denied by owner via api: no")
    assert (pending["agent"], pending["session"], pending["cwd"]) == ("laptop", "4bb0", "/srv/app")


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"{", {}),
        (json.dumps(PRE | {"hook_event_name": "Stop"}).encode(), {}),
        (json.dumps(PRE).encode(), {"X-Agent-Name": "two words"}),
    ],
)
async def test_a_bad_hook_request_is_400_and_records_nothing(
    server: ServerProcess, body: bytes, headers: dict[str, str]
) -> None:
    async with server.api() as api:
        response = await api.post("/api/hook", content=body, headers=headers)
        rows = (await api.get("/api/requests")).json()["requests"]
    assert response.status_code == 400
    assert rows == []


async def test_a_hook_that_hangs_up_cancels_its_request(server: ServerProcess) -> None:
    async with server.api() as api:
        call = asyncio.create_task(api.post("/api/hook", json=PRE | {"tool_use_id": "toolu_gone"}))
        pending = await wait_for_pending(api, {"tool_use_id": "toolu_gone"})
        call.cancel()
        for _ in range(200):
            row = (await api.get(f"/api/requests/{pending['id']}")).json()
            if row["status"] != "pending":
                break
            await asyncio.sleep(0.02)
    assert row["status"] == "cancelled"
