"""What Claude Code will see through the files `approval-server connect claude-code` writes, checked the way Claude
Code uses them: the MCP config parses, names this server, its `${VAR}`s are set, its URL answers, its token is
accepted and the permission tool is offered; the hook settings run a program that exists, against a server that
answers. `connect` checks a config before writing it, `doctor` checks the files once written.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from approval_server import SERVER_NAME, TOOL_NAME
from approval_server.config import user_config_dir
from approval_server.errors import ApprovalServerError

MCP_FILE = "claude-code-mcp.json"
SETTINGS_FILE = "claude-code-settings.json"
PERMISSION_TOOL = f"mcp__{SERVER_NAME}__{TOOL_NAME}"
CHECK_SECONDS = 10
# Claude Code expands `${VAR}` and `${VAR:-default}` in an MCP server's URL, headers, command, args and env.
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

_LITERAL_TOKEN = re.compile(r"Bearer [^$\s\"]")  # a token written out, not a variable

Report = Callable[[str], None]


class AgentViewProblem(ApprovalServerError):
    """Claude Code would not get an answer from this server through the file or entry checked."""


def mcp_file() -> Path:
    return user_config_dir() / MCP_FILE


def settings_file() -> Path:
    return user_config_dir() / SETTINGS_FILE


def _expand(value: Any, missing: set[str]) -> Any:
    """`value` with the variables Claude Code would fill in from this environment; unset ones go to `missing`."""
    if isinstance(value, str):

        def fill(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if name == "PWD":  # a shell sets it; Claude Code started here would send this directory
                return os.getcwd()
            if default is None:
                missing.add(name)
            return default or ""

        return _VARIABLE.sub(fill, value)
    if isinstance(value, list):
        return [_expand(item, missing) for item in value]
    if isinstance(value, dict):
        return {key: _expand(item, missing) for key, item in value.items()}
    return value


async def _tool_names(entry: dict[str, Any]) -> list[str]:
    from fastmcp import Client  # the MCP client loads only for a check, not for every command

    async with Client({"mcpServers": {SERVER_NAME: entry}}, timeout=CHECK_SECONDS) as client:
        return [tool.name for tool in await client.list_tools()]


def check_server(entry: Any, *, if_refused: str = "run  approval-server connect claude-code  again") -> str:
    """Connect to the `approval-server` entry of an MCP config as Claude Code would and list its tools. Returns
    where the permission tool was found; raises `AgentViewProblem` saying why Claude Code would not find it
    (`if_refused`: what to do when the server refuses the entry's token)."""
    if not isinstance(entry, dict):
        raise AgentViewProblem(f"its {SERVER_NAME!r} server is not a JSON object")
    missing: set[str] = set()
    expanded: dict[str, Any] = {key: value for key, value in _expand(entry, missing).items() if key != "timeout"}
    if missing:
        unset = ", ".join(f"${{{name}}}" for name in sorted(missing))
        raise AgentViewProblem(
            f"it uses {unset}, not set here: Claude Code would find no {PERMISSION_TOOL} unless it is exported "
            "where Claude Code starts (`approval-server connect claude-code` writes a config that holds the token)"
        )
    where = str(expanded.get("url") or expanded.get("command") or "")
    if isinstance(expanded.get("url"), str):
        headers = expanded.get("headers") if isinstance(expanded.get("headers"), dict) else {}
        try:
            with httpx.Client(timeout=CHECK_SECONDS, trust_env=False) as http:
                status = http.get(expanded["url"], headers=headers).status_code
        except (httpx.HTTPError, ValueError) as exc:
            raise AgentViewProblem(
                f"no server answers at {where} ({exc.__class__.__name__}): start it with  approval-server serve"
            ) from None
        if status == 401:
            raise AgentViewProblem(f"the server at {where} refuses its token: {if_refused}")
    try:
        names = asyncio.run(_tool_names(expanded))
    except Exception as exc:  # whatever the MCP client meets, Claude Code would find no tool
        why = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise AgentViewProblem(f"no MCP session with {where}: {why}") from None
    if TOOL_NAME not in names:
        raise AgentViewProblem(f"{where} offers no {TOOL_NAME} tool: is it approval-server?")
    return f"Claude Code will find {PERMISSION_TOOL} at {where}"


def _read_json(path: Path) -> tuple[Any, int]:
    """The JSON in `path` and the file's mode."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AgentViewProblem(f"cannot read it ({exc.strerror or exc})") from None
    try:
        return json.loads(text), mode
    except ValueError as exc:
        raise AgentViewProblem(f"it is not JSON ({exc}): Claude Code would refuse it") from None


def check_mcp_file(path: Path) -> str:
    """What Claude Code finds through `--mcp-config path`."""
    config, mode = _read_json(path)
    servers = config.get("mcpServers") if isinstance(config, dict) else None
    if not isinstance(servers, dict) or SERVER_NAME not in servers:
        raise AgentViewProblem(f"it has no {SERVER_NAME!r} in mcpServers: Claude Code would find no {PERMISSION_TOOL}")
    found = check_server(servers[SERVER_NAME])
    if mode & 0o077 and _LITERAL_TOKEN.search(json.dumps(servers[SERVER_NAME])):
        raise AgentViewProblem(f"others can read it (mode {mode:o}) and it holds the MCP token: run  chmod 600 {path}")
    return found


def _hook_commands(settings: Any) -> list[str]:
    """The `command` of every command hook in Claude Code settings."""
    events = settings.get("hooks") if isinstance(settings, dict) else None
    groups = (
        [group for event in events.values() if isinstance(event, list) for group in event]
        if isinstance(events, dict)
        else []
    )
    hooks = [hook for group in groups if isinstance(group, dict) for hook in group.get("hooks") or []]
    return [hook["command"] for hook in hooks if isinstance(hook, dict) and isinstance(hook.get("command"), str)]


def check_settings_file(path: Path) -> str:
    """The command hooks of Claude Code settings that run approval-server: their program exists, their server
    answers."""
    settings, mode = _read_json(path)
    if mode & 0o022:
        raise AgentViewProblem(
            f"others can write it (mode {mode:o}) and send your questions elsewhere: run  chmod 600 {path}"
        )
    try:
        commands = [shlex.split(command) for command in _hook_commands(settings) if "approval_server" in command]
    except ValueError as exc:
        raise AgentViewProblem(f"a hook's command cannot be read ({exc})") from None
    if not commands:
        raise AgentViewProblem("it has no approval-server hook")
    for command in commands:
        if not os.access(command[0], os.X_OK):
            raise AgentViewProblem(
                f"its hook runs {command[0]}, which is not there: run  approval-server connect claude-code  again"
            )
        url = command[command.index("--url") + 1] if "--url" in command[:-1] else None
        if url is None:
            raise AgentViewProblem("its hook names no --url: run  approval-server connect claude-code  again")
        try:
            httpx.get(f"{url}/healthz", timeout=CHECK_SECONDS, trust_env=False).raise_for_status()
        except httpx.HTTPError as exc:
            raise AgentViewProblem(f"its hook asks {url}, which does not answer ({exc.__class__.__name__})") from None
    return f"its hook runs {commands[0][0]} against a server that answers"


def run_checks(mcp_config: Path | None, *, ok: Report, problem: Report, note: Report) -> None:
    """Doctor's lines for Claude Code: `mcp_config` (default: the file `connect` wrote) and `connect`'s hook
    settings."""
    path = mcp_config or mcp_file()
    if mcp_config is None and not path.exists():
        note(f"no {path}: `approval-server connect claude-code` writes Claude Code's config and prints how to use it")
    else:
        try:
            ok(f"Claude Code MCP config {path}: {check_mcp_file(path)}")
        except AgentViewProblem as exc:
            problem(f"Claude Code MCP config {path}: {exc}")
    hooks = settings_file()
    if hooks.exists():
        try:
            ok(f"Claude Code settings {hooks}: {check_settings_file(hooks)}")
        except AgentViewProblem as exc:
            problem(f"Claude Code settings {hooks}: {exc}")
