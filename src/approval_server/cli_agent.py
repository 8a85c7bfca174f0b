"""The commands that act for an agent or set up a client: `hook` (Claude Code's command hook), `stdio` (an MCP
bridge Claude Code spawns) and `login` (remember a server elsewhere). They find the server in `client.env`, never
in the directory they run in (client_config.py)."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Annotated

import typer

from approval_server.agent_setup import ClientEnvFile, Url
from approval_server.client import ApiClient
from approval_server.client_config import load_client_settings, write_client_file
from approval_server.errors import BadRequest, ConfigError
from approval_server.security import load_tokens


def login(
    url: Annotated[str, typer.Option("--url", help="The server's URL, such as http://127.0.0.1:8000.")],
    api_token: Annotated[
        str, typer.Option(prompt="API token (for approving; empty: none)", hide_input=True, help="Asked if not given.")
    ] = "",
    mcp_token: Annotated[
        str, typer.Option(prompt="MCP token (for hooks; empty: none)", hide_input=True, help="Asked if not given.")
    ] = "",
) -> None:
    """Remember a server for this user's CLI and hooks (client.env in ~/.config/approval-server, mode 0600), once
    it has accepted the tokens. `serve` does this by itself for the user who runs it."""
    values = {"APPROVAL_URL": load_client_settings(url=url).url}
    for name, token, for_hooks in (("API", api_token, False), ("MCP", mcp_token, True)):
        if not token:
            continue
        with ApiClient(values["APPROVAL_URL"], token) as api:
            if not api.accepts_token(for_hooks):
                raise ConfigError(f"The server at {values['APPROVAL_URL']} refuses this {name} token: nothing written.")
        values[f"APPROVAL_{name}_TOKEN"] = token
    path = write_client_file(values, "Written by `approval-server login`.")
    typer.echo(f"Saved in {path}: the CLI and `approval-server hook` now use {values['APPROVAL_URL']}.")


def hook(
    agent: Annotated[str | None, typer.Option(help="Name this agent (as X-Agent-Name does for MCP).")] = None,
    url: Url = None,
    env_file: ClientEnvFile = None,
) -> None:
    """For Claude Code's hooks (PermissionRequest, PreToolUse): read the hook's input on stdin, ask the running
    server (with the MCP token), print the hook's answer. If no answer can be had, it prints a deny saying why.
    `approval-server hook-config` prints the settings that run it."""
    from approval_server import strict_json
    from approval_server.hooks import failure_output

    text = sys.stdin.read()
    try:
        payload, malformed = strict_json.loads(text), None
    except (ValueError, RecursionError) as exc:  # NaN, 1e400, a lone surrogate or not JSON at all: never sent on
        payload, malformed = None, f"the hook's input is not JSON ({exc})"
    event = None
    with contextlib.suppress(ValueError, RecursionError):
        lenient = json.loads(text)  # only to learn which event to answer
        event = lenient.get("hook_event_name") if isinstance(lenient, dict) else None
    known = event if event in ("PreToolUse", "PermissionRequest") else None
    try:
        if malformed is not None:
            raise BadRequest(malformed)
        settings = load_client_settings(env_file, url, for_agent=True)
        tokens, _ = load_tokens(settings)
        # Wait as long as a request can: the server answers at its expiry at the latest.
        with ApiClient(settings.url, tokens.mcp, timeout=settings.approval_timeout_seconds + 30) as api:
            output = api.hook(payload, agent)
    except Exception as exc:  # any failure is a deny (or exit 2, which blocks): exit 1 would let the call run
        why = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        denial = failure_output(known, why)
        if denial is None:
            typer.echo(f"approval-server hook: {why}", err=True)
            raise typer.Exit(2) from None
        output = denial
    typer.echo(json.dumps(output, ensure_ascii=False))


def stdio(url: Url = None, env_file: ClientEnvFile = None) -> None:
    """Serve MCP on stdin/stdout for Claude Code to spawn, forwarding to the running server."""
    from approval_server.stdio_bridge import run_stdio_bridge

    run_stdio_bridge(load_client_settings(env_file, url, for_agent=True))
