"""The store's schema migrations (Alembic, under `migrations/`): where a database stands, bringing it to the newest,
and the check at start-up that the database a server is about to serve is ready."""

from __future__ import annotations

from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from approval_server.errors import ConfigError, StoreError
from approval_server.store.database import Database
from approval_server.store.db_watch import DatabaseFile

UPGRADE_COMMAND = "approval-server db upgrade"


@dataclass(frozen=True)
class Revision:
    """Where a database's schema stands: its migration (None when it has none), the newest this version knows, and
    whether this version knows the database's migration at all (it does not when a newer version migrated it)."""

    current: str | None
    newest: str
    known: bool = True

    @property
    def is_newest(self) -> bool:
        return self.current == self.newest

    def describe(self) -> str:
        if self.is_newest:
            return f"at revision {self.current}, the newest"
        if self.current is None:
            return f"not migrated (no schema): run  {UPGRADE_COMMAND}"
        if not self.known:
            return f"at revision {self.current}, which this version does not know: upgrade approval-server"
        return f"at revision {self.current}, not the newest ({self.newest}): run  {UPGRADE_COMMAND}"


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "approval_server.store:migrations")
    return config


class Migrations(Database):
    """The store's part that migrates its database (blocking calls, for start-up and the `db` commands)."""

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to the newest migration, or to `revision` (blocking)."""
        config = _alembic_config()
        try:
            with self._engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
        except CommandError as exc:  # e.g. a revision this version does not know: the database is newer
            raise StoreError(f"could not migrate the database {self.describe()}: {exc}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"could not prepare the database: {exc.__class__.__name__}: {exc}") from exc

    def revision(self) -> Revision:
        """The database's migration and the newest one (blocking)."""
        script = ScriptDirectory.from_config(_alembic_config())
        newest = script.get_current_head()
        assert newest is not None  # the package ships its migrations
        try:
            with self._engine.connect() as connection:
                current = MigrationContext.configure(connection).get_current_revision()
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read the database: {exc.__class__.__name__}: {exc}") from exc
        known = current is None or current in {migration.revision for migration in script.walk_revisions()}
        return Revision(current, newest, known)

    def prepare(self) -> None:
        """Make the store ready to serve (blocking; called once at start-up): SQLite is migrated and its file watched
        from then on; any other database must be migrated already, or this raises `ConfigError` naming the command to
        run."""
        if self.migrates_itself:
            self.migrate()
            if self.path is not None:
                self.file = DatabaseFile(self.path)
            return
        revision = self.revision()
        if not revision.is_newest:
            raise ConfigError(
                f"The database {self.describe()} is {revision.describe()}, then start the server again. "
                "(A server never migrates a PostgreSQL database itself: others may be using it.)"
            )

    def holds_database(self) -> bool:
        """Whether the database has a schema (blocking). A missing SQLite file is not created to find out."""
        if self.path is not None and not self.path.exists():
            return False
        return self.revision().current is not None
