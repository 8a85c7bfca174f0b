"""The Apprise channel against the real server, with Apprise posting to local json:// and form:// targets: what a
notice shows, who its link decides as, what fails closed, and that an Apprise URL's secrets never show."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
import pytest
import sqlalchemy as sa
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.apprise_targets import AppriseTargets, Notice
from tests.dashboard_support import TOOL, answer, ask, browser, csrf_of, local
from tests.databases import POSTGRESQL
from tests.support import MCP_TOKEN, ServerProcess, wait_for_status
from tests.test_people_logins import decide, make_link, sign_in
from tests.whatsapp_support import PUBLIC_URL

PASSWORD = "hunter2-apprise-password"
HEADER_KEY = "apprise-header-api-key-0123"
QUERY_TOKEN = "apprise-query-token-4567"
NOBODY = {"command": "echo nobody"}
LINK = re.compile(re.escape(PUBLIC_URL) + r"/r/\S+")


@pytest.fixture
def start_server(targets: AppriseTargets, start_server: Callable[..., ServerProcess]) -> Callable[..., ServerProcess]:
    """The servers of the conftest's `start_server`, started after the targets and so stopped before them: a server
    that stops tells the targets how its requests ended, which a target stopping meanwhile would leave half answered."""
    return start_server


def people_file(path: Path, **urls: str) -> Path:
    """A people.toml giving each person (by keyword) their Apprise URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f'[[person]]\nname = "{who}"\napprise = "{url}"\n\n' for who, url in urls.items()))
    return path


@pytest.fixture
def start_apprise(
    start_server: Callable[..., ServerProcess], targets: AppriseTargets, tmp_path: Path
) -> Callable[..., ServerProcess]:
    """The server with Apprise on: alice has her own URL (with a password), the team's json:// and form:// URLs
    get every request."""

    def start(**extra: str) -> ServerProcess:
        alice = targets.url("alice", user="alice", password=PASSWORD)
        env = {
            "PEOPLE_FILE": str(people_file(tmp_path / "people.toml", alice=alice)),
            "APPRISE_URLS": f"{targets.url('team')}, {targets.url('pager', 'form')}",
            "PUBLIC_URL": PUBLIC_URL,
            **extra,
        }
        return start_server(**env)

    return start


def agent_mcp(server: ServerProcess, agent: str, cwd: str) -> Client[StreamableHttpTransport]:
    """An MCP client naming its agent and directory in its URL (`?agent=&cwd=`), as an MCP config can."""
    url = f"{server.url}/mcp?{urlencode({'agent': agent, 'cwd': cwd})}"
    return Client(StreamableHttpTransport(url, headers={"Authorization": f"Bearer {MCP_TOKEN}"}))


def link_in(notice: Notice) -> str:
    found = LINK.search(notice.message)
    assert found, notice.message
    return found.group(0)


async def test_a_request_is_a_notice_with_the_tool_the_agent_the_directory_and_a_link(
    start_apprise: Callable[..., ServerProcess], targets: AppriseTargets
) -> None:
    server = start_apprise()
    # A directory that tries to fake a label line of its own.
    async with agent_mcp(server, "deployer", "/srv/prod\nCommand: echo safe") as mcp, server.api() as api:
        call, pending = await ask(mcp, api, {"command": "rm -rf /srv/data", "description": "clean up"})
        request_id = pending["id"]
        (to_alice,) = await targets.arrived("alice")
        (to_team,) = await targets.arrived("team")
        (to_pager,) = await targets.arrived("pager")
        for notice in (to_alice, to_team, to_pager):
            assert notice.title == f"Approval request {request_id}"
            assert "Tool: ```Bash```" in notice.message
            assert "Command: ```rm -rf /srv/data```" in notice.message
            assert "Reason (the agent's words): ```clean up```" in notice.message
            assert "Agent: ```deployer```" in notice.message
            assert "Directory: ```/srv/prod⟨U+000A⟩Command: echo safe```" in notice.message
            assert "\nCommand: echo safe" not in notice.message
            assert "Expires in 5 minutes" in notice.message
        assert to_alice.user == "alice"  # her URL's credentials were used
        assert link_in(to_alice).startswith(f"{PUBLIC_URL}/r/")
        assert f"as alice: {PUBLIC_URL}/r/" in to_alice.message
        # The team's URLs are sent the request's page on the dashboard, which asks to sign in: no signed link.
        for notice in (to_team, to_pager):
            assert f"{PUBLIC_URL}/requests/{request_id}" in notice.message
            assert "/r/" not in notice.message
        assert (to_team.kind, to_pager.kind) == ("json", "form")
        call.cancel()


async def test_the_personal_link_decides_as_that_person_and_everyone_hears_how_it_ended(
    start_apprise: Callable[..., ServerProcess], targets: AppriseTargets
) -> None:
    server = start_apprise()
    tool_input = {"command": "kubectl delete ns staging"}
    async with server.mcp() as mcp, server.api() as api, browser(server) as http:
        call, pending = await ask(mcp, api, tool_input)
        request_id = pending["id"]
        link = local(link_in((await targets.arrived("alice"))[0]), server)
        page = await http.get(link)
        assert page.status_code == 200
        assert "You are answering as alice" in page.text
        decided = await http.post(link, data={"csrf": csrf_of(page.text), "decision": "allow"})
        assert decided.status_code == 200
        assert await answer(call) == {"behavior": "allow", "updatedInput": tool_input}
        row = (await api.get(f"/api/requests/{request_id}")).json()
    assert (row["status"], row["decided_by"], row["decided_via"]) == ("allowed", "alice", "web link")
    outcome = f"Request {request_id} was approved by alice via web link."
    for target in ("alice", "team", "pager"):
        told = (await targets.arrived(target, 2))[1]
        assert (told.title, told.message) == (f"Request {request_id}", outcome)


async def test_the_teams_page_is_decided_signed_in_as_a_person_and_the_record_names_them(
    start_server: Callable[..., ServerProcess], targets: AppriseTargets, tmp_path: Path
) -> None:
    people = tmp_path / "people.toml"
    people.write_text('[[person]]\nname = "dave"\n')
    server = start_server(APPRISE_URLS=targets.url("team"), PEOPLE_FILE=str(people), PUBLIC_URL=PUBLIC_URL)
    login = make_link(server, "dave")
    async with server.mcp() as mcp, server.api() as api, browser(server) as dave:
        call, pending = await ask(mcp, api, {"command": "make release"})
        (notice,) = await targets.arrived("team")
        page = re.search(re.escape(PUBLIC_URL) + r"(/requests/\w+)", notice.message)
        assert page
        assert page.group(1) == f"/requests/{pending['id']}"
        assert (await dave.get(page.group(1))).status_code == 303  # not signed in: to the login page
        await sign_in(dave, login)
        assert (await decide(dave, pending["id"], "allow")).status_code == 303
        assert (await answer(call))["behavior"] == "allow"
        row = await wait_for_status(api, pending["id"], "allowed")
    assert (row["decided_by"], row["decided_via"]) == ("dave", "dashboard")
    told = (await targets.arrived("team", 2))[1]
    assert told.message == f"Request {pending['id']} was approved by dave via dashboard."


async def test_one_target_down_still_reaches_the_others(
    start_apprise: Callable[..., ServerProcess], targets: AppriseTargets
) -> None:
    targets.fail("team", 503)
    server = start_apprise()
    async with server.mcp() as mcp, server.api() as api:
        call, pending = await ask(mcp, api, {"command": "echo partial"})
        await targets.arrived("alice")
        await targets.arrived("pager")
        await asyncio.sleep(0.5)
        row = (await api.get(f"/api/requests/{pending['id']}")).json()
        assert row["status"] == "pending"
        assert targets.received("team") == []
        call.cancel()
    assert "JSON (json://127.0.0.1" in server.log()  # the log names the URL that failed, as Apprise shows it


async def test_every_target_down_denies_at_once_when_apprise_is_the_only_channel(
    start_server: Callable[..., ServerProcess], targets: AppriseTargets
) -> None:
    targets.fail("team", 500)
    server = start_server(
        APPRISE_URLS=f"{targets.url('team')} {targets.url('gone')}", PUBLIC_URL=PUBLIC_URL, APPRISE_TIMEOUT="20"
    )
    targets.refuse_connections()  # the second one too: nothing listens there any more
    async with server.mcp() as mcp, server.api() as api:
        started = time.monotonic()
        result = await answer(asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": NOBODY})))
        took = time.monotonic() - started
        (row,) = (await api.get("/api/requests", params={"status": "denied"})).json()["requests"]
    assert result["behavior"] == "deny"
    assert (
        "No approval channel could reach anyone (apprise: no Apprise URL took the notice (JSON: failure"
        in (result["message"])
    )
    assert took < 10  # at once, not at APPRISE_TIMEOUT nor at the request's expiry
    assert (row["input"], row["decided_by"]) == (NOBODY, "approval-server")


async def test_a_target_that_hangs_fails_at_the_timeout_and_never_holds_up_the_server(
    start_server: Callable[..., ServerProcess], targets: AppriseTargets
) -> None:
    targets.hang("slow", 30)
    server = start_server(APPRISE_URLS=targets.url("slow"), PUBLIC_URL=PUBLIC_URL, APPRISE_TIMEOUT="3")
    async with server.mcp() as mcp, server.api() as api:
        started = time.monotonic()
        call, _ = await ask(mcp, api, {"command": "echo slow"})
        await asyncio.sleep(0.5)  # the send is under way, in Apprise's threads
        asked = time.monotonic()
        assert (await api.get("/healthz")).status_code == 200
        assert time.monotonic() - asked < 1
        assert not call.done()
        result = await answer(call)
    assert result["behavior"] == "deny"
    assert "JSON: timeout" in result["message"]
    assert 3 <= time.monotonic() - started < 10


async def test_an_optional_url_that_fails_is_still_a_failure(
    start_server: Callable[..., ServerProcess], targets: AppriseTargets
) -> None:
    """Apprise counts a failed send to a URL marked `?optional=yes` as a success: here it reached nobody."""
    targets.fail("team", 500)
    server = start_server(APPRISE_URLS=targets.url("team") + "?optional=yes", PUBLIC_URL=PUBLIC_URL)
    async with server.mcp() as mcp:
        result = await answer(asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": NOBODY})))
    assert result["behavior"] == "deny"
    assert "apprise: no Apprise URL took the notice (JSON: failure)" in result["message"]


async def test_nothing_the_agent_writes_is_read_as_markup(
    start_apprise: Callable[..., ServerProcess], targets: AppriseTargets
) -> None:
    """Discord, Mattermost and others render Markdown from plain text: every text the agent chose is in a code span
    that nothing in it can close, and no line starts a fence."""
    server = start_apprise()
    command = "echo [https://ok.example](https://evil.example)\n\n||echo hidden|| *x* <b>y</b> ```z"
    tool_input = {"command": command, "description": "# Approve\n@everyone", "[Deny](https://evil.example)": "_k_"}
    async with agent_mcp(server, "x__agent__", "/srv/`x` *y*") as mcp, server.api() as api:
        call, _ = await ask(mcp, api, tool_input)
        (notice,) = await targets.arrived("team")
        call.cancel()
    spans = re.findall(r"```([^`]*)```", notice.message)
    outside = re.sub(r"```[^`]*```", "", notice.message)
    for markup in ("evil", "||", "*", "<", "#", "@everyone", "[", "_k_", "__", "`"):
        assert markup not in outside, (markup, notice.message)
    assert not any(line.startswith("```") for line in notice.message.split("\n"))
    assert "echo [https://ok.example](https://evil.example)" in spans
    assert "||echo hidden|| *x* <b>y</b> ⟨U+0060⟩⟨U+0060⟩⟨U+0060⟩z" in spans
    assert {"x__agent__", "/srv/⟨U+0060⟩x⟨U+0060⟩ *y*", "# Approve", "@everyone", "_k_"} <= set(spans)
    # Each line of a value on several lines, an empty one too, after the gutter.
    assert "Command:\n┃ ```echo [https://ok.example](https://evil.example)```\n┃\n┃ ```||echo" in notice.message


async def test_a_person_with_several_urls_gets_their_own_link_on_each(
    start_server: Callable[..., ServerProcess], targets: AppriseTargets, tmp_path: Path
) -> None:
    urls = f"{targets.url('bob-mail')}, {targets.url('bob-phone', 'form')}"
    people = people_file(tmp_path / "people.toml", bob=urls)
    server = start_server(PEOPLE_FILE=str(people), PUBLIC_URL=PUBLIC_URL)
    async with server.mcp() as mcp, server.api() as api:
        call, _ = await ask(mcp, api, {"command": "echo bob"})
        (by_mail,) = await targets.arrived("bob-mail")
        (by_phone,) = await targets.arrived("bob-phone")
        call.cancel()
    for notice in (by_mail, by_phone):
        assert f"as bob: {PUBLIC_URL}/r/" in notice.message
    assert "Apprise:               0 URL(s) for everyone (none); people with their own: bob" in server.log()


async def test_an_input_too_long_for_the_phone_is_only_described(
    start_apprise: Callable[..., ServerProcess], targets: AppriseTargets
) -> None:
    server = start_apprise()
    command = "echo " + "A" * 9000
    async with server.mcp() as mcp, server.api() as api:
        call, pending = await ask(mcp, api, {"command": command})
        (notice,) = await targets.arrived("alice")
        call.cancel()
    assert notice.title == f"Approval request {pending['id']}"
    assert "A" * 100 not in notice.message
    assert "too long to show here" in notice.message
    assert link_in(notice)


async def test_no_secret_of_an_apprise_url_nor_a_personal_link_reaches_the_log(
    start_server: Callable[..., ServerProcess], targets: AppriseTargets, tmp_path: Path
) -> None:
    secrets = f"?+X-Api-Key={HEADER_KEY}&-token={QUERY_TOKEN}"
    team = targets.url("team", user="ops", password=PASSWORD) + secrets
    down = targets.url("down", user="ops", password=PASSWORD) + secrets
    targets.fail("down", 500)
    people = people_file(tmp_path / "people.toml", carol=targets.url("carol"))
    server = start_server(
        APPRISE_URLS=f"{team}, {down}", PEOPLE_FILE=str(people), PUBLIC_URL=PUBLIC_URL, APPROVAL_LOG_LEVEL="debug"
    )
    async with server.mcp() as mcp, server.api() as api:
        call, pending = await ask(mcp, api, {"command": "echo secret"})
        (notice,) = await targets.arrived("team")
        assert notice.headers["x-api-key"] == HEADER_KEY  # the URL's secrets were used
        link = link_in((await targets.arrived("carol"))[0])
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "deny"})
        await answer(call)
        await targets.arrived("team", 2)
    server.stop()
    log = server.log()
    assert "JSON Payload" in log  # Apprise's debug lines, which quote each notice whole, were logged
    for value in (PASSWORD, quote(PASSWORD, safe=""), HEADER_KEY, QUERY_TOKEN, link.rsplit("/", 1)[1]):
        assert value not in log, f"{value} is in the log:\n{log}"
    # The URL that failed is named as Apprise's privacy form shows it, without its query.
    port = targets.base_url.rsplit(":", 1)[1]
    assert f"Apprise: JSON (json://ops:****@127.0.0.1:{port}/down) did not take the notice" in log


@pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL's table lock holds the record alone; SQLite's holds all")
async def test_a_request_decided_while_its_notices_are_being_recorded_is_told_to_each_url_that_took_one(
    start_server: Callable[..., ServerProcess], targets: AppriseTargets, database_url: str
) -> None:
    server = start_server(APPRISE_URLS=f"{targets.url('first')}, {targets.url('team')}", PUBLIC_URL=PUBLIC_URL)
    admin = sa.make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    async with server.mcp() as mcp, server.api() as api:
        with psycopg.connect(admin) as holder:  # the notices' records wait while the decision goes through
            holder.execute("LOCK TABLE outbound_messages IN EXCLUSIVE MODE")
            call, pending = await ask(mcp, api, {"command": "echo recorded"})
            await targets.arrived("first")
            await targets.arrived("team")
            await asyncio.sleep(0.5)  # the server has the answers of both URLs, and waits on the lock to record them
            await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "deny"})
            assert (await answer(call))["behavior"] == "deny"
            holder.rollback()
        for name in ("first", "team"):
            asked, ended = await targets.arrived(name, 2)
            assert asked.title == f"Approval request {pending['id']}"
            assert ended.message.startswith(f"Request {pending['id']} was denied by "), ended.message


async def test_a_notice_in_flight_when_the_request_is_decided_is_followed_by_how_it_ended(
    start_server: Callable[..., ServerProcess], targets: AppriseTargets
) -> None:
    targets.hang("team", 2)
    server = start_server(APPRISE_URLS=targets.url("team"), PUBLIC_URL=PUBLIC_URL)
    async with server.mcp() as mcp, server.api() as api:
        call, pending = await ask(mcp, api, {"command": "echo in flight"})
        for _ in range(500):  # decided once the notice is in flight (a request decided before it is sent has none)
            if "team" in targets.posts:
                break
            await asyncio.sleep(0.02)
        assert targets.posts == ["team"]
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow"})
        assert (await answer(call))["behavior"] == "allow"
        request, ended = await targets.arrived("team", 2)
    assert request.title == f"Approval request {pending['id']}"
    assert ended.message.startswith(f"Request {pending['id']} was approved by ")
