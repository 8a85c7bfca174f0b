"""One path from a running server to Claude Code: `connect claude-code` writes the files Claude Code is given, with
the running server's address and token; every command finds a server started with `serve --port`; every client
command takes `--url`; `doctor` checks what Claude Code will meet."""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
from pathlib import Path

from approval_server.entry.client_config import CLIENT_FILE
from tests.connect_support import (
    PERMISSION_TOOL,
    cli,
    config_dir,
    mcp_path,
    printed_command,
    quick_start,
    settings_path,
)
from tests.support import API_TOKEN, MCP_TOKEN, REPO, ServerProcess, free_port, wait_for_pending
from tests.test_stdio_bridge import TOOL, bridge

HOOK_INPUT = {
    "session_id": "s1",
    "hook_event_name": "PermissionRequest",
    "tool_name": "Bash",
    "tool_input": {"command": "rm -rf build"},
}


async def test_connect_writes_private_files_with_the_running_servers_address_and_token(
    tmp_path: Path, database_url: str
) -> None:
    """Before, there was no `connect`: `mcp-config > file` by hand, a `claude` line that read another file and
    needed `APPROVAL_MCP_TOKEN` exported, a hook entry `approval-server hook` that is not on PATH after the quick
    start."""
    with quick_start(tmp_path / "data", database_url) as server:
        result = await asyncio.to_thread(cli, "connect", "claude-code", home=server.home, cwd=tmp_path / "anywhere")
        assert result.returncode == 0, result.stderr
        mcp, settings = mcp_path(server.home), settings_path(server.home)
        for path in (mcp, settings):
            assert path.stat().st_mode & 0o777 == 0o600, path
        assert config_dir(server.home).stat().st_mode & 0o777 == 0o700
        assert server.port != 8000
        assert json.loads(mcp.read_text()) == {
            "mcpServers": {
                "approval-server": {
                    "type": "http",
                    "url": f"{server.url}/mcp",
                    "headers": {"Authorization": f"Bearer {server.mcp_token}"},  # the token itself, nothing to export
                    "timeout": 330_000,
                }
            }
        }
        (group,) = json.loads(settings.read_text())["hooks"]["PermissionRequest"]
        (hook,) = group["hooks"]
        assert (group["matcher"], hook["type"], hook["onFailure"], hook["timeout"]) == ("*", "command", "block", 360)
        command = shlex.split(hook["command"])
        assert command == [sys.executable, "-I", "-m", "approval_server", "hook", "--url", server.url]
        assert printed_command(result.stdout, "claude -p") == [
            *("claude", "-p", "your prompt", "--mcp-config", str(mcp), "--strict-mcp-config"),
            *("--permission-prompt-tool", PERMISSION_TOOL, "--setting-sources", "user"),
        ]
        assert printed_command(result.stdout, "claude --settings") == [
            *("claude", "--settings", str(settings), "--setting-sources", "user")
        ]
        assert server.mcp_token not in result.stdout + result.stderr

        # The hook as Claude Code runs it: the command line through a shell, with no approval-server on PATH.
        env = {"PATH": "/usr/bin:/bin", "HOME": str(server.home)}
        async with server.api(server.api_token) as api:
            run = asyncio.create_task(
                asyncio.to_thread(
                    subprocess.run,
                    ["sh", "-c", hook["command"]],
                    input=json.dumps(HOOK_INPUT),
                    env=env,
                    cwd=tmp_path,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
            )
            pending = await wait_for_pending(api, {"tool_name": "Bash"}, within=60)
            await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow"})
            answered = await run
        assert answered.returncode == 0, answered.stderr
        assert json.loads(answered.stdout)["hookSpecificOutput"]["decision"]["behavior"] == "allow"


def test_print_shows_the_files_and_writes_nothing(tmp_path: Path, database_url: str) -> None:
    with quick_start(tmp_path / "data", database_url) as server:
        result = cli("connect", "claude-code", "--print", "--agent", "laptop", home=server.home, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert not mcp_path(server.home).exists()
        assert not settings_path(server.home).exists()
        shown: dict[str, str] = {}
        for block in result.stdout.split("# ")[1:]:
            title, _, text = block.partition("\n")
            shown[title] = text[: text.index("\n}\n") + 2]
        mcp = json.loads(shown[f"{mcp_path(server.home)} (mode 0600)"])["mcpServers"]["approval-server"]
        assert mcp["url"] == f"{server.url}/mcp"
        assert mcp["headers"] == {
            "Authorization": f"Bearer {server.mcp_token}",
            "X-Agent-Name": "laptop",
            "X-Agent-Cwd": "${PWD}",
        }
        settings = json.loads(shown[f"{settings_path(server.home)} (mode 0600)"])
        command = settings["hooks"]["PermissionRequest"][0]["hooks"][0]["command"]
        assert shlex.split(command)[-4:] == ["--url", server.url, "--agent", "laptop"]
        assert printed_command(result.stdout, "claude -p")[3:5] == ["--mcp-config", str(mcp_path(server.home))]


def test_nothing_is_written_when_claude_code_could_not_use_it(server: ServerProcess, tmp_path: Path) -> None:
    home = tmp_path / "home"
    down = cli("connect", "claude-code", "--url", f"http://127.0.0.1:{free_port()}", home=home, cwd=tmp_path)
    assert down.returncode == 1
    assert "nothing written: no server answers at" in down.stderr
    assert "Traceback" not in down.stderr
    client = server.data_dir / ".config" / "approval-server" / CLIENT_FILE
    client.write_text(client.read_text().replace(MCP_TOKEN, "another-token-another-token"))
    refused = cli("connect", "claude-code", home=server.data_dir, cwd=tmp_path)
    assert refused.returncode == 1
    assert f"nothing written: the server at {server.url}/mcp refuses its token" in refused.stderr
    for each in (home, server.data_dir):
        assert not mcp_path(each).exists()
        assert not settings_path(each).exists()


def test_a_server_started_with_port_is_found_by_the_other_commands(tmp_path: Path, database_url: str) -> None:
    """`serve --port` records its address for the user; `requests`, `connect` and `doctor` find it with no flag.
    Before, `doctor` looked at port 8000 and said no server was running."""
    with quick_start(tmp_path / "data", database_url) as server:
        anywhere = tmp_path / "anywhere"
        listed = cli("requests", home=server.home, cwd=anywhere)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout == "No requests.\n"
        # The owner's doctor, with the server's data directory (its SQLite database), but not its --port.
        owner = {"APPROVAL_DATA_DIR": server.environment()["APPROVAL_DATA_DIR"]}
        doctor = cli("doctor", home=server.home, cwd=anywhere, **owner)
        assert f"ok    server is running at {server.url}" in doctor.stdout, doctor.stdout
        assert doctor.returncode == 0, doctor.stdout
        connected = cli("connect", "claude-code", home=server.home, cwd=anywhere)
        assert connected.returncode == 0, connected.stderr
        assert f"{server.url}/mcp" in mcp_path(server.home).read_text()
        doctor = cli("doctor", home=server.home, cwd=anywhere, **owner)
        assert f"Claude Code will find {PERMISSION_TOOL} at {server.url}/mcp" in doctor.stdout
        assert doctor.returncode == 0, doctor.stdout


async def test_every_client_command_takes_url(server: ServerProcess, tmp_path: Path) -> None:
    """client.env points at a port where nothing listens; `--url` sends each command to the running server.
    Before, `connect` did not exist and `doctor` had no `--url`."""
    client = server.data_dir / ".config" / "approval-server" / CLIENT_FILE
    client.write_text(client.read_text().replace(server.url, f"http://127.0.0.1:{free_port()}"))
    home, url, cwd = server.data_dir, server.url, tmp_path / "elsewhere"
    without = cli("requests", home=home, cwd=cwd)
    assert "Cannot reach approval-server" in without.stderr
    read_input = HOOK_INPUT | {
        "hook_event_name": "PreToolUse",
        "tool_name": "Read",
        "tool_input": {"file_path": f"{cwd}/notes.txt"},
        "cwd": str(cwd),
    }
    expected = {
        ("requests",): "No requests.",
        ("show", "nosuchid"): "answered 404",
        ("approve", "nosuchid"): "answered 404",
        ("deny", "nosuchid"): "answered 404",
        ("grants",): "No grant is in force.",
        ("revoke", "nosuchid"): "answered 404",
        ("dashboard",): f"{url}/login?token=",
        ("hook",): '"permissionDecision": "allow"',
        ("mcp-config",): f'"url": "{url}/mcp"',
        ("hook-config",): f"--url {url}",
        ("doctor",): f"server is running at {url}",
        ("connect", "claude-code", "--print"): f'"url": "{url}/mcp"',
        ("login", "--api-token", API_TOKEN, "--mcp-token", MCP_TOKEN): f"now use {url}",  # last: it rewrites client.env
    }
    for args, said in expected.items():
        stdin = json.dumps(read_input) if args == ("hook",) else ""
        result = await asyncio.to_thread(cli, *args, "--url", url, home=home, cwd=cwd, stdin=stdin)
        assert said in result.stdout + result.stderr, (args, result.stdout, result.stderr)
        assert "Cannot reach" not in result.stderr, args
    async with bridge(server) as mcp:  # `stdio --url`, as `mcp-config --stdio` prints it
        assert [tool.name for tool in await mcp.list_tools()] == [TOOL, "hook"]


def test_doctor_reports_what_claude_code_would_meet(tmp_path: Path, database_url: str) -> None:
    """Before, `doctor` said "All checks passed" whatever the MCP config Claude Code was given: one that needs an
    unset `APPROVAL_MCP_TOKEN` (the repository's mcp-servers.json), one that is not JSON, one with a wrong token."""
    with quick_start(tmp_path / "data", database_url) as server:
        home, cwd = server.home, tmp_path / "anywhere"
        owner = {"APPROVAL_DATA_DIR": server.environment()["APPROVAL_DATA_DIR"]}

        def doctor(*args: str) -> subprocess.CompletedProcess[str]:
            return cli("doctor", *args, home=home, cwd=cwd, **owner)

        none_yet = doctor()
        assert "connect claude-code` writes Claude Code's config" in none_yet.stdout
        assert none_yet.returncode == 0, none_yet.stdout

        committed = doctor("--mcp-config", str(REPO / "mcp-servers.json"))
        assert committed.returncode == 1
        assert "FIX   Claude Code MCP config" in committed.stdout
        assert "it uses ${APPROVAL_MCP_TOKEN}, not set here" in committed.stdout

        absent = doctor("--mcp-config", str(tmp_path / "nowhere.json"))
        assert absent.returncode == 1
        assert "nowhere.json: cannot read it" in absent.stdout

        assert cli("connect", "claude-code", home=home, cwd=cwd).returncode == 0
        path = mcp_path(home)
        good = path.read_text()
        assert doctor().returncode == 0

        path.write_text(good.replace(server.mcp_token, "wrong-token-wrong-token"))
        wrong = doctor()
        assert wrong.returncode == 1
        assert f"the server at {server.url}/mcp refuses its token" in wrong.stdout

        path.write_text(good[:-5])
        broken = doctor()
        assert broken.returncode == 1
        assert f"Claude Code MCP config {path}: it is not JSON" in broken.stdout

        path.write_text(good)
        path.chmod(0o644)
        loose = doctor()
        assert loose.returncode == 1
        assert "others can read it (mode 644) and it holds the MCP token" in loose.stdout
        path.chmod(0o600)

    stopped = doctor()
    assert stopped.returncode == 1
    assert f"Claude Code MCP config {path}: no server answers at {server.url}/mcp" in stopped.stdout
    assert f"its hook asks {server.url}, which does not answer" in stopped.stdout
