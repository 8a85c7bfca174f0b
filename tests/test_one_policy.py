"""One policy file, unchanged, decides the same command the same way for every agent: each agent's own payload for
`git status` is allowed and for `rm -rf build` denied, by the same rule, with no human asked, and each answer says
so in that agent's own words."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from approval_server.agents import agents
from tests.support import MCP_TOKEN, ServerProcess

POLICY = '[permissions]\nallow = ["Bash(git status)"]\ndeny = ["Bash(rm:*)"]\n'
CWD = "/srv/app"


def _claude(event: str) -> Callable[[str], Any]:
    def payload(command: str) -> Any:
        return {
            "session_id": "s1",
            "cwd": CWD,
            "hook_event_name": event,
            "tool_name": "Bash",
            "tool_input": {"command": command, "description": "run it"},
        }

    return payload


# Each agent's payload for a shell command, as its hook sends it (see each agent's tests for where each shape comes
# from), and how to read its answer back as "allow", "deny" or None (no objection: the agent's own rules decide).
PAYLOADS: dict[str, Callable[[str], Any]] = {
    "claude-code": _claude("PermissionRequest"),
    "codex": _claude("PermissionRequest"),
    "claude-agent-sdk": lambda command: {"tool_name": "Bash", "tool_input": {"command": command}, "cwd": CWD},
    "cursor": lambda command: {"hook_event_name": "beforeShellExecution", "command": command, "cwd": CWD},
    "copilot": lambda command: {
        "sessionId": "s1",
        "timestamp": 1796616203015,
        "cwd": CWD,
        "toolName": "bash",
        "toolArgs": {"command": command, "description": "run it"},
    },
    "gemini": lambda command: {
        "session_id": "s1",
        "cwd": CWD,
        "hook_event_name": "BeforeTool",
        "timestamp": "2026-12-06T06:06:40.482Z",
        "tool_name": "run_shell_command",
        "tool_input": {"command": command, "description": "run it"},
    },
    "opencode": lambda command: {
        "id": "evt_1",
        "type": "permission.asked",
        "properties": {
            "id": "per_1",
            "sessionID": "ses_1",
            "permission": "bash",
            "patterns": [command],
            "metadata": {"command": command},
            "always": ["*"],
            "tool": {"messageID": "msg_1", "callID": "call_1"},
        },
    },
}


def verdict(answer: dict[str, Any]) -> str | None:
    """allow / deny, in whichever of the agents' answer shapes `answer` is."""
    specific = answer.get("hookSpecificOutput", {})
    for value in (
        specific.get("decision", {}).get("behavior"),
        specific.get("permissionDecision"),
        answer.get("behavior"),
        answer.get("permission"),
        answer.get("permissionDecision"),
        answer.get("decision"),
        {"once": "allow", "always": "allow", "reject": "deny"}.get(answer.get("reply", "")),
    ):
        if value in ("allow", "deny"):
            return str(value)
    return None


def test_every_agent_has_a_payload_here() -> None:
    assert set(PAYLOADS) == set(agents())


@pytest.fixture
def policy_server(start_server: Callable[..., ServerProcess], tmp_path: Path) -> ServerProcess:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "policy.toml").write_text(POLICY)
    return start_server()


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
async def test_one_policy_file_decides_the_same_command_the_same_way_for_every_agent(
    policy_server: ServerProcess, kind: str
) -> None:
    async with policy_server.api(MCP_TOKEN) as hook, policy_server.api() as api:
        for command, expected in (("git status", "allow"), ("rm -rf build", "deny")):
            response = await hook.post(f"/api/hook/{kind}", json=PAYLOADS[kind](command))
            assert response.status_code == 200, response.text
            assert verdict(response.json()) == expected, response.json()
        rows = (await api.get("/api/requests")).json()["requests"]
    by_command = {row["input"]["command"]: row for row in rows}
    assert {row["agent_kind"] for row in rows} == {kind}
    assert by_command["git status"]["decided_by"] == "policy.toml:2 allow Bash(git status)"
    assert by_command["rm -rf build"]["decided_by"] == "policy.toml:3 deny Bash(rm:*)"
    assert all(row["decided_via"] == "policy" for row in rows)
