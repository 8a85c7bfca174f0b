"""`approval-server connect <agent>`: one step from a running server to an agent that asks it.

Each agent's module (`agents`) says which files set it up; this command finds the running server's URL and MCP
token, writes those files (merged into the agent's own, with a backup of what was there) or prints them, and says
how to start the agent.
"""

from __future__ import annotations

from typing import Annotated

import typer

from approval_server.agents import agent_for, agents
from approval_server.agents.setup import Target, print_plan, write_plan
from approval_server.entry.agent_setup import ClientEnvFile, Url, agent_name
from approval_server.entry.client_config import load_client_settings
from approval_server.entry.security import load_tokens


def _known(kind: str) -> str:
    if kind not in agents():
        raise typer.BadParameter(f"{kind!r} is not one of {', '.join(agents())}")
    return kind


def connect(
    agent: Annotated[
        str,
        typer.Argument(help=f"The agent to connect: {', '.join(agents())}.", show_default=False, callback=_known),
    ],
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
    """Set up an agent to ask the running server: write its configuration (hooks with a timeout above the expiry,
    failing closed; merged into its own files, with a backup), or print it with --print, and say how to start it."""
    settings = load_client_settings(env_file, url)
    tokens, _ = load_tokens(settings)
    plan = agent_for(agent).connect(Target(settings, tokens.mcp, agent_name(name)))
    (print_plan if print_only else write_plan)(plan, typer.echo)
    for line in plan.lines:
        typer.echo(line)
