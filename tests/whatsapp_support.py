"""Test support for the WhatsApp channel: the approvers, the server's Twilio settings, what the fake was sent."""

from __future__ import annotations

import asyncio
from typing import Any

from approval_server.channels.whatsapp.template import content_create_request, read_config
from tests.fake_twilio import DEFAULT_SENDER, FakeTwilio, Message
from tests.support import REPO

PUBLIC_URL = "https://abc123.ngrok.app"
ALICE, BOB, MALLORY = "+14155552671", "+14155552672", "+4915123456789"


def make_template(fake: FakeTwilio) -> str:
    """Create the repository's template on the fake, as `setup-template` would; returns its SID."""
    request = content_create_request(read_config(REPO / "template_config.json"))
    sid: str = fake.client().content.v1.contents.create(request).sid
    return sid


def whatsapp_env(fake: FakeTwilio, **extra: str) -> dict[str, str]:
    return {
        "TWILIO_ACCOUNT_SID": fake.account_sid,
        "TWILIO_AUTH_TOKEN": fake.auth_token,
        "TWILIO_WHATSAPP_FROM": DEFAULT_SENDER,
        "TWILIO_API_BASE_URL": fake.base_url,
        "APPROVAL_PHONE": f"{ALICE}, {BOB}",
        "PUBLIC_URL": PUBLIC_URL,
        **extra,
    }


async def sent_to(fake: FakeTwilio, number: str, count: int = 1, within: float = 10) -> list[Message]:
    """The messages sent to `number`, once there are at least `count` of them."""
    for _ in range(int(within / 0.02)):
        messages = [m for m in fake.sent if m.to == f"whatsapp:{number}"]
        if len(messages) >= count:
            return messages
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} message(s) to {number} not sent: {[m.to for m in fake.sent]}")


def text_of(message: Any) -> str:
    if message.content_variables:
        return "\n".join(message.content_variables.values())
    return str(message.body)
