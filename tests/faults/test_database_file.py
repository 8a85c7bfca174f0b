"""The database lost under a running server, or gone when it starts: never an empty audit trail without a word.

Deleting the data directory (or replacing the database file) under a running server denies every call, refuses every
answer and turns /healthz to 503; a start where the data directory's database holds nothing is refused (exit 2) with
the way out. The file watch is SQLite's; the start-up record is checked on both backends.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastmcp import Client
from mcp.types import TextContent

from tests.databases import POSTGRESQL
from tests.support import ServerProcess, wait_for_pending
from tests.test_cli import cli

TOOL = "permissions__approve"
SQLITE_ONLY = "the database file is SQLite's: a PostgreSQL database has no file in the data directory to lose"
DELETED = "its database file (or the folder holding it) was deleted while it ran"
REPLACED = "its database file was replaced by another while it ran"


def data_server(tmp_path: Path, **env: str) -> ServerProcess:
    """A server on SQLite in `tmp_path/data`, with its log and home beside it, so that they outlive the data."""
    return ServerProcess(data_dir=tmp_path / "home", env={"APPROVAL_DATA_DIR": str(tmp_path / "data"), **env})


async def ask(mcp: Client[Any], command: str) -> dict[str, Any]:
    result = await mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": command}})
    assert isinstance(result.content[0], TextContent)
    answer: dict[str, Any] = json.loads(result.content[0].text)
    return answer


async def allow_one(server: ServerProcess, command: str) -> None:
    async with server.api() as api, server.mcp() as mcp:
        call = asyncio.create_task(ask(mcp, command))
        row = await wait_for_pending(api, {"input": {"command": command}})
        await api.post(f"/api/requests/{row['id']}/decision", json={"decision": "allow"})
        assert (await call)["behavior"] == "allow"


def commands_in(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return sorted(json.loads(row[0])["command"] for row in db.execute("SELECT input FROM requests"))


@pytest.mark.skipif(POSTGRESQL, reason=SQLITE_ONLY)
async def test_deleting_the_data_directory_denies_every_call_refuses_answers_and_the_restart(tmp_path: Path) -> None:
    server = data_server(tmp_path, APPROVAL_TIMEOUT_SECONDS="120")
    server.start()
    try:
        await allow_one(server, "before")
        async with server.api() as api, server.mcp() as mcp:
            waiting = [asyncio.create_task(ask(mcp, f"waiting {n}")) for n in range(10)]
            pending = [await wait_for_pending(api, {"input": {"command": f"waiting {n}"}}) for n in range(10)]
            shutil.rmtree(tmp_path / "data")
            deleted_at = time.monotonic()
            answers = await asyncio.wait_for(asyncio.gather(*waiting), 15)  # not at the expiry, 120 s away
            waited = time.monotonic() - deleted_at
            new = await asyncio.gather(*(ask(mcp, f"after {n}") for n in range(20)))
            decision = await api.post(f"/api/requests/{pending[0]['id']}/decision", json={"decision": "allow"})
            listed = await api.get("/api/requests")
            health = await api.get("/healthz")
            async with httpx.AsyncClient(base_url=server.url) as stranger:
                anonymous = await stranger.get("/healthz")
    finally:
        server.stop()

    assert waited < 5, waited
    for answer in answers + new:
        assert answer["behavior"] == "deny"
        assert f"approval-server cannot record anything ({DELETED})" in answer["message"]
    assert (decision.status_code, decision.json()["error"]) == (503, "database_lost")
    assert (listed.status_code, listed.json()["error"]) == (503, "database_lost")
    assert (health.status_code, health.json()["status"], health.json()["pending"]) == (503, "unavailable", 0)
    assert DELETED in health.json()["reason"]
    assert (anonymous.status_code, anonymous.json()["status"], set(anonymous.json())) == (
        503,
        "unavailable",
        {"status", "reason"},  # neither the version nor the load for a stranger
    )
    assert server.log().count("ERROR   approval_server.store.db_watch: THE DATABASE IS LOST") == 1

    # The server noted the loss where the data directory was, so the restart says what happened instead of
    # beginning an empty database.
    restart = data_server(tmp_path).start_expecting_failure()
    assert restart.returncode == 2, restart.stderr
    assert "Traceback" not in restart.stderr
    assert f"is gone: this data directory's record ({tmp_path / 'data' / 'database.json'})" in restart.stderr
    assert f"found that {DELETED}, at " in restart.stderr
    assert "run  approval-server db new  and start the server again" in restart.stderr
    assert not (tmp_path / "data" / "approval.db").exists()


@pytest.mark.skipif(POSTGRESQL, reason=SQLITE_ONLY)
async def test_a_database_file_replaced_under_the_server_is_never_written_to(tmp_path: Path) -> None:
    server = data_server(tmp_path, APPROVAL_TIMEOUT_SECONDS="10")
    server.start()
    database = tmp_path / "data" / "approval.db"
    try:
        await allow_one(server, "before")
        # An older copy put in its place, as a restore over a running server would.
        with sqlite3.connect(database) as live, sqlite3.connect(tmp_path / "copy.db") as copy:
            live.backup(copy)
        os.replace(tmp_path / "copy.db", database)
        async with server.api() as api, server.mcp() as mcp:
            new = await asyncio.wait_for(asyncio.gather(*(ask(mcp, f"after {n}") for n in range(5))), 30)
            health = await api.get("/healthz")
    finally:
        server.stop()

    for answer in new:
        assert answer["behavior"] == "deny"
        assert f"approval-server cannot record anything ({REPLACED})" in answer["message"]
    assert health.status_code == 503
    assert REPLACED in health.json()["reason"]
    assert commands_in(database) == ["before"]  # nothing went into the file put in place

    # The file in place now holds a database: a restart takes it (as it would a backup restored), and says so.
    restarted = data_server(tmp_path)
    restarted.start()
    restarted.stop()
    assert f"the server that last used the database found that {REPLACED}, at " in restarted.log()


@pytest.mark.skipif(POSTGRESQL, reason=SQLITE_ONLY)
def test_a_start_where_the_database_is_gone_is_refused_and_a_new_one_is_begun_on_purpose(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = data_server(tmp_path)
    server.start()  # a brand-new data directory: no ceremony
    server.stop()
    record = json.loads((data / "database.json").read_text())
    assert record["database"] == f"sqlite:///{data / 'approval.db'}"
    for name in ("approval.db", "approval.db-wal", "approval.db-shm"):
        (data / name).unlink(missing_ok=True)

    refused = server.start_expecting_failure()
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    assert f"The database sqlite:///{data / 'approval.db'} is gone" in refused.stderr
    assert f"Restore it from a backup to {data / 'approval.db'}" in refused.stderr
    assert "run  approval-server db new  and start the server again" in refused.stderr
    env = {"APPROVAL_DATA_DIR": str(data)}
    doctor = cli("doctor", cwd=tmp_path, env=env | {"SERVER_PORT": "9"})
    assert "is gone" in doctor.stdout, doctor.stdout
    upgrade = cli("db", "upgrade", cwd=tmp_path, env=env)
    assert (upgrade.returncode, "is gone" in upgrade.stderr) == (2, True)
    assert not (data / "approval.db").exists()  # neither the server nor a command began an empty one

    begun = cli("db", "new", cwd=tmp_path, env=env)
    assert begun.returncode == 0, begun.stderr
    assert "new and empty" in begun.stdout
    again = cli("db", "new", cwd=tmp_path, env=env)
    assert (again.returncode, "is not empty" in again.stderr) == (2, True)
    server.start()
    server.stop()

    # A data directory from before the record (a database, no record) starts as ever, and is recorded.
    (data / "database.json").unlink()
    server.start()
    server.stop()
    assert json.loads((data / "database.json").read_text())["database"] == record["database"]


def test_a_database_url_pointing_at_a_new_path_is_refused(tmp_path: Path, database_url: str) -> None:
    server = ServerProcess(data_dir=tmp_path / "data", database_url=database_url)
    server.start()
    server.stop()
    elsewhere = tmp_path / "elsewhere" / "approval.db"
    moved = ServerProcess(data_dir=tmp_path / "data", database_url=f"sqlite:///{elsewhere}")
    refused = moved.start_expecting_failure()
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    shown = sa.make_url(database_url).render_as_string(hide_password=True)
    assert f"The database configured, sqlite:///{elsewhere}, holds nothing" in refused.stderr
    assert f"kept its audit trail in {shown} since" in refused.stderr
    assert "If it moved, point DATABASE_URL at it" in refused.stderr
    password = sa.make_url(database_url).password
    assert password is None or str(password) not in refused.stderr
    assert not elsewhere.exists()
    if POSTGRESQL:
        return
    # A database that did move, with DATABASE_URL pointing at it, is taken, and recorded.
    elsewhere.parent.mkdir(exist_ok=True)  # the refused start made the folder, and nothing in it
    shutil.move(tmp_path / "data" / "approval.db", elsewhere)
    moved.start()
    moved.stop()
    assert json.loads((tmp_path / "data" / "database.json").read_text())["database"] == f"sqlite:///{elsewhere}"
