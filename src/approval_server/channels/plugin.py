"""A channel as a plug-in: everything the server needs to know about one way of reaching people, in one object.

Each channel's module (`channels/<name>.py`, or the package `channels/<name>/`) defines `CHANNEL`, a
`ChannelPlugin`: its settings (a section of the configuration, with its own messages), who it reaches (each person's
identity on it), the `Channel` that sends, its inbound routes (webhooks, callbacks), its commands (`setup <name>`) and
its `doctor` checks. `channel_plugins()` finds them by walking the package, so the app, the server, the CLI and the
broker name no channel, and adding one touches no other module.

A channel's module is imported to learn its settings, also by the commands an agent runs: it imports its client
libraries (Twilio, …) where it uses them, inside `build`, `routes` and `commands`, never at the top.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from approval_server.config import Settings, SettingsSection
from approval_server.people import People, Person

if TYPE_CHECKING:
    import typer
    from starlette.routing import BaseRoute

    from approval_server.channels.base import Channel
    from approval_server.models import Answer, ApprovalRequest
    from approval_server.store import Store
    from approval_server.web_auth import WebAuth

Report = Callable[[str], None]
SectionT = TypeVar("SectionT", bound=SettingsSection)
ConfigT = TypeVar("ConfigT")


class Decisions(Protocol):
    """What a channel's inbound routes may do with an answer (the broker, seen from below: routes receive it, the
    channel modules never import it)."""

    @property
    def store(self) -> Store: ...

    async def decide(self, request_id: str, answer: Answer) -> ApprovalRequest: ...

    async def channel_unreachable(self, request_id: str, channel: str, why: str) -> None: ...


@dataclass(frozen=True)
class ChannelDeps:
    """What a channel is built with: the store (to record what it sent), the people it reaches, and the signed
    per-person request links (the dashboard page that decides one request, once, as one person)."""

    store: Store
    auth: WebAuth
    people: People
    public_url: str | None

    def link(self, request_id: str, person: Person | str, channel: str | None = None) -> str:
        """`person`'s own link to decide `request_id` (see `web_auth.request_link_token`); a path when the server
        has no PUBLIC_URL. `channel`: a link that channel's own buttons will post, and only its buttons may record
        as answered on it (opened in a browser, any link is answered `via` "web link")."""
        name = person if isinstance(person, str) else person.name
        return f"{self.public_url or ''}/r/{self.auth.request_link_token(request_id, name, channel)}"


class ChannelPlugin(ABC, Generic[SectionT, ConfigT]):
    name: str
    """The channel's key in `people.toml`, and what a decision made on it is recorded `via`."""
    title: str
    section: type[SectionT]
    """Its settings: a pydantic-settings class read from the environment and `.env`, like the core settings."""
    prefixes: tuple[str, ...] = ()
    """The prefixes of its setting names, so that a misspelt one is told (see `setting_names`)."""

    def identity(self, value: object) -> str:
        """A person's identity on this channel, as written in `people.toml`, normalised; `ValueError` saying why
        it is not one. By default the channel reaches no one by name."""
        raise ValueError(f"{self.title} reaches no one by an identity of their own")

    def shown(self, identity: str) -> str:
        """A person's identity as `people list` prints it: as written, unless part of it is a secret (a password in
        a URL, a topic anyone who knows it may read)."""
        return identity

    def unnamed(self, section: SectionT) -> list[str]:
        """Identities the channel's own settings name (`APPROVAL_PHONE`): each is a person unless a named person
        has it."""
        return []

    @abstractmethod
    def configure(self, section: SectionT, settings: Settings, people: People) -> ConfigT | None:
        """The channel's configuration, or None when it is off; `ConfigError` when it is half set up."""

    @abstractmethod
    def build(self, config: ConfigT, deps: ChannelDeps) -> Channel:
        """The channel that sends, for a server about to start."""

    def routes(self, channel: Channel, decisions: Decisions) -> Sequence[BaseRoute]:
        """Its inbound routes: answers go to `decisions.decide`, recorded as the person who gave them."""
        return ()

    @abstractmethod
    def status(self, config: ConfigT | None) -> str:
        """Its line in the start-up banner, on or off."""

    def secrets(self, config: ConfigT) -> list[str]:
        """Values the log must never show."""
        return []

    def commands(self, app: typer.Typer, setup: typer.Typer) -> None:
        """Add its commands: `setup` is the `approval-server setup` group."""

    def doctor(self, config: ConfigT | None, ok: Report, problem: Report, note: Report) -> None:
        """`doctor`'s checks of this channel (None: it is off)."""


AnyPlugin = ChannelPlugin[Any, Any]


@functools.cache
def channel_plugins() -> dict[str, AnyPlugin]:
    """Every channel, by name: each module or package in `approval_server.channels` that defines `CHANNEL`."""
    import approval_server.channels as package

    found: dict[str, AnyPlugin] = {}
    for module in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        plugin = getattr(importlib.import_module(module.name), "CHANNEL", None)
        if isinstance(plugin, ChannelPlugin):
            found[plugin.name] = plugin
    return dict(sorted(found.items()))


def sections() -> list[type[SettingsSection]]:
    """Every channel's settings class."""
    return [plugin.section for plugin in channel_plugins().values()]
