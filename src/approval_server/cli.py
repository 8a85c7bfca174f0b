"""The `approval-server` command: a thin layer that parses, calls the same code the server uses, and prints."""

from __future__ import annotations

import contextlib
import getpass
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from approval_server import __version__, agent_setup, render
from approval_server.agent_setup import ClientEnvFile, Url  # for an agent or an approver: never ./.env
from approval_server.client import ApiClient
from approval_server.client_config import load_client_settings, write_client_file
from approval_server.config import Settings, load_settings
from approval_server.errors import ApprovalServerError, BadRequest, ConfigError
from approval_server.models import OUTCOME_WORDS, Status
from approval_server.reveal import escape
from approval_server.security import load_tokens
from approval_server.setup_whatsapp import setup_app

app = typer.Typer(
    help="Approve or deny, from your phone or a terminal, each sensitive action an AI coding agent wants to take.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

db_app = typer.Typer(
    help="The database: see where its schema stands, migrate it, or begin a new one on purpose.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(setup_app, name="setup")

EnvFile = Annotated[Path, typer.Option("--env-file", help="The server's .env file to read settings from.")]
ENV_DEFAULT = Path(".env")


def _settings(env_file: Path, **overrides: Any) -> Settings:
    return load_settings(env_file if env_file.exists() else None, **overrides)


def _api(env_file: Path | None, url: str | None) -> ApiClient:
    settings = load_client_settings(env_file, url)
    tokens, _ = load_tokens(settings)
    return ApiClient(settings.url, tokens.api)


# Everything printed that an agent or an approver wrote goes through the renderer, as on every other surface:
# names with `render.name` (as typed when plainly one word, quoted and escaped otherwise), values that run over
# lines as numbered lines behind the gutter (`_numbered`), and a value that ends its line with `_to_line_end`. A
# line break in a one-line place is shown as `⟨U+000A⟩`, so that no field can start a line of its own.


def _to_line_end(text: str) -> str:
    """A value that ends its line, on that one line, shown as the renderer shows it. It needs no quotes: nothing
    follows it, and spaces at its end are shown as `⟨N spaces⟩`."""
    return render.shown(text).replace("\n", escape("\n"))


def _numbered(title: str, value: str, kind: render.FieldKind) -> str:
    """`value` under `title` (the CLI's own words), one numbered line per line behind the gutter, as
    `render_text(..., numbered=True)` lays out each field: a real line break is told from a soft wrap."""
    lines = render.Field(title, value, kind).lines()
    width = len(str(len(lines)))
    return "\n".join(
        [f"{title}:", *(f"{number:>{width}}{render.GUTTER} {line}" for number, line in enumerate(lines, 1))]
    )


def _indented(text: str, indent: str) -> str:
    """`text` set apart as part of what comes before it (nothing the agent wrote starts a line, so none can
    pass for the end of it)."""
    return "\n".join(indent + line for line in text.split("\n"))


def _covers(grant: dict[str, Any]) -> str:
    """Who a grant allows, in words (as `Grant.covers` says it), each name the agent gave shown with `name`."""
    agent = f"agent {render.name(grant['agent'])}" if grant["agent"] else "unnamed agents"
    if grant["kind"] == "timed":
        return agent
    if grant["session"]:
        return f"session {render.name(grant['session'])}"
    return f"{agent} in {render.name(grant['cwd'])}" if grant["cwd"] else agent


def _actor() -> str:
    try:
        return f"{getpass.getuser()} (CLI)"
    except (KeyError, OSError):
        return "CLI user"


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (SERVER_HOST; default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (SERVER_PORT; default 8000).")] = None,
    env_file: EnvFile = ENV_DEFAULT,
) -> None:
    """Run the server: MCP at /mcp, the HTTP API at /api."""
    from approval_server.server import serve as run_server

    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["server_host"] = host
    if port is not None:
        overrides["server_port"] = port
    run_server(_settings(env_file, **overrides), env_file if env_file.exists() else None)


@app.command("requests")
def list_requests(
    status: Annotated[Status | None, typer.Option(help="Only requests with this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    env_file: ClientEnvFile = None,
    url: Url = None,
) -> None:
    """List requests, newest first."""
    with _api(env_file, url) as api:
        rows = api.list_requests(status.value if status else None, limit)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo("No requests" + (f" with status {status.value}." if status else "."))
        return
    for row in rows:
        command = row["input"].get("command") if row["tool_name"] == "Bash" else None
        summary = _to_line_end(command if isinstance(command, str) else json.dumps(row["input"], ensure_ascii=False))
        tool, agent = render.name(row["tool_name"]), render.name(row["agent"]) if row["agent"] else "-"
        typer.echo(f"{row['id']}  {row['status']:<9}  {row['created_at'][:19]}  {tool:<10}  {agent:<10}  {summary}")


DECIDER_WORDS = "Reason (the words of whoever decided: an approver, a policy rule or the server)"
ANSWER_WORDS = "Message (the words of whoever answered)"
EDITED = "Edited by the approver: the agent was told to run this instead:"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)


@app.command()
def show(request_id: str, env_file: ClientEnvFile = None, url: Url = None) -> None:
    """Show one request in full, with every answer it received."""
    with _api(env_file, url) as api:
        row = api.get_request(request_id)
    typer.echo(f"Request {row['id']}: {row['status']}")
    typer.echo(render.render_text(row["tool_name"], row["input"], numbered=True))
    if row["updated_input"] is not None:
        typer.echo(EDITED)
        typer.echo(_indented(render.render_text(row["tool_name"], row["updated_input"], numbered=True), "  "))
    for title, key in (
        ("Agent", "agent"),
        ("Working directory", "cwd"),
        ("Session", "session"),
        ("Client", "client"),
        ("Tool use id", "tool_use_id"),
    ):
        if row[key] is not None:
            typer.echo(f"{title}: {render.name(row[key])}")
    if row["extra"]:
        typer.echo(_numbered("Other fields of the call", _json(row["extra"]), "json"))
    typer.echo(f"Created {row['created_at']}, expires {row['expires_at']}")
    if row["decided_at"]:
        typer.echo(f"Decided {row['decided_at']} via {render.name(row['decided_via'] or '')}")
        typer.echo(f"Decided by: {_to_line_end(row['decided_by'] or '')}")
    if row["reason"] is not None:
        typer.echo(_numbered(DECIDER_WORDS, row["reason"], "text"))
    if row["remembered"]:
        typer.echo(f"Remembered: {render.name(row['remembered'])} (see `approval-server grants`)")
    if row["answers"]:
        typer.echo("Answers:")
    for answer in row["answers"]:
        status, outcome, via = (render.name(answer[key]) for key in ("status", "outcome", "channel"))
        outcome = OUTCOME_WORDS.get(answer["outcome"], outcome)
        typer.echo(f"  {answer['at']}: {status} ({outcome}) via {via} by {_to_line_end(answer['actor'])}")
        if answer["outcome"] == "applied":  # its message and edit are the request's reason and edited input above
            continue
        if answer["message"] is not None:
            typer.echo(_indented(_numbered(ANSWER_WORDS, answer["message"], "text"), "    "))
        if answer["updated_input"] is not None:
            edited = render.render_text(row["tool_name"], answer["updated_input"], numbered=True)
            typer.echo("    Edited input with this answer:\n" + _indented(edited, "      "))


@app.command()
def approve(
    request_id: str,
    message: Annotated[str | None, typer.Option(help="A note kept in the audit trail.")] = None,
    edited_input: Annotated[
        str | None, typer.Option("--input", help="Run this JSON object instead of the requested input.")
    ] = None,
    remember: Annotated[
        str | None,
        typer.Option(help="Also allow the same again: 'session' (this agent session) or a duration such as 30m."),
    ] = None,
    env_file: ClientEnvFile = None,
    url: Url = None,
) -> None:
    """Approve a pending request (optionally with an edited input, or remembering it)."""
    body: dict[str, Any] = {"decision": "allow", "message": message, "actor": _actor()}
    if remember is not None:
        body["remember"] = remember
    if edited_input is not None:
        try:
            body["updated_input"] = json.loads(edited_input)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--input must be a JSON object: {exc}") from None
    with _api(env_file, url) as api:
        row = api.decide(request_id, body)
    typer.echo(f"Request {row['id']} allowed.")
    for grant in row["grants"]:
        typer.echo(
            f"Grant {grant['id']}: {render.name(grant['rule'])} for {_covers(grant)} until {grant['expires_at']}."
        )


@app.command("grants")
def list_grants(
    show_all: Annotated[bool, typer.Option("--all", help="Also grants that have ended.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of lines.")] = False,
    env_file: ClientEnvFile = None,
    url: Url = None,
) -> None:
    """List the grants ("allow for session", "allow for 30 minutes") in force, newest first."""
    with _api(env_file, url) as api:
        grants = api.grants(show_all)
    if as_json:
        typer.echo(json.dumps(grants, indent=2, ensure_ascii=False))
        return
    if not grants:
        typer.echo("No grants." if show_all else "No grant is in force.")
        return
    for grant in grants:
        ended = (
            f", revoked {grant['revoked_at'][:19]} by {render.name(grant['revoked_by'] or '')}"
            if grant["revoked_at"]
            else ""
        )
        typer.echo(
            f"{grant['id']}  {grant['kind']:<7}  until {grant['expires_at'][:19]}  {render.name(grant['rule'])}  "
            f"for {_covers(grant)}{ended}; allowed by {_to_line_end(grant['created_by'])}"
        )


@app.command()
def revoke(grant_id: str, env_file: ClientEnvFile = None, url: Url = None) -> None:
    """End a grant now: the same call asks a human again."""
    with _api(env_file, url) as api:
        grant = api.revoke_grant(grant_id, _actor())
    typer.echo(f"Grant {grant['id']} ({render.name(grant['rule'])}) revoked.")


@app.command()
def deny(
    request_id: str,
    message: Annotated[str, typer.Option(help="Why: the agent reads this.")] = "Denied from the command line.",
    env_file: ClientEnvFile = None,
    url: Url = None,
) -> None:
    """Deny a pending request; the agent receives your message."""
    with _api(env_file, url) as api:
        row = api.decide(request_id, {"decision": "deny", "message": message, "actor": _actor()})
    typer.echo(f"Request {row['id']} denied.")


app.command("mcp-config")(agent_setup.mcp_config)
app.command("hook-config")(agent_setup.hook_config)


@app.command()
def dashboard(
    public: Annotated[bool, typer.Option("--public", help="Use PUBLIC_URL instead of the local address.")] = False,
    env_file: ClientEnvFile = None,
    url: Url = None,
) -> None:
    """Print the dashboard's login URL (it holds the dashboard token: keep it private)."""
    settings = load_client_settings(env_file, url)
    tokens, _ = load_tokens(settings)
    if public and settings.public_url is None:
        raise ConfigError("PUBLIC_URL is not set, so there is no public address; drop --public.")
    base = str(settings.public_url).rstrip("/") if public else settings.url
    typer.echo(f"{base}/login?token={tokens.dashboard}")


@app.command()
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


@app.command()
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


@app.command("setup-template")
def setup_template(
    config: Annotated[Path, typer.Option(help="The template definition.")] = Path("template_config.json"),
    env_file: EnvFile = ENV_DEFAULT,
) -> None:
    """Create the WhatsApp template with Approve / Deny buttons and write its SID into .env (safe to rerun)."""
    from approval_server.template_setup import set_up_template

    sid, created = set_up_template(_settings(env_file), config, env_file)
    typer.echo(f"{'Created' if created else 'Found'} template {sid}; TWILIO_CONTENT_SID={sid} is in {env_file}.")
    typer.echo("Restart the server to use it.")


@app.command()
def stdio(url: Url = None, env_file: ClientEnvFile = None) -> None:
    """Serve MCP on stdin/stdout for Claude Code to spawn, forwarding to the running server."""
    from approval_server.stdio_bridge import run_stdio_bridge

    run_stdio_bridge(load_client_settings(env_file, url, for_agent=True))


@app.command()
def doctor(env_file: EnvFile = ENV_DEFAULT) -> None:
    """Check the configuration and the running server, and say what is missing."""
    from approval_server.doctor import run_checks

    problems = run_checks(env_file, typer.echo)
    raise typer.Exit(1 if problems else 0)


@db_app.command("upgrade")
def db_upgrade(env_file: EnvFile = ENV_DEFAULT) -> None:
    """Migrate the database (DATABASE_URL) to the newest schema; harmless when it is there already."""
    from approval_server.db_record import DatabaseRecord
    from approval_server.store import Store

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
    from approval_server.db_record import DatabaseRecord
    from approval_server.store import Store

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
    from approval_server.mcp_tool import SERVER_NAME, TOOL_NAME

    typer.echo(f"approval-server {__version__} (MCP tool: mcp__{SERVER_NAME}__{TOOL_NAME})")


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        print(f"approval-server: {exc}", file=sys.stderr)
        sys.exit(2)
    except ApprovalServerError as exc:
        print(f"approval-server: {exc}", file=sys.stderr)
        sys.exit(1)
