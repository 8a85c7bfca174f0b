"""Telegram, as one channel: each person with a Telegram user id is asked in their chat with the server's bot, with
buttons; its settings, its sends, the `/telegram-webhook` route, `setup telegram` and its `doctor` checks.

Its modules: `settings` (the TELEGRAM_* settings, a person's user id), `buttons` (what a button may do), `channel`
(the sends and the edits), `webhook` (button presses and messages) and `setup` (the set-up command and the live
checks). Only `settings` is imported until the channel is used: the commands an agent runs never load the
Telegram library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from approval_server.channels.plugin import ChannelDeps, ChannelPlugin, Decisions, Report
from approval_server.channels.telegram.settings import TelegramConfig, TelegramSection, configure, user_id
from approval_server.config import Settings
from approval_server.people import People

if TYPE_CHECKING:
    import typer
    from starlette.routing import BaseRoute

    from approval_server.channels.base import Channel


class Telegram(ChannelPlugin[TelegramSection, TelegramConfig]):
    name = "telegram"
    title = "Telegram"
    section = TelegramSection

    def identity(self, value: object) -> str:
        return user_id(value)

    def configure(self, section: TelegramSection, settings: Settings, people: People) -> TelegramConfig | None:
        return configure(section, settings, people)

    def build(self, config: TelegramConfig, deps: ChannelDeps) -> Channel:
        from approval_server.channels.telegram.channel import TelegramChannel

        return TelegramChannel(config, deps)

    def routes(self, channel: Channel, decisions: Decisions) -> Sequence[BaseRoute]:
        from starlette.routing import Route

        from approval_server.channels.telegram.channel import TelegramChannel
        from approval_server.channels.telegram.settings import WEBHOOK_PATH
        from approval_server.channels.telegram.webhook import TelegramWebhook

        assert isinstance(channel, TelegramChannel)
        return [Route(WEBHOOK_PATH, TelegramWebhook(decisions, channel).handle, methods=["POST"])]

    def status(self, config: TelegramConfig | None) -> str:
        if config is None:
            return "off (set TELEGRAM_BOT_TOKEN and PUBLIC_URL, and give people a telegram user id, to turn it on)"
        if not config.chats:
            return f"no person has a telegram user id yet (the bot tells each theirs at /start); {config.webhook_url}"
        return f"{len(config.chats)} person(s), with buttons; Telegram posts to {config.webhook_url}"

    def secrets(self, config: TelegramConfig) -> list[str]:
        return [config.token, config.webhook_secret]

    def commands(self, app: typer.Typer, setup: typer.Typer) -> None:
        from approval_server.channels.telegram.setup import setup_telegram

        setup.command("telegram")(setup_telegram)

    def doctor(self, config: TelegramConfig | None, ok: Report, problem: Report, note: Report) -> None:
        if config is None:
            return
        from approval_server.channels.telegram.checks import report

        report(config, ok, problem, note)


CHANNEL = Telegram()
