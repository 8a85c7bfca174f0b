"""Where the CLI finds the server when it acts for an agent (`hook`, `stdio`) or an approver (`requests`, `approve`,
…): explicit flags (`--url`, `--env-file`), the process environment, and one file of the user's own,
`client.env` in `user_config_dir()`. Never `.env` in the current directory: that is the agent's project, and the
agent can write it.

For the commands that act for an agent the environment does not say where the server is either: Claude Code hands
a project's `.claude/settings.json` `env` to every hook and MCP server it starts (observed with 2.1.328), so the
URL comes from `--url` or the user's file only. A token taken from a tampered environment can only be refused by the
real server, which fails closed.

`approval-server serve` writes the file on start (the URL it listens on, its data directory where the token files
are) and `approval-server login` writes it for a server elsewhere.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import HttpUrl
from pydantic_settings import SettingsConfigDict

from approval_server.config import Settings, load_section, user_config_dir
from approval_server.errors import ConfigError

CLIENT_FILE = "client.env"
_URL_KEYS = ("approval_url", "server_host", "server_port")


class ClientSettings(Settings):
    """The server's settings as a client sees them, plus `APPROVAL_URL`: where to reach the server."""

    model_config = SettingsConfigDict(env_file=None, env_file_encoding="utf-8", extra="ignore")

    approval_url: HttpUrl | None = None

    @property
    def url(self) -> str:
        """The server's base URL: `APPROVAL_URL`, or the address `SERVER_HOST` and `SERVER_PORT` make."""
        return str(self.approval_url).rstrip("/") if self.approval_url is not None else self.local_url


def client_file() -> Path:
    return user_config_dir() / CLIENT_FILE


def _check_private(path: Path, what: str) -> None:
    """Refuse a file or folder another user could have written: it would decide where tokens are sent."""
    info = path.stat()
    if info.st_uid != os.getuid():
        raise ConfigError(f"{what} {path} belongs to another user (uid {info.st_uid}): refusing to read it.")
    if stat.S_IMODE(info.st_mode) & 0o022:
        raise ConfigError(
            f"{what} {path} can be written by other users (mode {stat.S_IMODE(info.st_mode):o}): refusing to read "
            f"it. Run  chmod go-w {path}"
        )


def readable_client_file() -> Path | None:
    """The user's client file if there is one, after checking that only the user could have written it."""
    path = client_file()
    if not path.exists():
        return None
    _check_private(path.parent, "The folder")
    _check_private(path, "The client settings file")
    return path


def load_client_settings(
    env_file: Path | None = None, url: str | None = None, *, for_agent: bool = False
) -> ClientSettings:
    """The settings a client command uses: `url` (`--url`) first, then the environment, then `env_file`
    (`--env-file`), then the user's `client.env`. `for_agent`: the URL never comes from the environment."""
    if env_file is not None and not env_file.is_file():
        raise ConfigError(f"--env-file {env_file} does not exist.")
    files = [path for path in (readable_client_file(), env_file) if path is not None]
    overrides: dict[str, Any] = {}
    if url is not None:
        overrides["approval_url"] = url
    elif for_agent:
        values: dict[str, str] = {}
        for path in files:  # later files win, as pydantic-settings reads them
            values |= {key.lower(): value for key, value in dotenv_values(path).items() if value is not None}
        overrides = {key: values[key] for key in _URL_KEYS if key in values}
        overrides.setdefault("approval_url", None)
        overrides.setdefault("server_host", "127.0.0.1")
        overrides.setdefault("server_port", 8000)
    from approval_server.channels.plugin import sections  # the server's .env may be among the files

    return load_section(ClientSettings, tuple(files) or None, sections(), **overrides)


def _line(key: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ConfigError(f"{key} cannot hold a line break.")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{key}="{escaped}"\n'


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` (mode 0600, in a folder of mode 0700 if it has to be made), all at once."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_client_file(values: dict[str, str], header: str) -> Path:
    """Replace the user's client file with `values` (mode 0600, in a folder of mode 0700), all at once."""
    path = client_file()
    write_private(path, f"# {header}\n" + "".join(_line(key, value) for key, value in values.items()))
    return path


def remembered_url() -> str | None:
    """The server URL in the user's client file (what `serve` or `login` recorded), if there is one that only the
    user could have written (`doctor` says what is wrong with another)."""
    try:
        path = readable_client_file()
    except ConfigError:
        return None
    url = dotenv_values(path).get("APPROVAL_URL") if path is not None else None
    return url.rstrip("/") if url else None


def remember_server(settings: Settings) -> str:
    """What `serve` writes on start, so that the CLI of the same user finds this server: its URL, its data
    directory (where the token files are), its expiry, and the tokens set in its settings rather than in files.
    Returns a line for the start-up banner; a file that cannot be written is reported, not fatal."""
    values = {
        "APPROVAL_URL": settings.local_url,
        "APPROVAL_DATA_DIR": str(settings.approval_data_dir.resolve()),
        "APPROVAL_TIMEOUT_SECONDS": f"{settings.approval_timeout_seconds:g}",
    }
    if settings.public_url is not None:
        values["PUBLIC_URL"] = str(settings.public_url)
    configured = {
        "APPROVAL_API_TOKEN": settings.approval_api_token,
        "APPROVAL_MCP_TOKEN": settings.approval_mcp_token,
        "APPROVAL_DASHBOARD_TOKEN": settings.approval_dashboard_token,
    }
    values |= {name: token.get_secret_value() for name, token in configured.items() if token is not None}
    try:
        path = write_client_file(values, "Written by `approval-server serve` on start; `approval-server login` too.")
    except (OSError, ConfigError) as exc:
        return f"not written ({exc}): the CLI needs --url or `approval-server login`"
    return f"{path} (the CLI and the hook find this server there)"
