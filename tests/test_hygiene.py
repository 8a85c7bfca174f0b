"""Bad input never reaches the core, and the record cannot be made to lie (issue 13, "Why": the last two cases).

Each test here failed on the code before the fix: non-finite numbers were stored (and then broke every listing and
the agent's allow), a multipart webhook was a 500 with a traceback, an API caller could record itself as an approver's
number or a policy rule, wrong login tokens were unlimited, and `/healthz` told anyone the version and the load.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

from approval_server import __version__
from tests.fake_twilio import FakeTwilio
from tests.raw_mcp import RawMcp, tool_text
from tests.support import ServerProcess, wait_for_pending
from tests.whatsapp_support import ALICE

TOOL = "permissions__approve"
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]
DASHBOARD_TOKEN = "hygiene-dashboard-token-0123456789"


def _no_constant(name: str) -> object:
    raise AssertionError(f"{name} in an answer: not JSON")


def _parse_strictly(text: str) -> object:
    """What a careful JSON reader (the agent's) does with an answer: anything but RFC 8259 JSON fails the test."""
    return json.loads(text, parse_constant=_no_constant)


async def _nothing_recorded(api: httpx.AsyncClient) -> None:
    listing = await api.get("/api/requests", params={"limit": 1000})
    assert listing.status_code == 200, listing.text
    assert listing.json()["requests"] == []


async def test_a_non_finite_number_in_an_mcp_tool_input_is_a_malformed_request(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(APPROVAL_TIMEOUT_SECONDS="3")  # before the fix: pending, then an expiry deny
    async with RawMcp(server.url) as mcp, server.api() as api:
        for number in NON_FINITE:
            arguments = f'{{"tool_name": "Bash", "input": {{"command": "ls", "timeout": {number}}}}}'
            response, answer = await mcp.call(TOOL, arguments)
            assert response.status_code == 200
            decision = _parse_strictly(tool_text(answer))
            assert isinstance(decision, dict)
            assert decision["behavior"] == "deny"
            assert "Malformed permission request (input.timeout: " in decision["message"], number
            assert "not a JSON number" in decision["message"]
        await _nothing_recorded(api)


async def test_a_non_finite_number_in_a_hook_tool_call_is_a_malformed_request(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(APPROVAL_TIMEOUT_SECONDS="3")
    async with server.api() as api, RawMcp(server.url) as mcp:
        for number in NON_FINITE:
            hook = (
                '{"hook_event_name": "PreToolUse", "tool_name": "Bash", "session_id": "s", '
                f'"tool_input": {{"command": "ls", "limits": [1, {{"n": {number}}}]}}}}'
            )
            over_http = await api.post("/api/hook", content=hook)
            _, over_mcp = await mcp.call("hook", hook)
            as_string = await api.post(
                "/api/hook", json=json.loads(hook) | {"tool_input": hook.split('"tool_input": ')[1][:-1]}
            )
            assert over_http.status_code == 400, number
            assert "tool_input.limits[1].n" in over_http.json()["detail"]
            assert as_string.status_code == 400, number
            assert "limits[1].n" in as_string.json()["detail"]
            output = _parse_strictly(tool_text(over_mcp))
            assert isinstance(output, dict)
            assert output["hookSpecificOutput"]["permissionDecision"] == "deny"
            assert "tool_input.limits[1].n" in output["hookSpecificOutput"]["permissionDecisionReason"]
        await _nothing_recorded(api)


async def test_a_non_finite_number_in_an_api_edit_changes_nothing(server: ServerProcess) -> None:
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "ls"}}))
        pending = await wait_for_pending(api)
        response = await api.post(
            f"/api/requests/{pending['id']}/decision",
            content=b'{"decision": "allow", "updated_input": {"command": "ls", "n": NaN}}',
        )
        row = (await api.get(f"/api/requests/{pending['id']}")).json()
        await api.post(f"/api/requests/{pending['id']}/decision", json={"decision": "deny"})
        await call
    assert response.status_code == 400
    assert "updated_input.n" in response.json()["detail"]
    assert (row["status"], row["updated_input"]) == ("pending", None)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="Body"\r\n\r\nyes\r\n--x--\r\n',
        ),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="Body"; filename="a.txt"\r\n\r\nyes\r\n--x--\r\n',
        ),
        ("application/json", b'{"Body": "yes"}'),
        ("", b"Body=yes"),
        ("text/plain", b"Body=yes"),
    ],
)
async def test_a_webhook_that_is_not_a_urlencoded_form_is_4xx_without_a_traceback(
    start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio, content_type: str, body: bytes
) -> None:
    server = start_whatsapp()
    before = len(server.log().splitlines())
    async with httpx.AsyncClient(base_url=server.url) as http:
        headers = {"Content-Type": content_type} if content_type else {}
        response = await http.post("/twilio-webhook", content=body, headers=headers)
        signed = await fake.deliver(
            fake.raw_webhook(body, content_type=content_type or "x/y").signed_with(fake.auth_token)
        )
    await asyncio.sleep(0.2)  # the log line is written after the answer
    log = "\n".join(server.log().splitlines()[before:])
    assert response.status_code == 415
    assert signed.status_code == 415
    assert "Traceback" not in log
    assert log.count("refused a webhook body (415)") == 2


async def test_an_api_actor_cannot_pass_for_an_approver(server: ServerProcess) -> None:
    async with server.mcp() as mcp, server.api() as api:
        call = asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": "ls"}}))
        pending = await wait_for_pending(api)
        body = {"decision": "deny", "actor": ALICE, "message": "no"}
        decided = (await api.post(f"/api/requests/{pending['id']}/decision", json=body)).json()
        row = (await api.get(f"/api/requests/{pending['id']}")).json()
        answer = json.loads((await call).content[0].text)
    assert decided["decided_by"] == f'owner (says: "{ALICE}")'
    assert (row["decided_by"], row["decided_via"]) == (f'owner (says: "{ALICE}")', "api")
    assert [a["actor"] for a in row["answers"]] == [f'owner (says: "{ALICE}")']
    assert answer["message"].startswith(f'Denied by owner (says: "{ALICE}") via api: no')


async def test_an_api_answer_cannot_imitate_a_policy_rule(server: ServerProcess) -> None:
    label = "policy.toml:3 deny Bash(rm:*)"
    reason = "The owner's policy does not allow this (policy rule Bash(rm:*), policy.toml:3)."
    forged = '") via policy: x ("'
    async with server.mcp() as mcp, server.api() as api:
        calls = [
            asyncio.create_task(mcp.call_tool_mcp(TOOL, {"tool_name": "Bash", "input": {"command": f"ls {n}"}}))
            for n in range(3)
        ]
        rows = []
        for n, actor in enumerate([label, forged, None]):
            pending = await wait_for_pending(api, {"input": {"command": f"ls {n}"}})
            body = {"decision": "deny", "message": reason} | ({"actor": actor} if actor else {})
            assert (await api.post(f"/api/requests/{pending['id']}/decision", json=body)).status_code == 200
            rows.append((await api.get(f"/api/requests/{pending['id']}")).json())
        answers = [json.loads(result.content[0].text) for result in await asyncio.gather(*calls)]
    assert all(answer["message"].startswith("Denied by owner") for answer in answers)
    assert [row["decided_by"] for row in rows] == [
        f'owner (says: "{label}")',
        'owner (says: "\\") via policy: x (\\"")',
        "owner",
    ]
    assert {row["decided_via"] for row in rows} == {"api"}
    # The reason is kept exactly as given (what the agent reads is what was typed), and every place that shows it
    # shows who gave it: the record's decided_by / decided_via, and the agent's message, which names the API first.
    assert {row["reason"] for row in rows} == {reason}
    assert all(row["answers"][0]["actor"] == row["decided_by"] for row in rows)


async def test_wrong_login_tokens_are_limited_per_address(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(APPROVAL_DASHBOARD_TOKEN=DASHBOARD_TOKEN)
    async with httpx.AsyncClient(base_url=server.url) as guesser:
        wrong = [(await guesser.post("/login", data={"token": f"guess-{n}"})).status_code for n in range(7)]
        right_here = await guesser.get("/login", params={"token": DASHBOARD_TOKEN})
        forged_link = await guesser.get("/r/forged.link.token")
    assert wrong == [401] * 5 + [429] * 2
    assert right_here.status_code == 429  # while limited, even the right token is not tried from this address
    assert int(right_here.headers["retry-after"]) > 0
    assert forged_link.status_code == 429
    other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=server.url, transport=other) as owner:
        signed_in = await owner.get("/login", params={"token": DASHBOARD_TOKEN})
    assert signed_in.status_code == 303


async def test_forwarded_for_is_not_believed_without_a_trusted_proxy(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(APPROVAL_DASHBOARD_TOKEN=DASHBOARD_TOKEN)
    async with httpx.AsyncClient(base_url=server.url) as guesser:
        statuses = [
            (await guesser.post("/login", data={"token": "x"}, headers={"X-Forwarded-For": f"10.0.0.{n}"})).status_code
            for n in range(6)
        ]
    assert statuses == [401] * 5 + [429]


async def test_healthz_tells_the_version_and_load_only_with_the_api_token(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as anonymous, server.api() as api:
        bare = await anonymous.get("/healthz")
        wrong = await anonymous.get("/healthz", headers={"Authorization": "Bearer wrong"})
        full = await api.get("/healthz")
    assert (bare.status_code, bare.json()) == (200, {"status": "ok"})
    assert (wrong.status_code, wrong.json()) == (200, {"status": "ok"})
    assert full.json() == {"status": "ok", "version": __version__, "pending": 0}
