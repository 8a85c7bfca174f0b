"""`approval-server setup telegram`: from a bot's token to a server its people can answer on Telegram.

It checks the token (getMe), points the bot's webhook at this server (PUBLIC_URL + `/telegram-webhook`, with the
secret Telegram is to send back; only messages and button presses), and says what is left: each person sends the
bot /start, which answers with their user id, to put in the people file. Any failure is one line and an exit code.

The Telegram library is imported only when the command runs (`checks`): every other command starts without it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from approval_server.channels.telegram.settings import TelegramConfig, TelegramSection, configure
from approval_server.config import Settings, load_section, load_settings
from approval_server.errors import ConfigError
from approval_server.people import People


def _configured(env_file: Path) -> TelegramConfig:
    files = env_file if env_file.exists() else None
    settings = load_settings(files, [TelegramSection])
    section = load_section(TelegramSection, files, [Settings])
    if section.telegram_bot_token is None:
        raise ConfigError(
            f"Set TELEGRAM_BOT_TOKEN (from @BotFather: /newbot) and PUBLIC_URL in {env_file}, then run this again."
        )
    config = configure(section, settings, People())  # who is on Telegram does not matter here
    assert config is not None  # the token is set
    return config


def setup_telegram(
    env_file: Annotated[Path, typer.Option("--env-file", help="The server's .env file.")] = Path(".env"),
) -> None:
    """Set up Telegram: check the bot's token, point its webhook at this server, and say what is left."""
    from approval_server.channels.telegram.checks import point_webhook

    config = _configured(env_file)
    username = asyncio.run(point_webhook(config, typer.echo))
    typer.echo(
        "\nNext:\n"
        f"  1. Start (or restart) the server: Telegram must reach {config.public_url}.\n"
        f"  2. Each person opens https://t.me/{username} and sends /start: the bot answers with their user id.\n"
        '  3. Put it in the people file (people.toml), under that person: telegram = "<their id>"; then restart '
        "the server.\n"
        "  4. `approval-server doctor` checks it all; the next request then reaches them with buttons."
    )
