"""Every hostile input of the corpus, on every surface a human reads: the WhatsApp messages (from the fake Twilio),
the dashboard's request page (its text as chromium lays it out, `innerText`), `approval-server show`, and the
agent's `updatedInput` once approved.

On each surface: no character a human cannot see is shown as typed; the value reads back exactly (`unreveal`);
no line of a value passes for a label; on text surfaces, the bidi algorithm moves nothing across a space.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from bidi import get_display
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from playwright.async_api import Browser, Page
from typer.testing import CliRunner

from approval_server.entry.cli import app
from approval_server.render import diff
from approval_server.reveal import is_hidden
from tests.browser import DASHBOARD_TOKEN, DESKTOP
from tests.display_support import gutterless, unreveal
from tests.fake_twilio import FakeTwilio
from tests.hostile_corpus import Case, corpus
from tests.support import API_TOKEN, MCP_TOKEN, ServerProcess
from tests.whatsapp_support import ALICE, text_of

pytestmark = pytest.mark.timeout(900)

TOOL = "permissions__approve"
BATCH = 30
MARKER = re.compile(r"⟨U\+[0-9A-F]{4,6}⟩|⟨\d+ spaces?⟩|⟨/?rtl⟩")
CASES = corpus()


# The server's own icons, in its own words around the request (an input's U+FE0F is always escaped).
ICONS = re.compile("[\u23f1\u23f8\u26a0]\ufe0f")


def hidden_shown_as_typed(text: str) -> list[str]:
    return [f"U+{ord(c):04X}" for c in ICONS.sub("", MARKER.sub("", text)) if c not in "\n" and is_hidden(c)]


def expected(case: Case) -> str:
    """What must read back from a surface: the value, or for an Edit, its diff."""
    if case.tool == "Edit":
        return diff(case.input["old_string"], case.input["new_string"])
    return case.value


def reads_back(surface: str, case: Case) -> bool:
    text = unreveal(gutterless(surface.replace("```", "\n")))
    return expected(case) in text


def words_stay_in_place(line: str) -> bool:
    screen = get_display(line, base_dir="L")
    return [sorted(piece) for piece in screen.split(" ")] == [sorted(piece) for piece in line.split(" ")]


def agent(server: ServerProcess, name: str) -> Client[StreamableHttpTransport]:
    headers = {"Authorization": f"Bearer {MCP_TOKEN}", "X-Agent-Name": name, "X-Agent-Cwd": "/srv/prod"}
    return Client(StreamableHttpTransport(f"{server.url}/mcp", headers=headers))


def show(server: ServerProcess, request_id: str) -> str:
    env = {
        "SERVER_PORT": str(server.port),
        "APPROVAL_API_TOKEN": API_TOKEN,
        "APPROVAL_DATA_DIR": str(server.data_dir),
        "HOME": str(server.data_dir),
    }
    result = CliRunner().invoke(app, ["show", request_id], env=env)
    assert result.exit_code == 0, result.output
    return result.output


async def page_text(page: Page, server: ServerProcess, request_id: str) -> str:
    await page.goto(f"{server.url}/requests/{request_id}")
    return await page.inner_text("main")


async def whatsapp_text(fake: FakeTwilio, request_id: str) -> str:
    for _ in range(500):
        messages = [text_of(m) for m in fake.sent if m.to == f"whatsapp:{ALICE}" and request_id in text_of(m)]
        if any("Expires in" in m for m in messages):
            return "\n".join(messages)
        await asyncio.sleep(0.02)
    raise AssertionError(f"no WhatsApp message for {request_id}")


async def test_the_hostile_corpus_on_every_surface(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio, browser: Browser
) -> None:
    server = start_whatsapp(
        APPROVAL_DASHBOARD_TOKEN=DASHBOARD_TOKEN,
        APPROVAL_WHATSAPP_PER_MINUTE="1000",
        APPROVAL_MAX_PENDING_PER_AGENT=str(BATCH),
        APPROVAL_MAX_PENDING_PER_TOKEN=str(BATCH),
    )
    context = await browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto(f"{server.url}/login?token={DASHBOARD_TOKEN}")
    checked: Counter[str] = Counter()
    failures: list[str] = []
    async with server.api() as api:
        for start in range(0, len(CASES), BATCH):
            batch = CASES[start : start + BATCH]
            async with agent(server, f"corpus-{start}") as mcp:
                calls = [
                    asyncio.create_task(
                        mcp.call_tool_mcp(TOOL, {"tool_name": c.tool, "input": c.input, "tool_use_id": f"t{start + i}"})
                    )
                    for i, c in enumerate(batch)
                ]
                ids = await _pending_ids(api, [f"t{start + i}" for i in range(len(batch))], calls)
                for number, (case, request_id) in enumerate(zip(batch, ids, strict=True), start):
                    surfaces = {
                        "whatsapp": await whatsapp_text(fake, request_id),
                        "dashboard": await page_text(page, server, request_id),
                        "show": await asyncio.to_thread(show, server, request_id),
                    }
                    for surface, text in surfaces.items():
                        failures += _check(number, case, surface, text)
                        checked[surface] += 1
                    decided = await api.post(f"/api/requests/{request_id}/decision", json={"decision": "allow"})
                    assert decided.status_code == 200
                for number, (case, call) in enumerate(zip(batch, calls, strict=True), start):
                    answer = json.loads((await call).content[0].text)
                    if answer != {"behavior": "allow", "updatedInput": case.input}:
                        failures.append(f"#{number} {case.category} updatedInput: {answer}")
                    checked["updatedInput"] += 1
    assert failures == []
    assert min(checked.values()) == len(CASES) >= 300
    print(f"corpus: {len(CASES)} inputs, {dict(checked)} surface checks, {dict(Counter(c.category for c in CASES))}")


def _check(number: int, case: Case, surface: str, text: str) -> list[str]:
    where = f"#{number} {case.category} {case.tool} on {surface}"
    problems = []
    if hidden := hidden_shown_as_typed(text):
        problems.append(f"{where}: shown as typed: {hidden[:5]}")
    too_long = surface == "whatsapp" and "too long" in text
    if not too_long and not reads_back(text, case):
        problems.append(f"{where}: does not read back")
    if case.tool == "Bash" and surface != "dashboard":
        labels = [line for line in text.split("\n") if line.startswith("Command:")]
        if len(labels) > 1:
            problems.append(f"{where}: {len(labels)} Command labels")
    if surface != "dashboard":
        moved = [line for line in text.split("\n") if not words_stay_in_place(line)]
        if moved:
            problems.append(f"{where}: words move on screen: {moved[:2]}")
    return problems


async def _pending_ids(api: Any, tool_use_ids: list[str], calls: list[Any]) -> list[str]:
    for _ in range(1000):
        rows = (await api.get("/api/requests", params={"status": "pending", "limit": 1000})).json()["requests"]
        by_use = {row["tool_use_id"]: row["id"] for row in rows}
        if all(use in by_use for use in tool_use_ids):
            return [by_use[use] for use in tool_use_ids]
        await asyncio.sleep(0.05)
    missing = [use for use in tool_use_ids if use not in by_use]
    done = [call.result().content[0].text for call in calls if call.done() and not call.exception()]
    raise AssertionError(f"not pending: {missing}; answered: {done[:3]}")
