"""Configuration: one settings class, read once at start-up from the environment and `.env`, then passed down."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, HttpUrl, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from approval_server.errors import ConfigError

_ALL_INTERFACES = ("0.0.0.0", "::", "")  # noqa: S104 (recognised, not bound)


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "approval-server"


class Settings(BaseSettings):
    """Every setting, by the name it has in the environment and in `.env` (case does not matter)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    server_port: int = Field(default=8000, ge=1, le=65535)
    server_host: str = "127.0.0.1"
    public_url: HttpUrl | None = None
    approval_timeout_seconds: float = Field(default=300.0, gt=0, le=86400)
    approval_data_dir: Path = Field(default_factory=_default_data_dir)
    approval_database_url: str | None = None
    approval_api_token: SecretStr | None = Field(default=None, min_length=16)
    approval_mcp_token: SecretStr | None = Field(default=None, min_length=16)
    approval_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    approval_log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("approval_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [host.strip() for host in value.split(",") if host.strip()]
        return value

    @field_validator("approval_log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def database_url(self) -> str:
        if self.approval_database_url:
            return self.approval_database_url
        return f"sqlite:///{self.approval_data_dir / 'approval.db'}"

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


def load_settings(env_file: Path | str | None = ".env", **overrides: Any) -> Settings:
    """Read the settings, turning validation errors into one readable `ConfigError`."""
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
            shown = "" if "TOKEN" in name else f" (got {error.get('input')!r})"
            lines.append(f"  {name}: {error['msg']}{shown}")
        source = f"{env_file} or the environment" if env_file else "the environment"
        raise ConfigError(
            f"The configuration in {source} is not valid:\n"
            + "\n".join(lines)
            + "\nFix these values (see .env.example and the README) and start again."
        ) from None
