"""The HTTP API: authentication, host checks, clear 4xx errors that change nothing, and the event stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from tests.support import API_TOKEN, MCP_TOKEN, ServerProcess, wait_for_pending

TOOL = "permissions__approve"


async def test_healthz_needs_no_token(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize("token", [None, "wrong", MCP_TOKEN])
async def test_every_api_route_needs_the_api_token(server: ServerProcess, token: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        for method, path in [
            ("GET", "/api/requests"),
            ("GET", "/api/requests/abc"),
            ("POST", "/api/requests/abc/decision"),
            ("GET", "/api/events"),
        ]:
            response = await http.request(method, path, json={"decision": "allow"})
            assert response.status_code == 401, path
            assert response.json()["error"] == "unauthorized"


@pytest.mark.parametrize("path", ["/healthz", "/api/requests", "/mcp"])
async def test_foreign_host_headers_are_refused(server: ServerProcess, path: str) -> None:
    headers = {"Host": "evil.example", "Authorization": f"Bearer {API_TOKEN}"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get(path, headers=headers)
        allowed = await http.get("/healthz", headers={"Host": f"localhost:{server.port}"})
    assert response.status_code == 400
    assert allowed.status_code == 200


async def test_public_url_host_is_accepted(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(PUBLIC_URL="https://abc123.ngrok.app")
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/healthz", headers={"Host": "abc123.ngrok.app"})).status_code == 200
        assert (await http.get("/healthz", headers={"Host": "other.ngrok.app"})).status_code == 400


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"{not json", 400, "JSON object"),
        (b"[1, 2]", 400, "valid dictionary"),
        (b'{"decision": "maybe"}', 400, "decision"),
        (b'{"decision": "deny", "updated_input": {"command": "x"}}', 400, "only allowed with decision 'allow'"),
        (b'{"decision": "allow", "updated_input": "rm -rf /"}', 400, "updated_input"),
        (b'{"decision": "allow", "surprise": 1}', 400, "surprise"),
        (b"\xff\xfe", 400, "JSON object"),
        (b'{"decision": "allow", "updated_input": {"a": ' + b"[" * 200_000, 400, "nested too deeply"),
        (b" " * (2 * 1024 * 1024 + 1), 413, "larger than"),
    ],
)
async def test_bad_decisions_are_4xx_and_change_nothing(
    server: ServerProcess, body: bytes, status: int, detail: str
) -> None:
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "x"}}))
        pending = await wait_for_pending(api)
        response = await api.post(f"/api/requests/{pending['id']}/decision", content=body)
        assert response.status_code == status
        assert detail in response.json()["detail"]
        row = (await api.get(f"/api/requests/{pending['id']}")).json()
        assert row["status"] == "pending"
        assert row["answers"] == []
        assert not call.done()
        call.cancel()


async def test_a_chunked_body_over_the_limit_is_refused_without_reading_it_all(server: ServerProcess) -> None:
    async def endless() -> AsyncIterator[bytes]:
        for _ in range(100):  # 6.4 MB, no Content-Length
            yield b" " * 65536

    async with server.api() as api:
        response = await api.post("/api/requests/abcdefgh/decision", content=endless())
    assert response.status_code == 413


async def test_unknown_ids_and_statuses(server: ServerProcess) -> None:
    async with server.api() as api:
        assert (await api.get("/api/requests/nope")).status_code == 404
        assert (await api.post("/api/requests/nope/decision", json={"decision": "allow"})).status_code == 404
        bad = await api.get("/api/requests", params={"status": "maybe"})
        assert bad.status_code == 400
        assert "pending" in bad.json()["detail"]
        assert (await api.get("/api/requests", params={"limit": "0"})).status_code == 400
        assert (await api.get("/api/nothing-here")).status_code == 404


async def test_status_filter_and_closed_requests(server: ServerProcess) -> None:
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "a"}}))
        first = await wait_for_pending(api)
        await api.post(f"/api/requests/{first['id']}/decision", json={"decision": "deny"})
        await call
        call2 = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "b"}}))
        second = await wait_for_pending(api)
        pending = (await api.get("/api/requests", params={"status": "pending"})).json()["requests"]
        denied = (await api.get("/api/requests", params={"status": "denied"})).json()["requests"]
        everything = (await api.get("/api/requests")).json()["requests"]
        again = await api.post(f"/api/requests/{first['id']}/decision", json={"decision": "allow"})
        call2.cancel()
    assert [r["id"] for r in pending] == [second["id"]]
    assert [r["id"] for r in denied] == [first["id"]]
    assert [r["id"] for r in everything] == [second["id"], first["id"]]
    assert again.status_code == 409
    assert "already denied" in again.json()["detail"]


async def test_event_stream_reports_the_lifecycle(server: ServerProcess) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    subscribed = asyncio.Event()

    async def follow(api: httpx.AsyncClient) -> None:
        async with api.stream("GET", "/api/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            kind = ""
            async for line in response.aiter_lines():
                if line.startswith(":"):
                    subscribed.set()
                elif line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    events.append((kind, json.loads(line.split(":", 1)[1])))
                    if kind == "request.closed":
                        return

    async with server.mcp() as mcp, server.api() as api, server.api() as stream_api:
        follower = asyncio.create_task(follow(stream_api))
        await asyncio.wait_for(subscribed.wait(), 5)
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "ev"}}))
        pending = await wait_for_pending(api)
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "allow"})
        await call
        await asyncio.wait_for(follower, 5)
    assert [kind for kind, _ in events] == ["request.created", "request.closed"]
    assert events[0][1]["status"] == "pending"
    assert events[1][1]["status"] == "allowed"
    assert events[1][1]["id"] == pending["id"]
