"""What to paste into Claude Code: `approval-server mcp-config` (the MCP server) and `approval-server hook-config`
(hooks), ready to use, with a timeout above the expiry and every failure blocking.

The command forms run this installation's own interpreter by absolute path in isolated mode (`python -I -m
approval_server`): neither `PATH`, `PYTHONPATH` nor the working directory (the agent's project) can put another
program or module in its place. Claude Code passes a project's `env` settings to the processes it starts, so this
matters; an HTTP hook starts no process at all, which is why it is the recommended form.
"""

from __future__ import annotations

import json
import shlex
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from approval_server import SERVER_NAME
from approval_server.entry.client_config import ClientSettings, load_client_settings
from approval_server.entry.security import load_tokens
from approval_server.errors import ConfigError
from approval_server.models import AGENT_NAME

TOKEN_VARIABLE = "APPROVAL_MCP_TOKEN"  # noqa: S105 (a variable's name)
# The hook waits for the human up to the expiry; Claude Code must not give up on it first.
HOOK_MARGIN_SECONDS = 60
MCP_MARGIN_SECONDS = 30

ClientEnvFile = Annotated[
    Path | None, typer.Option("--env-file", help="A settings file to read (no default: ./.env is not read).")
]
Url = Annotated[str | None, typer.Option("--url", help="The server's URL (default: from `login` or `serve`).")]


class HookEvent(StrEnum):
    PERMISSION_REQUEST = "PermissionRequest"
    PRE_TOOL_USE = "PreToolUse"


def agent_name(agent: str | None) -> str | None:
    if agent is not None and not AGENT_NAME.match(agent):
        raise ConfigError(f"--agent {agent!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return agent


def own_command(*args: str) -> list[str]:
    """This installation's CLI, by absolute path, in isolated mode (see the module's docstring)."""
    return [sys.executable, "-I", "-m", "approval_server", *args]


def hook_entry(settings: ClientSettings, *, agent: str | None, http: bool) -> dict[str, Any]:
    """One hook for Claude Code's settings: HTTP straight to `/api/hook`, or the `approval-server hook` command."""
    entry: dict[str, Any]
    if http:
        headers = {"Authorization": f"Bearer ${{{TOKEN_VARIABLE}}}"} | ({"X-Agent-Name": agent} if agent else {})
        entry = {
            "type": "http",
            "url": f"{settings.url}/api/hook",
            "headers": headers,
            "allowedEnvVars": [TOKEN_VARIABLE],  # Claude Code expands no other variable in headers
        }
    else:
        command = own_command("hook", "--url", settings.url, *(["--agent", agent] if agent else []))
        entry = {"type": "command", "command": shlex.join(command)}
    timeout = int(settings.approval_timeout_seconds) + HOOK_MARGIN_SECONDS
    # Without "block", a hook that fails or times out is ignored and the tool call goes on unasked.
    return entry | {"timeout": timeout, "onFailure": "block"}


def hook_settings(settings: ClientSettings, *, agent: str | None, event: HookEvent, http: bool) -> dict[str, Any]:
    """Claude Code settings holding one hook, for every tool, under `event`."""
    return {"hooks": {event.value: [{"matcher": "*", "hooks": [hook_entry(settings, agent=agent, http=http)]}]}}


def hook_config(
    agent: Annotated[str | None, typer.Option(help="Name this agent (as X-Agent-Name does for MCP).")] = None,
    event: Annotated[
        HookEvent,
        typer.Option(help="PermissionRequest: only what Claude Code would ask; PreToolUse: every tool use."),
    ] = HookEvent.PERMISSION_REQUEST,
    http: Annotated[
        bool, typer.Option("--http", help="An HTTP hook straight to /api/hook (recommended): no process per call.")
    ] = False,
    url: Url = None,
    env_file: ClientEnvFile = None,
) -> None:
    """Print Claude Code settings (hooks) that send every permission question to this server; paste them into
    ~/.claude/settings.json. Do not combine a PermissionRequest hook with --permission-prompt-tool: both would be
    asked at once and the first answer wins."""
    settings = load_client_settings(env_file, url)
    typer.echo(json.dumps(hook_settings(settings, agent=agent_name(agent), event=event, http=http), indent=2))
    if http:
        where = (
            "the MCP token you configured"
            if settings.approval_mcp_token is not None
            else f'"$(cat {settings.approval_data_dir.resolve() / "mcp-token"})"'
        )
        typer.echo(f"Start Claude Code with {TOKEN_VARIABLE} set: export {TOKEN_VARIABLE}={where}", err=True)
        typer.echo(
            "and with --setting-sources user: a repository's .claude/settings.json could otherwise send this hook "
            "through a proxy of its own (docs/hooks.md).",
            err=True,
        )


def mcp_config(
    use_stdio: Annotated[
        bool, typer.Option("--stdio", help="Have Claude Code spawn `approval-server stdio` instead of using HTTP.")
    ] = False,
    agent: Annotated[
        str | None,
        typer.Option(help="Name this agent (X-Agent-Name) and send its working directory ($PWD) with each request."),
    ] = None,
    url: Url = None,
    env_file: ClientEnvFile = None,
) -> None:
    """Print a ready-to-use mcp-servers.json for Claude Code (the HTTP one holds the MCP token: keep it private)."""
    if agent is not None and use_stdio:
        raise ConfigError("--agent needs the HTTP configuration")
    name = agent_name(agent)
    settings = load_client_settings(env_file, url)
    tokens, _ = load_tokens(settings)
    server = mcp_server(settings, tokens.mcp, agent=name, use_stdio=use_stdio)
    typer.echo(json.dumps({"mcpServers": {SERVER_NAME: server}}, indent=2))


def mcp_server(settings: ClientSettings, token: str, *, agent: str | None, use_stdio: bool) -> dict[str, Any]:
    """This server's entry in Claude Code's `mcpServers`: HTTP with the MCP token in its header, or the stdio bridge."""
    timeout_ms = int((settings.approval_timeout_seconds + MCP_MARGIN_SECONDS) * 1000)
    if use_stdio:
        command, *args = own_command("stdio", "--url", settings.url)
        env = {"APPROVAL_DATA_DIR": str(settings.approval_data_dir.resolve())}
        if settings.approval_mcp_token is not None:
            env[TOKEN_VARIABLE] = token
        return {"type": "stdio", "command": command, "args": args, "env": env, "timeout": timeout_ms}
    headers = {"Authorization": f"Bearer {token}"}
    if agent is not None:
        # Claude Code fills in ${PWD} from its own environment: the directory it was started in.
        headers |= {"X-Agent-Name": agent, "X-Agent-Cwd": "${PWD}"}
    return {"type": "http", "url": f"{settings.url}/mcp", "headers": headers, "timeout": timeout_ms}
