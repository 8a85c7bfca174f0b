"""End to end from the phone: the real `claude` CLI waits while an approver taps a button on (fake) WhatsApp."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.claude_cli import run_claude_async, write_mcp_config
from tests.e2e.fake_anthropic import FakeAnthropic, tool_use
from tests.fake_twilio import FakeTwilio
from tests.support import MCP_TOKEN, ServerProcess, wait_for_pending
from tests.whatsapp_support import ALICE, make_template, sent_to

pytestmark = pytest.mark.usefixtures("require_claude")


@pytest.mark.parametrize(("tap", "runs"), [("approve", True), ("deny", False)])
async def test_a_tap_on_the_phone_decides_what_claude_code_runs(
    start_whatsapp: Callable[..., ServerProcess],
    fake: FakeTwilio,
    fake_anthropic: Callable[..., FakeAnthropic],
    tmp_path: Path,
    work_dir: Path,
    tap: str,
    runs: bool,
) -> None:
    server = start_whatsapp(TWILIO_CONTENT_SID=make_template(fake))
    marker = tmp_path / "from-the-phone"
    model = fake_anthropic([[tool_use("Bash", {"command": f"echo ok > {marker}", "description": "m"}, id="toolu_w")]])
    config = write_mcp_config(tmp_path / "mcp.json", f"{server.url}/mcp", token=MCP_TOKEN, timeout_ms=330_000)
    async with server.api() as api:
        run = asyncio.create_task(
            run_claude_async(
                "write it", base_url=model.base_url, cwd=work_dir, mcp_config=config, run_dir=tmp_path / "run"
            )
        )
        pending = await wait_for_pending(api, {"tool_use_id": "toolu_w"}, within=60)
        message = (await sent_to(fake, ALICE))[0]
        assert message.content_variables is not None
        assert f"echo ok > {marker}" in message.content_variables["1"]
        title = "✅ Approve" if tap == "approve" else "❌ Deny"
        await fake.tap_button(from_=ALICE, replied_to=message.sid, payload=f"{tap} {pending['id']}", title=title)
        result = await run
    assert result.returncode == 0, result.describe()
    assert marker.exists() is runs
    seen = model.tool_result("toolu_w")
    assert seen.is_error is not runs
    if not runs:
        assert seen.content.startswith(f"Denied by {ALICE} via whatsapp")
