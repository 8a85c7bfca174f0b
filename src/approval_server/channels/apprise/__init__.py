"""Apprise, as one channel: a notice of each request to any Apprise URL (Slack, Discord, Matrix, Pushover, e-mail and
a hundred more services), carrying the link where it is decided. Nothing comes back through Apprise: no route.

Its modules: `settings` (APPRISE_*, the people's own URLs, and who is sent which link), `targets` (a URL loaded, its
secrets, one bounded send), `notice` (what a notice says), `channel` (the sends) and `setup` (`setup apprise`). The
Apprise library is imported only where a URL is loaded or sent to: the commands an agent runs never load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from approval_server.channels.apprise.settings import AppriseSection, AppriseSettings, configure
from approval_server.channels.plugin import ChannelDeps, ChannelPlugin, Report
from approval_server.config import Settings
from approval_server.people import People

if TYPE_CHECKING:
    import typer

    from approval_server.channels.base import Channel


class Apprise(ChannelPlugin[AppriseSection, AppriseSettings]):
    name = "apprise"
    title = "Apprise"
    section = AppriseSection

    def identity(self, value: object) -> str:
        """A person's Apprise URLs (one, or several separated by commas or spaces), each checked."""
        from approval_server.channels.apprise.targets import load_targets, split_urls

        if not isinstance(value, str):
            raise ValueError('write Apprise URLs as a string, e.g. "mailto://user:password@example.com"')
        if not load_targets(value):
            raise ValueError('no Apprise URL given (service://…, e.g. "pover://user-key@app-token")')
        return " ".join(split_urls(value))

    def shown(self, identity: str) -> str:
        from approval_server.channels.apprise.targets import load_targets

        return ", ".join(target.describe() for target in load_targets(identity))

    def configure(self, section: AppriseSection, settings: Settings, people: People) -> AppriseSettings | None:
        return configure(section, settings, people)

    def build(self, config: AppriseSettings, deps: ChannelDeps) -> Channel:
        import logging

        from approval_server.channels.apprise.channel import AppriseChannel

        quiet = logging.getLogger("apprise")
        if not quiet.isEnabledFor(logging.DEBUG):  # a line per notice sent, like the other clients the log quiets
            quiet.setLevel(logging.WARNING)
        return AppriseChannel(config, deps)

    def status(self, config: AppriseSettings | None) -> str:
        if config is None:
            return "off (set APPRISE_URLS, or give people an apprise URL in people.toml, and PUBLIC_URL)"
        services = ", ".join(target.service for target in config.shared) or "none"
        names = ", ".join(dict.fromkeys(person.name for person, _ in config.people)) or "none"
        return f"{len(config.shared)} URL(s) for everyone ({services}); people with their own: {names}"

    def secrets(self, config: AppriseSettings) -> list[str]:
        return sorted({secret for target in config.targets for secret in target.secrets})

    def commands(self, app: typer.Typer, setup: typer.Typer) -> None:
        from approval_server.channels.apprise.setup import setup_apprise

        setup.command("apprise")(setup_apprise)

    def doctor(self, config: AppriseSettings | None, ok: Report, problem: Report, note: Report) -> None:
        if config is None:
            return
        for number, target in enumerate(config.shared, 1):
            ok(f"Apprise: {target.describe()} is a valid URL (APPRISE_URLS, URL {number})")
        for person, target in config.people:
            ok(f"Apprise: {person.name}'s {target.describe()} is a valid URL")
        note("Apprise: `approval-server setup apprise` sends a test notice to URLs you give it")


CHANNEL = Apprise()
