"""The agents' registry and what every agent shares: `/api/hook/{kind}` answers in that agent's words, an unknown
kind is a 404, a version is recorded only when it is a plain word, and every agent's own hook files are out of the
agent's reach."""

from __future__ import annotations

import asyncio

import pytest

from approval_server.agents import AgentHook, agent_for, agents, canonical, guarded_paths
from approval_server.config import Settings
from approval_server.policy.self_protect import SelfProtection
from tests.support import MCP_TOKEN, ServerProcess, wait_for_pending

SDK_QUESTION = {"tool_name": "Bash", "tool_input": {"command": "make"}, "session_id": "s", "cwd": "/srv/app"}


def test_every_agent_module_is_found_under_its_own_kind() -> None:
    found = agents()
    assert {"claude-code", "claude-agent-sdk", "cursor"} <= set(found)
    for kind, agent in found.items():
        assert isinstance(agent, AgentHook)
        assert agent.kind == kind
        assert agent.title
    with pytest.raises(ValueError, match="known agents are"):
        agent_for("vim")


def test_renaming_keys_keeps_every_key_and_its_order() -> None:
    keys = {"path": "file_path", "filepath": "file_path", "contents": "content"}
    assert canonical({"path": "a", "contents": "b", "x": 1}, keys) == {"file_path": "a", "content": "b", "x": 1}
    assert canonical({"path": "a", "filepath": "b"}, keys) == {"file_path": "a", "filepath": "b"}
    assert canonical({"file_path": "a", "path": "b"}, keys) == {"file_path": "a", "path": "b"}


@pytest.mark.parametrize("path", guarded_paths(), ids=str)
def test_no_agent_can_name_a_file_that_decides_where_its_hooks_ask(path: object) -> None:
    protection = SelfProtection.for_settings(Settings(), None, guarded_paths())
    for tool, tool_input in (("Bash", {"command": f"cat {path}"}), ("Write", {"file_path": str(path)})):
        verdict = protection.check(tool, tool_input, "/srv/app")
        assert verdict is not None
        assert verdict.action == "deny"


async def test_an_unknown_agent_is_a_404_and_a_malformed_question_a_400(server: ServerProcess) -> None:
    async with server.api(MCP_TOKEN) as hook:
        unknown = await hook.post("/api/hook/vim", json=SDK_QUESTION)
        assert unknown.status_code == 404
        assert "known agents are" in unknown.json()["detail"]
        bad = await hook.post("/api/hook/claude-agent-sdk", json={"tool_name": "Bash"})
        assert bad.status_code == 400
        assert "tool_input" in bad.json()["detail"]


async def test_a_version_is_recorded_only_when_it_is_a_plain_word(server: ServerProcess) -> None:
    async with server.api(MCP_TOKEN) as hook, server.api() as api:
        for version, recorded in (("0.2.190", "0.2.190"), ("1.0 (evil) <b>", None), ("x" * 40, None)):
            question = SDK_QUESTION | {"tool_input": {"command": f"make {len(version)}"}}
            asked = hook.post("/api/hook/claude-agent-sdk", json=question, headers={"X-Agent-Version": version})
            task = asyncio.create_task(asked)
            pending = await wait_for_pending(api, {"input": question["tool_input"]})
            assert pending["agent_version"] == recorded
            assert pending["client"] == f"Claude Agent SDK{f' {recorded}' if recorded else ''}, can_use_tool"
            await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "deny", "actor": "t"})
            answer = (await task).json()
            assert answer["behavior"] == "deny"
