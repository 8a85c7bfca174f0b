"""The ntfy fake is faithful: it answers publishes as ntfy does, checks what ntfy checks, and presses buttons as
the ntfy app does."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.fake_ntfy import ACTIONS_MAX, FakeNtfy, new_token
from tests.fake_twilio import LoopbackServer, NonLoopbackError

TOPIC = "alice-approvals-7f3k"
PUBLIC = "https://approvals.example.com"


def publish(fake: FakeNtfy, body: Any, token: str | None = None, **headers: str) -> httpx.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return httpx.post(fake.base_url + "/", content=content, headers=headers, timeout=10)


def button(label: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"action": "http", "label": label, "url": url, **extra}


def test_a_json_publish_is_answered_with_the_message_as_subscribers_receive_it(ntfy: FakeNtfy) -> None:
    actions = [button("Approve", f"{PUBLIC}/a", method="post", body="approve", clear=True)]
    response = publish(
        ntfy,
        {
            "topic": TOPIC,
            "title": "  Request 7kq2m9xa  ",
            "message": "\nAgent: `claude`\n",
            "priority": 4,
            "tags": ["lock"],
            "click": f"{PUBLIC}/r/x",
            "actions": actions,
        },
    )
    assert response.status_code == 200, response.text
    sent = response.json()
    assert sent["event"] == "message"
    assert sent["topic"] == TOPIC
    assert sent["title"] == "Request 7kq2m9xa"
    assert sent["message"] == "Agent: `claude`"
    assert sent["priority"] == 4
    assert sent["tags"] == ["lock"]
    assert sent["click"] == f"{PUBLIC}/r/x"
    (action,) = sent["actions"]
    assert action["method"] == "POST"
    assert action["body"] == "approve"
    assert action["clear"] is True
    assert len(action["id"]) == 10
    assert len(sent["id"]) == 12
    assert ntfy.published[-1].json == sent
    assert ntfy.shown(TOPIC)[0].action("Approve").url == f"{PUBLIC}/a"


def test_errors_are_ntfys_json_with_its_codes(ntfy: FakeNtfy) -> None:
    cases: list[tuple[Any, int, int]] = [
        (b"not json", 400, 40024),
        ({"topic": "no spaces here"}, 400, 40009),
        ({"topic": "x" * 65}, 400, 40009),
        ({"topic": "v1"}, 400, 40010),
        ({"topic": TOPIC, "priority": 7}, 400, 40007),
        ({"topic": TOPIC, "icon": "ftp://x"}, 400, 40021),
        ({"topic": TOPIC, "actions": [button(str(n), f"{PUBLIC}/{n}") for n in range(ACTIONS_MAX + 1)]}, 400, 40018),
        ({"topic": TOPIC, "actions": [{"action": "http", "label": "No URL"}]}, 400, 40018),
        ({"topic": TOPIC, "actions": [button("Get", PUBLIC, method="GET", body="x")]}, 400, 40018),
        ({"topic": TOPIC, "actions": [{"action": "dial", "label": "x", "url": PUBLIC}]}, 400, 40018),
        ({"topic": TOPIC, "message": "x" * 9000}, 413, 41303),
    ]
    for body, status, code in cases:
        response = publish(ntfy, body)
        assert response.status_code == status, (body, response.text)
        error = response.json()
        assert error["code"] == code
        assert error["http"] == status
        assert error["error"]
    assert ntfy.published == []


def test_a_message_over_the_limit_becomes_an_attachment_or_is_refused() -> None:
    long = "é" * 2049  # 4,098 bytes
    with FakeNtfy() as ntfy:
        sent = publish(ntfy, {"topic": TOPIC, "message": long}).json()
        assert sent["message"] == "You received a file: attachment.txt"
        assert sent["attachment"]["size"] == 4098
        assert publish(ntfy, {"topic": TOPIC, "message": "é" * 2048}).json()["message"] == "é" * 2048
    with FakeNtfy(attachments=False) as ntfy:
        response = publish(ntfy, {"topic": TOPIC, "message": long})
        assert response.status_code == 400
        assert response.json()["code"] == 40014


def test_tokens_and_topic_access_as_ntfy_checks_them() -> None:
    with FakeNtfy(default_access="deny-all") as ntfy:
        token = ntfy.add_token("alice", write=("alice-*",))
        assert token.startswith("tk_")
        assert len(token) == 32
        assert token == token.lower()
        assert publish(ntfy, {"topic": TOPIC}).status_code == 403  # anonymous
        assert publish(ntfy, {"topic": TOPIC}, token=token).status_code == 200
        assert publish(ntfy, {"topic": "bob-approvals"}, token=token).json()["code"] == 40301
        unknown = publish(ntfy, {"topic": TOPIC}, token=new_token())
        assert unknown.status_code == 401
        assert unknown.json()["code"] == 40101
        basic = publish(ntfy, {"topic": TOPIC}, Authorization="Basic YWxpY2U6cGFzcw==")
        assert basic.status_code == 401
        assert ntfy.published[0].authorization == f"Bearer {token}"
        auth = f"{ntfy.base_url}/{TOPIC}/auth"
        assert httpx.get(auth, headers={"Authorization": f"Bearer {token}"}, timeout=10).json() == {"success": True}
        assert httpx.get(auth, timeout=10).status_code == 403
        assert httpx.get(auth, headers={"Authorization": f"Bearer {new_token()}"}, timeout=10).status_code == 401
    with FakeNtfy() as ntfy:  # ntfy.sh: anyone may publish, but a wrong token is refused all the same
        assert publish(ntfy, {"topic": TOPIC}).status_code == 200
        assert publish(ntfy, {"topic": TOPIC}, token=new_token()).status_code == 401
        ntfy.deny_anonymous("alice-*")
        assert publish(ntfy, {"topic": TOPIC}).status_code == 403
    with FakeNtfy(auth=False) as ntfy:  # no auth file: the header is not even read
        assert publish(ntfy, {"topic": TOPIC}, token=new_token()).status_code == 200


def test_an_update_replaces_the_notification_of_its_sequence_id_and_clear_removes_it(ntfy: FakeNtfy) -> None:
    first = publish(ntfy, {"topic": TOPIC, "message": "asked", "sequence_id": "req-7kq2m9xa"}).json()
    publish(ntfy, {"topic": TOPIC, "message": "other"})
    assert first["sequence_id"] == "req-7kq2m9xa"
    update = publish(ntfy, {"topic": TOPIC, "message": "approved", "sequence_id": "req-7kq2m9xa"}).json()
    assert update["id"] != first["id"]
    assert [m.message for m in ntfy.shown(TOPIC)] == ["other", "approved"]
    cleared = httpx.put(f"{ntfy.base_url}/{TOPIC}/req-7kq2m9xa/clear", timeout=10)
    assert cleared.status_code == 200
    assert cleared.json()["event"] == "message_clear"
    assert [m.message for m in ntfy.shown(TOPIC)] == ["other"]
    via_path = httpx.post(f"{ntfy.base_url}/{TOPIC}/s2", content=b"by path", headers={"Title": "t"}, timeout=10)
    assert via_path.json()["sequence_id"] == "s2"
    assert via_path.json()["title"] == "t"
    assert httpx.delete(f"{ntfy.base_url}/{TOPIC}/s2", timeout=10).json()["event"] == "message_delete"
    assert [m.message for m in ntfy.shown(TOPIC)] == ["other"]
    assert publish(ntfy, {"topic": TOPIC, "sequence_id": "a b"}).json()["code"] == 40009


def test_an_older_server_ignores_sequence_ids_and_has_no_update_paths() -> None:
    with FakeNtfy(sequence_ids=False) as ntfy:
        sent = publish(ntfy, {"topic": TOPIC, "message": "asked", "sequence_id": "req-1"}).json()
        assert "sequence_id" not in sent
        publish(ntfy, {"topic": TOPIC, "message": "approved", "sequence_id": "req-1"})
        assert [m.message for m in ntfy.shown(TOPIC)] == ["asked", "approved"]  # two notifications
        missing = httpx.put(f"{ntfy.base_url}/{TOPIC}/req-1/clear", timeout=10)
        assert missing.status_code == 404
        assert missing.json()["code"] == 40401


def test_injected_rate_limits_and_health(ntfy: FakeNtfy) -> None:
    assert httpx.get(ntfy.base_url + "/v1/health", timeout=10).json() == {"healthy": True}
    ntfy.fail_next(42908)
    limited = publish(ntfy, {"topic": TOPIC})
    assert limited.status_code == 429
    assert limited.json()["code"] == 42908
    assert publish(ntfy, {"topic": TOPIC}).status_code == 200


def test_a_stopped_server_refuses_connections(ntfy: FakeNtfy) -> None:
    ntfy.refuse_connections()
    with pytest.raises(httpx.ConnectError):
        publish(ntfy, {"topic": TOPIC})
    ntfy.accept_connections()
    assert publish(ntfy, {"topic": TOPIC}).status_code == 200


async def test_pressing_a_button_makes_the_apps_request_and_clears_on_success(ntfy: FakeNtfy) -> None:
    received: list[tuple[str, str, dict[str, str], bytes]] = []

    async def answer(request: Request) -> Response:
        received.append((request.method, request.url.path, dict(request.headers), await request.body()))
        return PlainTextResponse("ok" if request.url.path == "/ok" else "no", 200 if request.url.path == "/ok" else 410)

    with LoopbackServer(Starlette(routes=[Route("/{p:path}", answer, methods=["POST", "PUT"])])) as receiver:
        ntfy.route(PUBLIC, receiver.base_url)
        actions = [
            button("Approve", f"{PUBLIC}/ok", body="approve", clear=True),
            button("Deny", f"{PUBLIC}/gone", method="PUT", headers={"X-Why": "test"}, clear=True),
        ]
        publish(ntfy, {"topic": TOPIC, "actions": actions})
        publish(ntfy, {"topic": TOPIC, "message": "second", "actions": actions})
        first, second = ntfy.published
        refused = await ntfy.press(first, "Deny")
        assert refused.status_code == 410
        assert not refused.cleared
        assert len(ntfy.shown(TOPIC)) == 2  # a failed action leaves the notification
        pressed = await ntfy.press(second, "Approve")
        assert pressed.status_code == 200
        assert pressed.text == "ok"
        assert pressed.cleared
        assert [m.id for m in ntfy.shown(TOPIC)] == [first.id]
    (deny_method, deny_path, deny_headers, deny_body), (method, path, headers, body) = received
    assert (deny_method, deny_path, deny_headers["x-why"], deny_body) == ("PUT", "/gone", "test", b"")
    assert (method, path, body) == ("POST", "/ok", b"approve")
    assert headers["user-agent"].startswith("ntfy/")
    assert "content-type" not in headers


async def test_buttons_are_pressed_only_on_loopback(ntfy: FakeNtfy) -> None:
    publish(ntfy, {"topic": TOPIC, "actions": [button("Go", "https://example.org/x")]})
    with pytest.raises(NonLoopbackError):
        await ntfy.press(ntfy.published[0], "Go")
