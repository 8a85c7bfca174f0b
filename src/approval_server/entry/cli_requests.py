"""The approver's commands: list and show requests, approve or deny them, list and revoke grants, and print the
dashboard's login URL. Each one calls the running server's HTTP API with the API token."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from approval_server import render
from approval_server.entry.agent_setup import ClientEnvFile, Url  # for an agent or an approver: never ./.env
from approval_server.entry.client import ApiClient
from approval_server.entry.client_config import load_client_settings
from approval_server.entry.security import load_tokens
from approval_server.errors import ConfigError
from approval_server.models import OUTCOME_WORDS, Status
from approval_server.reveal import escape


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
        kind = row["agent_kind"] or "-"  # one of the agents' kinds (`agents`): plain words
        typer.echo(
            f"{row['id']}  {row['status']:<9}  {row['created_at'][:19]}  {tool:<10}  {agent:<10}  {kind:<11}  {summary}"
        )


DECIDER_WORDS = "Reason (the words of whoever decided: an approver, a policy rule or the server)"
ANSWER_WORDS = "Message (the words of whoever answered)"
EDITED = "Edited by the approver: the agent was told to run this instead:"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)


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
        ("Agent program", "agent_kind"),
        ("Its version", "agent_version"),
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


def revoke(grant_id: str, env_file: ClientEnvFile = None, url: Url = None) -> None:
    """End a grant now: the same call asks a human again."""
    with _api(env_file, url) as api:
        grant = api.revoke_grant(grant_id, _actor())
    typer.echo(f"Grant {grant['id']} ({render.name(grant['rule'])}) revoked.")


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
