"""Configuration: one settings class, read once at start-up from the environment and `.env`, then passed down."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from dotenv import set_key
from pydantic import AliasChoices, Field, HttpUrl, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from approval_server.errors import ConfigError
from approval_server.setting_names import misspelt_in_environment, misspelt_in_files

DEFAULT_POLICY_FILE = "policy.toml"
DEFAULT_PEOPLE_FILE = "people.toml"
_ALL_INTERFACES = ("0.0.0.0", "::", "")  # noqa: S104 (recognised, not bound)


def _base_url(text: str) -> str:
    """PUBLIC_URL as given when it has no path, query or fragment; else a `ValueError` giving the URL to set."""
    parts = urlsplit(text.strip())
    if parts.path.strip("/") or parts.query or parts.fragment:
        base = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        raise ValueError(
            f"{text.strip()} has a path: PUBLIC_URL is the base URL that reaches this server (the server adds "
            f"/twilio-webhook and the other paths itself). Set PUBLIC_URL={base}"
        )
    return text


def _store_url(text: str) -> str:
    """`postgres://…` or `postgresql://…` → psycopg 3's `postgresql+psycopg://…`; `sqlite:///…` as is; anything else
    is a `ValueError` that shows the URL without its password."""
    import sqlalchemy as sa  # here: the commands an agent runs (hooks) read settings but never a database

    try:
        url = sa.make_url(text.strip())
    except sa.exc.ArgumentError:
        raise ValueError(
            "not a database URL: use postgresql://user:password@host:port/database or sqlite:////path/to/approval.db"
        ) from None
    if url.drivername in ("postgres", "postgresql", "postgresql+psycopg"):
        if not url.database:
            raise ValueError(f"{url.render_as_string()!r} names no database (…/database at the end)")
        url = url.set(drivername="postgresql+psycopg")
    elif url.drivername != "sqlite":
        raise ValueError(
            f"{url.drivername}:// is not supported (got {url.render_as_string()!r}): use postgresql:// or sqlite://"
        )
    return url.render_as_string(hide_password=False)


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "approval-server"


def user_config_dir() -> Path:
    """The user's own configuration folder (`$XDG_CONFIG_HOME/approval-server`, `~/.config/approval-server` by
    default). The CLI finds the server there when it acts for an agent or an approver, never in the directory it
    is run from, which the agent can write to."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "approval-server"


class SettingsSection(BaseSettings):
    """A part of the configuration, read from the environment and `.env` by the names of its fields (case does not
    matter): the core settings below, and each channel's own (see `channels.plugin`)."""

    # Each setting's docstring is its description in docs/configuration.md (made by `scripts/reference-docs`).
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", use_attribute_docstrings=True
    )
    prefixes: ClassVar[tuple[str, ...]] = ()
    """The prefixes of the section's names: a name with one that is no setting is taken for a misspelling."""


Section = TypeVar("Section", bound=SettingsSection)


class Settings(SettingsSection):
    """The core settings, by the name each has in the environment and in `.env`."""

    prefixes = ("APPROVAL_", "SERVER_")

    server_port: int = Field(default=8000, ge=1, le=65535)
    """Port for MCP, the API, the dashboard and webhooks (`serve --port` too)."""
    server_host: str = "127.0.0.1"
    """Address to bind; `0.0.0.0` exposes the server to other machines (`serve --host` too)."""
    public_url: HttpUrl | None = None
    """Public base URL, with no path (ngrok, Tailscale, a proxy): Twilio's webhooks and request links use it, and its
    host is accepted in `Host` headers."""
    approval_timeout_seconds: float = Field(default=300.0, gt=0, le=86400)
    """How long a request waits for a human before it is denied as expired."""
    approval_data_dir: Path = Field(
        default_factory=_default_data_dir, json_schema_extra={"shown_default": "`~/.local/share/approval-server`"}
    )
    """The SQLite database and the generated tokens (created with mode 0700)."""
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("database_url", "approval_database_url"),
        json_schema_extra={"shown_default": "SQLite in the data directory"},
    )
    """The audit trail's database: `postgresql://user:password@host:port/database` (or `postgres://…`), or
    `sqlite:////path/to/approval.db`; `APPROVAL_DATABASE_URL` is an older name for it."""
    approval_lease_seconds: float = Field(default=30.0, ge=1, le=3600)
    """PostgreSQL only: a replica that has not renewed its lease for this long (on the database's clock) is taken as
    dead, and its pending requests are closed as `abandoned` by another."""
    approval_max_pending_per_agent: int = Field(default=20, ge=1, le=10_000)
    """How many requests one agent may have waiting for a human at once (by its name; unnamed, by its hook session;
    neither, by its token); past it, a request is denied at once, saying so (see `fair_share`)."""
    approval_max_pending_per_token: int = Field(default=100, ge=1, le=100_000)
    """How many requests may wait at once under one token (MCP or API), whatever agent names they give; at least
    `APPROVAL_MAX_PENDING_PER_AGENT`."""
    approval_api_token: SecretStr | None = Field(
        default=None, min_length=16, json_schema_extra={"shown_default": "generated"}
    )
    """Bearer token for `/api` (16+ characters)."""
    approval_mcp_token: SecretStr | None = Field(
        default=None, min_length=16, json_schema_extra={"shown_default": "generated"}
    )
    """Bearer token for `/mcp`, `/sse` and `/api/hook` (16+ characters)."""
    approval_dashboard_token: SecretStr | None = Field(
        default=None, min_length=16, json_schema_extra={"shown_default": "generated"}
    )
    """Token of the dashboard's login URL (16+ characters); it also keys sessions and request links. With PostgreSQL
    the three tokens must be set, the same on every replica."""
    approval_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Extra `Host` header values to accept, comma-separated."""
    forwarded_allow_ips: str | None = None
    """Addresses of reverse proxies (comma-separated, or `*`) whose `X-Forwarded-For` and `X-Forwarded-Proto` are
    believed; unset, the connection's own address is the client's."""
    approval_wrong_tokens_per_minute: int = Field(default=5, ge=1, le=10_000)
    """Wrong dashboard login tokens and forged request links accepted from one client address a minute; past it,
    `429`."""
    approval_log_level: Literal["debug", "info", "warning", "error"] = "info"
    """`debug`, `info`, `warning` or `error`; the HTTP libraries log at `warning` unless `debug`."""
    policy_file: Path | None = Field(default=None, json_schema_extra={"shown_default": "`policy.toml` if it exists"})
    """The rules file: what runs without a human, what never runs (see `policy.example.toml`); without one, reads
    inside the agent's working directory run and everything else asks."""
    people_file: Path | None = Field(default=None, json_schema_extra={"shown_default": "`people.toml` if it exists"})
    """The approvers, by name, with their identity on each channel (see docs/people.md); a channel's own settings
    (`APPROVAL_PHONE`) add one unnamed person per identity."""

    @field_validator("database_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("public_url", mode="before")
    @classmethod
    def _public_base_url(cls, value: object) -> object:
        return _base_url(value) if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        return None if value is None else _store_url(value)

    @model_validator(mode="after")
    def _token_holds_an_agent(self) -> Settings:
        if self.approval_max_pending_per_token < self.approval_max_pending_per_agent:
            raise ValueError(
                f"APPROVAL_MAX_PENDING_PER_TOKEN ({self.approval_max_pending_per_token}) is below "
                f"APPROVAL_MAX_PENDING_PER_AGENT ({self.approval_max_pending_per_agent}): the agents of one token "
                "could never have as many requests waiting as one agent may"
            )
        return self

    @property
    def policy_path(self) -> Path | None:
        """The rules file to load, or None for the built-in default rules (no POLICY_FILE, no `policy.toml`)."""
        if self.policy_file is not None:
            if not self.policy_file.is_file():
                raise ConfigError(f"POLICY_FILE={self.policy_file} does not exist (see policy.example.toml).")
            return self.policy_file
        default = Path(DEFAULT_POLICY_FILE)
        return default if default.is_file() else None

    @property
    def people_path(self) -> Path | None:
        """The people file to load, or None when there is none (no PEOPLE_FILE, no `people.toml`)."""
        if self.people_file is not None:
            if not self.people_file.is_file():
                raise ConfigError(f"PEOPLE_FILE={self.people_file} does not exist (see docs/people.md).")
            return self.people_file
        default = Path(DEFAULT_PEOPLE_FILE)
        return default if default.is_file() else None

    @property
    def shares_database(self) -> bool:
        """PostgreSQL: other servers (replicas) may use the same database."""
        return self.store_url.startswith("postgresql")

    def require_shared_secrets(self) -> None:
        """Replicas must check tokens, sessions and links alike, so on a shared database the tokens come from the
        settings, never from a file one machine generated. Raises `ConfigError` naming what is missing."""
        tokens = {
            "APPROVAL_API_TOKEN": self.approval_api_token,
            "APPROVAL_MCP_TOKEN": self.approval_mcp_token,
            "APPROVAL_DASHBOARD_TOKEN": self.approval_dashboard_token,
        }
        missing = [name for name, value in tokens.items() if value is None]
        if self.shares_database and missing:
            raise ConfigError(
                f"With DATABASE_URL on PostgreSQL every replica must share the same secrets: set {', '.join(missing)} "
                "(16+ characters each, e.g. from `openssl rand -hex 24`) in .env or the environment of every replica."
            )

    @property
    def store_url(self) -> str:
        """The SQLAlchemy URL of the store: DATABASE_URL, or SQLite in the data directory."""
        return self.database_url or f"sqlite:///{self.approval_data_dir / 'approval.db'}"

    @property
    def local_url(self) -> str:
        """The URL a process on this machine uses to reach the server."""
        host = self.server_host
        if host in _ALL_INTERFACES:
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.server_port}"

    @property
    def allowed_hosts(self) -> list[str]:
        """Host header values the server answers to (DNS-rebinding protection)."""
        hosts = ["127.0.0.1", "localhost", "::1", "[::1]"]
        if self.server_host not in _ALL_INTERFACES:
            hosts.append(self.server_host)
        if self.public_url is not None and self.public_url.host:
            hosts.append(self.public_url.host)
        hosts.extend(self.approval_allowed_hosts)
        return list(dict.fromkeys(hosts))


def write_env(env_file: Path, values: dict[str, str]) -> None:
    """Set `values` in `env_file`, leaving its other lines as they are; a new file is readable by its owner only (it
    holds secrets)."""
    try:
        if not env_file.exists():
            os.close(os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        for key, value in values.items():
            set_key(str(env_file), key, value, quote_mode="never")
    except OSError as exc:
        raise ConfigError(f"Cannot write {env_file}: {exc.strerror or exc}") from None


def setting_names(classes: Iterable[type[SettingsSection]]) -> frozenset[str]:
    """Every name a setting of `classes` is read by, in capitals, and the client's `APPROVAL_URL` (it may be in the
    same files: `--env-file`)."""
    names = {"APPROVAL_URL"}
    for settings_class in classes:
        for name, field in settings_class.model_fields.items():
            names.add(name.upper())
            if isinstance(field.validation_alias, AliasChoices):
                names.update(choice.upper() for choice in field.validation_alias.choices if isinstance(choice, str))
    return frozenset(names)


def load_settings(
    env_file: Path | str | tuple[Path, ...] | None = ".env",
    sections: Iterable[type[SettingsSection]] = (),
    **overrides: Any,
) -> Settings:
    """The core settings (see `load_section`)."""
    return load_section(Settings, env_file, sections, **overrides)


def load_section(
    settings_class: type[Section],
    env_file: Path | str | tuple[Path, ...] | None = ".env",
    sections: Iterable[type[SettingsSection]] = (),
    *,
    warn: bool = True,
    **overrides: Any,
) -> Section:
    """Read one section of the settings (the core, a client's, a channel's) from the environment and the files given
    (the server's `.env` by default), turning validation errors into one readable `ConfigError`. A name in the files
    that looks like a setting of `settings_class` or of the other `sections` but is none is refused; one in the
    environment is warned about on stderr (see `setting_names`), unless `warn` is False (another section of the same
    files was read first, and warned)."""
    files = tuple(Path(each) for each in (env_file if isinstance(env_file, tuple) else (env_file,) if env_file else ()))
    classes: list[type[SettingsSection]] = [settings_class, *sections]
    known = setting_names(classes)
    prefixes = tuple(dict.fromkeys(prefix for each in classes for prefix in each.prefixes))
    misspelt = misspelt_in_files(files, known, prefixes)
    if misspelt:
        raise ConfigError("\n".join(misspelt))
    for warning in misspelt_in_environment(os.environ, known) if warn else ():
        print(f"approval-server: {warning}", file=sys.stderr)
    try:
        return settings_class(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
            if error["type"] == "value_error":  # the project's own words, which quote what they must
                lines.append(f"  {name}: {error['ctx']['error']}")
                continue
            # Tokens are secret; a database URL may hold a password (its own message shows it without).
            secret = "TOKEN" in name or "DATABASE_URL" in name or not error["loc"]
            shown = "" if secret else f" (got {error.get('input')!r})"
            lines.append(f"  {name}: {error['msg']}{shown}")
        source = f"{', '.join(map(str, files))} or the environment" if files else "the environment"
        raise ConfigError(
            f"The configuration in {source} is not valid:\n"
            + "\n".join(lines)
            + "\nFix these values (see .env.example and docs/configuration.md) and start again."
        ) from None
