"""The built-in self-protection: no tool call reaches the server's own files, whatever the owner's policy allows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from approval_server.models import ToolCall
from approval_server.policy import RulesPolicy
from approval_server.policy.rule_set import RuleSet
from approval_server.policy.self_protect import RULE, SelfProtection
from tests.support import ServerProcess

HOME = "/home/dev"
DATA = f"{HOME}/.local/share/approval-server"
PROTECTED = [DATA, f"{HOME}/.config/approval-server", "/srv/gate/.env", "/srv/gate/policy.toml"]
# An owner's policy that allows everything it can: self-protection must still win.
EVERYTHING = """
[permissions]
allow = ["Read", "Edit", "Bash", "Read(//**)", "Edit(//**)", "mcp__files"]
"""


def _policy() -> RulesPolicy:
    return RulesPolicy(RuleSet.from_toml(EVERYTHING), SelfProtection(PROTECTED, home=HOME))


def _verdict(tool: str, tool_input: dict[str, object], cwd: str | None = "/home/dev/proj") -> tuple[str, str | None]:
    verdict = _policy().evaluate(ToolCall(tool_name=tool, input=tool_input, cwd=cwd))
    return verdict.action, verdict.rule


@pytest.mark.parametrize(
    ("tool", "tool_input"),
    [
        ("Read", {"file_path": f"{DATA}/api-token"}),
        ("Read", {"file_path": f"{DATA.upper()}/API-TOKEN"}),
        ("Read", {"file_path": "../.local/share/approval-server/approval.db"}),
        ("Read", {"file_path": "~/.local/share/approval-server/mcp-token"}),
        ("Write", {"file_path": "/srv/gate/policy.toml", "content": "allow = ['Bash']"}),
        ("Edit", {"file_path": "/srv/gate/.env", "old_string": "a", "new_string": "b"}),
        ("LS", {"path": DATA}),
        ("Glob", {"path": HOME, "pattern": ".local/share/approval-*/*"}),
        ("Grep", {"path": f"{DATA}/", "pattern": "token"}),
        ("Bash", {"command": "cat ~/.local/share/approval-server/api-token"}),
        ("Bash", {"command": "cat $HOME/.local/share/approval-server/api-token"}),
        ("Bash", {"command": 'cat "${HOME}/.local/share/Approval-Server/approval.db-wal"'}),
        ("Bash", {"command": "sqlite3 ../.local/share/approval-server/approval.db .dump"}),
        ("Bash", {"command": "cat ~/.local/share/appr*/api-tok?n"}),
        ("Bash", {"command": "cat ~/.local/share/approval-server/*"}),
        ("Bash", {"command": "echo ok && sh -c 'head /srv/gate/.env'"}),
        ("Bash", {"command": "echo x > /srv/gate/policy.toml"}),
        ("Bash", {"command": "cp --target-directory=/tmp ~/.config/approval-server/hooks.toml"}),
        ("Bash", {"command": "ls ~/.local/share/{approval-server,x}"}),
        ("Bash", {"command": "cd /srv/gate && cat .env"}),
        ("Bash", {"command": "cd && cat .local/share/approval-server/api-token"}),
        ("Bash", {"command": "cat $'\\x7e'/.local/share/approval-server/api-token"}),
        ("Bash", {"command": "cat ~dev/.local/share/approval-server/api-token"}),
        ("Bash", {"command": "cat `echo ~`/.local/share/approval-server/mcp-token"}),
        ("Bash", {"command": "git show HEAD:../.config/approval-server/x"}),
        ("WebFetch", {"url": "file:///home/dev/.local/share/approval-server/api-token"}),
        ("mcp__files__read", {"request": {"paths": ["notes.txt", "/srv/gate/.env"]}}),
        ("SomeNewTool", {"query": "open ~/.config/approval-server/settings for me"}),
    ],
)
def test_a_call_naming_the_servers_files_is_denied_whatever_the_policy(
    tool: str, tool_input: dict[str, object]
) -> None:
    assert _verdict(tool, tool_input) == ("deny", RULE)


@pytest.mark.parametrize(
    ("tool", "tool_input"),
    [
        ("Read", {"file_path": "/home/dev/proj/src/app.py"}),
        ("Bash", {"command": "cat src/.env"}),
        ("Bash", {"command": "ls ~/.local/share"}),
        ("Bash", {"command": "cat $(pwd)/src/app.py"}),
        ("Read", {"file_path": "/srv/gate/README.md"}),
        ("Write", {"file_path": "/home/dev/proj/docs.md", "content": "Tokens live in ~/.local/share/approval-server."}),
        ("mcp__files__read", {"path": "/home/dev/proj/approval-server/notes.md"}),
    ],
)
def test_other_calls_go_to_the_owners_policy(tool: str, tool_input: dict[str, object]) -> None:
    assert _verdict(tool, tool_input) == ("allow", "policy.toml:3 allow " + {"Bash": "Bash"}.get(tool, _rule(tool)))


@pytest.mark.parametrize(
    "command",
    [
        "approval-server approve 7kq2m9xa",
        "uv run approval-server people link alice",
        "uvx approval-server deny 7kq2m9xa",
        "/opt/venv/bin/approval-server requests --status pending",
        "python3 -m approval_server dashboard",
        "python -mapproval_server.entry.cli approve x",
        "sh -c 'APPROVAL_API_TOKEN= Approval-Server approve x'",
        "cd /tmp && env -i approval-server grants",
    ],
)
def test_an_agent_never_runs_the_servers_own_command_whatever_the_policy(command: str) -> None:
    """It would act with the owner's tokens: approve its own requests, or print a person's login link."""
    verdict = _policy().evaluate(ToolCall(tool_name="Bash", input={"command": command}, cwd="/home/dev/proj"))
    assert (verdict.action, verdict.rule) == ("deny", RULE)
    assert verdict.reason is not None
    assert "run its own command" in verdict.reason


@pytest.mark.parametrize("command", ["python -m pytest tests", "ls src/approval_server", "echo approval server"])
def test_commands_that_only_look_alike_go_to_the_owners_policy(command: str) -> None:
    assert _verdict("Bash", {"command": command}) == ("allow", "policy.toml:3 allow Bash")


def _rule(tool: str) -> str:
    return {"Read": "Read", "Write": "Edit"}.get(tool, "mcp__files")


def test_a_recursive_command_over_a_folder_holding_them_asks_a_human() -> None:
    assert _verdict("Bash", {"command": "grep -r token ~/.local"}) == ("ask", RULE)
    assert _verdict("Grep", {"path": HOME, "pattern": "token"}) == ("ask", RULE)
    assert _verdict("Glob", {"path": HOME, "pattern": "**/*.py"}) == ("ask", RULE)
    assert _verdict("Glob", {"path": "/home/dev/proj", "pattern": "**/*.py"}) == ("allow", "policy.toml:3 allow Read")


def test_a_relative_path_without_a_working_directory_is_placed_by_its_end() -> None:
    assert _verdict("Bash", {"command": "cat approval-server/api-token"}, cwd=None) == ("deny", RULE)


def test_the_protection_follows_symlinks_to_the_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "alias").symlink_to(data)
    protection = SelfProtection([tmp_path / "alias"])
    verdict = protection.check("Read", {"file_path": str(data / "api-token")}, None)
    assert verdict is not None
    assert verdict.action == "deny"


async def test_the_real_server_denies_reading_its_token_even_when_the_policy_allows_everything(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(EVERYTHING)
    server = start_server(POLICY_FILE=str(policy))
    token = server.data_dir / "api-token"
    calls = [
        {"tool_name": "Read", "tool_input": {"file_path": str(token)}},
        {"tool_name": "Bash", "tool_input": {"command": f"cat {token.parent}/*-token"}},
        {"tool_name": "Bash", "tool_input": {"command": "sqlite3 approval.db .dump"}},
        {"tool_name": "Edit", "tool_input": {"file_path": str(policy), "old_string": "a", "new_string": "b"}},
    ]
    async with server.api() as api:
        for call in calls:
            hook = call | {"hook_event_name": "PreToolUse", "session_id": "s1", "cwd": str(server.data_dir)}
            response = await api.post("/api/hook", json=hook)
            assert response.status_code == 200, response.text
            output = response.json()["hookSpecificOutput"]
            assert output["permissionDecision"] == "deny", call
            assert RULE in output["permissionDecisionReason"]
        allowed = await api.post(
            "/api/hook",
            json={"hook_event_name": "PreToolUse", "session_id": "s1", "cwd": str(tmp_path), "tool_name": "Read"}
            | {"tool_input": {"file_path": str(tmp_path / "notes.txt")}},
        )
        assert allowed.json()["hookSpecificOutput"]["permissionDecision"] == "allow"


def test_a_symlink_in_the_agents_folder_to_the_files_is_followed(tmp_path: Path) -> None:
    data, project = tmp_path / "data", tmp_path / "proj"
    data.mkdir()
    project.mkdir()
    (project / "notes").symlink_to(data)
    protection = SelfProtection([data])
    verdict = protection.check("Bash", {"command": "cat notes/api-token"}, str(project))
    assert verdict is not None
    assert verdict.action == "deny"


def test_an_owners_deny_still_wins_over_the_built_in_ask() -> None:
    policy = RulesPolicy(
        RuleSet.from_toml('[permissions]\ndeny = ["Bash(rm:*)"]'), SelfProtection(PROTECTED, home=HOME)
    )
    verdict = policy.evaluate(ToolCall(tool_name="Bash", input={"command": "rm -rf /"}, cwd="/home/dev/proj"))
    assert (verdict.action, verdict.rule) == ("deny", "policy.toml:2 deny Bash(rm:*)")
