"""The server's log is quiet and holds no secret: no request lines from the HTTP libraries at the default level, no
token and no signed link in any line (the access log shows them redacted), and a token in the start-up banner only
the once it is created, with the file it is kept in.

Against the real server, with WhatsApp on a local fake Twilio: an agent asks, an approver signs in to the dashboard
with its token and answers at the request's signed link.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from approval_server.web_auth import SESSION_COOKIE
from tests.dashboard_support import DASHBOARD_TOKEN, answer, ask, browser, csrf_of, link_for, local, signed_in
from tests.fake_twilio import FakeTwilio
from tests.support import API_TOKEN, MCP_TOKEN, ServerProcess
from tests.whatsapp_support import ALICE, PUBLIC_URL

# A log line: `12:34:56 INFO    httpx: …` (the server's format: time, level, logger, message).
LINE = re.compile(r"^\d\d:\d\d:\d\d (?P<level>[A-Z]+)\s+(?P<logger>[\w.]+): ", re.MULTILINE)
THIRD_PARTY_HTTP = ("twilio", "httpx", "httpcore", "aiohttp", "urllib3")
WRONG_TOKEN = "a-wrong-dashboard-token-typed-by-hand"


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_the_log_holds_no_token_no_signed_link_and_no_http_library_chatter(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio, level: str
) -> None:
    server = start_whatsapp(APPROVAL_LOG_LEVEL=level, APPROVAL_DASHBOARD_TOKEN=DASHBOARD_TOKEN)
    async with server.mcp() as mcp, server.api() as api:
        call, pending = await ask(mcp, api, {"command": "echo logged"})
        link = await link_for(fake, ALICE, pending["id"])
        async with browser(server) as http:
            assert (await http.get("/login", params={"token": WRONG_TOKEN})).status_code == 401
        async with signed_in(server) as http:
            session = http.cookies[SESSION_COOKIE]
            assert (await http.get("/")).status_code == 200
        async with browser(server) as http:
            page = await http.get(local(link, server))
            assert page.status_code == 200
            decided = await http.post(local(link, server), data={"csrf": csrf_of(page.text), "decision": "allow"})
            assert decided.status_code == 200
        assert (await answer(call))["behavior"] == "allow"
    server.stop()
    log = server.log()

    secrets = {
        "API token": API_TOKEN,
        "MCP token": MCP_TOKEN,
        "dashboard token": DASHBOARD_TOKEN,
        "wrong dashboard token": WRONG_TOKEN,
        "session cookie": session,
        "Twilio auth token": fake.auth_token,
        "signed link": link.removeprefix(f"{PUBLIC_URL}/r/"),
    }
    for what, secret in secrets.items():
        assert secret not in log, f"the {what} is in the log:\n{log}"
    # The access log is still there, with the secrets replaced.
    assert '"GET /login?token=[redacted] HTTP/1.1" 303' in log
    assert '"GET /login?token=[redacted] HTTP/1.1" 401' in log
    assert '"GET /r/[redacted] HTTP/1.1" 200' in log
    assert '"POST /r/[redacted] HTTP/1.1" 200' in log
    if level == "info":
        chatter = [
            m.group(0)
            for m in LINE.finditer(log)
            if m["logger"].startswith(THIRD_PARTY_HTTP) and m["level"] in ("DEBUG", "INFO")
        ]
        assert chatter == [], f"lines from the HTTP libraries at APPROVAL_LOG_LEVEL=info:\n{log}"


def banner(log: str) -> str:
    """The start-up banner: the lines before the first log line."""
    first = LINE.search(log)
    return log[: first.start()] if first else log


class NoTokensSet(ServerProcess):
    """A server whose three tokens are not set, so that it creates them in its data directory."""

    def environment(self) -> dict[str, str]:
        env = super().environment()
        for name in ("APPROVAL_API_TOKEN", "APPROVAL_MCP_TOKEN", "APPROVAL_DASHBOARD_TOKEN"):
            env.pop(name, None)
        return env


def test_the_banner_shows_a_token_only_when_it_is_created_with_the_file_it_is_kept_in(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = NoTokensSet(data_dir=data, env={"APPROVAL_LOG_LEVEL": "info"})
    first.start()
    first.stop()
    files = {name: data / name for name in ("api-token", "mcp-token", "dashboard-token")}
    tokens = {name: path.read_text().strip() for name, path in files.items()}
    shown = banner(first.log())
    for name, token in tokens.items():
        assert f"New {name} (kept in {files[name]}, mode 0600): {token}" in shown
    assert f"/login?token={tokens['dashboard-token']}" in shown

    second = NoTokensSet(data_dir=data, env={"APPROVAL_LOG_LEVEL": "info"})
    second.start()
    second.stop()
    log = second.log()
    for name, token in tokens.items():
        assert token not in log, f"the {name} is shown again:\n{log}"
    shown = banner(log)
    assert f"Tokens:                kept in {data} (api-token, mcp-token, dashboard-token)" in shown
    assert "approval-server dashboard" in shown  # how to get the login URL now
