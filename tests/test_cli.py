"""The command line as a user meets it: readable errors, exit code 2 for bad configuration, real API calls."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.databases import POSTGRESQL
from tests.fake_twilio import FakeTwilio
from tests.support import API_TOKEN, MCP_TOKEN, REPO, SHARED_DASHBOARD_TOKEN, ServerProcess, wait_for_pending

TOOL = "permissions__approve"


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": os.environ["PATH"], "HOME": str(cwd), "APPROVAL_DATA_DIR": str(cwd / "data")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "approval_server", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
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
