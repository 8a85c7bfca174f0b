"""Each person's own dashboard login link: `approval-server people link NAME` makes it, a session from it decides as
that person (the record names them), `people revoke` ends the link and its sessions at once; whoever signs in with
the dashboard token is recorded as `owner`. Against the real server and the real command, on both backends."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa

from approval_server.errors import ConfigError
from approval_server.people import load_people
from approval_server.web_auth import SESSION_COOKIE, WebAuth
from tests.dashboard_support import DASHBOARD_TOKEN, answer, ask, browser, csrf_of, signed_in, still_pending
from tests.support import ServerProcess, wait_for_status
from tests.test_cli import cli
from tests.whatsapp_support import ALICE, BOB

LINK = re.compile(r"^(http://127\.0\.0\.1:\d+)(/login\?token=[\w-]{40,})$")


@pytest.fixture
def people_file(tmp_path: Path) -> Path:
    path = tmp_path / "people.toml"
    path.write_text(
        f'[[person]]\nname = "alice"\nwhatsapp = "{ALICE}"\n\n[[person]]\nname = "bob"\nwhatsapp = "{BOB}"\n'
    )
    return path


@pytest.fixture
def server(start_server: Callable[..., ServerProcess], people_file: Path) -> ServerProcess:
    return start_server(PEOPLE_FILE=str(people_file), APPROVAL_DASHBOARD_TOKEN=DASHBOARD_TOKEN)


def people(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`approval-server people …` run as the server's owner runs it: with the server's settings."""
    return cli("people", *args, cwd=server.data_dir, env=server.environment())


def make_link(server: ServerProcess, name: str) -> str:
    """A new login link for `name`, as the path to open on the server."""
    made = people(server, "link", name)
    assert made.returncode == 0, made.stderr
    match = LINK.match(made.stdout.strip())
    assert match, made.stdout
    assert match.group(1) == server.url
    assert f"for {name}: it signs in as {name}" in made.stderr
    return match.group(2)


async def sign_in(http: httpx.AsyncClient, link: str) -> None:
    response = await http.get(link)
    assert response.status_code == 303, response.text
    assert http.cookies.get(SESSION_COOKIE)


async def decide(http: httpx.AsyncClient, request_id: str, decision: str, **extra: str) -> httpx.Response:
    page = await http.get(f"/requests/{request_id}")
    assert page.status_code == 200, page.text
    return await http.post(
        f"/requests/{request_id}/decision", data={"csrf": csrf_of(page.text), "decision": decision, **extra}
    )


async def test_a_persons_link_signs_in_as_them_and_the_record_names_who_decided(server: ServerProcess) -> None:
    link = make_link(server, "alice")
    async with server.mcp() as mcp, server.api() as api, browser(server) as alice, signed_in(server) as owner:
        await sign_in(alice, link)
        home = await alice.get("/")
        assert home.status_code == 200
        assert "Signed in as alice" in home.text

        call, pending = await ask(mcp, api, {"command": "make deploy"})
        assert (await decide(alice, pending["id"], "deny", message="not on a Friday")).status_code == 303
        reply = await answer(call)
        row = await wait_for_status(api, pending["id"], "denied")
        assert (row["decided_by"], row["decided_via"]) == ("alice", "dashboard")
        assert reply["message"].startswith("Denied by alice via dashboard")

        call, pending = await ask(mcp, api, {"command": "make test"})
        assert "Signed in as owner" in (await owner.get("/")).text
        assert (await decide(owner, pending["id"], "allow")).status_code == 303
        assert (await answer(call))["behavior"] == "allow"
        row = await wait_for_status(api, pending["id"], "allowed")
        assert (row["decided_by"], row["decided_via"]) == ("owner", "dashboard")
    secret = link.split("token=")[1]
    assert secret not in server.log()  # the access log redacts it


async def test_revoking_ends_the_link_and_every_session_from_it_at_once(server: ServerProcess) -> None:
    first, second = make_link(server, "alice"), make_link(server, "alice")
    bobs = make_link(server, "bob")
    async with server.mcp() as mcp, server.api() as api:
        async with browser(server) as one, browser(server) as two, browser(server) as bob:
            for http, link in ((one, first), (two, second), (bob, bobs)):
                await sign_in(http, link)
            first_id = next(line for line in people(server, "list").stdout.splitlines() if "link " in line)
            login_id = first_id.split("link ")[1].split(":")[0]

            ended = people(server, "revoke", "alice", "--link", login_id)
            assert ended.returncode == 0, ended.stderr
            assert f"Revoked link {login_id}: made" in ended.stdout
            assert (await one.get("/")).status_code == 303  # that link's session ends
            assert (await two.get("/")).status_code == 200  # her other link's does not

            call, pending = await ask(mcp, api, {"command": "rm -rf build"})
            refused = await one.post(
                f"/requests/{pending['id']}/decision", data={"csrf": "0" * 64, "decision": "allow"}
            )
            assert refused.status_code == 401
            ended = people(server, "revoke", "alice")
            assert ended.returncode == 0, ended.stderr
            assert (await two.get("/")).status_code == 303
            assert (await two.get("/events")).status_code == 401
            await still_pending(api, pending["id"])
            assert (await bob.get("/")).status_code == 200  # another person's link is untouched

        async with browser(server) as again:
            refused_link = await again.get(first)
            assert refused_link.status_code == 401
            assert "that login link was revoked" in refused_link.text
            assert SESSION_COOKIE not in again.cookies
        call.cancel()
    nothing = people(server, "revoke", "alice")
    assert nothing.returncode == 2
    assert "There is no live login link of alice: nothing was revoked." in nothing.stderr


async def test_a_session_is_honoured_only_for_a_live_login_of_a_configured_person(
    server: ServerProcess, start_server: Callable[..., ServerProcess], people_file: Path
) -> None:
    """Even a cookie signed with the server's own key names no one unless the store holds that person's live login;
    and taking a person out of the people file ends their link and their sessions."""
    link = make_link(server, "alice")
    auth = WebAuth(DASHBOARD_TOKEN)
    async with browser(server) as forged, browser(server) as alice:
        forged.cookies.set(SESSION_COOKIE, auth.new_session("alice", "000000000000"), domain="127.0.0.1")
        assert (await forged.get("/")).status_code == 303
        await sign_in(alice, link)
        assert (await alice.get("/")).status_code == 200
        cookie = alice.cookies[SESSION_COOKIE]

    server.stop()
    await asyncio.to_thread(people_file.write_text, f'[[person]]\nname = "bob"\nwhatsapp = "{BOB}"\n')
    restarted = start_server(PEOPLE_FILE=str(people_file), APPROVAL_DASHBOARD_TOKEN=DASHBOARD_TOKEN)
    async with browser(restarted) as alice:
        alice.cookies.set(SESSION_COOKIE, cookie, domain="127.0.0.1")
        assert (await alice.get("/")).status_code == 303
        assert (await alice.get(link)).status_code == 401


def test_a_link_is_only_for_one_of_the_people_and_the_store_keeps_no_secret(server: ServerProcess) -> None:
    unknown = people(server, "link", "mallory")
    assert unknown.returncode == 2
    assert "'mallory' is not one of the people (they are: alice, bob)" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    link = make_link(server, "bob")
    listed = people(server, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == f"alice: whatsapp {ALICE}"
    assert lines[1] == f"bob: whatsapp {BOB}"
    assert re.fullmatch(r"  link [0-9a-f]{12}: made \S+ \S+ UTC by \S+ \(CLI\), last used never", lines[2])
    assert len(lines) == 3

    engine = sa.create_engine(server.database_url or f"sqlite:///{server.data_dir / 'approval.db'}")
    with engine.connect() as c:
        rows = [dict(row._mapping) for row in c.execute(sa.text("SELECT * FROM person_logins"))]
    engine.dispose()
    assert [row["person"] for row in rows] == ["bob"]
    secret = link.split("token=")[1]
    assert all(secret not in str(value) for row in rows for value in row.values())


def test_public_link_needs_a_public_url(server: ServerProcess) -> None:
    result = people(server, "link", "alice", "--public")
    assert result.returncode == 2
    assert "PUBLIC_URL is not set" in result.stderr
    public = cli(
        "people", "link", "alice", "--public", cwd=server.data_dir,
        env=server.environment() | {"PUBLIC_URL": "https://approvals.example.com"},
    )  # fmt: skip
    assert public.returncode == 0, public.stderr
    parts = urlsplit(public.stdout.strip())
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "approvals.example.com", "/login")


@pytest.mark.parametrize("name", ["owner", "Owner", "approval-server"])
def test_no_person_may_take_a_name_the_record_gives_to_someone_else(tmp_path: Path, name: str) -> None:
    path = tmp_path / "people.toml"
    path.write_text(f'[[person]]\nname = "{name}"\nwhatsapp = "{ALICE}"\n')
    with pytest.raises(ConfigError, match="choose another"):
        load_people(path, {"whatsapp": lambda value: str(value)})


def test_people_list_shows_no_secret_an_identity_holds(tmp_path: Path) -> None:
    """An Apprise URL's password and an ntfy topic (anyone who knows it may subscribe) stay off the terminal."""
    path = tmp_path / "people.toml"
    path.write_text(
        '[[person]]\nname = "carol"\napprise = "json://ops:hunter2pw@127.0.0.1:9/hook"\n'
        'ntfy = "carol-approvals-7f3k9q2m4x8w"\n'
    )
    listed = cli("people", "list", cwd=tmp_path, env={"PEOPLE_FILE": str(path)})
    assert listed.returncode == 0, listed.stderr
    assert "hunter2pw" not in listed.stdout
    assert "7f3k9q2m4x8w" not in listed.stdout
    assert listed.stdout.startswith("carol: apprise JSON (json://ops:****@127.0.0.1:9/hook), ntfy topic caro…")
