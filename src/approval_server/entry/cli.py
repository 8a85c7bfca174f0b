"""The `approval-server` command: a thin layer that parses, calls the same code the server uses, and prints.

This module holds the application, the server's own commands (`serve`, `doctor`, `db …`; each channel adds its own,
`setup <channel>`) and the entry point; the approver's commands are in cli_requests.py, the people's login links in
cli_people.py, the agent's in cli_agent.py, Claude Code's set-up in connect.py and agent_setup.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from approval_server import __version__
from approval_server.agents import agents
from approval_server.channels.plugin import channel_plugins
from approval_server.config import Settings
from approval_server.entry import agent_setup, cli_agent, cli_people, cli_requests, connect
from approval_server.errors import ApprovalServerError, ConfigError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"approval-server {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Approve or deny, from your phone or a terminal, each sensitive action an AI coding agent wants to take."""


EnvFile = Annotated[Path, typer.Option("--env-file", help="The server's .env file to read settings from.")]
ENV_DEFAULT = Path(".env")


def _settings(env_file: Path, **overrides: Any) -> Settings:
    from approval_server.entry.configuration import load_server_settings

    return load_server_settings(env_file if env_file.exists() else None, **overrides)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (SERVER_HOST; default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (SERVER_PORT; default 8000).")] = None,
    env_file: EnvFile = ENV_DEFAULT,
) -> None:
    """Run the server: MCP at /mcp, the HTTP API at /api."""
    from approval_server.entry.configuration import load_configuration
    from approval_server.entry.server import serve as run_server

    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["server_host"] = host
    if port is not None:
        overrides["server_port"] = port
    files = env_file if env_file.exists() else None
    run_server(load_configuration(files, **overrides), files)


# The approver's commands (cli_requests.py), then the agent's and Claude Code's set-up.
app.command("requests")(cli_requests.list_requests)
app.command()(cli_requests.show)
app.command()(cli_requests.approve)
app.command("grants")(cli_requests.list_grants)
app.command()(cli_requests.revoke)
app.command()(cli_requests.deny)
app.command()(connect.connect)
app.command("mcp-config")(agent_setup.mcp_config)
app.command("hook-config")(agent_setup.hook_config)
app.command()(cli_requests.dashboard)
app.command()(cli_agent.login)
app.command()(cli_agent.hook)


app.command()(cli_agent.stdio)
# Agents asked over their own API rather than by a hook: a bridge each, as each agent's module says (`agents`).
bridge_app = typer.Typer(help="Answer an agent's permission asks made over its own API.", no_args_is_help=True)
for _agent in agents().values():
    if (_bridge := _agent.bridge()) is not None:
        bridge_app.command(_agent.kind)(_bridge)
app.add_typer(bridge_app, name="bridge")


@app.command()
def doctor(
    env_file: EnvFile = ENV_DEFAULT,
    url: agent_setup.Url = None,
    mcp_config: Annotated[
        Path | None,
        typer.Option(help="The MCP config Claude Code is given (default: the one `connect claude-code` wrote)."),
    ] = None,
) -> None:
    """Check the configuration, the running server and what Claude Code will see, and say what is missing."""
    from approval_server.entry.doctor import run_checks

    problems = run_checks(env_file, typer.echo, url=url, mcp_config=mcp_config)
    raise typer.Exit(1 if problems else 0)


# Command groups.
db_app = typer.Typer(
    help="The database: see where its schema stands, migrate it, or begin a new one on purpose.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
setup_app = typer.Typer(
    help="Guided set-up: connect the server to a messaging service, checked live.", no_args_is_help=True
)
# Each channel adds its own commands (`setup <channel>`, …), as its module says (`channels`).
for _channel in channel_plugins().values():
    _channel.commands(app, setup_app)
app.add_typer(setup_app, name="setup")
app.add_typer(cli_people.people_app, name="people")


@db_app.command("upgrade")
def db_upgrade(env_file: EnvFile = ENV_DEFAULT) -> None:
    """Migrate the database (DATABASE_URL) to the newest schema; harmless when it is there already."""
    from approval_server.store import Store
    from approval_server.store.db_record import DatabaseRecord

    settings = _settings(env_file)
    store = Store(settings.store_url)
    try:
        DatabaseRecord(settings.approval_data_dir).check(store)  # never an empty SQLite file where one was lost
        before = store.revision()
        store.migrate()
        after = store.revision()
    finally:
        store.close()
    done = "already" if before == after else f"migrated from {before.current or 'an empty database'} and now"
    typer.echo(f"Database {store.describe()}: {done} {after.describe()}.")


@db_app.command("new")
def db_new(env_file: EnvFile = ENV_DEFAULT) -> None:
    """Begin a new, empty database on purpose: where the server refuses to start because the data directory's
    database is gone (its history is not in the new one)."""
    from approval_server.store import Store
    from approval_server.store.db_record import DatabaseRecord

    settings = _settings(env_file)
    store = Store(settings.store_url)
    try:
        if store.holds_database():
            raise ConfigError(f"The database {store.describe()} is not empty (it has a schema): nothing done.")
        store.migrate()
        DatabaseRecord(settings.approval_data_dir).write(store)
        revision = store.revision()
    finally:
        store.close()
    typer.echo(f"Database {store.describe()}: new and empty, {revision.describe()}. The server can start.")


@db_app.command("current")
def db_current(env_file: EnvFile = ENV_DEFAULT) -> None:
    """Print the database's schema revision and whether it is the newest."""
    from approval_server.store import Store

    store = Store(_settings(env_file).store_url)
    try:
        revision = store.revision()
    finally:
        store.close()
    typer.echo(f"Database {store.describe()}: {revision.describe()}.")


@app.command()
def version() -> None:
    """Print the version."""
    from approval_server import SERVER_NAME, TOOL_NAME

    typer.echo(f"approval-server {__version__} (MCP tool: mcp__{SERVER_NAME}__{TOOL_NAME})")


def main() -> None:
    try:
        app(prog_name="approval-server")
    except ConfigError as exc:
        print(f"approval-server: {exc}", file=sys.stderr)
        sys.exit(2)
    except ApprovalServerError as exc:
        print(f"approval-server: {exc}", file=sys.stderr)
        sys.exit(1)
