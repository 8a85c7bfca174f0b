"""WhatsApp through Twilio, as one channel: its settings, its sends, the `/twilio-webhook` route, `setup whatsapp`,
`setup-template` and its `doctor` checks.

Its modules: `settings` (the TWILIO_* settings and `APPROVAL_PHONE`), `channel` (the sends), `replies` (what an
approver's reply means), `webhook` (answers and delivery reports), `checks` (live checks against Twilio), `template`
(the buttons' template) and `setup` (the guided set-up). Only `settings` is imported until the channel is used: the
commands an agent runs never load the Twilio library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from approval_server.channels.plugin import ChannelDeps, ChannelPlugin, Decisions, Report
from approval_server.channels.whatsapp.settings import WhatsAppSection, WhatsAppSettings, configure, e164
from approval_server.config import Settings
from approval_server.people import People

if TYPE_CHECKING:
    import typer
    from starlette.routing import BaseRoute

    from approval_server.channels.base import Channel


class WhatsApp(ChannelPlugin[WhatsAppSection, WhatsAppSettings]):
    name = "whatsapp"
    title = "WhatsApp"
    section = WhatsAppSection

    def identity(self, value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f'{value!r} is not a phone number: write it as a string, e.g. "+14155552671"')
        return e164(value)

    def unnamed(self, section: WhatsAppSection) -> list[str]:
        return list(section.approval_phone)

    def configure(self, section: WhatsAppSection, settings: Settings, people: People) -> WhatsAppSettings | None:
        return configure(section, settings, people)

    def build(self, config: WhatsAppSettings, deps: ChannelDeps) -> Channel:
        from approval_server.channels.whatsapp.channel import WhatsAppChannel

        return WhatsAppChannel(config, deps)

    def routes(self, channel: Channel, decisions: Decisions) -> Sequence[BaseRoute]:
        from starlette.routing import Route

        from approval_server.channels.whatsapp.channel import WhatsAppChannel
        from approval_server.channels.whatsapp.webhook import PATH, TwilioWebhook

        assert isinstance(channel, WhatsAppChannel)
        webhook = TwilioWebhook(decisions, channel, channel.settings)
        return [Route(PATH, webhook.handle, methods=["POST"])]

    def status(self, config: WhatsAppSettings | None) -> str:
        if config is None:
            return "off (set the TWILIO_* settings, APPROVAL_PHONE and PUBLIC_URL to turn it on)"
        template = "with buttons" if config.content_sid else "plain text (no TWILIO_CONTENT_SID)"
        return f"{len(config.approvers)} approver(s), {template}; Twilio webhook: {config.webhook_url}"

    def secrets(self, config: WhatsAppSettings) -> list[str]:
        return [config.auth_token]

    def commands(self, app: typer.Typer, setup: typer.Typer) -> None:
        from approval_server.channels.whatsapp.setup import setup_template, setup_whatsapp

        setup.command("whatsapp")(setup_whatsapp)
        app.command("setup-template")(setup_template)

    def doctor(self, config: WhatsAppSettings | None, ok: Report, problem: Report, note: Report) -> None:
        if config is None:
            return
        from approval_server.channels.whatsapp.checks import report

        report(config, ok, problem, note)


CHANNEL = WhatsApp()
