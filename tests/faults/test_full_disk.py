"""A full filesystem under the database: every agent is denied with the reason, no HTTP endpoint answers 500 (JSON 503
is the answer to what cannot be recorded), nothing is half written, and the server works again once there is room.

The data directory is a 2 MB tmpfs (mounting one needs root, as CI runs; elsewhere the test is skipped), filled up
while requests wait and new ones arrive.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dashboard_support import DASHBOARD_TOKEN, page_csrf, signed_in
from tests.databases import POSTGRESQL
from tests.faults.test_database_file import ask
from tests.support import ServerProcess, wait_for_pending

FULL = "approval-server cannot record anything (the disk that holds its database is full)"
BIG = "x" * 20_000  # each request needs new pages in the database's write-ahead log
HOOK = {
    "session_id": "s1",
    "cwd": "/srv/app",
    "hook_event_name": "PreToolUse",
    "tool_name": "Bash",
    "tool_input": {"command": f"hook {BIG}"},
    "tool_use_id": "toolu_full",
}

pytestmark = pytest.mark.skipif(
    POSTGRESQL, reason="a PostgreSQL database is on its server's disk, not in the data directory"
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs, unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield disk
    if subprocess.run(["umount", str(disk)], check=False).returncode != 0:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


def fill(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        with pytest.raises(OSError, match="No space left on device"):  # noqa: PT012 (writes until the disk is full)
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)


async def admitted(database: Path, count: int, within: float = 10) -> None:
    """Wait until `count` pending requests have taken their place in the fair share (`share` set). A request shows as
    pending once it is recorded, a moment before that write: a disk filled in between would fail the request."""
    for _ in range(int(within / 0.02)):
        with sqlite3.connect(database) as db:
            query = "SELECT count(*) FROM requests WHERE status = 'pending' AND share IS NOT NULL"
            if db.execute(query).fetchone()[0] >= count:
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} requests were not all admitted to wait")


def no_500(responses: list[httpx.Response]) -> None:
    for response in responses:
        assert response.status_code != 500, response.text
        assert response.headers["content-type"].startswith(("application/json", "text/html")), response.text


async def test_a_full_disk_denies_with_the_reason_answers_no_500_and_recovers(small_disk: Path, tmp_path: Path) -> None:
    env = {"APPROVAL_DATA_DIR": str(small_disk), "APPROVAL_DASHBOARD_TOKEN": DASHBOARD_TOKEN}
    server = ServerProcess(data_dir=tmp_path / "home", env=env)
    server.start()
    try:
        async with server.api() as api, server.mcp() as mcp, signed_in(server) as browser:
            waiting = [asyncio.create_task(ask(mcp, f"waiting {n} {BIG}")) for n in range(5)]
            pending = [await wait_for_pending(api, {"input": {"command": f"waiting {n} {BIG}"}}) for n in range(5)]
            await admitted(small_disk / "approval.db", 5)
            fill(small_disk / "filler")

            new = await asyncio.wait_for(asyncio.gather(*(ask(mcp, f"new {n} {BIG}") for n in range(20))), 60)
            hook = await api.post("/api/hook", json=HOOK)
            decisions = [
                await api.post(f"/api/requests/{row['id']}/decision", json={"decision": "allow"}) for row in pending[1:]
            ]
            csrf = await page_csrf(browser)
            clicked = await browser.post(
                f"/requests/{pending[0]['id']}/decision", data={"csrf": csrf, "decision": "allow"}
            )
            reads = [
                await api.get("/api/requests"),
                await api.get(f"/api/requests/{pending[0]['id']}"),
                await api.get("/healthz"),
                await browser.get("/"),
                await browser.get(f"/requests/{pending[0]['id']}"),
            ]
            answered_meanwhile = [call.result() for call in waiting if call.done()]

            (small_disk / "filler").unlink()  # room again
            after = asyncio.create_task(ask(mcp, "after"))
            row = await wait_for_pending(api, {"input": {"command": "after"}})
            recovered = [await api.post(f"/api/requests/{row['id']}/decision", json={"decision": "allow"})]
            recovered += [
                await api.post(f"/api/requests/{row['id']}/decision", json={"decision": "allow"}) for row in pending
            ]
            answers = await asyncio.wait_for(asyncio.gather(after, *waiting), 15)
    finally:
        server.stop()

    for answer in new:
        assert answer["behavior"] == "deny"
        assert answer["message"].startswith(FULL), answer["message"]
    assert hook.status_code == 200
    assert hook.json()["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert hook.json()["hookSpecificOutput"]["permissionDecisionReason"].startswith(FULL)
    no_500([hook, *decisions, clicked, *reads, *recovered])
    for refused in [*decisions, clicked]:  # not recorded, so not applied: the agent still waits
        assert (refused.status_code, refused.json()["error"]) == (503, "database_full"), refused.text
    assert [response.status_code for response in reads] == [200] * len(reads)
    assert answered_meanwhile == []  # nobody's answer could be recorded: every agent still waits
    assert [response.status_code for response in recovered] == [200] * 6
    assert [answer["behavior"] for answer in answers] == ["allow"] * 6

    with sqlite3.connect(small_disk / "approval.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = db.execute("SELECT input, status FROM requests").fetchall()
    commands = {" ".join(json.loads(tool_input)["command"].split()[:2]): status for tool_input, status in rows}
    assert commands == {**{f"waiting {n}": "allowed" for n in range(5)}, "after": "allowed"}  # no row half written
