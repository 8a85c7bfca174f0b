"""The ntfy channel against a local fake ntfy: what the phone shows, whose buttons count, and what fails closed. The
server runs as a subprocess; the fake's app presses the buttons over real HTTP."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from approval_server.web_auth import WebAuth
from tests.dashboard_support import DASHBOARD_TOKEN, TOOL, answer, ask, page_csrf, signed_in, still_pending
from tests.fake_ntfy import FakeNtfy, Published, new_token
from tests.support import ServerProcess, wait_for_status

PUBLIC_URL = "https://approvals.example.com"
ALICE_TOPIC = "alice-approvals-7f3k9q2m4x8w"
BOB_TOPIC = "bob-approvals-h2v8c4n6z1qp"
BOTH = {"alice": ALICE_TOPIC, "bob": BOB_TOPIC}
Start = Callable[..., ServerProcess]


def people_file(path: Path, people: dict[str, str]) -> Path:
    path.write_text("".join(f'[[person]]\nname = "{name}"\nntfy = "{topic}"\n\n' for name, topic in people.items()))
    return path


@pytest.fixture
def start_ntfy(start_server: Start, ntfy: FakeNtfy, tmp_path: Path) -> Start:
    """Start the server with these people on ntfy (the fake), its buttons routed to the server."""

    def start(people: dict[str, str] | None = None, **extra: str) -> ServerProcess:
        env = {
            "PEOPLE_FILE": str(people_file(tmp_path / "people.toml", BOTH if people is None else people)),
            "NTFY_URL": ntfy.base_url,
            "PUBLIC_URL": PUBLIC_URL,
            "APPROVAL_DASHBOARD_TOKEN": DASHBOARD_TOKEN,
            **extra,
        }
        server = start_server(**env)
        ntfy.route(PUBLIC_URL, server.url)
        return server

    return start


async def pushes(fake: FakeNtfy, topic: str, count: int = 1, within: float = 10) -> list[Published]:
    """The messages published to `topic`, once there are `count` of them."""
    for _ in range(int(within / 0.02)):
        messages = fake.on(topic)
        if len(messages) >= count:
            return messages
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} push(es) to the topic not published: {[m.json for m in fake.published]}")


async def test_approve_from_the_notification_allows_as_that_person_and_replaces_every_push(
    start_ntfy: Start, ntfy: FakeNtfy
) -> None:
    server = start_ntfy()
    async with server.mcp() as mcp, server.api() as api:
        call, pending = await ask(mcp, api, {"command": "ls -la /etc", "description": "look"})
        (to_alice,) = await pushes(ntfy, ALICE_TOPIC)
        (to_bob,) = await pushes(ntfy, BOB_TOPIC)
        assert to_alice.title == f"Approval request {pending['id']}"
        assert "```ls -la /etc```" in to_alice.message
        assert "```look```" in to_alice.message
        assert "Expires in 5 minutes" in to_alice.message
        assert to_alice.json["priority"] == 4
        assert to_alice.sequence_id == f"approval-{pending['id']}"
        assert [a.label for a in to_alice.actions] == ["Approve", "Deny", "Allow for session"]
        approve = to_alice.action("Approve")
        assert (approve.method, approve.body, approve.clear) == ("POST", "approve", True)
        assert approve.url.startswith(f"{PUBLIC_URL}/ntfy/answer/{pending['id']}/r/")
        assert to_alice.json["click"] == f"{PUBLIC_URL}/r/{approve.url.rsplit('/r/', 1)[1]}"
        assert to_bob.action("Approve").url != approve.url  # each person's own link
        pressed = await ntfy.press(to_alice, "Approve")
        assert pressed.status_code == 200, pressed.text
        assert pressed.cleared
        assert (await answer(call))["behavior"] == "allow"
        row = await wait_for_status(api, pending["id"], "allowed")
        await pushes(ntfy, ALICE_TOPIC, 2)
        await pushes(ntfy, BOB_TOPIC, 2)
    assert (row["decided_by"], row["decided_via"]) == ("alice", "ntfy")
    for topic in (ALICE_TOPIC, BOB_TOPIC):
        ended = ntfy.on(topic)[-1]
        assert ended.title == f"Request {pending['id']} approved"
        assert ended.message == "Approved by alice on ntfy."
        assert (ended.actions, ended.json["priority"], ended.sequence_id) == ([], 2, f"approval-{pending['id']}")
    # Bob's push is replaced by the outcome; alice's was cleared by her tap (the outcome may come before or after).
    assert [m.id for m in ntfy.shown(BOB_TOPIC)] == [ntfy.on(BOB_TOPIC)[-1].id]
    assert to_alice.id not in [m.id for m in ntfy.shown(ALICE_TOPIC)]
    log = server.log()
    assert approve.url.rsplit("/r/", 1)[1] not in log
    assert ALICE_TOPIC not in log
    assert BOB_TOPIC not in log


async def test_deny_and_allow_for_session_from_the_notification(start_ntfy: Start, ntfy: FakeNtfy) -> None:
    server = start_ntfy()
    async with server.mcp() as mcp, server.api() as api:
        call, pending = await ask(mcp, api, {"command": "rm -rf build"})
        (to_bob,) = await pushes(ntfy, BOB_TOPIC)
        assert (await ntfy.press(to_bob, "Deny")).status_code == 200
        denied = await answer(call)
        assert denied["behavior"] == "deny"
        assert "bob" in denied["message"]
        call, pending = await ask(mcp, api, {"command": "make test"})
        to_alice = (await pushes(ntfy, ALICE_TOPIC, 3))[-1]
        assert (await ntfy.press(to_alice, "Allow for session")).status_code == 200
        assert (await answer(call))["behavior"] == "allow"
        row = await wait_for_status(api, pending["id"], "allowed")
    assert (row["decided_by"], row["remembered"]) == ("alice", "session")


async def test_forged_misdirected_reused_and_late_buttons_change_nothing(start_ntfy: Start, ntfy: FakeNtfy) -> None:
    server = start_ntfy()
    async with server.mcp() as mcp, server.api() as api, httpx.AsyncClient(timeout=15) as http:
        call_a, a = await ask(mcp, api, {"command": "echo a"})
        call_b, b = await ask(mcp, api, {"command": "echo b"})
        alice_a, alice_b = await pushes(ntfy, ALICE_TOPIC, 2)
        url_a = ntfy.local_url(alice_a.action("Approve").url)
        token_a = url_a.rsplit("/r/", 1)[1]
        forged = url_a[:-3] + ("abc" if not url_a.endswith("abc") else "xyz")
        responses = {
            "forged": await http.post(forged, content=b"approve"),
            "a's link on b": await http.post(url_a.replace(f"/{a['id']}/", f"/{b['id']}/"), content=b"approve"),
            "bad choice": await http.post(url_a, content=b"yes please"),
            "no such request": await http.post(url_a.replace(f"/{a['id']}/", "/zzzzzzzz/"), content=b"approve"),
            "a body past 64 bytes": await http.post(url_a, content=b"approve" + b" " * 100),
        }
        assert {name: r.status_code for name, r in responses.items()} == {
            "forged": 403,
            "a's link on b": 403,
            "bad choice": 400,
            "no such request": 403,
            "a body past 64 bytes": 413,
        }
        assert (await http.get(url_a)).status_code in (404, 405)  # only a POST answers
        for row in (a, b):
            assert (await api.get(f"/api/requests/{row['id']}")).json()["answers"] == []
        first, second = await asyncio.gather(ntfy.press(alice_a, "Deny"), ntfy.press(alice_a, "Approve"))
        assert sorted([first.status_code, second.status_code]) == [200, 410]
        assert (await http.post(url_a, content=b"approve")).status_code == 410  # used, and the request is closed
        await api.post(f"/api/requests/{b['id']}/decision", json={"decision": "deny", "message": "no"})
        late = await ntfy.press(alice_b, "Approve")
        assert late.status_code == 410
        assert "already denied" in late.text
        await asyncio.gather(call_a, call_b)
        row_a = (await api.get(f"/api/requests/{a['id']}")).json()
        row_b = (await api.get(f"/api/requests/{b['id']}")).json()
    assert [answer["outcome"] for answer in row_a["answers"]] == ["applied"]
    assert (row_b["status"], [x["outcome"] for x in row_b["answers"]]) == ("denied", ["applied"])
    assert token_a not in server.log()


async def test_another_channels_link_posted_as_a_button_is_not_recorded_as_answered_on_ntfy(
    start_ntfy: Start, ntfy: FakeNtfy
) -> None:
    """Alice's link from another channel's message (or made for the dashboard page) decides only on its page, as a web
    link: posted to the ntfy route, it would record an answer on ntfy that she never gave there."""
    server = start_ntfy()
    auth = WebAuth(DASHBOARD_TOKEN)
    async with server.mcp() as mcp, server.api() as api, httpx.AsyncClient(timeout=15) as http:
        call, pending = await ask(mcp, api, {"command": "echo x"})
        await pushes(ntfy, ALICE_TOPIC)
        for channel in (None, "telegram"):
            token = auth.request_link_token(pending["id"], "alice", channel)
            posted = await http.post(f"{server.url}/ntfy/answer/{pending['id']}/r/{token}", content=b"approve")
            assert posted.status_code == 403
            assert "not made for an ntfy button" in posted.text
        await still_pending(api, pending["id"], call)


async def test_a_button_of_a_person_no_longer_on_ntfy_is_refused(
    start_ntfy: Start, ntfy: FakeNtfy, tmp_path: Path
) -> None:
    server = start_ntfy()
    async with server.mcp() as mcp, server.api() as api:
        call, pending = await ask(mcp, api, {"command": "echo x"})
        (to_alice,) = await pushes(ntfy, ALICE_TOPIC)
        call.cancel()
    server.stop()
    server = start_ntfy({"bob": BOB_TOPIC})
    pressed = await ntfy.press(to_alice, "Deny")
    assert pressed.status_code == 403
    assert "no longer answers on ntfy" in pressed.text
    async with server.api() as api:
        row = (await api.get(f"/api/requests/{pending['id']}")).json()
    assert [each["channel"] for each in row["answers"]] == ["mcp"]  # the agent went away; nothing from ntfy


async def test_a_request_too_long_for_a_notification_is_described_and_approved_only_on_its_page(
    start_ntfy: Start, ntfy: FakeNtfy
) -> None:
    server = start_ntfy({"alice": ALICE_TOPIC})
    content = "x = 1\n" * 1000
    async with server.mcp() as mcp, server.api() as api, httpx.AsyncClient(timeout=15) as http:
        call, pending = await ask(mcp, api, {"file_path": "/tmp/a.py", "content": content}, tool_name="Write")
        (push,) = await pushes(ntfy, ALICE_TOPIC)
        assert len(push.message.encode()) <= 4096
        assert "x = 1" not in push.message
        assert "too long for a notification" in push.message
        assert [a.label for a in push.actions] == ["Deny"]
        refused = await http.post(ntfy.local_url(push.action("Deny").url), content=b"approve")
        assert refused.status_code == 403
        assert (await api.get(f"/api/requests/{pending['id']}")).json()["status"] == "pending"
        assert (await ntfy.press(push, "Deny")).status_code == 200
        assert (await answer(call))["behavior"] == "deny"


async def test_a_token_ntfy_refuses_is_a_failed_delivery_and_denies_at_once(start_ntfy: Start, ntfy: FakeNtfy) -> None:
    ntfy.deny_anonymous("*")
    wrong = new_token()
    server = start_ntfy(NTFY_TOKEN=wrong)
    async with server.mcp() as mcp:  # denied before it is ever seen pending: no `ask`, which waits for that
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "echo x"}}))
        denied = await answer(call, within=10)
    assert denied["behavior"] == "deny"
    assert "No approval channel could reach anyone" in denied["message"]
    assert "alice: ntfy refused it: HTTP 401" in denied["message"]
    assert [r.status_code for r in ntfy.requests] == [401, 401]
    assert ntfy.published == []
    log = server.log()
    assert "HTTP 401" in log
    for secret in (wrong, ALICE_TOPIC, BOB_TOPIC):
        assert secret not in log


async def test_an_ntfy_that_never_answers_is_a_failed_delivery_within_the_timeout(start_ntfy: Start) -> None:
    # A port that takes the connection (the kernel's backlog) and never answers a byte.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        server = start_ntfy(NTFY_URL=f"http://127.0.0.1:{silent.getsockname()[1]}", NTFY_TIMEOUT_SECONDS="1")
        async with server.mcp() as mcp:
            started = time.monotonic()
            call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "id"}}))
            denied = await answer(call, within=10)
    assert denied["behavior"] == "deny"
    assert "alice: no answer from ntfy within 1 s" in denied["message"]
    assert time.monotonic() - started < 5


async def test_a_protected_topic_with_a_good_token(start_ntfy: Start, ntfy: FakeNtfy) -> None:
    ntfy.deny_anonymous("*")
    token = ntfy.add_token("approvals", write=("alice-*", "bob-*"))
    server = start_ntfy(NTFY_TOKEN=token)
    async with server.mcp() as mcp, server.api() as api:
        call, _ = await ask(mcp, api, {"command": "echo x"})
        (push,) = await pushes(ntfy, ALICE_TOPIC)
        assert push.authorization == f"Bearer {token}"
        assert (await ntfy.press(push, "Approve")).status_code == 200
        assert (await answer(call))["behavior"] == "allow"
    assert token not in server.log()


async def test_decided_on_the_dashboard_every_push_is_replaced(start_ntfy: Start, ntfy: FakeNtfy) -> None:
    server = start_ntfy()
    async with server.mcp() as mcp, server.api() as api, signed_in(server) as http:
        call, pending = await ask(mcp, api, {"command": "echo x"})
        await pushes(ntfy, ALICE_TOPIC)
        await pushes(ntfy, BOB_TOPIC)
        csrf = await page_csrf(http, f"/requests/{pending['id']}")
        form = {"csrf": csrf, "decision": "deny", "message": "not now"}
        assert (await http.post(f"/requests/{pending['id']}/decision", data=form)).status_code == 303
        assert (await answer(call))["behavior"] == "deny"
        await pushes(ntfy, ALICE_TOPIC, 2)
        await pushes(ntfy, BOB_TOPIC, 2)
    for topic in (ALICE_TOPIC, BOB_TOPIC):
        (shown,) = ntfy.shown(topic)
        assert shown.title == f"Request {pending['id']} denied"
        assert "on dashboard" in shown.message
        assert "not now" in shown.message
        assert shown.actions == []


async def test_an_expired_request_replaces_the_push_and_its_buttons_change_nothing(
    start_ntfy: Start, ntfy: FakeNtfy
) -> None:
    server = start_ntfy({"alice": ALICE_TOPIC}, APPROVAL_TIMEOUT_SECONDS="2")
    async with server.mcp() as mcp, server.api() as api:
        call, pending = await ask(mcp, api, {"command": "echo x"})
        (push,) = await pushes(ntfy, ALICE_TOPIC)
        assert "Expires in 2 seconds" in push.message
        assert (await answer(call))["behavior"] == "deny"
        (ended,) = [m for m in await pushes(ntfy, ALICE_TOPIC, 2) if m.id != push.id]
        late = await ntfy.press(push, "Approve")
        row = (await api.get(f"/api/requests/{pending['id']}")).json()
    assert (ended.title, ended.message) == (
        f"Request {pending['id']} expired",
        "Expired with no answer, so it was denied.",
    )
    assert [m.id for m in ntfy.shown(ALICE_TOPIC)] == [ended.id]
    assert late.status_code == 410
    assert row["status"] == "expired"
    assert [each["channel"] for each in row["answers"]] == ["timeout"]  # nothing from ntfy


async def test_an_older_ntfy_shows_the_outcome_as_a_second_notification(start_server: Start, tmp_path: Path) -> None:
    with FakeNtfy(sequence_ids=False) as old:
        env = {
            "PEOPLE_FILE": str(people_file(tmp_path / "people.toml", {"alice": ALICE_TOPIC})),
            "NTFY_URL": old.base_url,
            "PUBLIC_URL": PUBLIC_URL,
        }
        server = start_server(**env)
        old.route(PUBLIC_URL, server.url)
        async with server.mcp() as mcp, server.api() as api:
            call, pending = await ask(mcp, api, {"command": "echo x"})
            (push,) = await pushes(old, ALICE_TOPIC)
            assert (await old.press(push, "Approve")).status_code == 200
            await answer(call)
            await pushes(old, ALICE_TOPIC, 2)
        shown = old.shown(ALICE_TOPIC)
    # The asking push was cleared by its button (ntfy's `clear`); the outcome is a notification of its own.
    assert [message.title for message in shown] == [f"Request {pending['id']} approved"]
    assert shown[0].id != push.id
