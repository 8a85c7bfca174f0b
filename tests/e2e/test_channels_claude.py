"""End to end through every channel: the real `claude` CLI waits while a person answers on (fake) Telegram, ntfy or
an Apprise service's link, and runs the command only when that answer allows it; an answer on one channel closes the
request on all the others (Telegram's message edited, ntfy's push replaced, WhatsApp told).

One server has every channel on, for alice and bob (see `tests.every_channel`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.apprise_targets import AppriseTargets
from tests.dashboard_support import DASHBOARD_TOKEN, browser, csrf_of, local, signed_in
from tests.e2e.claude_cli import ClaudeResult, run_claude_async, write_mcp_config
from tests.e2e.fake_anthropic import FakeAnthropic, tool_use
from tests.every_channel import ALICE_TOPIC, TG_ALICE, TG_BOB, every_channel_env, fake_telegram
from tests.fake_ntfy import FakeNtfy
from tests.fake_telegram import FakeTelegram
from tests.fake_twilio import FakeTwilio
from tests.support import MCP_TOKEN, ServerProcess, wait_for_pending, wait_for_status
from tests.test_ntfy import pushes
from tests.test_telegram import APPROVE, DENY, closed, request_message, set_webhook
from tests.whatsapp_support import ALICE, PUBLIC_URL, sent_to, text_of

pytestmark = pytest.mark.usefixtures("require_claude")

SECRET = "webhook-secret_0123456789"


@dataclass
class Run:
    """One `claude -p` run whose Bash call writes `marker`, and the request it asked for."""

    task: asyncio.Task[ClaudeResult]
    model: FakeAnthropic
    marker: Path
    request_id: str

    async def result(self) -> ClaudeResult:
        return await asyncio.wait_for(self.task, 90)


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with fake_telegram() as fake:
        yield fake


@pytest.fixture
def server(
    targets: AppriseTargets,  # first: started before the server, so stopped after it (it tells them how it ended)
    start_server: Callable[..., ServerProcess],
    fake: FakeTwilio,
    telegram: FakeTelegram,
    ntfy: FakeNtfy,
    tmp_path: Path,
) -> ServerProcess:
    env = every_channel_env(
        tmp_path,
        fake,
        telegram,
        ntfy,
        targets,
        APPROVAL_DASHBOARD_TOKEN=DASHBOARD_TOKEN,
        TELEGRAM_WEBHOOK_SECRET=SECRET,
    )
    started = start_server(**env)
    fake.configure_webhook(f"{PUBLIC_URL}/twilio-webhook", deliver_to=f"{started.url}/twilio-webhook")
    set_webhook(telegram, SECRET, f"{PUBLIC_URL}/telegram-webhook")
    telegram.route_webhooks_to(started.url)
    ntfy.route(PUBLIC_URL, started.url)
    return started


async def ask(
    server: ServerProcess,
    api: httpx.AsyncClient,
    fake_anthropic: Callable[..., FakeAnthropic],
    tmp_path: Path,
    name: str,
) -> Run:
    """Start `claude -p` with the server as its permission tool; return once its request is pending."""
    marker = tmp_path / name
    call = tool_use("Bash", {"command": f"echo ok > {marker}", "description": "mark"}, id=f"toolu_{name}")
    model = fake_anthropic([[call]])
    config = write_mcp_config(tmp_path / f"{name}.json", f"{server.url}/mcp", token=MCP_TOKEN, timeout_ms=330_000)
    work = tmp_path / f"work-{name}"
    work.mkdir()
    task = asyncio.create_task(
        run_claude_async(
            "do it", base_url=model.base_url, cwd=work, mcp_config=config, run_dir=tmp_path / f"run-{name}", timeout=90
        )
    )
    pending = await wait_for_pending(api, {"tool_use_id": f"toolu_{name}"}, within=60)
    return Run(task, model, marker, pending["id"])


async def ran(run: Run, allowed: bool) -> None:
    """The CLI ended well, and ran the command exactly when it was allowed."""
    result = await run.result()
    assert result.returncode == 0, result.describe()
    assert run.marker.exists() is allowed
    assert run.model.tool_result(f"toolu_{run.marker.name}").is_error is not allowed


@pytest.mark.parametrize(("button", "allowed"), [(APPROVE, True), (DENY, False)])
async def test_a_telegram_button_decides_what_claude_code_runs(
    server: ServerProcess,
    telegram: FakeTelegram,
    fake_anthropic: Callable[..., FakeAnthropic],
    tmp_path: Path,
    button: str,
    allowed: bool,
) -> None:
    async with server.api() as api:
        run = await ask(server, api, fake_anthropic, tmp_path, "telegram")
        to_bob = await request_message(telegram, TG_BOB, run.request_id, server=server)
        assert f"echo ok > {run.marker}" in to_bob.text
        await telegram.deliver(telegram.press(TG_BOB, to_bob, button))
        await ran(run, allowed)
        row = await wait_for_status(api, run.request_id, "allowed" if allowed else "denied")
    assert (row["decided_by"], row["decided_via"]) == ("bob", "telegram")
    if not allowed:
        assert run.model.tool_result("toolu_telegram").content.startswith("Denied by bob via telegram")


async def test_an_ntfy_action_decides_what_claude_code_runs_and_the_other_channels_close(
    server: ServerProcess,
    fake: FakeTwilio,
    telegram: FakeTelegram,
    ntfy: FakeNtfy,
    fake_anthropic: Callable[..., FakeAnthropic],
    tmp_path: Path,
) -> None:
    async with server.api() as api:
        run = await ask(server, api, fake_anthropic, tmp_path, "ntfy")
        (push,) = await pushes(ntfy, ALICE_TOPIC)
        assert f"echo ok > {run.marker}" in push.message
        to_alice = await request_message(telegram, TG_ALICE, run.request_id, server=server)
        to_bob = await request_message(telegram, TG_BOB, run.request_id, server=server)
        on_whatsapp = len(await sent_to(fake, ALICE))
        pressed = await ntfy.press(push, "Approve")
        assert pressed.status_code == 200, pressed.text
        await ran(run, True)
        row = await wait_for_status(api, run.request_id, "allowed")
        assert (row["decided_by"], row["decided_via"]) == ("alice", "ntfy")
        for message in (to_alice, to_bob):  # every Telegram message about it says how it ended, with no buttons
            assert (await closed(telegram, message)).text.endswith("✅ Approved by alice via ntfy.")
        told = (await sent_to(fake, ALICE, on_whatsapp + 1))[-1]
        assert run.request_id in text_of(told)
        assert "approved" in text_of(told).lower()


async def test_a_dashboard_decision_by_a_person_closes_the_request_on_every_channel(
    server: ServerProcess,
    telegram: FakeTelegram,
    ntfy: FakeNtfy,
    fake_anthropic: Callable[..., FakeAnthropic],
    tmp_path: Path,
) -> None:
    async with server.api() as api, signed_in(server) as owner:
        run = await ask(server, api, fake_anthropic, tmp_path, "dashboard")
        (push,) = await pushes(ntfy, ALICE_TOPIC)
        to_bob = await request_message(telegram, TG_BOB, run.request_id, server=server)
        page = await owner.get(f"/requests/{run.request_id}")
        form = {"csrf": csrf_of(page.text), "decision": "deny", "message": "not now"}
        assert (await owner.post(f"/requests/{run.request_id}/decision", data=form)).status_code == 303
        await ran(run, False)
        assert "not now" in run.model.tool_result("toolu_dashboard").content
        edited = await closed(telegram, to_bob)
        assert edited.text.endswith("❌ Denied by owner via dashboard.")
        replaced = (await pushes(ntfy, ALICE_TOPIC, 2))[-1]
        assert replaced.sequence_id == push.sequence_id
        assert replaced.actions == []
        late = await ntfy.press(push, "Approve")  # the old push's button no longer approves anything
        assert late.status_code == 410
    assert not run.marker.exists()


async def test_the_link_in_an_apprise_notice_decides_what_claude_code_runs(
    server: ServerProcess,
    targets: AppriseTargets,
    fake_anthropic: Callable[..., FakeAnthropic],
    tmp_path: Path,
) -> None:
    async with server.api() as api:
        run = await ask(server, api, fake_anthropic, tmp_path, "apprise")
        (notice,) = await targets.arrived("alice")
        assert f"echo ok > {run.marker}" in notice.message
        link = next(word for word in notice.message.split() if word.startswith(f"{PUBLIC_URL}/r/"))
        async with browser(server) as http:
            page = await http.get(local(link, server))
            assert page.status_code == 200
            form = {"csrf": csrf_of(page.text), "decision": "allow"}
            assert (await http.post(local(link, server), data=form)).status_code == 200
        await ran(run, True)
        row = await wait_for_status(api, run.request_id, "allowed")
        ended = (await targets.arrived("alice", 2))[-1]
    assert (row["decided_by"], row["decided_via"]) == ("alice", "web link")
    assert ended.message == f"Request {run.request_id} was approved by alice via web link."
