"""Who may talk to the server: the tokens for `/api`, `/mcp` and the dashboard, generated on first start if not
configured, and the bearer-token check for `/api` and `/mcp`."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from approval_server.config import Settings
from approval_server.errors import ConfigError

# The file each token is kept in (in APPROVAL_DATA_DIR) when it is not set, and the setting that sets it.
TOKEN_FILES = {
    "api-token": "approval_api_token",
    "mcp-token": "approval_mcp_token",
    "dashboard-token": "approval_dashboard_token",
}


@dataclass(frozen=True)
class Tokens:
    api: str
    mcp: str
    dashboard: str


def _token(configured: SecretStr | None, path: Path, created: list[Path]) -> str:
    if configured is not None:
        return configured.get_secret_value()
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its token
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(token + "\n")
    created.append(path)
    return token


def load_tokens(settings: Settings) -> tuple[Tokens, list[Path]]:
    """The API, MCP and dashboard tokens, and the token files this call created (their tokens are new)."""
    settings.require_shared_secrets()
    created: list[Path] = []
    try:
        settings.approval_data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        api, mcp, dashboard = (
            _token(getattr(settings, setting), settings.approval_data_dir / name, created)
            for name, setting in TOKEN_FILES.items()
        )
        tokens = Tokens(api=api, mcp=mcp, dashboard=dashboard)
    except OSError as exc:
        raise ConfigError(
            f"Cannot read or create the token files in APPROVAL_DATA_DIR={settings.approval_data_dir}: "
            f"{exc.strerror or exc}. Point APPROVAL_DATA_DIR at a writable folder."
        ) from None
    return tokens, created


class RequireBearer:
    """ASGI middleware: answer 401 unless the request carries `Authorization: Bearer <token>` (or one of
    `other_tokens`)."""

    def __init__(self, app: ASGIApp, token: str, realm: str, other_tokens: tuple[str, ...] = ()) -> None:
        self.app = app
        self._expected = [f"Bearer {each}".encode() for each in (token, *other_tokens)]
        self._realm = realm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        matches = [secrets.compare_digest(given, expected) for expected in self._expected]  # each one compared
        if any(matches):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {"error": "unauthorized", "detail": f"send 'Authorization: Bearer <token>' with the {self._realm} token"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", f'Bearer realm="{self._realm}"'.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
