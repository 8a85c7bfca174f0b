"""The database the tests run on: SQLite, or PostgreSQL with APPROVAL_TEST_BACKEND=postgresql.

On PostgreSQL (scripts/postgres.sh starts one and sets APPROVAL_TEST_POSTGRES_URL) every database is new and dropped
after use. A server refuses an unmigrated PostgreSQL database, so a database ready for one is copied from a template
migrated once per session, which is faster than migrating every copy.
"""

from __future__ import annotations

import inspect
import os
import re
import uuid
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
import sqlalchemy as sa

from approval_server.store import Store

BACKEND = os.environ.get("APPROVAL_TEST_BACKEND", "sqlite")
POSTGRESQL = BACKEND == "postgresql"
ONLY_POSTGRESQL = "PostgreSQL only (APPROVAL_TEST_BACKEND=postgresql)"


class Databases:
    """New databases for the selected backend."""

    def __init__(self) -> None:
        self._admin: sa.Engine | None = None
        self._template = ""
        if BACKEND == "sqlite":
            return
        if not POSTGRESQL:
            raise RuntimeError(f"APPROVAL_TEST_BACKEND={BACKEND!r}: use sqlite or postgresql")
        server = os.environ.get("APPROVAL_TEST_POSTGRES_URL")
        if not server:
            raise RuntimeError("APPROVAL_TEST_BACKEND=postgresql needs APPROVAL_TEST_POSTGRES_URL: run scripts/test")
        self._server = sa.make_url(server).set(drivername="postgresql+psycopg")
        self._admin = sa.create_engine(self._server, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        self._template = self._new("template0")
        template = Store(self._url(self._template))
        try:
            template.migrate()
        finally:
            template.close()

    def create(self, directory: Path, *, empty: bool = False) -> str:
        """The URL of a new database: ready for a server (SQLite's is migrated by the server as it starts), or with
        `empty` one with no schema at all. On SQLite it is `approval.db` in `directory`."""
        if self._admin is None:
            return f"sqlite:///{directory / 'approval.db'}"
        return self._url(self._new("template0" if empty else self._template))

    def drop(self, url: str) -> None:
        if self._admin is not None:
            self._drop(sa.make_url(url).database or "")

    def close(self) -> None:
        if self._admin is not None:
            self._drop(self._template)
            self._admin.dispose()

    def _new(self, template: str) -> str:
        assert self._admin is not None
        name = f"test_{uuid.uuid4().hex[:16]}"
        with self._admin.connect() as connection:
            connection.execute(sa.text(f"CREATE DATABASE {name} TEMPLATE {template}"))
        return name

    def _drop(self, name: str) -> None:
        assert self._admin is not None
        if name.startswith("test_"):  # only what this class created, whatever URL it is given
            with self._admin.connect() as connection:
                connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

    def _url(self, name: str) -> str:
        return self._server.set(database=name).render_as_string(hide_password=False)


def backend_changes(item: pytest.Item) -> bool:
    """Whether the backend under test can change what `item` does: it is given the database of the backend
    (`database_url`, `databases`), or its module asks which backend it is on (it imports this module). Every other
    test (a rule, a page's HTML, a server on its default SQLite database) does the same on both, so the PostgreSQL
    pass leaves it to the SQLite pass."""
    if {"database_url", "databases"} & set(getattr(item, "fixturenames", ())):
        return True
    module = getattr(item, "module", None)
    return module is None or _asks_the_backend(module)


@cache
def _asks_the_backend(module: ModuleType) -> bool:
    return re.search(r"^(from|import) tests\.databases\b", inspect.getsource(module), re.MULTILINE) is not None
