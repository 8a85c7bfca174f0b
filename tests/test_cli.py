"""The command line as a user meets it: readable errors, exit code 2 for bad configuration, real API calls."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from approval_server import __version__
from approval_server.models import Answer, ApprovalRequest, Status, ToolCall
from approval_server.store import Store
from tests.databases import POSTGRESQL
from tests.fake_twilio import FakeTwilio
from tests.support import API_TOKEN, MCP_TOKEN, REPO, SHARED_DASHBOARD_TOKEN, ServerProcess, wait_for_pending

TOOL = "permissions__approve"


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`approval-server …` as a user runs it, in `cwd`, with only `env` set (and no terminal to prompt on)."""
    environment = {"PATH": os.environ["PATH"], "HOME": str(cwd), "APPROVAL_DATA_DIR": str(cwd / "data")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "approval_server", *args],
        cwd=cwd,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        start_new_session=True,
    )


def server_env(server: ServerProcess) -> dict[str, str]:
    return {
        "SERVER_PORT": str(server.port),
        "APPROVAL_API_TOKEN": API_TOKEN,
        "APPROVAL_MCP_TOKEN": MCP_TOKEN,
        "APPROVAL_DATA_DIR": str(server.data_dir),
        "DATABASE_URL": server.database_url or "",
        **{k: v for k, v in server.environment().items() if k == "APPROVAL_DASHBOARD_TOKEN"},
    }


def test_a_bad_env_file_is_a_readable_message_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SERVER_PORT=eighty\nAPPROVAL_TIMEOUT_SECONDS=-5\nAPPROVAL_API_TOKEN=short\n")
    result = cli("serve", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "SERVER_PORT" in result.stderr
    assert "'eighty'" in result.stderr
    assert "APPROVAL_TIMEOUT_SECONDS" in result.stderr
    assert "APPROVAL_API_TOKEN" in result.stderr
    assert "short" not in result.stderr  # secrets are never echoed
    assert not (tmp_path / "data").exists()


def test_a_bad_option_is_exit_2(tmp_path: Path) -> None:
    result = cli("serve", "--port", "many", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--port" in result.stderr


def test_dash_h_and_version_work_everywhere(tmp_path: Path) -> None:
    """-h is --help on the application, each command and each group's commands; --version prints the version."""
    for args in (["-h"], ["serve", "-h"], ["approve", "-h"], ["db", "-h"], ["db", "current", "-h"]):
        result = cli(*args, cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr)
        assert "Usage: approval-server" in result.stdout, args
    version = cli("--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout == f"approval-server {__version__}\n"
    assert cli("version", cwd=tmp_path).stdout.startswith(version.stdout.rstrip() + " (MCP tool: ")


def test_commands_explain_a_stopped_server(tmp_path: Path) -> None:
    result = cli("approve", "abc12345", cwd=tmp_path, env={"SERVER_PORT": "9"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Cannot reach approval-server" in result.stderr


def test_mcp_config_prints_a_working_claude_code_config(tmp_path: Path) -> None:
    result = cli("mcp-config", cwd=tmp_path, env={"APPROVAL_TIMEOUT_SECONDS": "300", "SERVER_PORT": "8123"})
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)["mcpServers"]["approval-server"]
    token = (tmp_path / "data" / "mcp-token").read_text().strip()
    assert config == {
        "type": "http",
        "url": "http://127.0.0.1:8123/mcp",
        "headers": {"Authorization": f"Bearer {token}"},
        "timeout": 330000,
    }
    assert (tmp_path / "data" / "mcp-token").stat().st_mode & 0o777 == 0o600


async def test_dashboard_prints_a_login_url_that_signs_in(server: ServerProcess, tmp_path: Path) -> None:
    result = cli("dashboard", cwd=tmp_path, env=server_env(server))
    assert result.returncode == 0, result.stderr
    if POSTGRESQL:  # the token comes from the settings, as replicas need
        token = SHARED_DASHBOARD_TOKEN
    else:
        token = (server.data_dir / "dashboard-token").read_text().strip()
        assert (server.data_dir / "dashboard-token").stat().st_mode & 0o777 == 0o600
    assert result.stdout.strip() == f"{server.url}/login?token={token}"
    async with httpx.AsyncClient() as client:
        response = await client.get(result.stdout.strip())
    assert response.status_code == 303
    assert "approval_session=" in response.headers["set-cookie"]
    public = cli("dashboard", "--public", cwd=tmp_path, env=server_env(server))
    assert public.returncode == 2
    assert "PUBLIC_URL is not set" in public.stderr


def test_mcp_config_names_the_agent_and_sends_its_directory(tmp_path: Path) -> None:
    result = cli("mcp-config", "--agent", "ci-nightly", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    headers = json.loads(result.stdout)["mcpServers"]["approval-server"]["headers"]
    assert headers["X-Agent-Name"] == "ci-nightly"
    assert headers["X-Agent-Cwd"] == "${PWD}"
    for args in (["--agent", "two words"], ["--agent", "x", "--stdio"]):
        refused = cli("mcp-config", *args, cwd=tmp_path)
        assert refused.returncode == 2
        assert "--agent" in refused.stderr


def test_doctor_without_a_server_says_how_to_start_it(tmp_path: Path) -> None:
    result = cli("doctor", cwd=tmp_path, env={"SERVER_PORT": "9"})
    assert result.returncode == 1
    assert "approval-server serve" in result.stdout
    assert "settings are valid" in result.stdout
    assert "no policy file" in result.stdout


def test_doctor_names_the_line_of_a_bad_policy_file(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text('[permissions]\ndeny = ["Bash(rm:*"]\n')
    result = cli("doctor", cwd=tmp_path, env={"SERVER_PORT": "9"})
    assert "FIX" in result.stdout
    assert "line 2" in result.stdout
    good = tmp_path / "good"
    good.mkdir()
    (good / "policy.toml").write_text('[permissions]\ndeny = ["Bash(rm:*)"]\n')
    assert "policy file policy.toml is valid" in cli("doctor", cwd=good, env={"SERVER_PORT": "9"}).stdout


async def test_requests_approve_deny_and_doctor_against_a_running_server(server: ServerProcess, tmp_path: Path) -> None:
    env = server_env(server)
    async with server.mcp() as mcp, server.api() as api:
        first = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "echo one"}}))
        one = await wait_for_pending(api)
        listed = await asyncio.to_thread(cli, "requests", "--status", "pending", cwd=tmp_path, env=env)
        assert one["id"] in listed.stdout
        assert "echo one" in listed.stdout
        edited = json.dumps({"command": "echo edited"})
        approved = await asyncio.to_thread(cli, "approve", one["id"], "--input", edited, cwd=tmp_path, env=env)
        assert approved.returncode == 0, approved.stderr
        assert json.loads((await first).content[0].text) == {
            "behavior": "allow",
            "updatedInput": {"command": "echo edited"},
        }

        second = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "echo two"}}))
        two = await wait_for_pending(api)
        denied = await asyncio.to_thread(
            cli, "deny", two["id"], "--message", "use the staging box", cwd=tmp_path, env=env
        )
        assert denied.returncode == 0, denied.stderr
        answer = json.loads((await second).content[0].text)
        assert answer["behavior"] == "deny"
        assert "use the staging box" in answer["message"]
        assert '(CLI)") via api' in answer["message"]

        again = await asyncio.to_thread(cli, "approve", two["id"], cwd=tmp_path, env=env)
        assert again.returncode == 1
        assert "already denied" in again.stderr

        shown = await asyncio.to_thread(cli, "show", one["id"], cwd=tmp_path, env=env)
        assert "echo edited" in shown.stdout
        assert "applied" in shown.stdout

        doctor = await asyncio.to_thread(cli, "doctor", cwd=tmp_path, env=env)
        assert doctor.returncode == 0, doctor.stdout
        assert "All checks passed." in doctor.stdout


def test_whatsapp_settings_are_checked_at_start_up(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "TWILIO_ACCOUNT_SID=AC" + "0" * 32 + "\nTWILIO_AUTH_TOKEN=secret-token\nAPPROVAL_PHONE=+1234567890\n"
    )
    result = cli("serve", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "'+1234567890' is not a valid phone number" in result.stderr
    (tmp_path / ".env").write_text("TWILIO_ACCOUNT_SID=AC" + "0" * 32 + "\nAPPROVAL_PHONE=+14155550123\n")
    result = cli("serve", cwd=tmp_path)
    assert result.returncode == 2
    assert "WhatsApp is half configured" in result.stderr
    assert "TWILIO_AUTH_TOKEN" in result.stderr
    assert "PUBLIC_URL" in result.stderr


def test_setup_template_creates_once_and_writes_env_keeping_other_lines(tmp_path: Path, fake: FakeTwilio) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"# my settings\nTWILIO_ACCOUNT_SID={fake.account_sid}\nTWILIO_AUTH_TOKEN={fake.auth_token}\n"
        f"TWILIO_API_BASE_URL={fake.base_url}\nSERVER_PORT=8123\n"
    )
    config = str(REPO / "template_config.json")
    first = cli("setup-template", "--config", config, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert len(fake.contents) == 1
    sid = fake.contents[0].sid
    assert f"Created template {sid}" in first.stdout
    lines = env_file.read_text().splitlines()
    assert lines[:5] == [
        "# my settings",
        f"TWILIO_ACCOUNT_SID={fake.account_sid}",
        f"TWILIO_AUTH_TOKEN={fake.auth_token}",
        f"TWILIO_API_BASE_URL={fake.base_url}",
        "SERVER_PORT=8123",
    ]
    assert lines[5] == f"TWILIO_CONTENT_SID={sid}"
    second = cli("setup-template", "--config", config, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert f"Found template {sid}" in second.stdout
    assert len(fake.contents) == 1
    assert env_file.read_text().count("TWILIO_CONTENT_SID=") == 1


def test_setup_template_explains_a_bad_config(tmp_path: Path, fake: FakeTwilio) -> None:
    (tmp_path / ".env").write_text(f"TWILIO_ACCOUNT_SID={fake.account_sid}\nTWILIO_AUTH_TOKEN={fake.auth_token}\n")
    bad = tmp_path / "template_config.json"
    bad.write_text(json.dumps({"friendly_name": "x", "language": "en", "variables": {}, "types": {}}))
    result = cli("setup-template", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "types.twilio/quick-reply" in result.stderr
    bad.write_text("{not json")
    assert "is not valid JSON" in cli("setup-template", cwd=tmp_path).stderr
    assert fake.contents == []


def test_doctor_warns_that_the_servers_files_are_in_the_agents_reach(tmp_path: Path) -> None:
    result = cli("doctor", cwd=tmp_path, env={"SERVER_PORT": "9"})
    assert "can be read by this user" in result.stdout
    assert "deploy/approval-server.service" in result.stdout


# What the approver sees is what runs: every field the CLI prints goes through the renderer.

HIDDEN = ("\u202e", "\u200b", "\x1b")


async def asked(api: httpx.AsyncClient, tool_name: str, tool_input: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Ask for `tool_input` through the hook endpoint; returns the call and the request, once recorded (pending, or
    decided at once: the server denies by itself a call that names its own files, such as `rm -rf ~`)."""
    tool_use_id = f"toolu_{uuid.uuid4().hex}"
    payload = {"hook_event_name": "PreToolUse", "tool_name": tool_name, "tool_input": tool_input}
    call = asyncio.create_task(api.post("/api/hook", json=payload | {"tool_use_id": tool_use_id}))
    for _ in range(500):
        for row in (await api.get("/api/requests", params={"limit": 1000})).json()["requests"]:
            if row["tool_use_id"] == tool_use_id:
                return call, row
        await asyncio.sleep(0.02)
    raise AssertionError(f"no request for {tool_input}")


async def show_then_deny(server: ServerProcess, tmp_path: Path, tool_input: dict[str, Any]) -> list[str]:
    """The lines `show` prints for a Bash call with `tool_input` (denied afterwards, if still pending)."""
    async with server.api() as api:
        call, row = await asked(api, "Bash", tool_input)
        shown = await asyncio.to_thread(cli, "show", row["id"], cwd=tmp_path, env=server_env(server))
        if row["status"] == "pending":
            await api.post(f"/api/requests/{row['id']}/decision", json={"decision": "deny"})
        await call
    assert shown.returncode == 0, shown.stderr
    return shown.stdout.splitlines()


def after(lines: list[str], heading: str, count: int) -> list[str]:
    """The `count` lines that follow the one line that is `heading`."""
    assert lines.count(heading) == 1, lines
    start = lines.index(heading) + 1
    return lines[start : start + count]


async def test_show_numbers_a_description_so_it_cannot_pass_for_a_second_command(
    server: ServerProcess, tmp_path: Path
) -> None:
    description = "ok\n\nTool: Bash\nCommand:\nls -la"
    lines = await show_then_deny(server, tmp_path, {"command": "rm -rf ~", "description": description})
    assert [line for line in lines if line.startswith("Command:")] == ["Command:"]
    assert [line for line in lines if line.startswith("Tool:")] == ["Tool: Bash"]
    assert after(lines, "Command:", 1) == ["1┃ rm -rf ~"]
    reason = after(lines, "Reason (the agent's words):", 6)
    assert reason[:5] == ["1┃ ok", "2┃ ", "3┃ Tool: Bash", "4┃ Command:", "5┃ ls -la"]
    assert not reason[5].startswith("6┃")


async def test_show_quotes_a_key_that_starts_with_a_line_break(server: ServerProcess, tmp_path: Path) -> None:
    lines = await show_then_deny(server, tmp_path, {"command": "rm -rf ~", "\nCommand": "ls -la"})
    assert [line for line in lines if line.startswith("Command:")] == ["Command:"]
    assert after(lines, "Command:", 1) == ["1┃ rm -rf ~"]
    assert after(lines, '"⟨U+000A⟩Command":', 1) == ["1┃ ls -la"]


async def test_show_keeps_a_command_padded_with_spaces_on_one_numbered_line(
    server: ServerProcess, tmp_path: Path
) -> None:
    lines = await show_then_deny(server, tmp_path, {"command": "rm -rf ./build" + " " * 200 + "~/"})
    command, following = after(lines, "Command:", 2)
    assert command == "1┃ rm -rf ./build⟨200 spaces⟩~/"
    assert "┃" not in following


async def test_requests_prints_one_line_per_request_whatever_its_fields_hold(
    server: ServerProcess, tmp_path: Path
) -> None:
    weird_tool = "Bash\nabc12345  pending    2099-01-01T00:00:00  Bash  \x1b[31mok\u202e"
    async with server.api() as api:
        first, one = await asked(api, weird_tool, {"command": "ls"})
        second, two = await asked(api, "Bash", {"command": "echo a\necho b\u202e\u200b"})
        listed = await asyncio.to_thread(cli, "requests", cwd=tmp_path, env=server_env(server))
        assert one["status"] == two["status"] == "pending"
        for row in (one, two):
            await api.post(f"/api/requests/{row['id']}/decision", json={"decision": "deny"})
        await asyncio.gather(first, second)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{two['id']}  pending")
    assert lines[0].endswith("echo a⟨U+000A⟩echo b⟨U+202E⟩⟨U+200B⟩")
    assert lines[1].startswith(f"{one['id']}  pending")
    assert '"Bash⟨U+000A⟩abc12345  pending    2099-01-01T00:00:00  Bash  ⟨U+001B⟩[31mok⟨U+202E⟩"' in lines[1]
    assert not any(char in listed.stdout for char in HIDDEN)


async def test_show_reveals_what_an_edit_an_approver_and_a_reason_hold(server: ServerProcess, tmp_path: Path) -> None:
    assert server.database_url is not None
    store = Store(server.database_url)
    call = ToolCall(
        "Bash",
        {"command": "ls"},
        tool_use_id="toolu\u200b\n1",
        agent="laptop",
        session="s\u202e1",
        cwd="/srv/a\u202eb\nc",
    )
    row = ApprovalRequest.open(call, "", datetime.now(UTC), 60)
    edited = {"command": "echo \u202eok\u200b\necho two", "\nCommand": "rm -rf ~"}
    try:
        await store.insert(row)
        answer = Answer(Status.ALLOWED, "alice\u202e\u200b\nbob", "api", "fine\u202e by me\u200b\nsecond", edited)
        await store.resolve(row.id, answer, datetime.now(UTC))
        too_late = Answer(Status.DENIED, "mallory\u202e", "whatsapp", "no\u200b\nway", {"command": "x\u200b"})
        await store.resolve(row.id, too_late, datetime.now(UTC))
    finally:
        await store.aclose()
    shown = await asyncio.to_thread(cli, "show", row.id, cwd=tmp_path, env=server_env(server))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert not any(char in shown.stdout for char in HIDDEN)
    assert "Decided by: alice⟨U+202E⟩⟨U+200B⟩⟨U+000A⟩bob" in lines
    assert "Working directory: " + '"/srv/a⟨U+202E⟩b⟨U+000A⟩c"' in lines
    assert "Tool use id: " + '"toolu⟨U+200B⟩⟨U+000A⟩1"' in lines
    assert "Session: " + '"s⟨U+202E⟩1"' in lines
    reasons = [line for line in lines if line.startswith("Reason (the words of whoever decided")]
    assert len(reasons) == 1
    assert after(lines, reasons[0], 2) == ["1┃ fine⟨U+202E⟩ by me⟨U+200B⟩", "2┃ second"]
    assert after(lines, "Edited by the approver: the agent was told to run this instead:", 6) == [
        "  Tool: Bash",
        "  Command:",
        "  1┃ echo ⟨U+202E⟩ok⟨U+200B⟩",
        "  2┃ echo two",
        '  "⟨U+000A⟩Command":',
        "  1┃ rm -rf ~",
    ]
    applied, *late = after(lines, "Answers:", 10)
    assert applied.endswith(": allowed (applied) via api by alice⟨U+202E⟩⟨U+200B⟩⟨U+000A⟩bob")
    assert late[0].endswith(": denied (too late, it changed nothing) via whatsapp by mallory⟨U+202E⟩")
    assert late[1:] == [
        "    Message (the words of whoever answered):",
        "    1┃ no⟨U+200B⟩",
        "    2┃ way",
        "    Edited input with this answer:",
        "      Tool: Bash",
        "      Command:",
        "      1┃ x⟨U+200B⟩",
    ]


async def test_grants_print_one_line_each_with_the_rule_and_session_escaped(
    server: ServerProcess, tmp_path: Path
) -> None:
    env = server_env(server)
    command = "echo hi\u202e\necho two"
    payload = {
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": command},
        "session_id": "s\u202e1",
        "cwd": "/srv/app",
    }
    async with server.api() as api:
        call = asyncio.create_task(api.post("/api/hook", json=payload))
        row = await wait_for_pending(api, {"input": {"command": command}})
        approved = await asyncio.to_thread(cli, "approve", row["id"], "--remember", "session", cwd=tmp_path, env=env)
        await call
    assert approved.returncode == 0, approved.stderr
    rule, session = '"Bash(echo hi⟨U+202E⟩⟨U+000A⟩echo two)"', 'session "s⟨U+202E⟩1"'
    granted = approved.stdout.splitlines()
    assert len(granted) == 2, granted
    assert granted[1].startswith("Grant ")
    assert f": {rule} for {session} until " in granted[1]
    grant_id = granted[1].split()[1].rstrip(":")
    listed = await asyncio.to_thread(cli, "grants", cwd=tmp_path, env=env)
    revoked = await asyncio.to_thread(cli, "revoke", grant_id, cwd=tmp_path, env=env)
    assert revoked.stdout == f"Grant {grant_id} ({rule}) revoked.\n"
    ended = await asyncio.to_thread(cli, "grants", "--all", cwd=tmp_path, env=env)
    for result in (listed, ended):
        (line,) = result.stdout.splitlines()
        assert line.startswith(grant_id)
        assert f"  {rule}  for {session}" in line
        assert '; allowed by owner (says: "' in line
        assert line.endswith(' (CLI)")')
    assert ", revoked " in ended.stdout
    for result in (approved, listed, revoked, ended):
        assert not any(char in result.stdout for char in HIDDEN)
