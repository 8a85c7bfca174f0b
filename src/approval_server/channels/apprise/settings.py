"""Apprise's settings (`APPRISE_*`) and the people's own URLs, made the channel's configuration, each URL loaded.

Who is sent what decides who may decide. A URL of APPRISE_URLS (a team's channel, a shared inbox) is sent the
request's dashboard page, where whoever reads it must sign in as themselves. A person's own URL (`apprise = "…"` in
`people.toml`) is sent their own signed link, which decides as them: so one URL may not be both, nor two people's,
or a notice would carry a link deciding as someone to whoever else reads that URL.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, SecretStr

from approval_server.channels.apprise.targets import WIKI, Target, load_targets
from approval_server.config import Settings, SettingsSection
from approval_server.errors import ConfigError
from approval_server.people import People, Person


class AppriseSection(SettingsSection):
    prefixes = ("APPRISE_",)

    apprise_urls: SecretStr | None = None
    """Apprise URLs (`slack://…`, `mailto://…`, `json://…`; see the Apprise wiki), separated by commas or spaces:
    each is sent every request, with the link to its page on the dashboard (which asks to sign in). A person's own
    URLs go in `people.toml` (`apprise = "…"`): they get their own link, which decides as them."""
    apprise_timeout: float = Field(default=10.0, gt=0, le=120)
    """Seconds a notice may take to be sent; a URL that has not taken it by then has failed."""
    apprise_outcomes: bool = True
    """Also send the URLs that were sent a request a short notice of how it ended."""


@dataclass(frozen=True)
class AppriseSettings:
    shared: list[Target]  # APPRISE_URLS
    people: list[tuple[Person, Target]]
    public_url: str
    timeout: float
    outcomes: bool

    @property
    def targets(self) -> list[Target]:
        return [*self.shared, *(target for _, target in self.people)]


def configure(section: AppriseSection, settings: Settings, people: People) -> AppriseSettings | None:
    """The channel's configuration: None when no URL is given; `ConfigError` for a URL that does not load (named by
    its place and service, never shown), no PUBLIC_URL, or one URL given to two people or to one and to everyone."""
    urls = section.apprise_urls.get_secret_value().strip() if section.apprise_urls else ""
    personal = people.on("apprise")
    if not urls and not personal:
        return None
    if settings.public_url is None:
        raise ConfigError("Apprise needs PUBLIC_URL: each notice carries a link to this server, where it is decided")
    try:
        shared = load_targets(urls, "APPRISE_URLS")
        own = [
            (person, f"{person.name}'s apprise URL {number}", target)
            for person, given in personal
            for number, target in enumerate(load_targets(given), 1)
        ]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if urls and not shared:
        raise ConfigError(f"APPRISE_URLS holds no Apprise URL (service://…; see {WIKI})")
    places = [(f"APPRISE_URLS, URL {number}", target) for number, target in enumerate(shared, 1)]
    places += [(place, target) for _, place, target in own]
    first: dict[str, str] = {}
    for place, target in places:
        if (before := first.setdefault(target.canonical, place)) != place:
            raise ConfigError(
                f"{before} and {place} are the same {target.service} URL: give each URL once (a person's URL is "
                "sent their own link, which decides as them, so it must be theirs alone)"
            )
    return AppriseSettings(
        shared=shared,
        people=[(person, target) for person, _, target in own],
        public_url=str(settings.public_url).rstrip("/"),
        timeout=section.apprise_timeout,
        outcomes=section.apprise_outcomes,
    )
