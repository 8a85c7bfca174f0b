"""`approval-server setup apprise`: a test notice to each URL, then APPRISE_URLS written, only when every URL took it.

The URLs are best typed at its prompt, which does not echo them: given as arguments, they stay in the shell's history.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from approval_server.channels.apprise.targets import WIKI, load_targets, send, split_urls
from approval_server.config import write_env
from approval_server.errors import ConfigError

TEST_TIMEOUT = 20.0
TEST_NOTICE = "A test notice from approval-server: requests will come like this, each with a link to decide."


def setup_apprise(
    urls: Annotated[list[str] | None, typer.Argument(help="Apprise URLs (else asked, typing hidden).")] = None,
    env_file: Annotated[Path, typer.Option("--env-file", help="The server's .env file to write.")] = Path(".env"),
) -> None:
    """Set up Apprise: send a test notice to each URL, say which failed, and write APPRISE_URLS when none did."""
    given = " ".join(urls) if urls else typer.prompt("Apprise URLs, separated by spaces", hide_input=True)
    try:
        targets = load_targets(given)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not targets:
        raise ConfigError(f"no Apprise URL given (service://…; see {WIKI})")
    if "${" in given:  # a .env reads ${NAME} in a value as another setting's: the URL would change on its way there
        raise ConfigError("write each $ in an Apprise URL as %24 (Apprise reads it as $), then run it again")

    async def test() -> list[str | None]:
        sends = (send(target, "approval-server", TEST_NOTICE, TEST_TIMEOUT, "the test") for target in targets)
        return list(await asyncio.gather(*sends))

    failures = asyncio.run(test())
    for target, why in zip(targets, failures, strict=True):
        typer.echo(f"  {'ok  ' if why is None else 'FAIL'}  {target.describe()}: {why or 'took the test notice'}")
    if any(failures):
        typer.echo("Nothing written: fix or drop the URLs that failed, then run it again.")
        raise typer.Exit(1)
    write_env(env_file, {"APPRISE_URLS": ",".join(split_urls(given))})
    typer.echo(f"  ok    APPRISE_URLS written to {env_file} (set PUBLIC_URL too: notices link to this server)")
