"""Every entry point fuzzed with hypothesis, over real HTTP to a real server: never a 500, never a decision.

Two servers per run. `quick` expires requests at once (so any call the fuzz makes well-formed ends in a deny without
a human) and carries the MCP tool and `/api/hook`: every answer must be strict JSON and never an allow. `waiting`
holds one request pending for the whole run, with WhatsApp on, and takes the fuzzed API calls, webhooks and dashboard
forms: none may be a 500, and at the end the request is still pending with no answer recorded.

Each test runs 2,000 cases (the issue's floor; `APPROVAL_FUZZ_EXAMPLES` sets fewer while working on one),
derandomised so CI runs the same cases every time.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.databases import Databases
from tests.fake_twilio import FakeTwilio, sign
from tests.raw_mcp import PROTOCOL_VERSION, rpc_answer
from tests.support import API_TOKEN, MCP_TOKEN, ServerProcess
from tests.whatsapp_support import ALICE, MALLORY, PUBLIC_URL, whatsapp_env

EXAMPLES = int(os.environ.get("APPROVAL_FUZZ_EXAMPLES", "2000"))  # fewer while working on a test
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
DASHBOARD_TOKEN = "fuzz-dashboard-token-0123456789abcdef"
# Tools the `quick` server's policy denies outright, so most well-formed calls are answered without waiting at all.
TOOLS = ["Bash", "Read", "Write", "Edit", "MultiEdit", "Glob", "Grep", "WebFetch", "NotebookEdit", "mcp__fuzz__x"]
POLICY = '[permissions]\ndeny = ["Bash", "Read", "Write", "Edit", "MultiEdit", "Glob", "Grep", "WebFetch", ' + (
    '"NotebookEdit", "mcp__fuzz"]\n'
)
WEBHOOK_URL = f"{PUBLIC_URL}/twilio-webhook"


def _strict(text: str) -> Any:
    """`text` read as RFC 8259 JSON: `NaN`, `Infinity` and numbers that overflow fail the test."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in an answer: not JSON")

    def finite(number: str) -> float:
        if not math.isfinite(value := float(number)):
            raise AssertionError(f"{number} in an answer: no JSON reader can hold it")
        return value

    return json.loads(text, parse_constant=refuse, parse_float=finite)


# -- strategies ---------------------------------------------------------------------------------------------------

_texts = st.text(max_size=40)
_numbers = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True))
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), _numbers, _texts),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_texts, inner, max_size=4)),
    max_leaves=12,
)
# Numbers JSON has no value for, written as text (Python's `json.dumps` writes NaN and Infinity itself).
_raw_numbers = st.sampled_from(["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1" * 400, "0e99999"])
_tool_names = st.integers(0, 9).flatmap(lambda n: _texts if n == 0 else st.sampled_from(TOOLS))


@st.composite
def _tool_call_text(draw: st.DrawFn) -> str:
    """The text of an MCP tool call's arguments (or a hook's body): usually an object of the right shape with odd
    values, sometimes a raw number JSON cannot hold, sometimes not JSON at all."""
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return draw(st.text(max_size=80))
    fields: dict[str, Any] = draw(st.dictionaries(_texts, _json, max_size=3))
    fields["tool_name"] = draw(st.one_of(_tool_names, _json))
    fields["input"] = draw(st.one_of(st.dictionaries(_texts, _json, max_size=5), _json))
    text = json.dumps(fields)
    if shape == 1:
        text = text.replace("null", draw(_raw_numbers), 1) if "null" in text else text[:-1] + ', "n": 1e400}'
    return text


@st.composite
def _hook_text(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=80))
    fields: dict[str, Any] = draw(st.dictionaries(_texts, _json, max_size=3))
    fields["hook_event_name"] = draw(st.one_of(st.sampled_from(["PreToolUse", "PermissionRequest"]), _json))
    fields["tool_name"] = draw(st.one_of(_tool_names, _json))
    fields["tool_input"] = draw(st.one_of(st.dictionaries(_texts, _json, max_size=5), _texts, _json))
    for name in ("session_id", "cwd", "tool_use_id"):
        if draw(st.booleans()):
            fields[name] = draw(st.one_of(_texts, _json))
    text = json.dumps(fields)
    if draw(st.integers(0, 4)) == 0:
        text = text[:-1] + f', "x": {draw(_raw_numbers)}}}'
    return text


def _allows(output: object) -> bool:
    """Whether an answer (the MCP tool's or a hook's) says allow anywhere a decision can be said."""
    if isinstance(output, dict):
        said = [output.get(key) for key in ("behavior", "permissionDecision")]
        return "allow" in said or any(_allows(value) for value in output.values())
    return isinstance(output, list) and any(map(_allows, output))


def _not_a_decision(value: object) -> bool:
    return not (isinstance(value, str) and value.strip().lower() in ("allow", "deny"))


# -- servers ------------------------------------------------------------------------------------------------------


@dataclass
class Waiting:
    """The `waiting` server, its fake Twilio, and the request it holds pending."""

    server: ServerProcess
    fake: FakeTwilio
    request_id: str


def _server(tmp: pytest.TempPathFactory, databases: Databases, name: str, env: dict[str, str]) -> ServerProcess:
    data_dir: Path = tmp.mktemp(name)
    server = ServerProcess(data_dir=data_dir, database_url=databases.create(data_dir), env=env)
    server.start()
    return server


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[ServerProcess]:
    policy = tmp_path_factory.mktemp("policy") / "policy.toml"
    policy.write_text(POLICY)
    server = _server(
        tmp_path_factory,
        databases,
        "quick",
        {"APPROVAL_TIMEOUT_SECONDS": "0.05", "POLICY_FILE": str(policy), "APPROVAL_LOG_LEVEL": "warning"},
    )
    yield server
    server.stop()
    databases.drop(server.database_url or "")


@pytest.fixture(scope="module")
def waiting(tmp_path_factory: pytest.TempPathFactory, databases: Databases) -> Iterator[Waiting]:
    with FakeTwilio() as fake:
        env = whatsapp_env(
            fake,
            APPROVAL_DASHBOARD_TOKEN=DASHBOARD_TOKEN,
            APPROVAL_WRONG_TOKENS_PER_MINUTE="10000",  # the login limit has tests of its own (test_hygiene.py)
            APPROVAL_LOG_LEVEL="warning",
        )
        server = _server(tmp_path_factory, databases, "waiting", env)
        hook = {"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": "fuzz me"}}
        held = threading.Thread(
            target=lambda: httpx.post(
                f"{server.url}/api/hook", json=hook, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=3600
            ),
            daemon=True,
        )
        held.start()
        api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_TOKEN}"})
        request_id = ""
        for _ in range(500):
            pending = api.get("/api/requests", params={"status": "pending"}).json()["requests"]
            if pending:
                request_id = pending[0]["id"]
                break
            threading.Event().wait(0.02)
        assert request_id, "the held request never became pending"
        yield Waiting(server, fake, request_id)
        row = api.get(f"/api/requests/{request_id}").json()
        api.post(f"/api/requests/{request_id}/decision", json={"decision": "deny", "message": "fuzz over"})
        api.close()
        held.join(10)
        server.stop()
        databases.drop(server.database_url or "")
    assert (row["status"], row["answers"]) == ("pending", []), "the fuzz decided the held request"


@pytest.fixture(scope="module")
def agent_api(quick: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=quick.url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def approver_api(waiting: Waiting) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=waiting.server.url, headers={"Authorization": f"Bearer {API_TOKEN}"}) as http:
        yield http


@pytest.fixture(scope="module")
def stranger(waiting: Waiting) -> Iterator[httpx.Client]:
    """A client with no token and no session."""
    with httpx.Client(base_url=waiting.server.url) as http:
        yield http


def _assert_answered(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])


# -- the agent's entry points -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mcp_session(quick: ServerProcess) -> Iterator[httpx.Client]:
    headers = {
        "Authorization": f"Bearer {MCP_TOKEN}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    with httpx.Client(base_url=quick.url, headers=headers, timeout=30) as http:
        init = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "0"}}
        response = http.post("/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
        assert response.status_code == 200, response.text
        if session := response.headers.get("mcp-session-id"):
            http.headers["mcp-session-id"] = session
        http.headers["mcp-protocol-version"] = PROTOCOL_VERSION
        http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        yield http


@FUZZ
@given(tool=st.sampled_from(["permissions__approve", "hook"]), arguments=_tool_call_text())
def test_mcp_tool_calls_never_fail_and_never_allow(mcp_session: httpx.Client, tool: str, arguments: str) -> None:
    body = f'{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}'
    response = mcp_session.post("/mcp", content=body)
    _assert_answered(response)
    answer = rpc_answer(response)
    if answer is None or "error" in answer:
        return
    if answer["result"].get("isError"):
        return
    for block in answer["result"]["content"]:
        decision = _strict(block["text"])
        assert not _allows(decision), decision


@FUZZ
@given(body=_hook_text())
def test_hook_posts_never_fail_and_never_allow(agent_api: httpx.Client, body: str) -> None:
    response = agent_api.post("/api/hook", content=body)
    _assert_answered(response)
    if response.status_code == 200:
        output = _strict(response.text)
        assert not _allows(output), output


# -- the approvers' entry points ----------------------------------------------------------------------------------


@FUZZ
@given(
    data=st.data(),
    route=st.sampled_from(["decision", "get", "list", "grants", "revoke"]),
    body=st.one_of(
        st.fixed_dictionaries(
            {"decision": st.one_of(_json.filter(_not_a_decision), _texts.filter(_not_a_decision))},
            optional={"message": _json, "actor": _json, "updated_input": _json, "remember": _json},
        ),
        _json.filter(lambda v: not isinstance(v, dict)),
        st.text(max_size=60),
    ),
)
def test_api_calls_never_fail_and_never_decide(
    waiting: Waiting, approver_api: httpx.Client, data: st.DataObject, route: str, body: Any
) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    some_id = data.draw(st.one_of(st.just(waiting.request_id), st.text(min_size=1, max_size=20)))
    params = data.draw(st.dictionaries(st.sampled_from(["status", "limit", "q", "tool", "all", "agent", "x"]), _texts))
    api, path_id = approver_api, quote(some_id, safe="")
    if route == "decision":
        response = api.post(f"/api/requests/{path_id}/decision", content=content)
    elif route == "revoke":
        response = api.post(f"/api/grants/{path_id}/revoke", content=content)
    elif route == "get":
        response = api.get(f"/api/requests/{path_id}")
    else:
        response = api.get("/api/requests" if route == "list" else "/api/grants", params=params)
    _assert_answered(response)
    if route == "decision":
        assert response.status_code >= 400, response.text


@FUZZ
@given(
    data=st.data(),
    fields=st.dictionaries(
        st.sampled_from(["Body", "From", "To", "ButtonPayload", "ButtonText", "OriginalRepliedMessageSid", "X"]),
        _texts,
    ),
    signing=st.sampled_from(["none", "forged", "wrong-account", "stranger"]),
    content_type=st.sampled_from(
        ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json", "", "text/plain"]
    ),
)
def test_webhooks_never_fail_and_never_decide(
    waiting: Waiting,
    stranger: httpx.Client,
    data: st.DataObject,
    fields: dict[str, str],
    signing: str,
    content_type: str,
) -> None:
    params = {"AccountSid": waiting.fake.account_sid, "From": f"whatsapp:{ALICE}", "MessageSid": "SM" + "0" * 32}
    params |= {"Body": f"APPROVE {waiting.request_id}"} | fields
    headers: dict[str, str] = {"Content-Type": content_type} if content_type else {}
    if signing == "stranger":  # correctly signed, but not from an approver
        params["From"] = f"whatsapp:{MALLORY}"
        headers["X-Twilio-Signature"] = sign(waiting.fake.auth_token, WEBHOOK_URL, params)
    elif signing == "forged":
        headers["X-Twilio-Signature"] = data.draw(st.from_regex(r"[!-~]{0,40}", fullmatch=True))
    elif signing == "wrong-account":
        headers["X-Twilio-Signature"] = sign("another-accounts-token", WEBHOOK_URL, params)
    raw = data.draw(st.one_of(st.just(urlencode(params).encode()), st.binary(max_size=200)))
    response = stranger.post("/twilio-webhook", content=raw, headers=headers)
    _assert_answered(response)


@pytest.fixture(scope="module")
def signed_in(waiting: Waiting) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=waiting.server.url) as browser:
        assert browser.get("/login", params={"token": DASHBOARD_TOKEN}).status_code == 303
        yield browser


@FUZZ
@given(
    route=st.sampled_from(["login", "decision", "logout", "revoke", "link", "search"]),
    form=st.dictionaries(
        st.sampled_from(
            ["token", "next", "csrf", "decision", "message", "updated_input", "remember", "q", "page", "status", "tool"]
        ),
        st.one_of(_texts, st.sampled_from(["allow", "deny", "edit", "session", "30m", "{}"])),
    ),
    session=st.booleans(),
    content_type=st.sampled_from(["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", "a/b"]),
)
def test_dashboard_forms_never_fail_and_never_decide(
    waiting: Waiting,
    signed_in: httpx.Client,
    stranger: httpx.Client,
    route: str,
    form: dict[str, str],
    session: bool,
    content_type: str,
) -> None:
    target = {
        "login": "/login",
        "decision": f"/requests/{waiting.request_id}/decision",
        "logout": "/logout",
        "revoke": "/grants/g123/revoke",
        "link": "/r/" + quote(form.get("token") or "x", safe=""),
        "search": "/",
    }[route]
    headers = {"Content-Type": content_type} if content_type else {}
    content = urlencode(form).encode()
    if route == "search":
        response = (signed_in if session else stranger).get("/", params=form)
    elif session:
        response = signed_in.post(target, content=content, headers=headers)
        if route == "logout" and response.status_code == 303:  # a fuzzed CSRF token never matches: refuse before
            pytest.fail("a fuzzed logout went through")
    else:
        response = stranger.post(target, content=content, headers=headers)
    _assert_answered(response)
    if route == "decision":  # signed in, only a refusal; signed out, a refusal or the way to the login page
        assert response.status_code >= 400 or (not session and response.status_code == 303), response.status_code
