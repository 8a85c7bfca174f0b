"""ntfy, as one channel: a push per request to each person's topic, on the public server or your own, with Approve /
Deny / Allow for session buttons that post to the person's own signed link; `setup ntfy` and its `doctor` checks.

Its modules: `settings` (NTFY_* and a person's topic), `publisher` (ntfy's API over httpx), `messages` (what the
pushes say), `channel` (the sends), `answers` (the buttons' route) and `setup` (the set-up command and the checks).
Only `settings` is imported until the channel is used: the commands an agent runs never load httpx for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from approval_server.channels.ntfy.settings import NAME, NtfyConfig, NtfySection, configure, topic
from approval_server.channels.plugin import ChannelDeps, ChannelPlugin, Decisions, Report
from approval_server.config import Settings
from approval_server.people import People

if TYPE_CHECKING:
    import typer
    from starlette.routing import BaseRoute

    from approval_server.channels.base import Channel


class Ntfy(ChannelPlugin[NtfySection, NtfyConfig]):
    name = NAME
    title = "ntfy"
    section = NtfySection

    def identity(self, value: object) -> str:
        return topic(value)

    def shown(self, identity: str) -> str:
        """A topic is its own password (anyone who knows it may subscribe): only its first characters."""
        return f"topic {identity[:4]}…"

    def configure(self, section: NtfySection, settings: Settings, people: People) -> NtfyConfig | None:
        return configure(section, settings, people)

    def build(self, config: NtfyConfig, deps: ChannelDeps) -> Channel:
        from approval_server.channels.ntfy.channel import NtfyChannel

        return NtfyChannel(config, deps)

    def routes(self, channel: Channel, decisions: Decisions) -> Sequence[BaseRoute]:
        from approval_server.channels.ntfy.answers import NtfyAnswers
        from approval_server.channels.ntfy.channel import NtfyChannel

        assert isinstance(channel, NtfyChannel)
        parts = urlsplit(channel.config.url)
        origin = f"{parts.scheme}://{parts.netloc}"
        return NtfyAnswers(channel.deps.auth, channel.deps.people, decisions, origin).routes()

    def status(self, config: NtfyConfig | None) -> str:
        if config is None:
            return "off (give a person an ntfy topic in the people file to turn it on; see `setup ntfy`)"
        token = "with an access token" if config.token else "anonymous (no NTFY_TOKEN)"
        return f"{len(config.topics)} person(s) on {config.url}, {token}"

    def secrets(self, config: NtfyConfig) -> list[str]:
        # On the public server a topic is as good as a password: whoever knows it reads the pushes.
        return [value for value in (config.token, *(each for _, each in config.topics)) if value]

    def commands(self, app: typer.Typer, setup: typer.Typer) -> None:
        from approval_server.channels.ntfy.setup import setup_ntfy

        setup.command("ntfy")(setup_ntfy)

    def doctor(self, config: NtfyConfig | None, ok: Report, problem: Report, note: Report) -> None:
        if config is None:
            return
        from approval_server.channels.ntfy.setup import report

        report(config, ok, problem, note)


CHANNEL = Ntfy()
