"""Apprise URLs, loaded and sent to: what may be shown of one, what the log must hide of it, and one send.

Secrets. An Apprise URL holds passwords and tokens. It is only ever shown as Apprise's privacy form
(`url(privacy=True)`) cut before its query, whose headers and parameters that form shows as given; the log hides each
whole URL, each value Apprise masks in it, and its headers' and parameters' values. Apprise's own messages while it
loads a URL, which quote a URL it cannot read whole, are kept out of the log.

A send is bounded: Apprise runs each service's blocking send in its own threads, off the event loop, and stops
waiting at the timeout given, which is then the URL's failure. Only a send Apprise saw succeed counts: a URL the user
marked `?optional=yes` is one Apprise reports as a success even when it failed, which here would reach nobody.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    import apprise

logger = logging.getLogger(__name__)

WIKI = "https://github.com/caronc/apprise/wiki"
SCHEMA = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True, eq=False)
class Target:
    """One Apprise URL, loaded: what may be shown of it, its service's name, what sends to it, and its secrets."""

    shown: str
    service: str
    notifier: apprise.Apprise
    secrets: frozenset[str]
    canonical: str  # the URL as Apprise writes it back, secrets and all: two spellings of one URL are one
    max_length: int  # the longest title and body it takes in one message
    max_lines: int  # 0: any number

    def fits(self, title: str, body: str) -> bool:
        lines_ok = self.max_lines <= 0 or body.count("\n") + 2 <= self.max_lines
        return len(title) + 2 + len(body) <= self.max_length and lines_ok

    def describe(self) -> str:
        return f"{self.service} ({self.shown})"


@contextlib.contextmanager
def _apprise_silenced() -> Iterator[None]:
    """Apprise logs a URL it cannot load as given, secrets and all: none of its lines is logged meanwhile (it logs
    through the one logger "apprise")."""
    log = logging.getLogger("apprise")
    was, log.disabled = log.disabled, True
    try:
        yield
    finally:
        log.disabled = was


def load_target(url: str, what: str) -> Target:
    """The Apprise URL `url`, loaded; a `ValueError` naming it as `what` (and by its service), never showing it."""
    import apprise

    match = SCHEMA.match(url)
    if match is None:
        raise ValueError(f"{what} is not an Apprise URL (service://…, such as slack://… or mailto://…; see {WIKI})")
    schema = match[1].lower()
    with _apprise_silenced():
        plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        manager = apprise.NotificationManager()
        if schema not in manager:
            raise ValueError(f"{what} ({schema}://…) is not a service Apprise knows (see {WIKI})")
        service = manager[schema]
        if not service.enabled:
            raise ValueError(
                f"{what} ({schema}://…) is Apprise's {service.service_name}, which is off here: it needs a Python "
                "package that is not installed"
            )
        raise ValueError(f"{what} ({schema}://…) is not a valid {service.service_name} URL: see {service.setup_url}")
    # Never cut: a notice that a service takes only in parts is sent in numbered parts (see `notice.fits`).
    plugin.overflow_mode = apprise.OverflowMode.SPLIT
    shown = plugin.url(privacy=True).split("?", 1)[0]
    fields = plugin.url_fields()
    secrets = set(_masked(fields, plugin.url_fields(privacy=True)))
    for key in ("headers", "params"):  # shown as given by the privacy form, and often an API key
        if isinstance(values := fields.get(key), dict):
            secrets.update(value for value in values.values() if isinstance(value, str))
    canonical = plugin.url()
    if secrets:  # then the whole URL too, as given and as Apprise writes it; a URL with nothing to hide is shown
        secrets |= {quote(secret, safe="") for secret in secrets} | {url, canonical}
    return Target(
        shown=shown,
        service=str(plugin.service_name),
        notifier=apprise.Apprise(plugin),
        secrets=frozenset(secret for secret in secrets if secret),
        canonical=canonical,
        max_length=plugin.body_maxlen,
        max_lines=plugin.body_max_line_count,
    )


def _masked(plain: object, masked: object) -> Iterator[str]:
    """The texts of `plain` (a URL's fields) that Apprise's privacy form of them (`masked`) hides."""
    if isinstance(plain, dict) and isinstance(masked, dict):
        for key, value in plain.items():
            yield from _masked(value, masked.get(key))
    elif isinstance(plain, list) and isinstance(masked, list):
        for value, hidden in zip(plain, masked, strict=False):
            yield from _masked(value, hidden)
    elif isinstance(plain, str) and plain != masked:
        yield plain


def split_urls(urls: str) -> list[str]:
    """The URLs of a list of them, split as Apprise splits one (commas, semicolons, spaces)."""
    from apprise.utils.parse import parse_urls

    return [str(url) for url in parse_urls(urls)]


def load_targets(urls: str, where: str = "") -> list[Target]:
    """Each URL of `urls`, loaded; a `ValueError` naming the wrong one by its place ("APPRISE_URLS, URL 2")."""
    prefix = f"{where}, " if where else ""
    return [load_target(url, f"{prefix}URL {number}") for number, url in enumerate(split_urls(urls), 1)]


async def send(target: Target, title: str, body: str, within: float, about: str) -> str | None:
    """Send one notice `about` a request; None when `target` took it `within` that many seconds, else why not (its
    service and Apprise's word for the outcome: failure, timeout)."""
    import apprise

    result = await target.notifier.async_notify(
        body, title=title, body_format=apprise.NotifyFormat.TEXT, timeout=within
    )
    attempts = [attempt for service in result for attempt in service.attempts]
    if any(attempts):  # an attempt is true when it succeeded; `result` is, too, for an optional URL that failed
        return None
    why = attempts[-1].status.name.lower() if attempts else "failure"
    logger.warning("Apprise: %s did not take the notice about %s (%s)", target.describe(), about, why)
    return f"{target.service}: {why}"
