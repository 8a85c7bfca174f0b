"""Grants through the channels, against the real server: "allow for session" and "allow for a while" from WhatsApp
(a fake Twilio) and from the dashboard's forms, what the agent is answered, what is remembered for whom, what is
asked again, and the `/grants` page with its revoke form.

One server serves the whole module (WhatsApp on with the repository's quick-reply template, the dashboard, a policy
file allowing `Bash(echo hi)`). Every test keeps to its own agents and commands (each holds a unique marker), so
sharing the server does not couple the tests.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.dashboard_support import (
    DASHBOARD_TOKEN,
    MCP,
    TOOL,
    Call,
    answer,
    answer_of,
    browser,
    csrf_of,
    page_csrf,
    signed_in,
    still_pending,
)
from tests.databases import Databases
from tests.fake_twilio import FakeTwilio, Message
from tests.support import MCP_TOKEN, REPO, ServerProcess, wait_for_pending
from tests.whatsapp_support import ALICE, BOB, PUBLIC_URL, make_template, text_of, whatsapp_env

HIDDEN_MARK = '<span class="hidden-char" title="hidden character">⟨U+202E⟩</span>'
POLICY = '[permissions]\nallow = ["Bash(echo hi)"]\n'
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
T = TypeVar("T")


@dataclass
class Deployment:
    server: ServerProcess
    fake: FakeTwilio
    template: str  # the content SID of the repository's template, which every request message uses


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("grants")
    database_url = databases.create(data_dir)
    policy = tmp_path_factory.mktemp("policy") / "policy.toml"
    policy.write_text(POLICY)
    with FakeTwilio() as fake:
        template = make_template(fake)
        env = whatsapp_env(
            fake,
            TWILIO_CONTENT_SID=template,
            APPROVAL_DASHBOARD_TOKEN=DASHBOARD_TOKEN,
            POLICY_FILE=str(policy),
            APPROVAL_WHATSAPP_PER_MINUTE="1000",  # one server for the module: its tests ask more than 6 a minute
        )
        server = ServerProcess(data_dir=data_dir, database_url=database_url, env=env)
        fake.configure_webhook(f"{PUBLIC_URL}/twilio-webhook", deliver_to=f"{server.url}/twilio-webhook")
        try:
            server.start()
            yield Deployment(server, fake, template)
        finally:
            server.stop()
            databases.drop(database_url)


# -- helpers --------------------------------------------------------------------------------------------------------


def marker() -> str:
    return uuid.uuid4().hex[:10]


def agent_mcp(server: ServerProcess, agent: str | None = None, cwd: str | None = None, *, headers: bool = False) -> MCP:
    """An MCP client naming its agent and directory in the URL (`?agent=&cwd=`) or, with `headers`, in headers."""
    sent = {"Authorization": f"Bearer {MCP_TOKEN}"}
    url = f"{server.url}/mcp"
    if headers:
        sent |= {"X-Agent-Name": agent} if agent else {}
        sent |= {"X-Agent-Cwd": cwd} if cwd else {}
    elif query := {key: value for key, value in (("agent", agent), ("cwd", cwd)) if value}:
        url += "?" + urlencode(query)
    return Client(StreamableHttpTransport(url, headers=sent))


async def eventually(find: Callable[[], T | None], what: str, within: float = 15) -> T:
    """The first non-None value of `find()`, polled until `within` seconds have passed."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = find()
        if found is not None:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what}: not within {within} s")


async def start(
    mcp: MCP,
    api: httpx.AsyncClient,
    tool_input: dict[str, Any],
    *,
    agent: str | None,
    cwd: str | None,
    tool_name: str = "Bash",
) -> tuple[Call, dict[str, Any]]:
    """Start a permission call (it waits for an answer) and return it with its pending request."""
    call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": tool_name, "input": tool_input}))
    match = {"tool_name": tool_name, "input": tool_input, "agent": agent, "cwd": cwd}
    return call, await wait_for_pending(api, match)


async def call_now(mcp: MCP, tool_input: dict[str, Any], tool_name: str = "Bash") -> dict[str, Any]:
    """A permission call that must be answered at once (by the policy or a grant): no human is asked."""
    result = await asyncio.wait_for(mcp.call_tool_mcp(TOOL, {"tool_name": tool_name, "input": tool_input}), 15)
    return answer_of(result)


def is_request_message(message: Message) -> bool:
    return message.content_sid is not None or (message.body or "").startswith("🔔 Approval request")


def request_messages(fake: FakeTwilio) -> list[Message]:
    return [m for m in fake.sent if is_request_message(m)]


def mentioning(fake: FakeTwilio, text: str) -> list[Message]:
    return [m for m in fake.sent if text in text_of(m)]


async def request_message(fake: FakeTwilio, number: str, request_id: str) -> Message:
    """The template message that asked `number` about `request_id`."""

    def find() -> Message | None:
        for m in fake.sent:
            if m.to == f"whatsapp:{number}" and m.content_variables and m.content_variables.get("2") == request_id:
                return m
        return None

    return await eventually(find, f"the request message for {request_id} to {number}")


async def notice(fake: FakeTwilio, number: str, *texts: str) -> str:
    """The text of the first plain message (not a request) to `number` that holds every one of `texts`."""

    def find() -> str | None:
        for m in fake.sent:
            if m.to == f"whatsapp:{number}" and not is_request_message(m) and all(t in (m.body or "") for t in texts):
                return m.body
        return None

    return await eventually(find, f"a notice to {number} holding {texts}")


async def grants(api: httpx.AsyncClient, everything: bool = False) -> list[dict[str, Any]]:
    response = await api.get("/api/grants", params={"all": "1"} if everything else {})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["grants"]
    return found


async def grant_of(api: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    """The one grant (in force) that the answer to `request_id` made."""
    made = [grant for grant in await grants(api) if grant["request_id"] == request_id]
    assert len(made) == 1, made
    return made[0]


async def rows_for(api: httpx.AsyncClient, **match: Any) -> list[dict[str, Any]]:
    response = await api.get("/api/requests", params={"limit": 1000})
    rows: list[dict[str, Any]] = response.json()["requests"]
    return [row for row in rows if all(row.get(key) == value for key, value in match.items())]


async def only_new_row(api: httpx.AsyncClient, before: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    """The one request matching `match` that is not among `before`."""
    known = {row["id"] for row in before}
    new = [row for row in await rows_for(api, **match) if row["id"] not in known]
    assert len(new) == 1, new
    return new[0]


async def deny_via_api(api: httpx.AsyncClient, request_id: str) -> None:
    response = await api.post(f"/api/requests/{request_id}/decision", json={"decision": "deny", "message": "cleanup"})
    assert response.status_code == 200, response.text


def session_permissions(command: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "addRules",
            "rules": [{"toolName": "Bash", "ruleContent": command}],
            "behavior": "allow",
            "destination": "session",
        }
    ]


def card(page: str, request_id: str) -> str:
    """The card of one pending request on the dashboard's index page."""
    found = re.search(rf'<article class="card" id="req-{request_id}".*?</article>', page, re.DOTALL)
    assert found is not None, f"no card for {request_id}"
    return found.group(0)


def grant_row(page: str, grant_id: str) -> str:
    found = re.search(rf'<tr id="grant-{grant_id}">.*?</tr>', page, re.DOTALL)
    assert found is not None, f"no row for grant {grant_id}"
    return found.group(0)


def sections(page: str) -> tuple[str, str]:
    """The `/grants` page cut in two: grants in force, and ended ones (empty when none has ended)."""
    active, _, ended = page.partition('id="ended-title"')
    return active, ended


def minutes_between(start_text: str, end_text: str) -> float:
    return (datetime.fromisoformat(end_text) - datetime.fromisoformat(start_text)).total_seconds() / 60


# -- WhatsApp -------------------------------------------------------------------------------------------------------


async def test_allow_for_session_from_whatsapp_remembers_the_command_for_that_agent_and_directory(
    deployment: Deployment,
) -> None:
    server, fake = deployment.server, deployment.fake
    agent, cwd, other_cwd = f"web-{marker()}", f"/srv/{marker()}", f"/srv/{marker()}"
    command = f"make build {marker()}"
    tool_input = {"command": command}
    async with agent_mcp(server, agent, cwd) as mcp, server.api() as api:
        call, pending = await start(mcp, api, tool_input, agent=agent, cwd=cwd)
        request_id = pending["id"]
        asked = await request_message(fake, ALICE, request_id)
        await request_message(fake, BOB, request_id)
        tap = await fake.tap_button(
            from_=ALICE, replied_to=asked.sid, payload=f"always {request_id}", title="🔁 Allow for session"
        )
        assert tap.status_code == 200
        assert await answer(call) == {
            "behavior": "allow",
            "updatedInput": tool_input,
            "updatedPermissions": session_permissions(command),
        }
        row = (await api.get(f"/api/requests/{request_id}")).json()
        assert (row["status"], row["decided_by"], row["decided_via"], row["remembered"]) == (
            "allowed",
            ALICE,
            "whatsapp",
            "session",
        )
        grant = await grant_of(api, request_id)
        assert (grant["kind"], grant["rule"], grant["tool_name"]) == ("session", f"Bash({command})", "Bash")
        assert (grant["agent"], grant["cwd"], grant["session"]) == (agent, cwd, None)
        assert grant["covers"] == f"agent {agent} in {cwd}"
        assert (grant["created_by"], grant["created_via"]) == (ALICE, "whatsapp")
        assert 24 * 60 - 1 < minutes_between(grant["created_at"], grant["expires_at"]) <= 24 * 60
        confirmation = await notice(fake, ALICE, f"Request {request_id} approved")
        assert confirmation.startswith("✅")
        assert f"Bash({command})" in confirmation
        assert f"grant {grant['id']}" in confirmation
        told_bob = await notice(fake, BOB, f"Request {request_id} was approved by {ALICE}")
        assert f"grant {grant['id']}" in told_bob

        # The same command again from the same agent and directory, named in the URL, then by another connection
        # naming them in headers: allowed by the grant, and no one is asked.
        asked_before = len(request_messages(fake))
        before = await rows_for(api, input=tool_input)
        again = await call_now(mcp, tool_input)
        async with agent_mcp(server, agent, cwd, headers=True) as by_headers:
            again_by_headers = await call_now(by_headers, tool_input)
        assert again == again_by_headers == {"behavior": "allow", "updatedInput": tool_input}
        assert len(request_messages(fake)) == asked_before
        remembered = [
            row for row in await rows_for(api, input=tool_input) if row["id"] not in {r["id"] for r in before}
        ]
        assert len(remembered) == 2
        for repeat in remembered:
            assert (repeat["status"], repeat["decided_via"]) == ("allowed", "grant")
            assert repeat["decided_by"] == f"grant {grant['id']} allow Bash({command})"
            assert (repeat["agent"], repeat["cwd"], repeat["remembered"]) == (agent, cwd, None)

        # Not the same again: another directory, another agent name, another command. Each asks a human.
        other_agent = f"other-{marker()}"
        async with (
            agent_mcp(server, agent, other_cwd) as elsewhere,
            agent_mcp(server, other_agent, cwd) as another_agent,
        ):
            asks = [
                await start(elsewhere, api, tool_input, agent=agent, cwd=other_cwd),
                await start(another_agent, api, tool_input, agent=other_agent, cwd=cwd),
                await start(mcp, api, {"command": f"{command} --force"}, agent=agent, cwd=cwd),
            ]
            for call_again, asked_again in asks:
                await request_message(fake, ALICE, asked_again["id"])
                await request_message(fake, BOB, asked_again["id"])
                await still_pending(api, asked_again["id"], call_again)
            assert len(request_messages(fake)) == asked_before + 2 * len(asks)
            for call_again, asked_again in asks:
                await deny_via_api(api, asked_again["id"])
                assert (await answer(call_again))["behavior"] == "deny"
    # A call a grant allowed is never shown on WhatsApp, not even as an outcome.
    for repeat in remembered:
        assert mentioning(fake, repeat["id"]) == []


async def test_allow_for_30_minutes_by_text_covers_the_agent_in_any_directory(deployment: Deployment) -> None:
    server, fake = deployment.server, deployment.fake
    agent, cwd = f"ci-{marker()}", f"/srv/{marker()}"
    tool_input = {"command": f"npm run e2e -- {marker()}"}
    async with agent_mcp(server, agent, cwd) as mcp, server.api() as api:
        call, pending = await start(mcp, api, tool_input, agent=agent, cwd=cwd)
        request_id = pending["id"]
        await request_message(fake, ALICE, request_id)
        replied = await fake.send_inbound(from_=ALICE, body=f"ALLOW {request_id} 30m")
        assert replied.status_code == 200
        decided_at = datetime.now(UTC)
        assert await answer(call) == {"behavior": "allow", "updatedInput": tool_input}  # no rule for Claude Code
        grant = await grant_of(api, request_id)
        row = (await api.get(f"/api/requests/{request_id}")).json()
        assert (row["status"], row["decided_via"], row["remembered"]) == ("allowed", "whatsapp", "timed")
        assert (grant["kind"], grant["agent"], grant["cwd"], grant["session"]) == ("timed", agent, None, None)
        assert grant["covers"] == f"agent {agent}"
        assert minutes_between(grant["created_at"], grant["expires_at"]) == 30
        expires = datetime.fromisoformat(grant["expires_at"])
        assert abs(expires - (decided_at + timedelta(minutes=30))) < timedelta(seconds=30)
        confirmation = await notice(fake, ALICE, f"Request {request_id} approved")
        assert f"grant {grant['id']}" in confirmation
        assert f"until {expires:%H:%M} UTC" in confirmation

        before = await rows_for(api, input=tool_input)
        asked_before = len(request_messages(fake))
        async with agent_mcp(server, agent, f"/elsewhere/{marker()}") as same_agent_elsewhere:
            assert await call_now(same_agent_elsewhere, tool_input) == {"behavior": "allow", "updatedInput": tool_input}
        repeat = await only_new_row(api, before, input=tool_input)
        assert (repeat["decided_via"], repeat["decided_by"]) == ("grant", f"grant {grant['id']} allow {grant['rule']}")
        assert len(request_messages(fake)) == asked_before

        # Another agent name is not covered, and neither is an unnamed agent.
        other_agent = f"x-{marker()}"
        async with agent_mcp(server, other_agent) as other, agent_mcp(server) as unnamed:
            other_call, other_pending = await start(other, api, tool_input, agent=other_agent, cwd=None)
            unnamed_call, unnamed_pending = await start(unnamed, api, tool_input, agent=None, cwd=None)
            for waiting, asked in ((other_call, other_pending), (unnamed_call, unnamed_pending)):
                await request_message(fake, ALICE, asked["id"])
                await still_pending(api, asked["id"], waiting)
                await deny_via_api(api, asked["id"])
                assert (await answer(waiting))["behavior"] == "deny"
    assert mentioning(fake, repeat["id"]) == []


@pytest.mark.parametrize(
    ("duration", "problem"),
    [
        ("forever", "'forever' is neither 'session' nor a duration such as 30m or 2h"),
        ("25h", "'25h' is not between 1 minute and 24 hours"),
    ],
)
async def test_a_bad_duration_on_whatsapp_applies_nothing_and_says_why(
    deployment: Deployment, duration: str, problem: str
) -> None:
    server, fake = deployment.server, deployment.fake
    agent = f"ops-{marker()}"
    tool_input = {"command": f"terraform apply {marker()}"}
    async with agent_mcp(server, agent) as mcp, server.api() as api:
        call, pending = await start(mcp, api, tool_input, agent=agent, cwd=None)
        request_id = pending["id"]
        await request_message(fake, ALICE, request_id)
        reply = f"ALLOW {request_id} {duration}"
        assert (await fake.send_inbound(from_=ALICE, body=reply)).status_code == 200
        told = await notice(fake, ALICE, "Not applied", problem)
        assert problem in told
        assert "ALLOW <id> 30m" in told  # how to answer
        await still_pending(api, request_id, call)
        assert [g for g in await grants(api, everything=True) if g["request_id"] == request_id] == []
        await deny_via_api(api, request_id)
        assert (await answer(call))["behavior"] == "deny"


async def test_deny_with_a_reason_on_whatsapp_tells_the_agent_that_reason(deployment: Deployment) -> None:
    server, fake = deployment.server, deployment.fake
    tool_input = {"command": f"psql prod -c 'delete from jobs' -- {marker()}"}
    async with agent_mcp(server) as mcp, server.api() as api:
        call, pending = await start(mcp, api, tool_input, agent=None, cwd=None)
        request_id = pending["id"]
        await request_message(fake, BOB, request_id)
        await fake.send_inbound(from_=BOB, body=f"DENY {request_id} use the staging database")
        result = await answer(call)
        row = (await api.get(f"/api/requests/{request_id}")).json()
    assert result["behavior"] == "deny"
    assert "use the staging database" in result["message"]
    assert result["message"].startswith(f"Denied by {BOB} via whatsapp")
    assert (row["status"], row["reason"], row["remembered"]) == ("denied", "use the staging database", None)


async def test_a_call_the_policy_allows_sends_nothing_to_whatsapp(deployment: Deployment) -> None:
    server, fake = deployment.server, deployment.fake
    agent, cwd = f"pol-{marker()}", f"/srv/{marker()}"
    async with agent_mcp(server, agent, cwd) as mcp, server.api() as api:
        sent_before = {m.sid for m in fake.sent}
        before = await rows_for(api, agent=agent)
        assert await call_now(mcp, {"command": "echo hi"}) == {
            "behavior": "allow",
            "updatedInput": {"command": "echo hi"},
        }
        allowed = await only_new_row(api, before, agent=agent)
        assert (allowed["status"], allowed["decided_via"]) == ("allowed", "policy")
        assert allowed["decided_by"].endswith("allow Bash(echo hi)")
        # A call that does ask, answered: once both approvers are told its outcome, any message about the first
        # call (closed before it) would have gone out too.
        sentinel_input = {"command": f"echo bye {marker()}"}
        call, sentinel = await start(mcp, api, sentinel_input, agent=agent, cwd=cwd)
        await request_message(fake, ALICE, sentinel["id"])
        await deny_via_api(api, sentinel["id"])
        await answer(call)
        await notice(fake, ALICE, f"Request {sentinel['id']} was denied")
        await notice(fake, BOB, f"Request {sentinel['id']} was denied")
    assert mentioning(fake, allowed["id"]) == []
    new_requests = [m for m in request_messages(fake) if m.sid not in sent_before]
    assert sorted((m.to, text_of(m).endswith(sentinel["id"])) for m in new_requests) == [
        (f"whatsapp:{ALICE}", True),
        (f"whatsapp:{BOB}", True),
    ]


def test_the_template_offers_three_quick_replies_within_whatsapps_limits() -> None:
    config = json.loads((REPO / "template_config.json").read_text())
    quick = config["types"]["twilio/quick-reply"]
    actions = quick["actions"]
    assert [action["id"] for action in actions] == ["approve {{2}}", "always {{2}}", "deny {{2}}"]
    assert all(1 <= len(action["title"]) <= 20 for action in actions), [a["title"] for a in actions]
    assert "ALWAYS {{2}}" in quick["body"]
    assert "ALWAYS {{2}}" in config["types"]["twilio/text"]["body"]


@pytest.mark.parametrize("button", ["approve", "always", "deny"])
async def test_each_button_of_the_template_decides_as_its_title_says(deployment: Deployment, button: str) -> None:
    server, fake = deployment.server, deployment.fake
    agent, cwd = f"tap-{marker()}", f"/srv/{marker()}"
    command = f"cargo test {marker()}"
    tool_input = {"command": command}
    async with agent_mcp(server, agent, cwd) as mcp, server.api() as api:
        call, pending = await start(mcp, api, tool_input, agent=agent, cwd=cwd)
        request_id = pending["id"]
        asked = await request_message(fake, ALICE, request_id)
        assert asked.content_sid == deployment.template
        assert asked.content_variables is not None
        # The buttons as the phone shows them: the template's actions, their ids filled in with the variables sent.
        buttons = {
            action["id"].replace("{{2}}", asked.content_variables["2"]): action["title"]
            for action in fake.content(deployment.template).quick_replies
        }
        payload = f"{button} {request_id}"
        assert payload in buttons, buttons
        await fake.tap_button(from_=ALICE, replied_to=asked.sid, payload=payload, title=buttons[payload])
        result = await answer(call)
        row = (await api.get(f"/api/requests/{request_id}")).json()
        made = [g for g in await grants(api, everything=True) if g["request_id"] == request_id]
    if button == "deny":
        assert result["behavior"] == "deny"
        assert (row["status"], row["remembered"], made) == ("denied", None, [])
    elif button == "approve":
        assert result == {"behavior": "allow", "updatedInput": tool_input}
        assert (row["status"], row["remembered"], made) == ("allowed", None, [])
    else:
        assert result == {
            "behavior": "allow",
            "updatedInput": tool_input,
            "updatedPermissions": session_permissions(command),
        }
        assert (row["status"], row["remembered"]) == ("allowed", "session")
        assert [(g["kind"], g["covers"]) for g in made] == [("session", f"agent {agent} in {cwd}")]


async def test_always_on_whatsapp_for_an_unnamed_agents_edit_does_not_claim_claude_code_remembers_it(
    deployment: Deployment,
) -> None:
    """Nothing identifies the agent's session and Claude Code is given no rule (an Edit): nothing is remembered,
    and neither the phone nor the request page may say otherwise."""
    server, fake = deployment.server, deployment.fake
    tool_input = {"file_path": f"/srv/{marker()}/app.py", "old_string": "a", "new_string": "b"}
    async with agent_mcp(server) as mcp, server.api() as api, signed_in(server) as http:
        call, pending = await start(mcp, api, tool_input, agent=None, cwd=None, tool_name="Edit")
        request_id = pending["id"]
        await request_message(fake, ALICE, request_id)
        await fake.send_inbound(from_=ALICE, body=f"ALWAYS {request_id}")
        result = await answer(call)
        assert result == {"behavior": "allow", "updatedInput": tool_input}  # no rule for Claude Code
        assert [g for g in await grants(api, everything=True) if g["request_id"] == request_id] == []
        told = await notice(fake, ALICE, f"Request {request_id} approved")
        assert "Nothing could remember it" in told
        page = (await http.get(f"/requests/{request_id}")).text
    remembered = re.search(r"<dt>Remembered</dt><dd>(.*?)</dd>", page, re.DOTALL)
    assert remembered is not None
    assert remembered.group(1).startswith("Nothing could remember it"), remembered.group(1)


# -- the dashboard --------------------------------------------------------------------------------------------------


async def test_allow_for_session_on_the_dashboard_makes_a_grant_and_the_same_call_runs_unasked(
    deployment: Deployment,
) -> None:
    server, fake = deployment.server, deployment.fake
    agent, cwd = f"dash-{marker()}", f"/srv/{marker()}"
    command = f"pytest -q tests/{marker()}"
    tool_input = {"command": command}
    edit_input = {"file_path": f"/srv/{marker()}/x.py", "old_string": "1", "new_string": "2"}
    async with (
        agent_mcp(server, agent, cwd) as mcp,
        agent_mcp(server) as unnamed,
        server.api() as api,
        signed_in(server) as http,
    ):
        call, pending = await start(mcp, api, tool_input, agent=agent, cwd=cwd)
        edit_call, edit_pending = await start(unnamed, api, edit_input, agent=None, cwd=None, tool_name="Edit")
        request_id = pending["id"]
        index = await http.get("/")
        assert index.status_code == 200
        bash_card, edit_card = card(index.text, request_id), card(index.text, edit_pending["id"])
        assert 'name="decision" value="allow_session"' in bash_card
        assert ">Allow for session</button>" in bash_card
        assert "Allow for session also allows this exact command again" in bash_card  # what it remembers
        assert command in bash_card
        assert "allow_session" not in edit_card
        assert "Allow for session" not in edit_card
        assert 'name="remember"' in edit_card  # allowing for a while is still offered (unnamed agents share it)
        await deny_via_api(api, edit_pending["id"])
        assert (await answer(edit_call))["behavior"] == "deny"

        form = {"csrf": csrf_of(index.text), "decision": "allow_session"}
        posted = await http.post(f"/requests/{request_id}/decision", data=form, headers=SAME_ORIGIN)
        assert posted.status_code == 303
        assert await answer(call) == {
            "behavior": "allow",
            "updatedInput": tool_input,
            "updatedPermissions": session_permissions(command),
        }
        grant = await grant_of(api, request_id)
        assert (grant["kind"], grant["covers"], grant["created_via"]) == (
            "session",
            f"agent {agent} in {cwd}",
            "dashboard",
        )
        assert grant["created_by"] == "owner"

        grants_page = await http.get("/grants")
        assert grants_page.status_code == 200
        active, _ = sections(grants_page.text)
        row = grant_row(active, grant["id"])
        assert f'action="/grants/{grant["id"]}/revoke"' in row
        assert f'<code dir="ltr">Bash({command})</code>' in row
        assert f'<a href="/requests/{request_id}">' in row
        request_page = (await http.get(f"/requests/{request_id}")).text
        remembered = re.search(r"<dt>Remembered</dt><dd>(.*?)</dd>", request_page, re.DOTALL)
        assert remembered is not None
        assert f'<a href="/grants#grant-{grant["id"]}">grant {grant["id"]}</a>' in remembered.group(1)
        assert f'<code dir="ltr">Bash({command})</code> for agent {agent} in {cwd}' in remembered.group(1)

        asked_before = len(request_messages(fake))
        before = await rows_for(api, input=tool_input)
        assert await call_now(mcp, tool_input) == {"behavior": "allow", "updatedInput": tool_input}
        repeat = await only_new_row(api, before, input=tool_input)
        assert (repeat["decided_via"], repeat["decided_by"]) == ("grant", f"grant {grant['id']} allow Bash({command})")
        assert len(request_messages(fake)) == asked_before
        assert f'id="req-{repeat["id"]}"' not in (await http.get("/fragments/pending")).text
    assert mentioning(fake, repeat["id"]) == []


async def test_allow_for_session_with_no_agent_identity_only_tells_claude_code(deployment: Deployment) -> None:
    server = deployment.server
    command = f"ls /srv/{marker()}"
    tool_input = {"command": command}
    async with agent_mcp(server) as mcp, server.api() as api, signed_in(server) as http:
        call, pending = await start(mcp, api, tool_input, agent=None, cwd=None)
        request_id = pending["id"]
        page = await http.get(f"/requests/{request_id}")
        assert 'value="allow_session"' in page.text  # a Bash command: Claude Code can remember it
        form = {"csrf": csrf_of(page.text), "decision": "allow_session"}
        assert (await http.post(f"/requests/{request_id}/decision", data=form)).status_code == 303
        assert (await answer(call))["updatedPermissions"] == session_permissions(command)
        assert [g for g in await grants(api, everything=True) if g["request_id"] == request_id] == []
        shown = (await http.get(f"/requests/{request_id}")).text
        expected = f"<dt>Remembered</dt><dd>Claude Code allows Bash({command}) again for the rest of its session.</dd>"
        assert expected in shown
        # Nothing on the server remembers it: the same call from another unnamed agent asks again.
        again, asked = await start(mcp, api, tool_input, agent=None, cwd=None)
        await still_pending(api, asked["id"], again)
        await deny_via_api(api, asked["id"])
        assert (await answer(again))["behavior"] == "deny"


async def test_revoking_a_grant_on_the_dashboard_ends_it_and_the_call_is_asked_again(deployment: Deployment) -> None:
    server = deployment.server
    agent, cwd = f"rev-{marker()}", f"/srv/{marker()}"
    tool_input = {"command": f"docker compose up {marker()}"}
    async with (
        agent_mcp(server, agent, cwd) as mcp,
        server.api() as api,
        signed_in(server) as http,
        signed_in(server) as other,
        browser(server) as anonymous,
    ):
        call, pending = await start(mcp, api, tool_input, agent=agent, cwd=cwd)
        decided = await api.post(
            f"/api/requests/{pending['id']}/decision", json={"decision": "allow", "remember": "session"}
        )
        assert decided.status_code == 200, decided.text
        await answer(call)
        grant_id = (await grant_of(api, pending["id"]))["id"]
        revoke = f"/grants/{grant_id}/revoke"

        # Without a session: the page sends to the login page, the form is refused.
        to_login = await anonymous.get("/grants")
        assert (to_login.status_code, to_login.headers["location"]) == (303, "/login?next=%2Fgrants")
        assert (await anonymous.post(revoke, data={"csrf": "0" * 64})).status_code == 401

        csrf = await page_csrf(http, "/grants")
        forged = [
            await http.post(revoke, headers=SAME_ORIGIN),
            await http.post(revoke, data={"csrf": ""}, headers=SAME_ORIGIN),
            await http.post(revoke, data={"csrf": "0" * 64}, headers=SAME_ORIGIN),
            await http.post(revoke, data={"csrf": await page_csrf(other, "/grants")}, headers=SAME_ORIGIN),
            await http.post(revoke, data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}),
            await http.post(revoke, data={"csrf": csrf}, headers={"Origin": "http://evil.example"}),
        ]
        assert [response.status_code for response in forged] == [403] * len(forged)
        assert grant_id in {g["id"] for g in await grants(api)}  # still in force
        assert await call_now(mcp, tool_input) == {"behavior": "allow", "updatedInput": tool_input}

        revoked = await http.post(revoke, data={"csrf": csrf}, headers={**SAME_ORIGIN, "Origin": server.url})
        assert (revoked.status_code, revoked.headers["location"]) == (303, "/grants")
        assert grant_id not in {g["id"] for g in await grants(api)}
        page = (await http.get("/grants")).text
        active, ended = sections(page)
        assert f'id="grant-{grant_id}"' not in active
        row = grant_row(ended, grant_id)
        assert re.search(r"revoked \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by owner\b", row), row
        assert "Revoke" not in row

        again, asked = await start(mcp, api, tool_input, agent=agent, cwd=cwd)
        await still_pending(api, asked["id"], again)
        await deny_via_api(api, asked["id"])
        assert (await answer(again))["behavior"] == "deny"

        twice = await http.post(revoke, data={"csrf": csrf}, headers=SAME_ORIGIN)
        assert twice.status_code == 409
        assert "already ended" in twice.text
        unknown = await http.post("/grants/nosuchgr/revoke", data={"csrf": csrf}, headers=SAME_ORIGIN)
        assert unknown.status_code == 404
        everything = {g["id"]: g for g in await grants(api, everything=True)}
        assert everything[grant_id]["revoked_by"] == "owner"


async def test_allow_for_a_while_on_the_dashboard_takes_only_the_durations_offered(deployment: Deployment) -> None:
    server = deployment.server
    agent = f"while-{marker()}"
    tool_input = {"command": f"kubectl rollout restart deploy/{marker()}"}
    async with agent_mcp(server, agent, "/srv/a") as mcp, server.api() as api, signed_in(server) as http:
        call, pending = await start(mcp, api, tool_input, agent=agent, cwd="/srv/a")
        request_id = pending["id"]
        page = await http.get(f"/requests/{request_id}")
        options = re.findall(r'<option value="([^"]+)"', page.text)
        assert options == ["15m", "30m", "1h", "2h", "8h"]
        csrf = csrf_of(page.text)
        for bad in ("99d", "25h", "", "session"):
            refused = await http.post(
                f"/requests/{request_id}/decision", data={"csrf": csrf, "decision": "allow", "remember": bad}
            )
            assert refused.status_code == 400, bad
            assert "Choose one of the durations offered" in html.unescape(refused.text)
            await still_pending(api, request_id, call)
        form = {"csrf": csrf, "decision": "allow", "remember": "30m"}
        assert (await http.post(f"/requests/{request_id}/decision", data=form, headers=SAME_ORIGIN)).status_code == 303
        assert await answer(call) == {"behavior": "allow", "updatedInput": tool_input}
        grant = await grant_of(api, request_id)
        assert (grant["kind"], grant["covers"], grant["cwd"]) == ("timed", f"agent {agent}", None)
        assert minutes_between(grant["created_at"], grant["expires_at"]) == 30
        async with agent_mcp(server, agent, "/srv/b") as elsewhere:
            assert await call_now(elsewhere, tool_input) == {"behavior": "allow", "updatedInput": tool_input}
        assert f'id="grant-{grant["id"]}"' in sections((await http.get("/grants")).text)[0]


async def test_the_grants_page_escapes_what_it_shows_and_marks_hidden_characters(deployment: Deployment) -> None:
    server = deployment.server
    folder = marker()
    agent, cwd = f"esc-{marker()}", f"/srv/<i>{folder}</i>"
    command = f"echo <script>alert(1)</script> \u202e{marker()}"
    tool_input = {"command": command}
    async with agent_mcp(server, agent, cwd) as mcp, server.api() as api, signed_in(server) as http:
        call, pending = await start(mcp, api, tool_input, agent=agent, cwd=cwd)
        page = await http.get(f"/requests/{pending['id']}")
        form = {"csrf": csrf_of(page.text), "decision": "allow_session"}
        assert (await http.post(f"/requests/{pending['id']}/decision", data=form)).status_code == 303
        assert (await answer(call))["updatedPermissions"] == session_permissions(command)
        grant = await grant_of(api, pending["id"])
        grants_page = (await http.get("/grants")).text
    row = grant_row(grants_page, grant["id"])
    assert "<script>" not in grants_page.replace('<script src="/static/dashboard.js" defer></script>', "")
    assert "\u202e" not in grants_page
    assert "Bash(echo &lt;script&gt;alert(1)&lt;/script&gt; " + HIDDEN_MARK in row
    assert "<i>" not in row
    assert f"in /srv/&lt;i&gt;{folder}&lt;/i&gt;" in row


async def test_a_reason_whose_first_word_looks_like_an_id_is_still_a_reason(deployment: Deployment) -> None:
    """`database` is 8 letters of the id alphabet: in a reply to the request's message, it starts the reason."""
    server, fake = deployment.server, deployment.fake
    tool_input = {"command": f"psql prod -c 'drop table jobs' -- {marker()}"}
    async with agent_mcp(server) as mcp, server.api() as api:
        call, pending = await start(mcp, api, tool_input, agent=None, cwd=None)
        request_id = pending["id"]
        asked = await request_message(fake, BOB, request_id)
        await fake.send_inbound(from_=BOB, body="DENY database is prod", extra={"OriginalRepliedMessageSid": asked.sid})
        result = await answer(call)
    assert result["behavior"] == "deny"
    assert "database is prod" in result["message"]
