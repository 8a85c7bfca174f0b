"""`approval-server setup ntfy`, and ntfy's checks in `approval-server doctor`.

`setup ntfy --person alice --topic alice-approvals-7f3k` checks that the server answers as ntfy does and that the
access token (NTFY_TOKEN, or asked; none for anonymous) may publish to the topic, by publishing a first push there;
then it writes NTFY_URL, NTFY_TOKEN and PUBLIC_URL (when given) into `.env` and the topic into the person's entry of
the people file (made if there is none), its other lines kept. Any failure is one line and exit code 2, nothing
written. The token is never a flag, so that it stays out of the shell's history and the process list.

`doctor` checks the server, the token (ntfy's `/<topic>/auth` refuses a token it does not know), and whether anyone
may read each topic: on the public server, whoever knows a topic reads its pushes and may press their buttons.
Neither names a topic in what it prints: it is a secret.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import tomlkit
import typer
from dotenv import dotenv_values

from approval_server.channels.plugin import Report, sections
from approval_server.config import DEFAULT_PEOPLE_FILE, Settings, load_section, load_settings, write_env
from approval_server.errors import ConfigError
from approval_server.people import NAME as PERSON_NAME
from approval_server.people import RESERVED as RESERVED_NAMES

from .publisher import NtfyFailed, Publisher
from .settings import NAME, NtfyConfig, NtfySection, topic

STRONG_TOPIC = 20  # characters: a topic anyone may read should be a long random one


def _refused(exc: NtfyFailed, token: str | None) -> str:
    """Why a publish was refused, and what to do."""
    if exc.status == 401:
        return "ntfy does not know this access token (HTTP 401): check NTFY_TOKEN (ntfy token list, or Account)."
    if exc.status == 403:
        who = "this access token" if token else "an anonymous publisher (no NTFY_TOKEN)"
        return f"ntfy refuses {who} on this topic (HTTP 403): give a token that may write it, or another topic."
    return f"the first push failed: {exc}."


async def _try(url: str, token: str | None, topic_name: str, person: str, seconds: float) -> None:
    # Health is asked anonymously: ntfy refuses any call with a token it does not know (401) before routing it, and
    # that is the publish's to say, in its own words.
    async with Publisher(url, None, seconds) as anonymous, Publisher(url, token, seconds) as ntfy:
        try:
            await anonymous.health()
        except NtfyFailed as exc:
            raise ConfigError(f"{url} does not answer as an ntfy server: {exc}.") from None
        first = {
            "topic": topic_name,
            "title": "approval-server",
            "message": f"{person}'s approval requests will come here, with Approve and Deny buttons.",
            "tags": ["white_check_mark"],
        }
        try:
            await ntfy.publish(first)
        except NtfyFailed as exc:
            raise ConfigError(_refused(exc, token)) from None


def _write_person(path: Path, person: str, topic_name: str) -> str:
    """Give `person` the ntfy topic in the people file at `path` (made if missing); says what it did."""
    try:
        document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError) as exc:
        raise ConfigError(f"{path} cannot be read as TOML: {exc}") from None
    entries = document.setdefault("person", tomlkit.aot())
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: person must be a list of tables, written [[person]]")
    for entry in entries:
        if entry.get("name") != person and entry.get(NAME) == topic_name:
            raise ConfigError(f"{path}: {entry.get('name')} has this ntfy topic already: each person needs their own")
    found = [entry for entry in entries if entry.get("name") == person]
    if found:
        found[0][NAME] = topic_name
        did = f"{person}'s ntfy topic set in {path}"
    else:
        entry = tomlkit.table()
        entry.update({"name": person, NAME: topic_name})
        entries.append(entry)
        did = f"{person} added to {path}, with their ntfy topic"
    try:
        path.write_text(tomlkit.dumps(document), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"Cannot write {path}: {exc.strerror or exc}") from None
    return did


def setup_ntfy(
    person: Annotated[str, typer.Option("--person", help="Who gets the pushes: a name in the people file.")],
    topic_name: Annotated[
        str, typer.Option("--topic", help="Their ntfy topic (on the public server, a long random one: it is a secret).")
    ],
    url: Annotated[str | None, typer.Option("--url", help="The ntfy server (default: NTFY_URL, else ntfy.sh).")] = None,
    public_url: Annotated[
        str | None, typer.Option("--public-url", help="This server's public URL, which the phone opens (PUBLIC_URL).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Ask nothing: the token is NTFY_TOKEN, or none.")] = False,
    env_file: Annotated[Path, typer.Option("--env-file", help="The server's .env file to write.")] = Path(".env"),
) -> None:
    """Set up ntfy for one person: check the server and that the token may publish to their topic, write the
    settings and the person's topic."""
    if not PERSON_NAME.fullmatch(person):
        raise ConfigError(f"--person {person!r} is not a name: 1 to 40 letters, digits, spaces or . _ + @ -")
    if person.lower() in RESERVED_NAMES:
        raise ConfigError(f"--person {person!r} is a name the record gives to someone else: choose another")
    try:
        topic_name = topic(topic_name)
    except ValueError as exc:
        raise ConfigError(f"--topic: {exc}") from None
    files = env_file if env_file.exists() else None
    current = {k.upper(): v for k, v in dotenv_values(env_file).items() if v} if files else {}
    token = os.environ.get("NTFY_TOKEN") or current.get("NTFY_TOKEN")
    if not yes:
        shown = " (Enter keeps the current one)" if token else " (Enter for none: anonymous)"
        token = typer.prompt(
            "ntfy access token, tk_…" + shown, default=token or "", hide_input=True, show_default=False
        )
    overrides = {"ntfy_token": token or None} | ({"ntfy_url": url} if url else {})
    section = load_section(NtfySection, files, [Settings, *sections()], warn=False, **overrides)
    settings = load_settings(files, sections(), **({"public_url": public_url} if public_url else {}))
    if settings.public_url is None:
        raise ConfigError("ntfy needs PUBLIC_URL, the address the phone opens: give --public-url (or set it).")
    server = str(section.ntfy_url).rstrip("/")
    secret = section.ntfy_token.get_secret_value() if section.ntfy_token else None
    asyncio.run(_try(server, secret, topic_name, person, section.ntfy_timeout_seconds))
    typer.echo(f"  ok    {server} answers, and took a first push to {person}'s topic: check their phone")
    values = {"NTFY_URL": server} | ({"NTFY_TOKEN": secret} if secret else {})
    values |= {"PUBLIC_URL": str(settings.public_url).rstrip("/")} if public_url else {}
    write_env(env_file, values)
    typer.echo(f"  ok    {', '.join(values)} written to {env_file}")
    typer.echo(f"  ok    {_write_person(settings.people_file or Path(DEFAULT_PEOPLE_FILE), person, topic_name)}")
    typer.echo("Next: start the server (restart it if it runs), then run  approval-server doctor")


def report(config: NtfyConfig, ok: Report, problem: Report, note: Report) -> None:
    """`doctor`'s checks of ntfy (live: they call the server)."""
    asyncio.run(_report(config, ok, problem, note))


async def _report(config: NtfyConfig, ok: Report, problem: Report, note: Report) -> None:
    if config.url.startswith("http://"):
        note(f"ntfy: NTFY_URL {config.url} is plain HTTP: the access token and every request cross the network unread")
    async with (
        Publisher(config.url, config.token, config.timeout) as ntfy,
        Publisher(config.url, None, config.timeout) as anonymous,
    ):
        try:
            await anonymous.health()  # anonymously: with a token ntfy does not know, every call is a 401
        except NtfyFailed as exc:
            problem(f"ntfy: {config.url} does not answer as an ntfy server: {exc}")
            return
        ok(f"ntfy: {config.url} answers")
        for person, topic_name in config.topics:
            if config.token:
                try:
                    await ntfy.may_read(topic_name)
                except NtfyFailed as exc:
                    if exc.status == 401:
                        problem("ntfy: the server does not know NTFY_TOKEN (HTTP 401): every push will fail")
                        return
                    note(
                        f"ntfy: {person}'s topic cannot be read with NTFY_TOKEN ({exc}); `setup ntfy` checks publishing"
                    )
            try:
                await anonymous.may_read(topic_name)
            except NtfyFailed as exc:
                if exc.status in (401, 403):
                    ok(f"ntfy: {person}'s topic is protected: anonymous readers are refused")
                else:
                    problem(f"ntfy: {person}'s topic could not be checked: {exc}")
                continue
            if len(topic_name) < STRONG_TOPIC:
                problem(
                    f"ntfy: anyone may read {person}'s topic, and it is short ({len(topic_name)} characters): whoever "
                    "guesses it reads the requests and can press their buttons. Use a long random topic, or protect it "
                    "(a reserved topic and NTFY_TOKEN)."
                )
            else:
                note(
                    f"ntfy: whoever knows {person}'s topic reads its pushes and may press their buttons: keep it secret"
                )
