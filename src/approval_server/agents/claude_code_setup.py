"""`approval-server connect claude-code`: one step from a running server to a Claude Code that asks it.

It writes two files in the user's configuration folder, mode 0600 (each holds a secret or decides where questions
go), after checking that Claude Code would reach the server through them:

- `claude-code-mcp.json`, the MCP config for `claude -p … --mcp-config`: the running server's URL with the MCP token
  itself in its header, so nothing has to be exported;
- `claude-code-settings.json`, settings for `claude --settings`: a `PermissionRequest` hook that runs this
  installation's CLI by absolute path with the server's URL (agent_setup.py), so it works with `approval-server` off
  `PATH` and a repository cannot redirect it.

They are separate files, passed by flag, because a `PermissionRequest` hook and `--permission-prompt-tool` in the
same session are both asked (the first answer wins): the approver would get every question twice.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from approval_server import SERVER_NAME
from approval_server.agents.setup import Plan, Target
from approval_server.entry.agent_setup import HookEvent, hook_settings, mcp_server
from approval_server.entry.claude_check import PERMISSION_TOOL, AgentViewProblem, check_server, mcp_file, settings_file

PROMPT = "your prompt"
WHERE_TOKENS = "in client.env, written by `serve` or `login --url`, or in the data directory it names"


def claude_commands(mcp_config: Path, settings: Path) -> tuple[list[str], list[str]]:
    """The command lines that use the files: headless with the permission tool, interactive with the hook. Both
    load no project settings and the headless one no other MCP server: the repository is the agent's to write, and
    could otherwise allow tools outright or name an `approval-server` of its own."""
    headless = ["claude", "-p", PROMPT, "--mcp-config", str(mcp_config), "--strict-mcp-config"]
    headless += ["--permission-prompt-tool", PERMISSION_TOOL, "--setting-sources", "user"]
    interactive = ["claude", "--settings", str(settings), "--setting-sources", "user"]
    return headless, interactive


def _text(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=2) + "\n"


def plan(target: Target) -> Plan:
    """Claude Code's two files, once Claude Code is seen to reach the server through them; nothing otherwise."""
    server = mcp_server(target.settings, target.mcp_token, agent=target.name, use_stdio=False)
    try:
        found = check_server(server, if_refused=f"the token this CLI found is not the server's ({WHERE_TOKENS})")
    except AgentViewProblem as exc:
        raise AgentViewProblem(f"nothing written: {exc}") from None
    hooks = hook_settings(target.settings, agent=target.name, event=HookEvent.PERMISSION_REQUEST, http=False)
    files = {mcp_file(): _text({"mcpServers": {SERVER_NAME: server}}), settings_file(): _text(hooks)}
    headless, interactive = (shlex.join(command) for command in claude_commands(*files))
    lines = [
        f"{found}.\n",
        f"Headless (claude -p): each tool call Claude Code would ask you about goes to approval-server.\n  {headless}",
        f"Interactive sessions, through the hook:\n  {interactive}",
        "Use one or the other: a session with both asks every question twice.",
    ]
    return Plan(files, lines)
