"""The host a WebFetch URL names, read as the agent's runtime reads it.

The agent's runtime reads URLs by the WHATWG URL standard: Node, whose `URL` class is Ada, and Bun (Claude Code
2.1.328 is a Bun 1.4.4 executable) alike. `ada-url` binds Ada; tests/test_weburl.py checks it against Node's `URL`
(and Bun read the same corpus identically, checked by hand on 2026-12-06). Every decision that depends on a URL's
host (a grant's "same again", `WebFetch(domain:…)` rules, what a card says a grant covers) asks `web_host`, so the
host decided on is the host the agent fetches from. WHATWG parsing strips tabs and line breaks, reads `\\` as `/` in
http(s) URLs, decodes percent-encoded hosts, maps IDN hosts to punycode and reads `0x7f.1` as `127.0.0.1`; Python's
`urlsplit` does none of that. A URL that two parsers read differently is an attack on whichever reads it the other
way, so such a URL, or one that names a user before its host, gets no host here: only the exact call can be
remembered, and no domain rule allows it. A deny or ask rule may still match any host that any reading finds
(`WebHost.readings`): those may over-match, an allow never does.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import ada_url

# A host a domain rule or a grant can name: dot-separated labels of letters, digits, `-` and `_` (what WHATWG allows
# besides, such as `*` or `$`, names no real host), or an IPv6 address in brackets.
_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\]")
_SCHEMES = ("http:", "https:")


@dataclass(frozen=True)
class WebHost:
    """How a URL's host reads: the one host every reading agrees on, or why there is none."""

    host: str | None  # the host the agent fetches from, when it is beyond doubt; a final `.` removed
    reason: str  # why `host` is None, as a clause for an approver ("" when there is a host)
    fetched: str | None  # the host the agent's runtime would fetch from, doubtful or not
    readings: tuple[str, ...]  # every host a reading finds (the agent's runtime first), for deny and ask rules

    @property
    def explanation(self) -> str:
        """Why there is no host, and where the agent would fetch from, as a clause for an approver."""
        return f"{self.reason}; the agent would fetch from {self.fetched}" if self.fetched else self.reason


def web_host(url: object) -> WebHost:
    """Read `url` as the agent's runtime does, and say whether its host is beyond doubt."""
    if not isinstance(url, str):
        return WebHost(None, "the URL is missing", None, ())
    try:
        parsed = ada_url.parse_url(url)
    except ValueError:
        return WebHost(None, "the agent's runtime cannot read the URL", None, ())
    agent_host = _bare(parsed["hostname"])
    python_host = _python_host(url)
    readings = tuple(dict.fromkeys(host for host in (agent_host, python_host) if host))

    def doubt(reason: str) -> WebHost:
        return WebHost(None, reason, agent_host or None, readings)

    if parsed["protocol"] not in _SCHEMES:
        return WebHost(None, "the URL is not http or https", None, readings)
    if re.search(r"[\x00-\x1f\x7f]", url):
        return doubt("the URL holds a tab, line break or other control character, which the agent's runtime drops")
    if "\\" in re.split(r"[?#]", url, maxsplit=1)[0]:
        return doubt("the URL holds a \\, which the agent's runtime reads as /")
    if parsed["username"] or parsed["password"] or "@" in _python_netloc(url):
        return doubt("the URL names a user before its host")
    if python_host != agent_host:
        return doubt("other parsers read another host in the URL than the agent's runtime")
    if not _NAME.fullmatch(agent_host) or not _punycode_reads_back(agent_host):
        return doubt("the URL's host is not a domain name or an IP address")
    return WebHost(agent_host, "", agent_host, readings)


def host_named(name: str) -> str | None:
    """The host `name` (a host as written in a rule) is to the agent's runtime, or None when it is none:
    `0x7f.1` is `127.0.0.1`, `GitHub.com.` is `github.com`."""
    try:
        host = _bare(ada_url.parse_url(f"http://{name}/")["hostname"])
    except ValueError:
        return None
    return host if _NAME.fullmatch(host) else None


def _punycode_reads_back(host: str) -> bool:
    """False for a host with an `xn--` label that is not the punycode of a Unicode name (`xn--`, `xn--abc-`): the
    Ada in Node 20 and in Bun refuses such a host where ada-url's newer Ada accepts it."""
    if not any(label.startswith("xn--") for label in host.split(".")):
        return True
    try:
        unicode = ada_url.idna_to_unicode(host)
        ascii_again = ada_url.idna_to_ascii(unicode)
    except ValueError:
        return False
    return unicode != host and ascii_again is not None and ascii_again.decode("ascii") == host


def _bare(host: str) -> str:
    """`host` without the final `.` that names the same host in DNS (`example.com.` is `example.com`)."""
    return host.removesuffix(".")


def _python_netloc(url: str) -> str:
    try:
        return urlsplit(url).netloc
    except ValueError:
        return ""


def _python_host(url: str) -> str | None:
    """The host Python's `urlsplit` reads, written as WHATWG writes hosts (lower case, punycode, IPv6 in brackets),
    so that it differs from the agent's reading only where the two parsers disagree on which host it is."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return None
    if not host:
        return None
    if ":" in host:
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            return host
    if not host.isascii():
        # Python writes an IDN host as typed; its punycode (UTS #46, as WHATWG maps it) is the same host.
        try:
            encoded = ada_url.idna_to_ascii(host)
        except ValueError:  # a lone surrogate
            return host
        host = encoded.decode("ascii") if encoded else host
    return _bare(host)
