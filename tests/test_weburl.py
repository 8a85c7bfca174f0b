"""A URL's host as the agent's runtime reads it: every URL of a corpus of tricky ones is read by Node's own `URL`
(one `node` process for the whole corpus) and by ada, and `web_host` gives a host only where it is the one the
agent's runtime fetches from and no other parser reads another."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from typing import Any

import ada_url
import pytest

from approval_server.weburl import web_host

# (URL, the host `web_host` vouches for, or None when it must vouch for none)
CORPUS: list[tuple[str, str | None]] = [
    # plain hosts, as WHATWG writes them
    ("https://github.com/", "github.com"),
    ("http://github.com", "github.com"),
    ("HTTPS://GitHub.COM/x", "github.com"),
    ("https://github.com./", "github.com"),
    ("https://github.com:443/", "github.com"),
    ("http://github.com:80/", "github.com"),
    ("https://github.com:/", "github.com"),
    ("https://github.com:8443/a?b#c", "github.com"),
    ("https://docs.python.org/3/library/urllib.parse.html", "docs.python.org"),
    ("https://a_b.example.com/", "a_b.example.com"),
    ("https://github.com.evil.example/", "github.com.evil.example"),
    ("https://github.com/search?q=a\\b", "github.com"),  # a backslash in the query is a backslash
    ("https://github.com/#x\\y", "github.com"),
    ("https://github.com/@evil.example", "github.com"),
    ("https://github.com/search?q=evil.example@x", "github.com"),
    # what ends the host ends it for every parser: the host is the one before it
    ("https://evil.example#@github.com/", "evil.example"),
    ("https://evil.example?@github.com/", "evil.example"),
    ("https://evil.example/@github.com/", "evil.example"),
    # IDN: the host is its punycode (UTS #46 mapping), which is what the agent resolves
    ("https://例え.jp/", "xn--r8jz45g.jp"),
    ("https://bücher.de/", "xn--bcher-kva.de"),
    ("https://exаmple.com/", "xn--exmple-4nf.com"),  # Cyrillic а: shown as punycode, never as example.com
    ("https://ｇｉｔｈｕｂ.com/", "github.com"),  # fullwidth letters map to ASCII
    ("https://github。com/", "github.com"),  # an ideographic full stop is a dot
    ("https://ex\u00adample.com/", "example.com"),  # a soft hyphen is dropped
    ("https://xn--r8jz45g.jp/", "xn--r8jz45g.jp"),
    ("https://XN--BCHER-KVA.de/", "xn--bcher-kva.de"),
    ("https://xn--.com/", None),  # no punycode in it: Node's Ada refuses it, newer ones do not
    ("https://xn--zz.com/", None),
    ("https://xn--abc-.com/", None),
    # IP addresses
    ("https://127.0.0.1/", "127.0.0.1"),
    ("https://127.0.0.1./", "127.0.0.1"),
    ("https://[::1]/", "[::1]"),
    ("https://[0:0::1]:8080/", "[::1]"),
    ("https://[::ffff:127.0.0.1]/", "[::ffff:7f00:1]"),
    # backslashes: `\` is `/` in an http(s) URL for the agent, not for Python
    ("https://evil.example\\@github.com/", None),
    ("https://evil.example\\\\@github.com/", None),
    ("https://evil.example\\github.com/", None),
    ("https://github.com\\.evil.example/", None),
    ("https:\\\\evil.example/", None),
    ("https:/\\evil.example/", None),
    ("https://github.com/a\\b", None),
    # tabs and line breaks vanish for the agent
    ("https://git\thub.com/", None),
    ("https://github.com\n.evil.example/", None),
    ("https://evil.example\r\n@github.com/", None),
    ("https://github.com/\t", None),
    # userinfo: Claude Code itself refuses it; never a host-wide grant
    ("https://user@github.com/", None),
    ("https://user:pass@github.com/", None),
    ("https://github.com@evil.example/", None),
    ("https://github.com:443@evil.example/", None),
    ("https://@github.com/", None),
    ("https://:@github.com/", None),
    ("https://evil.example／@github.com/", None),  # fullwidth solidus: part of the user name
    ("https://evil.example%2f@github.com/", None),
    ("https://github.com%2f@evil.example/", None),
    # percent-encoded hosts: decoded by the agent, not by Python
    ("https://git%68ub.com/", None),
    ("https://%67ithub.com/", None),
    ("https://github%2ecom/", None),
    ("https://github.com%40evil.example/", None),
    # IPv4 in other number forms: the agent reads 127.0.0.1
    ("https://0x7f.1/", None),
    ("https://2130706433/", None),
    ("https://0177.0.0.1/", None),
    ("https://127.1/", None),
    ("https://0x7f000001./", None),
    ("https://1.2.3.4.5/", None),
    ("https://foo.0x10/", None),
    # no slashes, or too many: the agent still finds a host; Python does not
    ("https:github.com", None),
    ("https:/github.com", None),
    ("https:///github.com", None),
    ("https:////github.com/", None),
    # spaces and controls around the URL are stripped by the agent
    ("https://github.com ", None),
    ("\x00https://github.com/", None),
    (" https://github.com/", "github.com"),  # both parsers strip a leading space
    ("https://github.com\x00/", None),
    ("https://\ud800.com/", None),
    # hosts no domain rule or grant should name
    ("https://*.github.com/", None),
    ("https://github.com../", None),
    ("https://[fe80::1%25eth0]/", None),
    ("https://[::1/", None),
    ("https://github.com:99999/", None),
    ("https://github.com:-1/", None),
    # not http(s)
    ("ftp://github.com/", None),
    ("file:///etc/passwd", None),
    ("javascript:alert(1)", None),
    ("data:text/html,hi", None),
    ("github.com", None),
    ("//github.com/", None),
    ("", None),
]

URLS = [url for url, _ in CORPUS]
# Where Node 20's Ada (2.9) and ada-url's (3.x) differ: the older refuses an `xn--` label that is no punycode.
NODE_REFUSES = {"https://xn--.com/", "https://xn--zz.com/"}

# Node's `URL`, as the agent's runtime reads a URL: null where it throws.
_NODE_SCRIPT = """
const urls = JSON.parse(require("fs").readFileSync(0, "utf8"));
const read = (u) => {
  try {
    const x = new URL(u);
    return {href: x.href, protocol: x.protocol, hostname: x.hostname, username: x.username, password: x.password};
  } catch {
    return null;
  }
};
process.stdout.write(JSON.stringify(urls.map(read)));
"""


# Pieces of URLs that parsers are known to read differently, for random URLs made of them.
_PIECES = [
    *"ab.:/\\@?#%[]09xX\t\n \u00ad\uff0e\u3002ｇ例\x00\x7f-_*&'\"ßς\u200d\u0301",
    *("https://", "http://", "%2e", "%40", "0x", "xn--", "%61", "xn--r8jz45g", "%C3%A9", "[::", "]"),
]


def random_urls(count: int) -> list[str]:
    """`count` different URLs made of `_PIECES`, the same ones every run."""
    chooser = random.Random(13)
    made: dict[str, None] = {}
    while len(made) < count:
        pieces = chooser.choices(_PIECES, k=chooser.randint(0, 14))
        made["https://" * (chooser.random() < 0.7) + "".join(pieces)] = None
    return list(made)


RANDOM_URLS = random_urls(5000)


def node_read(urls: list[str]) -> dict[str, dict[str, str] | None]:
    """How Node's `URL` reads each of `urls`, in one `node` process."""
    node = shutil.which("node")
    assert node, "node is needed to check URLs against the agent's runtime (the README's test command installs it)"
    done = subprocess.run(
        [node, "-e", _NODE_SCRIPT], input=json.dumps(urls), capture_output=True, text=True, check=True, timeout=60
    )
    readings: list[dict[str, str] | None] = json.loads(done.stdout)
    return dict(zip(urls, readings, strict=True))


@pytest.fixture(scope="module")
def node_readings() -> dict[str, dict[str, str] | None]:
    return node_read(URLS)


def ada_reading(url: str) -> dict[str, Any] | None:
    try:
        parsed = ada_url.parse_url(url)
    except ValueError:
        return None
    return {
        "href": parsed["href"],
        "protocol": parsed["protocol"],
        "hostname": parsed["hostname"],
        "username": parsed["username"],
        "password": parsed["password"],
    }


def test_the_corpus_is_large_and_has_no_repeats() -> None:
    assert len(set(URLS)) == len(URLS) >= 60


@pytest.mark.parametrize("url", URLS)
def test_ada_reads_every_url_as_node_does(url: str, node_readings: dict[str, dict[str, str] | None]) -> None:
    if url in NODE_REFUSES:
        assert node_readings[url] is None
        assert web_host(url).host is None
    else:
        assert ada_reading(url) == node_readings[url]


@pytest.mark.parametrize(("url", "host"), CORPUS)
def test_a_host_only_where_it_is_the_one_the_agent_fetches_from(
    url: str, host: str | None, node_readings: dict[str, dict[str, str] | None]
) -> None:
    read = web_host(url)
    node = node_readings[url]
    assert read.host == host, read.reason
    assert (read.reason == "") == (host is not None)
    if host is not None:
        assert node is not None
        assert node["hostname"].removesuffix(".") == host
        assert (node["username"], node["password"]) == ("", "")
    if node is not None and node["protocol"] in ("http:", "https:"):
        # every reading starts with the agent's: a deny rule for the host it fetches from always matches
        assert read.readings[0] == node["hostname"].removesuffix(".")
        assert read.fetched == read.readings[0]


def test_the_reason_says_where_the_agent_would_fetch_from() -> None:
    read = web_host("https://evil.example\\@github.com/")
    assert read.host is None
    assert read.readings == ("evil.example", "github.com")
    assert read.fetched == "evil.example"
    assert read.explanation == (
        "the URL holds a \\, which the agent's runtime reads as /; the agent would fetch from evil.example"
    )


@pytest.mark.parametrize("url", [None, 42, ["https://github.com/"], {"href": "https://github.com/"}])
def test_anything_but_a_string_has_no_host(url: object) -> None:
    assert web_host(url).host is None
    assert web_host(url).readings == ()


def test_every_host_vouched_for_in_random_urls_is_the_one_node_fetches_from() -> None:
    read_by_node = node_read(RANDOM_URLS)
    vouched = 0
    for url in RANDOM_URLS:
        host = web_host(url).host
        if host is not None:
            node = read_by_node[url]
            assert node is not None, url
            assert (node["hostname"].removesuffix("."), node["username"], node["password"]) == (host, "", ""), url
            vouched += 1
    assert vouched > 100  # the pieces make enough plain URLs for this to test something
