"""ntfy's settings: the server (`NTFY_URL`), its access token (`NTFY_TOKEN`) and the priority of a request's push.
Who is reached is each person's topic in the people file (`ntfy = "alice-approvals-7f3k"`), checked as ntfy checks
a topic's name. Everything here is read by the commands an agent runs too, so it imports no HTTP client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import Field, HttpUrl, SecretStr, field_validator

from approval_server.config import Settings, SettingsSection
from approval_server.errors import ConfigError
from approval_server.people import People

NAME = "ntfy"
DEFAULT_URL = "https://ntfy.sh"
# ntfy's own rule for a topic's name (its `topicRegex`), and the names it keeps for its own pages.
TOPIC = re.compile(r"[-_A-Za-z0-9]{1,64}")
RESERVED = frozenset({"docs", "static", "file", "app", "metrics", "account", "settings", "signup", "login", "v1"})
# An access token as ntfy makes them (`tk_` and letters or digits): it goes in a header, so nothing else is taken.
ACCESS_TOKEN = re.compile(r"tk_[A-Za-z0-9]{1,64}")
EXAMPLE_TOPIC = "alice-approvals-7f3k"


def topic(value: object) -> str:
    """A person's ntfy topic, as ntfy accepts one; `ValueError` saying why not."""
    if not isinstance(value, str):
        raise ValueError(f'an ntfy topic is a string, such as "{EXAMPLE_TOPIC}"')
    name = value.strip()
    if not TOPIC.fullmatch(name):
        raise ValueError(f"{name[:80]!r} is not an ntfy topic: 1 to 64 letters, digits, - or _")
    if name in RESERVED:
        raise ValueError(f"{name!r} is a name ntfy keeps for its own pages: choose another topic")
    return name


@dataclass(frozen=True)
class NtfyConfig:
    url: str  # the server, without a trailing slash
    token: str | None
    priority: int
    timeout: float
    public_url: str
    topics: tuple[tuple[str, str], ...]  # (person's name, their topic), in the people file's order

    @property
    def public_server(self) -> bool:
        """Whether pushes go through the public server, where anyone who knows a topic reads it."""
        return self.url == DEFAULT_URL


class NtfySection(SettingsSection):
    """The ntfy channel's settings."""

    prefixes = ("NTFY_",)

    ntfy_url: HttpUrl = Field(default=DEFAULT_URL, validate_default=True)
    """The ntfy server the requests are pushed through: the public one, or your own. ntfy is on when a person in the
    people file has an `ntfy` topic."""
    ntfy_token: SecretStr | None = None
    """An access token (`tk_…`) of an ntfy account that may publish to the people's topics (for protected topics);
    without it, pushes are anonymous."""
    ntfy_priority: int = Field(default=4, ge=1, le=5)
    """The priority of a request's push, 1 (min) to 5 (max); 4, high, sounds and pops up. The push that says how a
    request ended is low (2)."""
    ntfy_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    """The longest one call to ntfy may take, all included; past it, that push has failed, and when every person's
    has (and no other channel reaches anyone), the request is denied at once."""

    @field_validator("ntfy_token", mode="before")
    @classmethod
    def _access_token(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return None
            if not ACCESS_TOKEN.fullmatch(value.strip()):
                raise ValueError("is not an ntfy access token: tk_ and letters or digits (ntfy token add, or Account)")
            return value.strip()
        return value

    @field_validator("ntfy_url")
    @classmethod
    def _no_query(cls, value: HttpUrl) -> HttpUrl:
        if value.query or value.fragment:
            raise ValueError(
                "must be the ntfy server's address alone, with no ?query or #fragment: such as https://ntfy.example.com"
            )
        return value


def configure(section: NtfySection, settings: Settings, people: People) -> NtfyConfig | None:
    """ntfy's configuration, or None when no person has a topic. Raises `ConfigError` when it is half set up."""
    topics = tuple((person.name, identity) for person, identity in people.on(NAME))
    if not topics:
        if section.ntfy_token is not None:
            raise ConfigError(
                'NTFY_TOKEN is set, but no person has an ntfy topic: add `ntfy = "<topic>"` to a person in the '
                "people file (see docs/channels/ntfy.md), or remove NTFY_TOKEN."
            )
        return None
    if settings.public_url is None:
        raise ConfigError(
            "ntfy needs PUBLIC_URL: the Approve and Deny buttons of a push, and the request page it opens, are "
            "links to this server that the phone must reach. Set PUBLIC_URL, or remove the people's ntfy topics."
        )
    return NtfyConfig(
        url=str(section.ntfy_url).rstrip("/"),
        token=section.ntfy_token.get_secret_value() if section.ntfy_token else None,
        priority=section.ntfy_priority,
        timeout=section.ntfy_timeout_seconds,
        public_url=str(settings.public_url).rstrip("/"),
        topics=topics,
    )
