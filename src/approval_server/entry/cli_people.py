"""`approval-server people`: who may decide, and each person's own dashboard login link (made, listed, revoked).

These are the server's own commands, like `db`: they read its settings and people file (`--env-file`) and open its
database, so a link can be made or revoked while the server is down, and every replica sharing a PostgreSQL database
honours the change at once. The link's secret is printed once and never stored (only its hash is); a revoke ends
the link and every session signed in with it, on the next page those sessions open.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from approval_server.channels.plugin import channel_plugins
from approval_server.entry.configuration import Configuration, load_configuration
from approval_server.errors import ConfigError
from approval_server.store import Store
from approval_server.store.db_record import DatabaseRecord
from approval_server.store.logins import PersonLogin
from approval_server.web_auth import new_login_secret

T = TypeVar("T")

people_app = typer.Typer(
    help="The people who decide (PEOPLE_FILE): list them, and make or revoke each one's own dashboard login link.",
    no_args_is_help=True,
)

EnvFile = Annotated[Path, typer.Option("--env-file", help="The server's .env file to read settings from.")]
ENV_DEFAULT = Path(".env")
Name = Annotated[str, typer.Argument(help="The person's name, as in the people file.", show_default=False)]


def _configuration(env_file: Path) -> Configuration:
    return load_configuration(env_file if env_file.exists() else None)


def _on_store(configuration: Configuration, operation: Callable[[Store], Awaitable[T]]) -> T:
    """Run one operation on the server's database, made ready as the server makes it."""
    settings = configuration.settings
    store = Store(settings.store_url)
    try:
        record = DatabaseRecord(settings.approval_data_dir)
        record.check(store)  # never an empty SQLite file where one was lost
        store.prepare()
        record.write(store)

        async def once() -> T:
            try:
                return await operation(store)
            finally:
                await store.aclose()

        return asyncio.run(once())
    finally:
        store.close()


def _actor() -> str:
    try:
        return f"{getpass.getuser()} (CLI)"
    except (KeyError, OSError):
        return "CLI user"


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "never"


def _describe(login: PersonLogin) -> str:
    return f"link {login.id}: made {_when(login.created_at)} by {login.created_by}, last used {_when(login.used_at)}"


@people_app.command("list")
def list_people(env_file: EnvFile = ENV_DEFAULT) -> None:
    """Each person: the channels that reach them, and their live dashboard login links."""
    configuration = _configuration(env_file)
    people = list(configuration.people)
    if not people:
        typer.echo("No one: set PEOPLE_FILE (people.toml), or a channel's approvers (APPROVAL_PHONE).")
        return
    logins = _on_store(configuration, lambda store: store.logins())
    plugins = channel_plugins()
    for person in people:
        channels = ", ".join(
            f"{channel} {plugins[channel].shown(identity)}" for channel, identity in person.identities.items()
        )
        typer.echo(f"{person.name}: {channels or 'no channel'}")
        for login in (each for each in logins if each.person == person.name):
            typer.echo(f"  {_describe(login)}")


@people_app.command("link")
def link(
    name: Name,
    public: Annotated[bool, typer.Option("--public", help="Use PUBLIC_URL instead of the local address.")] = False,
    env_file: EnvFile = ENV_DEFAULT,
) -> None:
    """Make a new dashboard login link for one person: what they decide there is recorded under their name. It
    works until `approval-server people revoke`; give it to that person only."""
    configuration = _configuration(env_file)
    settings = configuration.settings
    if configuration.people.named(name) is None:
        known = ", ".join(person.name for person in configuration.people) or "none"
        raise ConfigError(f"{name!r} is not one of the people (they are: {known}); add them to the people file first.")
    if public and settings.public_url is None:
        raise ConfigError("PUBLIC_URL is not set, so there is no public address; drop --public.")
    login_id, secret, secret_hash = new_login_secret()
    _on_store(configuration, lambda store: store.add_login(login_id, name, secret_hash, _actor()))
    base = str(settings.public_url).rstrip("/") if public else settings.local_url
    typer.echo(f"{base}/login?token={secret}")
    typer.echo(
        f"Login link {login_id} for {name}: it signs in as {name} until `approval-server people revoke {name}`. "
        "Give it to them only.",
        err=True,
    )


@people_app.command("revoke")
def revoke(
    name: Name,
    login: Annotated[str | None, typer.Option("--link", help="Only this link (its id, from `people list`).")] = None,
    env_file: EnvFile = ENV_DEFAULT,
) -> None:
    """End a person's dashboard login links (or one of them) and every session signed in with them."""
    configuration = _configuration(env_file)
    ended = _on_store(configuration, lambda store: store.revoke_logins(name, _actor(), login))
    if not ended:
        which = f"link {login} of {name}" if login else f"login link of {name}"
        raise ConfigError(f"There is no live {which}: nothing was revoked.")
    for each in ended:
        typer.echo(f"Revoked {_describe(each)}.")
    typer.echo(f"{name}'s sessions from {'that link' if login else 'these links'} end now.")
