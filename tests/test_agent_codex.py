"""Codex CLI: its hook payloads become the common tool call, its answers are Codex's, `connect codex` merges the hook
into config.toml without losing the user's own, and `/api/hook/codex` answers through a real server.

The payloads are those observed from Codex CLI 0.169.0 (the notes' agents-verified.md, section 1; re-observed by
tests/e2e/test_codex.py, which runs the real CLI)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomlkit
from pydantic import HttpUrl

from approval_server.agents import agent_for, agents, guarded_paths
from approval_server.agents.setup import Target
from approval_server.decision import Decision
from approval_server.entry.client_config import ClientSettings
from approval_server.errors import ConfigError
from tests.support import MCP_TOKEN, ServerProcess, wait_for_pending

CODEX = agent_for("codex")
ENVELOPE = {
    "session_id": "01a249f3-0000-7000-8000-000000000001",
    "turn_id": "01a249f3-0000-7000-8000-000000000002",
    "transcript_path": "/home/me/.codex/sessions/2026/12/06/rollout-x.jsonl",
    "cwd": "/home/me/project",
    "model": "gpt-5.5",
    "permission_mode": "default",
}
PERMISSION = ENVELOPE | {
    "hook_event_name": "PermissionRequest",
    "tool_name": "Bash",
    "tool_input": {"command": "touch /srv/marker", "description": "the model's justification"},
}
PATCH = "*** Begin Patch\n*** Add File: /srv/edited.txt\n+hello\n*** End Patch"
PRE_SHELL = ENVELOPE | {
    "hook_event_name": "PreToolUse",
    "tool_name": "Bash",
    "tool_input": {"command": "touch /srv/marker"},
    "tool_use_id": "call_fake_1",
}
PRE_PATCH = PRE_SHELL | {"tool_name": "apply_patch", "tool_input": {"command": PATCH}}


def test_codex_is_one_of_the_agents() -> None:
    assert agents()["codex"] is CODEX
    assert (CODEX.title, CODEX.takes_edits, CODEX.packages) == ("Codex CLI", False, ("@openai/codex",))


@pytest.mark.parametrize(
    ("payload", "tool", "tool_input", "use_id"),
    [
        (PERMISSION, "Bash", {"command": "touch /srv/marker", "description": "the model's justification"}, None),
        (PRE_SHELL, "Bash", {"command": "touch /srv/marker"}, "call_fake_1"),
        (PRE_PATCH, "apply_patch", {"command": PATCH}, "call_fake_1"),  # its own name: see agents/codex.py
        (
            PERMISSION | {"tool_name": "mcp__docs__search", "tool_input": {"q": "x"}},
            "mcp__docs__search",
            {"q": "x"},
            None,
        ),
    ],
)
def test_a_payload_becomes_the_common_tool_call(
    payload: dict[str, Any], tool: str, tool_input: dict[str, Any], use_id: str | None
) -> None:
    question = CODEX.parse(payload)
    call = question.call
    assert (call.tool_name, call.input, call.tool_use_id) == (tool, tool_input, use_id)
    assert (call.session, call.cwd, question.event) == (
        ENVELOPE["session_id"],
        "/home/me/project",
        payload["hook_event_name"],
    )
    assert call.extra == {
        key: value
        for key, value in payload.items()
        if key not in ("tool_input", "tool_name", "tool_use_id", "session_id", "cwd")
    }


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (PERMISSION | {"hook_event_name": "PostToolUse"}, "not a PreToolUse or PermissionRequest hook input"),
        ({key: value for key, value in PERMISSION.items() if key != "tool_input"}, "tool_input"),
        (PERMISSION | {"tool_input": "touch x"}, "tool_input"),
        (PERMISSION | {"tool_name": ""}, "tool_name"),
        (PERMISSION | {"cwd": "relative/dir"}, "absolute"),
        (PERMISSION | {"tool_input": {"command": float("nan")}}, "not JSON"),
        ([PERMISSION], "not a PreToolUse or PermissionRequest"),
    ],
)
def test_a_bad_payload_is_refused(payload: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        CODEX.parse(payload)


def test_the_answers_are_codexs() -> None:
    asked, vetted = CODEX.parse(PERMISSION), CODEX.parse(PRE_SHELL)
    allow = Decision(behavior="allow", updated_input={"command": "touch /srv/marker"})
    # Never `updatedInput`: Codex reserves it and fails closed on it; it runs the input as asked.
    assert CODEX.answer(asked, allow) == {
        "hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior": "allow"}}
    }
    assert CODEX.answer(asked, Decision.deny("not now")) == {
        "hookSpecificOutput": {
            "hookEventName": "PermissionRequest",
            "decision": {"behavior": "deny", "message": "not now"},
        }
    }
    assert CODEX.answer(vetted, allow) == {}  # PreToolUse cannot allow: no objection, Codex's own approval goes on
    assert CODEX.answer(vetted, Decision.deny("not now")) == {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": "not now",
        }
    }


@pytest.mark.parametrize("event", ["PermissionRequest", "PreToolUse", None])
def test_without_an_answer_the_hook_exits_2_with_the_reason(event: str | None) -> None:
    """Exit 2 blocks for either event (observed); exit 1 or garbage would hand the call to Codex's reviewer."""
    failure = CODEX.failure(event, "server down")
    assert (failure.stdout, failure.code) == (None, 2)
    assert "server down" in failure.stderr


def test_the_record_names_the_version_not_the_platform_package() -> None:
    # npm installs the binary from `@openai/codex` version `0.169.0-linux-x64`, which the hook finds first.
    assert CODEX.client("PermissionRequest", "0.169.0-linux-x64") == "Codex CLI 0.169.0, PermissionRequest hook"
    assert CODEX.client("PreToolUse", None) == "Codex CLI, PreToolUse hook"


USERS_CONFIG = """# my settings
model = "gpt-5.5"  # keep me

[[hooks.PermissionRequest]]
matcher = "Bash"
[[hooks.PermissionRequest.hooks]]
type = "command"
command = "./first.sh"

[[hooks.PermissionRequest]]
matcher = "*"
[[hooks.PermissionRequest.hooks]]
type = "command"
command = "/old/python -I -m approval_server hook codex --url http://127.0.0.1:1"
timeout = 30

[[hooks.PermissionRequest]]
matcher = "apply_patch"
[[hooks.PermissionRequest.hooks]]
type = "command"
command = "./last.sh"

[[hooks.Stop]]
[[hooks.Stop.hooks]]
type = "command"
command = "./stop.sh"

[hooks.state."/elsewhere/config.toml:permission_request:2:0"]
trusted_hash = "sha256:users"

[mcp_servers.docs]
command = "docs-mcp"
"""


def codex_plan(codex_home: Path, monkeypatch: pytest.MonkeyPatch, url: str = "http://127.0.0.1:8123") -> Any:
    """`connect codex` in process, with no codex on PATH (so nothing is trusted)."""
    monkeypatch.setenv("CODEX_HOME", str(codex_home))
    monkeypatch.setenv("PATH", "/nonexistent")
    return CODEX.connect(Target(ClientSettings(approval_url=HttpUrl(url)), MCP_TOKEN, "laptop"))


def test_connect_puts_the_hook_where_it_was_and_keeps_the_users_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every other group keeps its position, so the user's trusted hooks keep their keys (file:event:group:hook)."""
    (tmp_path / "config.toml").write_text(USERS_CONFIG)
    plan = codex_plan(tmp_path, monkeypatch)
    ((path, text),) = plan.files.items()
    assert path == tmp_path / "config.toml"
    assert text.startswith('# my settings\nmodel = "gpt-5.5"  # keep me\n')
    config = tomlkit.parse(text).unwrap()
    groups = config["hooks"]["PermissionRequest"]
    assert [group["matcher"] for group in groups] == ["Bash", "*", "apply_patch"]
    (handler,) = groups[1]["hooks"]
    assert handler["command"].endswith(
        "hook codex --url http://127.0.0.1:8123 --agent laptop || { echo "
        "'approval-server hook failed, so the action was denied' >&2; exit 2; }"
    )
    assert (handler["type"], handler["timeout"]) == ("command", 300 + 60)
    assert config["hooks"]["Stop"] == [{"hooks": [{"type": "command", "command": "./stop.sh"}]}]
    assert config["hooks"]["state"] == {
        "/elsewhere/config.toml:permission_request:2:0": {"trusted_hash": "sha256:users"}
    }
    assert config["mcp_servers"] == {"docs": {"command": "docs-mcp"}}
    assert any("NOT TRUSTED YET" in line and "codex on PATH" in line for line in plan.lines)
    path.write_text(text)
    assert codex_plan(tmp_path, monkeypatch).files[path] == text  # a second connect changes nothing


def test_connect_adds_the_hook_to_a_new_or_hookless_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tomlkit.parse(codex_plan(tmp_path / "new", monkeypatch).files[tmp_path / "new" / "config.toml"]).unwrap()
    assert [group["matcher"] for group in config["hooks"]["PermissionRequest"]] == ["*"]
    (tmp_path / "config.toml").write_text('model = "o3"\n')
    config = tomlkit.parse(codex_plan(tmp_path, monkeypatch).files[tmp_path / "config.toml"]).unwrap()
    assert config["model"] == "o3"
    assert len(config["hooks"]["PermissionRequest"]) == 1


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("model = \n", "is not TOML that can be merged"),
        ('hooks = "off"\n', "not a list of tables"),
        ("[hooks]\nPermissionRequest = 3\n", "not a list of tables"),
    ],
)
def test_connect_refuses_a_config_it_cannot_merge(
    text: str, problem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=problem):
        codex_plan(tmp_path, monkeypatch)


def test_codexs_own_folder_is_guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "codex"))
    assert CODEX.guarded_paths() == [tmp_path / "codex"]
    assert tmp_path / "codex" in guarded_paths()
    monkeypatch.delenv("CODEX_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert CODEX.guarded_paths() == [tmp_path / ".codex"]


async def ask(server: ServerProcess, payload: Any, answer: dict[str, Any] | None) -> tuple[dict[str, Any], Any]:
    """POST the payload to /api/hook/codex as the hook command does; answer the request it opens, if `answer`."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {MCP_TOKEN}", "X-Agent-Version": "0.169.0-linux-x64"}
        asked = asyncio.create_task(http.post("/api/hook/codex", json=payload, headers=headers))
        pending: dict[str, Any] = {}
        if answer is not None:
            async with server.api() as api:
                pending = await wait_for_pending(api)
                response = await api.post(f"/api/requests/{pending['id']}/decision", json=answer)
                assert response.status_code == 200, response.text
        response = await asked
    assert response.status_code == 200, response.text
    return pending, response.json()


@pytest.fixture
def codex_server(start_server: Callable[..., ServerProcess], tmp_path: Path) -> ServerProcess:
    return start_server(CODEX_HOME=str(tmp_path / "codex"))


async def test_the_server_answers_codexs_hook(codex_server: ServerProcess) -> None:
    pending, answer = await ask(codex_server, PERMISSION, {"decision": "allow", "actor": "alice"})
    assert answer == {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior": "allow"}}}
    assert (pending["tool_name"], pending["input"]) == ("Bash", PERMISSION["tool_input"])
    assert (pending["agent_kind"], pending["agent_version"], pending["editable"]) == (
        "codex",
        "0.169.0-linux-x64",
        False,
    )
    assert pending["client"] == "Codex CLI 0.169.0, PermissionRequest hook"
    assert (pending["session"], pending["cwd"]) == (ENVELOPE["session_id"], ENVELOPE["cwd"])
    assert pending["extra"]["turn_id"] == ENVELOPE["turn_id"]
    _, answer = await ask(codex_server, PRE_SHELL, {"decision": "deny", "actor": "alice", "message": "not today"})
    assert "not today" in answer["hookSpecificOutput"]["permissionDecisionReason"]
    _, answer = await ask(codex_server, PRE_PATCH, {"decision": "allow", "actor": "alice"})
    assert answer == {}


async def test_an_edit_is_refused_for_codex_which_would_run_the_original(codex_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=codex_server.url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {MCP_TOKEN}"}
        asked = asyncio.create_task(http.post("/api/hook/codex", json=PERMISSION, headers=headers))
        async with codex_server.api() as api:
            pending = await wait_for_pending(api)
            edited = {"decision": "allow", "updated_input": {"command": "touch /srv/other"}}
            response = await api.post(f"/api/requests/{pending['id']}/decision", json=edited)
            assert response.status_code == 400
            assert "cannot run an edited input" in response.json()["detail"]
            await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "deny", "message": "no"})
        decision = (await asked).json()["hookSpecificOutput"]["decision"]
    assert decision["behavior"] == "deny"
    assert decision["message"].startswith("Denied by owner via api: no (approval request ")


@pytest.mark.parametrize(
    "tool_input",
    [
        {"command": "sed -i 's/^/#/' {home}/codex/config.toml", "description": "unhook"},
        {"command": "*** Begin Patch\n*** Delete File: {home}/codex/hooks.json\n*** End Patch"},
    ],
)
async def test_codexs_own_files_are_denied_with_no_human_asked(
    codex_server: ServerProcess, tmp_path: Path, tool_input: dict[str, str]
) -> None:
    named = {key: value.replace("{home}", str(tmp_path)) for key, value in tool_input.items()}
    tool = "Bash" if "description" in named else "apply_patch"
    _, answer = await ask(codex_server, PERMISSION | {"tool_name": tool, "tool_input": named}, None)
    decision = answer["hookSpecificOutput"]["decision"]
    assert decision["behavior"] == "deny"
    assert "own files" in decision["message"]
