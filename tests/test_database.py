"""Choosing and preparing the database: DATABASE_URL, `approval-server db`, and the server's start-up check.

SQLite migrates itself when the server starts; a PostgreSQL database must be migrated with `db upgrade` first.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from approval_server.config import load_settings
from approval_server.errors import ConfigError
from approval_server.store import Store
from tests.databases import ONLY_POSTGRESQL, POSTGRESQL, Databases
from tests.support import ServerProcess
from tests.test_cli import cli


def newest_revision() -> str:
    store = Store("sqlite://")
    try:
        return store.revision().newest
    finally:
        store.close()


NEWEST = newest_revision()


@pytest.mark.parametrize(
    ("given", "used"),
    [
        (
            "postgres://alice:s3cret@db.internal:5433/approvals",
            "postgresql+psycopg://alice:s3cret@db.internal:5433/approvals",
        ),
        ("postgresql://alice@db/approvals", "postgresql+psycopg://alice@db/approvals"),
        ("postgresql+psycopg://alice@db/approvals", "postgresql+psycopg://alice@db/approvals"),
        ("sqlite:////var/lib/approval-server/approval.db", "sqlite:////var/lib/approval-server/approval.db"),
    ],
)
def test_database_url_selects_the_store(given: str, used: str) -> None:
    assert load_settings(None, database_url=given).store_url == used


def test_the_default_store_is_sqlite_in_the_data_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("APPROVAL_DATABASE_URL", raising=False)
    settings = load_settings(None, approval_data_dir=tmp_path, database_url="  ")
    assert settings.store_url == f"sqlite:///{tmp_path / 'approval.db'}"


def test_the_old_name_still_works_and_the_new_one_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPROVAL_DATABASE_URL", "postgresql://alice@old/approvals")
    assert load_settings(None).store_url == "postgresql+psycopg://alice@old/approvals"
    monkeypatch.setenv("DATABASE_URL", "postgresql://alice@new/approvals")
    assert load_settings(None).store_url == "postgresql+psycopg://alice@new/approvals"


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("mysql://alice:s3cret@db/approvals", "mysql:// is not supported"),
        ("postgresql://alice:s3cret@db", "names no database"),
        ("s3cret garbage", "not a database URL"),
    ],
)
def test_a_bad_database_url_is_readable_and_hides_the_password(given: str, said: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(None, database_url=given)
    assert said in str(raised.value)
    assert "DATABASE_URL" in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_serve_with_a_bad_database_url_exits_2_without_the_password(tmp_path: Path) -> None:
    result = cli("serve", cwd=tmp_path, env={"DATABASE_URL": "mysql://alice:s3cret@db/approvals"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "DATABASE_URL" in result.stderr
    assert "mysql:// is not supported" in result.stderr
    assert "s3cret" not in result.stderr


def test_db_current_and_upgrade(databases: Databases, tmp_path: Path) -> None:
    url = databases.create(tmp_path, empty=True)
    env = {"DATABASE_URL": url}
    try:
        before = cli("db", "current", cwd=tmp_path, env=env)
        assert before.returncode == 0, before.stderr
        assert "not migrated (no schema): run  approval-server db upgrade" in before.stdout
        upgraded = cli("db", "upgrade", cwd=tmp_path, env=env)
        assert upgraded.returncode == 0, upgraded.stderr
        assert f"migrated from an empty database and now at revision {NEWEST}, the newest" in upgraded.stdout
        again = cli("db", "upgrade", cwd=tmp_path, env=env)
        assert f"already at revision {NEWEST}, the newest" in again.stdout
        after = cli("db", "current", cwd=tmp_path, env=env)
        assert f"at revision {NEWEST}, the newest" in after.stdout
        password = sa.make_url(url).password
        assert password is None or password not in before.stdout + upgraded.stdout + after.stdout
    finally:
        databases.drop(url)


def start_failure(tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    """`approval-server serve` that is expected to stop at start-up."""
    return ServerProcess(data_dir=tmp_path / "data", database_url=url).start_expecting_failure()


@pytest.mark.skipif(not POSTGRESQL, reason=ONLY_POSTGRESQL)
def test_the_server_refuses_an_unmigrated_postgresql_database(databases: Databases, tmp_path: Path) -> None:
    url = databases.create(tmp_path, empty=True)
    store = Store(url)
    try:
        result = start_failure(tmp_path, url)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert "is not migrated (no schema): run  approval-server db upgrade" in result.stderr
        assert str(sa.make_url(url).password) not in result.stderr
        assert store.revision().current is None  # the server changed nothing
        assert cli("db", "upgrade", cwd=tmp_path, env={"DATABASE_URL": url}).returncode == 0
        # The scheme most hosts hand out, postgres://, works as well.
        server = ServerProcess(data_dir=tmp_path / "data", database_url=url.replace("postgresql+psycopg:", "postgres:"))
        server.start()
        server.stop()
        assert "Database:              postgresql+psycopg://" in server.log()
        assert store.revision().current == NEWEST
    finally:
        store.close()
        databases.drop(url)


@pytest.mark.skipif(not POSTGRESQL, reason=ONLY_POSTGRESQL)
def test_the_server_refuses_an_outdated_postgresql_database(databases: Databases, tmp_path: Path) -> None:
    url = databases.create(tmp_path, empty=True)
    store = Store(url)
    try:
        store.migrate("0002")
        result = start_failure(tmp_path, url)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert f"at revision 0002, not the newest ({NEWEST}): run  approval-server db upgrade" in result.stderr
        doctor = cli("doctor", cwd=tmp_path, env={"DATABASE_URL": url, "SERVER_PORT": "9"})
        assert re.search(r"FIX +database postgresql\+psycopg://.*at revision 0002", doctor.stdout), doctor.stdout
        assert store.revision().current == "0002"
    finally:
        store.close()
        databases.drop(url)


@pytest.mark.skipif(POSTGRESQL, reason="the SQLite counterpart of the PostgreSQL refusal tests")
def test_the_server_migrates_a_new_sqlite_database_itself(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'approval.db'}"
    server = ServerProcess(data_dir=tmp_path / "data")
    server.start()
    server.stop()
    current = cli("db", "current", cwd=tmp_path, env={"DATABASE_URL": url})
    assert f"at revision {NEWEST}, the newest" in current.stdout


def test_doctor_reports_the_database_and_its_revision(database_url: str, tmp_path: Path) -> None:
    doctor = cli("doctor", cwd=tmp_path, env={"DATABASE_URL": database_url, "SERVER_PORT": "9"})
    assert re.search(rf"ok +database .* is at revision {NEWEST}, the newest", doctor.stdout), doctor.stdout


def test_a_database_migrated_by_a_newer_version_is_named_not_touched(databases: Databases, tmp_path: Path) -> None:
    url = databases.create(tmp_path, empty=True)
    store = Store(url)
    try:
        store.migrate()
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            version = sa.table("alembic_version", sa.column("version_num"))
            connection.execute(version.update().values(version_num="9999"))
        engine.dispose()
        current = cli("db", "current", cwd=tmp_path, env={"DATABASE_URL": url})
        assert "at revision 9999, which this version does not know: upgrade approval-server" in current.stdout
        result = start_failure(tmp_path, url)
        assert "Traceback" not in result.stderr
        # SQLite's start-up migration cannot go back, PostgreSQL's check refuses: either way the server stops.
        assert (result.returncode, "9999" in result.stderr) == (1 if store.migrates_itself else 2, True)
        assert store.revision().current == "9999"
    finally:
        store.close()
        databases.drop(url)
