"""The commands that act for an agent or set up a client: `hook` (an agent's command hook), `stdio` (an MCP
bridge Claude Code spawns) and `login` (remember a server elsewhere). They find the server in `client.env`, never
in the directory they run in (client_config.py)."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Annotated

import typer

from approval_server.entry.agent_setup import ClientEnvFile, Url
from approval_server.entry.client import ApiClient
from approval_server.entry.client_config import load_client_settings, write_client_file
from approval_server.entry.security import load_tokens
from approval_server.errors import BadRequest, ConfigError


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
    kind: Annotated[
        str, typer.Argument(help="The agent whose hook this is: claude-code, codex, gemini, copilot, cursor, ….")
    ] = "claude-code",
    agent: Annotated[str | None, typer.Option(help="Name this agent (as X-Agent-Name does for MCP).")] = None,
    url: Url = None,
    env_file: ClientEnvFile = None,
) -> None:
    """For an agent's permission hook: read the hook's input on stdin, ask the running server (with the MCP token),
    print the agent's answer. If no answer can be had, it denies in the way that agent blocks (its deny, or exit 2
    with the reason). `approval-server connect <agent>` writes the settings that run it."""
    from approval_server import strict_json
    from approval_server.agents import agent_for
    from approval_server.agents.versions import running_version

    try:
        adapter = agent_for(kind)
    except ValueError as exc:
        typer.echo(f"approval-server hook: {exc}", err=True)
        raise typer.Exit(2) from None
    text = sys.stdin.read()
    try:
        payload, malformed = strict_json.loads(text), None
    except (ValueError, RecursionError) as exc:  # NaN, 1e400, a lone surrogate or not JSON at all: never sent on
        payload, malformed = None, f"the hook's input is not JSON ({exc})"
    event = None
    with contextlib.suppress(ValueError, RecursionError):
        lenient = json.loads(text)  # only to learn which event to answer
        event = lenient.get("hook_event_name") if isinstance(lenient, dict) else None
    try:
        if malformed is not None:
            raise BadRequest(malformed)
        settings = load_client_settings(env_file, url, for_agent=True)
        tokens, _ = load_tokens(settings)
        # Wait as long as a request can: the server answers at its expiry at the latest.
        with ApiClient(settings.url, tokens.mcp, timeout=settings.approval_timeout_seconds + 30) as api:
            output = adapter.checked_answer(api.hook(payload, agent, kind, running_version(adapter.packages)))
    except Exception as exc:  # any failure is a deny: exit 1, no output or garbage would let the call run
        why = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        failure = adapter.failure(event if isinstance(event, str) else None, why)
        if failure.stdout is not None:
            typer.echo(json.dumps(failure.stdout, ensure_ascii=False))
        if failure.stderr:
            typer.echo(failure.stderr, err=True)
        raise typer.Exit(failure.code) from None
    typer.echo(json.dumps(output, ensure_ascii=False))


def stdio(url: Url = None, env_file: ClientEnvFile = None) -> None:
    """Serve MCP on stdin/stdout for Claude Code to spawn, forwarding to the running server."""
    from approval_server.entry.stdio_bridge import run_stdio_bridge

    run_stdio_bridge(load_client_settings(env_file, url, for_agent=True))
