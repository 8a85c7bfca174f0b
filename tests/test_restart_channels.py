"""A server that dies leaves its people's phones asking: the request it left is closed `abandoned` when it starts again
(on PostgreSQL, when a live replica takes its requests over), and every channel then says so, from what it recorded
of its sends: Telegram's messages edited, their buttons gone; ntfy's push replaced; WhatsApp and the Apprise URL told.
A request closed before the crash is not told again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from approval_server.store import Store
from approval_server.store.outbox import Outbox
from tests.apprise_targets import AppriseTargets
from tests.every_channel import ALICE_TOPIC, TG_ALICE, TG_BOB, every_channel_env, fake_telegram
from tests.fake_ntfy import FakeNtfy
from tests.fake_telegram import FakeTelegram
from tests.fake_twilio import FakeTwilio
from tests.support import ServerProcess, wait_for_pending, wait_for_status
from tests.test_ntfy import pushes
from tests.test_telegram import closed, request_message
from tests.whatsapp_support import ALICE, sent_to, text_of

TOOL = "permissions__approve"
CHANNELS = ("whatsapp", "telegram", "ntfy", "apprise")


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with fake_telegram() as fake:
        yield fake


async def shown_everywhere(server: ServerProcess, request_id: str, within: float = 10) -> None:
    """Wait until every channel has recorded its sends of `request_id` (what it withdraws after a restart from)."""
    store = Store(server.database_url or f"sqlite:///{server.data_dir / 'approval.db'}")
    try:
        for _ in range(int(within / 0.02)):
            sent = {channel: await Outbox(store, channel).recipients(request_id) for channel in CHANNELS}
            if all(sent.values()):
                return
            await asyncio.sleep(0.02)
    finally:
        await store.aclose()
    raise AssertionError(f"not every channel recorded its sends of {request_id}: {sent}")


async def test_a_request_left_by_a_dead_server_is_closed_on_every_channel_and_no_other_is_told_again(
    tmp_path: Path,
    database_url: str,
    fake: FakeTwilio,
    telegram: FakeTelegram,
    ntfy: FakeNtfy,
    targets: AppriseTargets,
) -> None:
    # PostgreSQL: a live server takes a dead one's requests over once their server's lease ran out.
    env = every_channel_env(tmp_path, fake, telegram, ntfy, targets, APPROVAL_LEASE_SECONDS="1")
    server = ServerProcess(data_dir=tmp_path / "data", database_url=database_url, env=env)
    server.start()
    left: dict[str, Any] = {}
    try:
        async with server.api() as api:
            async with server.mcp() as mcp:  # one request answered before the crash: its people are told once
                done = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "one"}}))
                first = await wait_for_pending(api)
                await shown_everywhere(server, first["id"])
                await api.post(f"/api/requests/{first['id']}/decision", json={"decision": "allow"})
                await done
            await closed(telegram, await request_message(telegram, TG_BOB, first["id"]))
            await pushes(ntfy, ALICE_TOPIC, 2)
            await targets.arrived("alice", 2)
            await sent_to(fake, ALICE, 2)

            async def wait_while_the_server_dies() -> None:
                async with server.mcp() as mcp:
                    call = mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "make deploy"}})
                    waiting = asyncio.create_task(call)
                    left.update(await wait_for_pending(api, {"input": {"command": "make deploy"}}))
                    await shown_everywhere(server, left["id"])
                    server.kill()
                    await asyncio.wait_for(waiting, 30)

            # The transport's own error, from the call or from closing the session on a dead server.
            with pytest.raises(Exception):  # noqa: B017, PT011
                await wait_while_the_server_dies()
    finally:
        server.stop()
    to_alice = await request_message(telegram, TG_ALICE, left["id"])
    to_bob = await request_message(telegram, TG_BOB, left["id"])
    assert to_alice.reply_markup is not None  # the dead server left its buttons
    (_, _, asked) = await pushes(ntfy, ALICE_TOPIC, 3)
    told_before = {"whatsapp": len(fake.sent), "ntfy": 3, "apprise": 3}

    restarted = ServerProcess(data_dir=tmp_path / "data", database_url=database_url, port=server.port, env=env)
    restarted.start()
    try:
        async with restarted.api() as api:
            row = await wait_for_status(api, left["id"], "abandoned")
            for message in (to_alice, to_bob):
                edited = await closed(telegram, message)
                assert "make deploy" in edited.text
                assert edited.text.endswith("Over (abandoned); no answer is needed.")
            replaced = (await pushes(ntfy, ALICE_TOPIC, 4))[-1]
            assert (replaced.sequence_id, replaced.actions) == (asked.sequence_id, [])
            assert replaced.title == f"Request {left['id']} abandoned"
            notice = (await targets.arrived("alice", 4))[-1]
            assert notice.message == f"Request {left['id']} is over (abandoned): nothing is left to decide."
            told = (await sent_to(fake, ALICE, told_before["whatsapp"] + 1))[-1]
            assert text_of(told) == f"Request {left['id']} is over (abandoned); no answer is needed."
            await asyncio.sleep(1)  # time enough for anything else it would send
    finally:
        restarted.stop()
    assert row["decided_via"] in ("startup", "takeover")
    # Each was told once, and the request closed before the crash not at all.
    assert len(fake.sent) == told_before["whatsapp"] + 1
    assert len(ntfy.on(ALICE_TOPIC)) == told_before["ntfy"] + 1
    assert len(targets.received("alice")) == told_before["apprise"] + 1
    assert all(message.reply_markup is None for message in telegram.messages(TG_ALICE) if message.from_bot)
