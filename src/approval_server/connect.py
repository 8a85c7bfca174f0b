"""`approval-server connect claude-code`: one step from a running server to a Claude Code that asks it.

It writes two files in the user's configuration folder, mode 0600 (each holds a secret or decides where questions
go), after checking that Claude Code would reach the server through them:

- `claude-code-mcp.json`, the MCP config for `claude -p … --mcp-config`: the running server's URL with the MCP token
  itself in its header, so nothing has to be exported;
- `claude-code-settings.json`, settings for `claude --settings`: a `PermissionRequest` hook that runs this
  installation's CLI by absolute path with the server's URL (agent_setup.py), so it works with `approval-server` off
  `PATH` and a repository cannot redirect it.

They are separate files, passed by flag, because a `PermissionRequest` hook and `--permission-prompt-tool` in the
same session are both asked (the first answer wins): the approver would get every question twice. Then it prints
the two `claude` command lines that use them. `--print` prints the files instead of writing them.
"""

from __future__ import annotations

import json
import shlex
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from approval_server.agent_setup import ClientEnvFile, HookEvent, Url, agent_name, hook_settings, mcp_server
from approval_server.claude_check import PERMISSION_TOOL, AgentViewProblem, check_server, mcp_file, settings_file
from approval_server.client_config import load_client_settings, write_private
from approval_server.mcp_tool import SERVER_NAME
from approval_server.security import load_tokens

PROMPT = "your prompt"
WHERE_TOKENS = "in client.env, written by `serve` or `login --url`, or in the data directory it names"


class Agent(StrEnum):
    CLAUDE_CODE = "claude-code"


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


def connect(
    agent: Annotated[Agent, typer.Argument(help="The agent to connect.", show_default=False)],
    print_only: Annotated[
        bool, typer.Option("--print", help="Print the files and the commands instead of writing the files.")
    ] = False,
    name: Annotated[
        str | None,
        typer.Option("--agent", help="Name this agent: recorded with its requests and matched by the policy."),
    ] = None,
    url: Url = None,
    env_file: ClientEnvFile = None,
) -> None:
    """Write Claude Code's MCP config and hook settings for the running server (mode 0600, in
    ~/.config/approval-server), after checking that Claude Code reaches it through them, and print the `claude`
    commands that use them."""
    name = agent_name(name)
    settings = load_client_settings(env_file, url)
    tokens, _ = load_tokens(settings)
    server = mcp_server(settings, tokens.mcp, agent=name, use_stdio=False)
    try:  # nothing is written that would not work
        found = check_server(server, if_refused=f"the token this CLI found is not the server's ({WHERE_TOKENS})")
    except AgentViewProblem as exc:
        raise AgentViewProblem(f"nothing written: {exc}") from None
    files = {
        mcp_file(): _text({"mcpServers": {SERVER_NAME: server}}),
        settings_file(): _text(hook_settings(settings, agent=name, event=HookEvent.PERMISSION_REQUEST, http=False)),
    }
    headless, interactive = (shlex.join(command) for command in claude_commands(*files))
    if print_only:
        for path, text in files.items():
            typer.echo(f"# {path} (mode 0600)\n{text}")
    else:
        for path, text in files.items():
            write_private(path, text)
        mcp_path, settings_path = files
        typer.echo(f"Wrote {mcp_path} (mode 0600): the MCP server {server['url']}, with its token.")
        typer.echo(f"Wrote {settings_path} (mode 0600): a PermissionRequest hook that asks {settings.url}.")
    typer.echo(f"{found}.\n")
    typer.echo(
        f"Headless (claude -p): each tool call Claude Code would ask you about goes to approval-server.\n  {headless}"
    )
    typer.echo(f"Interactive sessions, through the hook:\n  {interactive}")
    typer.echo("Use one or the other: a session with both asks every question twice.")
