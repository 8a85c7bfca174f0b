"""The Twilio fake is faithful: the real ``twilio`` client talks to it, and its webhooks validate."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.rest.content.v1.content import ContentList
from twilio.rest.content.v1.content.approval_create import ApprovalCreateList

from tests.fake_twilio import (
    FakeTwilio,
    LoopbackServer,
    NonLoopbackError,
    Webhook,
    error_body,
    sign,
)

PHONE = "+15551234567"
OTHER_PHONE = "+15557654321"
PUBLIC_BASE = "https://abc123.ngrok.app"
PUBLIC_WEBHOOK = PUBLIC_BASE + "/twilio-webhook"
PUBLIC_STATUS = PUBLIC_BASE + "/twilio-status"
OTHER_ACCOUNT = "AC" + "0123456789abcdef" * 2
OTHER_TOKEN = "other-account-auth-token"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'
SM_SID = re.compile(r"^SM[0-9a-f]{32}$")
HX_SID = re.compile(r"^HX[0-9a-f]{32}$")

CL = ContentList


# -- a tiny webhook receiver -------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    form: dict[str, str]

    @property
    def signature(self) -> str | None:
        return self.headers.get("x-twilio-signature")


class Receiver:
    """Records every POST and answers 200 with empty TwiML, like the product should."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.server = LoopbackServer(
            Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])]), name="receiver"
        )

    async def _handle(self, request: Request) -> Response:
        raw = await request.body()
        form: dict[str, str] = {}
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = dict(httpx.QueryParams(raw.decode("utf-8", "replace")))
        self.received.append(
            Received(request.url.path, request.url.query, {k.lower(): v for k, v in request.headers.items()}, raw, form)
        )
        return Response(EMPTY_TWIML, media_type="text/xml")

    def url(self, path: str) -> str:
        return self.server.base_url + path

    async def wait_for(self, count: int, within: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + within
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"got {len(self.received)} of {count} webhooks"
            await asyncio.sleep(0.01)
        return list(self.received)


def valid(token: str, url: str, got: Received) -> bool:
    signature = got.signature
    return signature is not None and bool(RequestValidator(token).validate(url, got.form, signature))


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    with receiver.server:
        yield receiver


@pytest.fixture
def fake(receiver: Receiver) -> Iterator[FakeTwilio]:
    with FakeTwilio(auto_callbacks=False, callback_delay=0) as fake:
        fake.configure_webhook(PUBLIC_WEBHOOK, deliver_to=receiver.url("/twilio-webhook"))
        yield fake


@pytest.fixture
def client(fake: FakeTwilio) -> Iterator[Any]:
    client = fake.client()
    yield client
    client.http_client.session.close()


def point_at(fake: FakeTwilio, client: Any) -> Any:
    """What the product does with TWILIO_API_BASE_URL."""
    client.api.base_url = fake.base_url
    client.content.base_url = fake.base_url
    return client


def quick_reply_request(*titles: str, language: str | None = "en") -> Any:
    actions = [CL.QuickReplyAction({"title": t, "id": t.lower()}) for t in titles]
    return CL.ContentCreateRequest(
        {
            "friendly_name": "approval_request_v1",
            "language": language,
            "variables": {"1": "ls -la /etc", "2": "abc123"},
            "types": CL.Types(
                {
                    "twilio/quick-reply": CL.TwilioQuickReply(
                        {"body": "Approve command {{1}}? Request {{2}}.", "actions": actions}
                    ),
                    "twilio/text": CL.TwilioText({"body": "Approve command {{1}}? Reply YES or NO. Request {{2}}."}),
                }
            ),
        }
    )


# -- signatures --------------------------------------------------------------------------


def test_signature_matches_twilio_test_vectors() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
        "Caller": "+14158675309",
    }
    assert sign("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    body = '{"property": "value", "boolean": true}'
    body_url = url + "&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    assert RequestValidator("12345").validate(body_url, body, "a9nBmqA0ju/hNViExpshrM61xv4=")


# -- Messages ----------------------------------------------------------------------------


def test_text_message_is_created_recorded_and_fetched(fake: FakeTwilio, client: Any) -> None:
    message = client.messages.create(
        from_=fake.sender, to=f"whatsapp:{PHONE}", body="Approve `ls`?", status_callback=PUBLIC_STATUS
    )
    assert SM_SID.match(message.sid)
    assert (message.status, message.account_sid, message.to, message.from_) == (
        "queued",
        fake.account_sid,
        f"whatsapp:{PHONE}",
        fake.sender,
    )
    assert isinstance(message.date_created, datetime)  # the RFC 2822 date parsed
    assert message.error_code is None

    fetched = client.messages(message.sid).fetch()
    assert (fetched.sid, fetched.body, fetched.status) == (message.sid, "Approve `ls`?", "queued")
    assert [m.sid for m in client.messages.list(to=f"whatsapp:{PHONE}")] == [message.sid]
    assert client.messages.list(to=f"whatsapp:{OTHER_PHONE}") == []

    [sent] = fake.sent
    assert (sent.sid, sent.body, sent.status_callback, sent.content_sid) == (
        message.sid,
        "Approve `ls`?",
        PUBLIC_STATUS,
        None,
    )
    create = fake.requests[0]
    assert (create.method, create.path, create.status_code) == (
        "POST",
        f"/2010-04-01/Accounts/{fake.account_sid}/Messages.json",
        201,
    )
    assert create.headers["content-type"] == "application/x-www-form-urlencoded"
    assert create.headers["user-agent"].startswith("twilio-python/")
    assert create.auth_user == fake.account_sid
    assert create.params["StatusCallback"] == PUBLIC_STATUS


def test_template_message_carries_content_sid_and_variables(fake: FakeTwilio, client: Any) -> None:
    template = fake.add_content()
    variables = {"1": "rm -rf build/", "2": "req-42"}
    message = client.messages.create(
        from_=fake.sender, to=f"whatsapp:{PHONE}", content_sid=template.sid, content_variables=json.dumps(variables)
    )
    [sent] = fake.sent
    assert (sent.sid, sent.content_sid, sent.content_variables, sent.body) == (
        message.sid,
        template.sid,
        variables,
        None,
    )
    assert sent.is_template
    assert client.messages(message.sid).fetch().status == "queued"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({}, 21602),
        ({"body": "x" * 1601}, 21617),
        ({"body": "hi", "content_variables": json.dumps({"1": "a"})}, 21654),
        ({"content_sid": "{template}", "content_variables": {"1": "a", "2": "b"}}, 21656),
        ({"content_sid": "{template}", "content_variables": "not json"}, 21656),
        ({"content_sid": "{template}", "content_variables": json.dumps({"1": 5})}, 21656),
        ({"content_sid": "{template}", "content_variables": json.dumps({"1": ""})}, 21656),
        ({"content_sid": "{template}", "content_variables": json.dumps(["a"])}, 21656),
        ({"content_sid": "HX" + "0" * 32}, 21655),
        ({"body": "hi", "to": "whatsapp:12345"}, 21211),
        ({"body": "hi", "to": PHONE}, 21910),
        ({"body": "hi", "from_": "whatsapp:+15550000000"}, 63007),
        ({"body": "hi", "status_callback": "https://bad_host.example/cb"}, 21609),
    ],
)
def test_invalid_sends_are_refused_like_twilio(
    fake: FakeTwilio, client: Any, kwargs: dict[str, Any], code: int
) -> None:
    template = fake.add_content()
    args: dict[str, Any] = {"from_": fake.sender, "to": f"whatsapp:{PHONE}"}
    args.update({k: template.sid if v == "{template}" else v for k, v in kwargs.items()})
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(**args)
    assert (caught.value.status, caught.value.code) == (400, code)
    assert fake.sent == []


def test_wrong_credentials_get_twilio_20003(fake: FakeTwilio) -> None:
    client = point_at(fake, Client(fake.account_sid, "wrong-token"))
    try:
        with pytest.raises(TwilioRestException) as caught:
            client.messages.create(from_=fake.sender, to=f"whatsapp:{PHONE}", body="hi")
    finally:
        client.http_client.session.close()
    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert fake.sent == []
    raw = httpx.get(f"{fake.base_url}/v1/Content", trust_env=False)
    assert raw.status_code == 401
    assert raw.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert raw.headers["www-authenticate"].startswith("Basic")


def test_api_key_auth_and_account_paths() -> None:
    key = ("SK" + "5" * 32, "api-key-secret")
    with FakeTwilio(api_key=key) as fake:
        good = point_at(fake, Client(key[0], key[1], fake.account_sid))
        no_account = point_at(fake, Client(key[0], key[1]))  # posts to /Accounts/SK…/Messages.json
        other = point_at(fake, Client(fake.account_sid, fake.auth_token, OTHER_ACCOUNT))
        try:
            assert good.messages.create(from_=fake.sender, to=f"whatsapp:{PHONE}", body="hi").status == "queued"
            for client in (no_account, other):
                with pytest.raises(TwilioRestException) as caught:
                    client.messages.create(from_=fake.sender, to=f"whatsapp:{PHONE}", body="hi")
                assert (caught.value.status, caught.value.code) == (404, 20404)
        finally:
            for client in (good, no_account, other):
                client.http_client.session.close()
        assert [r.auth_user for r in fake.requests] == [key[0], key[0], fake.account_sid]
        assert len(fake.sent) == 1


def test_injected_synchronous_failures(fake: FakeTwilio, client: Any) -> None:
    template = fake.add_content()

    def text(to: str = PHONE) -> Any:
        return client.messages.create(from_=fake.sender, to=f"whatsapp:{to}", body="hi")

    def templated() -> Any:
        return client.messages.create(from_=fake.sender, to=f"whatsapp:{PHONE}", content_sid=template.sid)

    def failure(send: Any) -> tuple[int, Any]:
        with pytest.raises(TwilioRestException) as caught:
            send()
        return caught.value.status, caught.value.code

    fake.fail_next_send(63016)
    assert failure(text) == (400, 63016)
    assert text().status == "queued"

    fake.fail_sends(20429, http_status=429)
    assert failure(text) == failure(templated) == (429, 20429)
    fake.clear_failures()

    fake.refuse_freeform(63016)
    assert failure(text) == (400, 63016)
    assert templated().status == "queued"
    fake.clear_failures()

    fake.refuse_templates(63021)
    assert failure(templated) == (400, 63021)
    assert text().status == "queued"
    fake.clear_failures()

    fake.fail_next_send(63015, to=OTHER_PHONE)
    assert text().status == "queued"
    assert failure(lambda: text(OTHER_PHONE)) == (400, 63015)
    assert len(fake.sent) == 4


async def test_injected_hangs_and_refused_connections(fake: FakeTwilio) -> None:
    """A create held by `hang_sends` is answered only after its time (or when cleared); a fake that refuses
    connections listens again on the same port."""
    client = fake.client()

    async def send(to: str = PHONE) -> float:
        started = time.monotonic()
        await asyncio.to_thread(client.messages.create, from_=fake.sender, to=f"whatsapp:{to}", body="hi")
        return time.monotonic() - started

    fake.hang_sends(0.5, to=PHONE, times=1)
    assert await send() >= 0.5
    assert await send() < 0.5
    assert await send(OTHER_PHONE) < 0.5
    assert fake.hung == [f"whatsapp:{PHONE}"]

    fake.hang_sends(60)
    held = asyncio.create_task(send())
    for _ in range(500):
        if fake.hung[1:]:
            break
        await asyncio.sleep(0.01)
    fake.clear_failures()
    assert await asyncio.wait_for(held, 5) < 5

    url = fake.base_url
    fake.refuse_connections()
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(url)
    fake.accept_connections()
    assert fake.base_url == url
    assert await send() < 5
    assert len(fake.sent) == 5


# -- Content API -------------------------------------------------------------------------


def test_content_template_lifecycle(fake: FakeTwilio, client: Any) -> None:
    contents = client.content.v1.contents
    created = contents.create(quick_reply_request("Approve", "Deny"))
    assert HX_SID.match(created.sid)
    assert isinstance(created.date_created, datetime)
    assert created.types["twilio/quick-reply"]["actions"] == [
        {"title": "Approve", "id": "approve"},
        {"title": "Deny", "id": "deny"},
    ]
    wire = fake.requests[-1]
    assert (wire.method, wire.path, wire.headers["content-type"]) == ("POST", "/v1/Content", "application/json")
    assert wire.json["language"] == "en"  # unset members (None) were stripped by the library
    assert "twilio/media" not in wire.json["types"]

    # Plain dicts inside a ContentCreateRequest are converted by the library too (9.13).
    quick_reply = {"body": "Go {{1}}?", "actions": [{"title": "Yes", "id": "yes"}, {"title": "No", "id": "no"}]}
    second = contents.create(
        CL.ContentCreateRequest(
            {"language": "en", "variables": {"1": "x"}, "types": {"twilio/quick-reply": quick_reply}}
        )
    )
    assert fake.requests[-1].json["types"] == {"twilio/quick-reply": quick_reply}
    listed = contents.list(page_size=1)  # two pages: the library follows meta.next_page_url
    assert [c.sid for c in listed] == [created.sid, second.sid]
    assert [r.query for r in fake.requests[-2:]] == ["PageSize=1", "PageSize=1&Page=1&PageToken=PT1"]

    assert contents(created.sid).fetch().friendly_name == "approval_request_v1"
    approval = contents(created.sid).approval_create.create(
        ApprovalCreateList.ContentApprovalRequest({"name": "approval_request_v1", "category": "UTILITY"})
    )
    assert (approval.name, approval.category, approval.status) == ("approval_request_v1", "UTILITY", "received")
    fake.set_approval(created.sid, "approved")
    assert contents(created.sid).approval_fetch().fetch().whatsapp["status"] == "approved"

    assert contents(created.sid).delete() is True
    with pytest.raises(TwilioRestException) as caught:
        contents(created.sid).fetch()
    assert (caught.value.status, caught.value.code) == (404, 20404)
    assert [c.sid for c in fake.contents] == [second.sid]


@pytest.mark.parametrize(
    "request_factory",
    [
        lambda: quick_reply_request("Approve", language=None),
        lambda: quick_reply_request(*[f"Option {n}" for n in range(11)]),
        lambda: quick_reply_request("A title of 21 chars!!"),
        lambda: CL.ContentCreateRequest({"friendly_name": "x", "language": "en"}),
    ],
    ids=["no-language", "11-actions", "long-title", "no-types"],
)
def test_invalid_templates_are_refused(fake: FakeTwilio, client: Any, request_factory: Any) -> None:
    with pytest.raises(TwilioRestException) as caught:
        client.content.v1.contents.create(request_factory())
    assert caught.value.status == 400
    assert fake.contents == []


# -- inbound webhooks --------------------------------------------------------------------


async def test_inbound_message_is_signed_for_the_public_url(fake: FakeTwilio, receiver: Receiver) -> None:
    response = await fake.send_inbound(from_=PHONE, body="APPROVE abc123", profile_name="Ada")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text == EMPTY_TWIML

    [got] = receiver.received
    assert got.path == "/twilio-webhook"
    assert valid(fake.auth_token, PUBLIC_WEBHOOK, got)
    assert not valid(fake.auth_token, receiver.url("/twilio-webhook"), got)  # the URL the server sees
    assert not valid(OTHER_TOKEN, PUBLIC_WEBHOOK, got)
    form = got.form
    assert SM_SID.match(form["MessageSid"])
    assert form["SmsSid"] == form["SmsMessageSid"] == form["MessageSid"]
    assert (form["From"], form["To"], form["WaId"], form["ProfileName"]) == (
        f"whatsapp:{PHONE}",
        fake.sender,
        PHONE[1:],
        "Ada",
    )
    assert (form["Body"], form["MessageType"], form["SmsStatus"], form["NumMedia"], form["NumSegments"]) == (
        "APPROVE abc123",
        "text",
        "received",
        "0",
        "1",
    )
    assert (form["AccountSid"], form["ApiVersion"]) == (fake.account_sid, "2010-04-01")
    assert json.loads(form["ChannelMetadata"])["type"] == "whatsapp"
    assert "MessageStatus" not in form
    assert got.headers["content-type"] == "application/x-www-form-urlencoded"


async def test_button_tap_replies_to_the_outbound_message(fake: FakeTwilio, client: Any, receiver: Receiver) -> None:
    template = fake.add_content()
    outbound = client.messages.create(from_=fake.sender, to=f"whatsapp:{PHONE}", content_sid=template.sid)
    response = await fake.tap_button(from_=PHONE, replied_to=outbound.sid, payload="approve", title="Approve")
    assert response.status_code == 200
    [got] = receiver.received
    assert valid(fake.auth_token, PUBLIC_WEBHOOK, got)
    form = got.form
    assert (form["MessageType"], form["Body"], form["ButtonText"], form["ButtonPayload"]) == (
        "interactive",
        "Approve",
        "Approve",
        "approve",
    )
    assert (form["OriginalRepliedMessageSid"], form["OriginalRepliedMessageSender"]) == (outbound.sid, fake.sender)
    assert json.loads(form["ChannelMetadata"])["data"]["context"]["ButtonText"] == "Approve"
    tap = fake.button_tap(from_=PHONE, replied_to=outbound.sid, payload="deny", title="Deny", message_type="button")
    assert tap.params["MessageType"] == "button"


async def test_replayed_forged_and_foreign_webhooks(fake: FakeTwilio, receiver: Receiver) -> None:
    webhook = fake.inbound_message(from_=PHONE, body="YES")
    await fake.deliver(webhook)
    await fake.deliver(webhook)  # a replay: same MessageSid, signature and idempotency token
    first, replay = receiver.received
    assert first.form == replay.form
    assert first.signature == replay.signature
    assert first.headers["i-twilio-idempotency-token"] == replay.headers["i-twilio-idempotency-token"]

    variants: dict[str, Webhook] = {
        "forged": webhook.forged(),
        "unsigned": webhook.unsigned(),
        "empty": webhook.with_signature(""),
        "tampered": webhook.with_params({"Body": "NO", "From": f"whatsapp:{OTHER_PHONE}"}),
        "other-account": webhook.as_account(OTHER_ACCOUNT, OTHER_TOKEN),
        "wrong-url": webhook.signed_with(fake.auth_token, url="https://evil.example/twilio-webhook"),
    }
    for variant in variants.values():
        assert (await fake.deliver(variant)).status_code == 200  # the receiver accepts everything
    got = dict(zip(variants, receiver.received[2:], strict=True))
    assert not any(valid(fake.auth_token, PUBLIC_WEBHOOK, g) for g in got.values())
    assert got["unsigned"].signature is None
    assert got["empty"].signature == ""
    assert got["other-account"].form["AccountSid"] == OTHER_ACCOUNT
    assert valid(OTHER_TOKEN, PUBLIC_WEBHOOK, got["other-account"])

    raw = fake.raw_webhook(b"\xff\x00not=a&form", content_type="application/octet-stream")
    assert (await fake.deliver(raw)).status_code == 200
    assert receiver.received[-1].body == b"\xff\x00not=a&form"
    assert receiver.received[-1].signature is None


async def test_many_hostile_webhooks_share_one_client(fake: FakeTwilio, receiver: Receiver) -> None:
    webhooks = [fake.inbound_message(from_=PHONE, body=f"APPROVE {n}").forged() for n in range(40)]
    async with httpx.AsyncClient(trust_env=False) as http:
        responses = await asyncio.gather(*(fake.deliver(w, client=http) for w in webhooks))
    assert {r.status_code for r in responses} == {200}
    assert len(receiver.received) == len(fake.deliveries) == 40


def test_sync_delivery(fake: FakeTwilio, receiver: Receiver) -> None:
    response = fake.deliver_sync(fake.inbound_message(from_=PHONE, body="NO"))
    assert response.status_code == 200
    [got] = receiver.received
    assert valid(fake.auth_token, PUBLIC_WEBHOOK, got)


def test_delivery_is_loopback_only(fake: FakeTwilio) -> None:
    with pytest.raises(NonLoopbackError):
        fake.configure_webhook(PUBLIC_WEBHOOK, deliver_to="http://example.com/twilio-webhook")
    with pytest.raises(NonLoopbackError):
        fake.local_url("https://elsewhere.example/status")
    with pytest.raises(NonLoopbackError):
        fake.inbound_message(from_=PHONE, body="hi", url="https://elsewhere.example/hook")
    assert fake.local_url(PUBLIC_BASE + "/x?y=1").endswith("/x?y=1")


# -- status callbacks --------------------------------------------------------------------


async def test_automatic_status_callbacks_arrive_signed_and_in_order(receiver: Receiver) -> None:
    with FakeTwilio(callback_delay=0.005) as fake:
        fake.configure_webhook(PUBLIC_WEBHOOK, deliver_to=receiver.url("/twilio-webhook"))
        client = fake.client()
        try:
            message = client.messages.create(
                from_=fake.sender, to=f"whatsapp:{PHONE}", body="hi", status_callback=PUBLIC_STATUS
            )
            silent = client.messages.create(from_=fake.sender, to=f"whatsapp:{PHONE}", body="no callback")
            await fake.drain()  # both plans done, every callback answered
            got = receiver.received
            assert [g.form["MessageStatus"] for g in got] == ["queued", "sent", "delivered"]
            assert {g.path for g in got} == {"/twilio-status"}
            assert all(valid(fake.auth_token, PUBLIC_STATUS, g) for g in got)
            last = got[-1].form
            assert (last["MessageSid"], last["SmsSid"], last["SmsStatus"], last["EventType"]) == (
                message.sid,
                message.sid,
                "delivered",
                "DELIVERED",
            )
            assert (last["ChannelPrefix"], last["To"], last["From"], last["AccountSid"]) == (
                "whatsapp",
                f"whatsapp:{PHONE}",
                fake.sender,
                fake.account_sid,
            )
            assert "ErrorCode" not in last
            fetched = client.messages(message.sid).fetch()
            assert (fetched.status, fetched.error_code) == ("delivered", None)
            assert fetched.date_sent is not None
            assert client.messages(silent.sid).fetch().status == "delivered"
            assert len(fake.callbacks) == 3
        finally:
            client.http_client.session.close()


@pytest.mark.parametrize(
    ("status", "expected"), [("failed", ["queued", "failed"]), ("undelivered", ["queued", "sent", "undelivered"])]
)
async def test_injected_delivery_failure_reaches_the_status_callback(
    receiver: Receiver, status: Any, expected: list[str]
) -> None:
    with FakeTwilio(callback_delay=0) as fake:
        fake.configure_webhook(PUBLIC_WEBHOOK, deliver_to=receiver.url("/twilio-webhook"))
        fake.fail_delivery(to=PHONE, error_code=63015, status=status)
        client = fake.client()
        try:
            message = client.messages.create(
                from_=fake.sender, to=f"whatsapp:{PHONE}", body="hi", status_callback=PUBLIC_STATUS
            )
            assert message.status == "queued"  # accepted: the failure is asynchronous
            await fake.drain()
            got = await receiver.wait_for(len(expected))
            assert [g.form["MessageStatus"] for g in got] == expected
            assert (got[-1].form["ErrorCode"], got[-1].form["ChannelPrefix"]) == ("63015", "whatsapp")
            assert "ChannelStatusMessage" in got[-1].form
            assert all(valid(fake.auth_token, PUBLIC_STATUS, g) for g in got)
            fetched = client.messages(message.sid).fetch()
            assert (fetched.status, fetched.error_code) == (status, 63015)
            assert fetched.error_message
        finally:
            client.http_client.session.close()


async def test_callbacks_can_overtake_the_answer_to_the_send(receiver: Receiver) -> None:
    with FakeTwilio(callback_delay=0) as fake:
        fake.configure_webhook(PUBLIC_WEBHOOK, deliver_to=receiver.url("/twilio-webhook"))
        fake.fail_delivery(to=PHONE, error_code=63015)
        fake.callbacks_before_response = True
        client = fake.client()
        try:
            message = client.messages.create(
                from_=fake.sender, to=f"whatsapp:{PHONE}", body="hi", status_callback=PUBLIC_STATUS
            )
            delivered = [d.webhook.params["MessageStatus"] for d in fake.deliveries]  # no drain: all there already
        finally:
            client.http_client.session.close()
    assert message.status == "queued"  # the answer as it was when the send was accepted
    assert delivered == ["queued", "failed"]


async def test_explicit_status_callbacks(fake: FakeTwilio, client: Any, receiver: Receiver) -> None:
    message = client.messages.create(
        from_=fake.sender, to=f"whatsapp:{PHONE}", body="hi", status_callback=PUBLIC_STATUS
    )
    await asyncio.sleep(0.05)
    assert receiver.received == []  # auto_callbacks=False: nothing until the test says so
    assert fake.callbacks == []

    response = await fake.send_status(message.sid, "failed", error_code=63016)
    assert response.status_code == 200
    [got] = receiver.received
    assert (got.form["MessageStatus"], got.form["ErrorCode"]) == ("failed", "63016")
    assert valid(fake.auth_token, PUBLIC_STATUS, got)
    assert fake.message(message.sid).status == "failed"
    assert client.messages(message.sid).fetch().error_code == 63016

    forged = fake.status_callback(message.sid, "delivered").forged()
    await fake.deliver(forged)
    assert not valid(fake.auth_token, PUBLIC_STATUS, receiver.received[-1])

    second = client.messages.create(from_=fake.sender, to=f"whatsapp:{PHONE}", body="2", status_callback=PUBLIC_STATUS)
    deliveries = await fake.run_status_plan(second.sid)
    assert [d.webhook.params["MessageStatus"] for d in deliveries] == ["queued", "sent", "delivered"]
    assert all(d.response is not None and d.response.status_code == 200 for d in deliveries)
    third = client.messages.create(from_=fake.sender, to=f"whatsapp:{PHONE}", body="3", status_callback=PUBLIC_STATUS)
    assert len(fake.run_status_plan_sync(third.sid)) == 3
    assert fake.message(third.sid).history == ["queued", "sent", "delivered"]


def test_unreachable_status_callback_is_recorded_not_raised(fake: FakeTwilio, client: Any) -> None:
    unrouted = client.messages.create(
        from_=fake.sender, to=f"whatsapp:{PHONE}", body="hi", status_callback="https://elsewhere.example/status"
    )
    deliveries = fake.run_status_plan_sync(unrouted.sid)
    assert [d.error for d in deliveries] == ["refused: non-loopback target"] * 3
    assert fake.message(unrouted.sid).status == "delivered"


def test_session_window_model(fake: FakeTwilio, client: Any) -> None:
    fake.enforce_session_window = True
    approved = fake.add_content()
    pending = fake.add_content(friendly_name="pending", approval_status="received")

    def final(**kwargs: Any) -> tuple[str, int | None]:
        message = client.messages.create(from_=fake.sender, to=f"whatsapp:{PHONE}", **kwargs)
        fake.run_status_plan_sync(message.sid)
        stored = fake.message(message.sid)
        return stored.status, stored.error_code

    assert final(body="hi") == ("failed", 63016)
    assert final(content_sid=pending.sid) == ("failed", 63016)
    assert final(content_sid=approved.sid) == ("delivered", None)
    fake.inbound_message(from_=PHONE, body="hello")  # building an inbound message opens the window
    assert final(body="hi") == ("delivered", None)


# -- the async client the product uses ---------------------------------------------------


@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning")
async def test_async_http_client_with_base_url_override(fake: FakeTwilio) -> None:
    template = fake.add_content()
    http = AsyncTwilioHttpClient(timeout=15)  # needs a running loop (aiohttp ClientSession)
    client = fake.client(http_client=http)
    try:
        text = await client.messages.create_async(
            from_=fake.sender, to=f"whatsapp:{PHONE}", body="hi", status_callback=PUBLIC_STATUS
        )
        templated = await client.messages.create_async(
            from_=fake.sender,
            to=f"whatsapp:{PHONE}",
            content_sid=template.sid,
            content_variables=json.dumps({"1": "ls", "2": "r1"}),
        )
        assert (await client.messages(text.sid).fetch_async()).status == "queued"
        assert [m.sid for m in fake.sent] == [text.sid, templated.sid]
        assert fake.sent[1].content_variables == {"1": "ls", "2": "r1"}
        with pytest.raises(TwilioRestException) as caught:
            await client.messages.create_async(from_=fake.sender, to=f"whatsapp:{PHONE}")
        assert caught.value.code == 21602

        # Library bug: the async client form-encodes JSON bodies, so Content create_async is unusable.
        with pytest.raises(TwilioRestException) as content_error:
            await client.content.v1.contents.create_async(quick_reply_request("Approve", "Deny"))
        assert content_error.value.status == 400
        sent = fake.requests[-1]
        assert sent.headers["content-type"] == "application/json"
        assert sent.body.startswith(b"friendly_name=")
    finally:
        await http.close()


def test_error_body_shape() -> None:
    assert error_body(63016)["status"] == 400
    assert error_body(20429)["status"] == 429
    assert error_body(21211, to="x")["message"] == "Invalid 'To' Phone Number: x"
