"""The HTTP API under `/api`: list and read requests, post decisions, follow lifecycle events.

Every route needs `Authorization: Bearer <APPROVAL_API_TOKEN>` (checked by the middleware in `security`); `hook`,
mounted on its own in `app`, also takes the MCP token, as an agent's hook asks with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from approval_server import strict_json
from approval_server.agents import agent_for
from approval_server.bodies import read_body
from approval_server.core.broker import Broker
from approval_server.errors import BadRequest, NotFound
from approval_server.models import Answer, Remember, Status, check_agent_name, plain_version
from approval_server.web_auth import OWNER

API_CHANNEL = "api"
API_CREDENTIAL = "api"  # every call here came with the API token (see `fair_share`)
MAX_LIMIT = 1000
MAX_BODY = 2 * 1024 * 1024


def _remember(value: object) -> Remember:
    if not isinstance(value, str):
        raise ValueError("remember must be 'session' or a duration such as '30m' or '2h'")
    return Remember.parse(value)


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["allow", "deny"]
    message: str | None = Field(default=None, max_length=2000)
    updated_input: dict[str, Any] | None = None
    actor: str | None = Field(default=None, min_length=1, max_length=200)
    remember: Annotated[Remember, BeforeValidator(_remember)] | None = None

    @model_validator(mode="after")
    def _only_with_allow(self) -> DecisionBody:
        for name in ("updated_input", "remember"):
            if getattr(self, name) is not None and self.decision != "allow":
                raise ValueError(f"{name} is only allowed with decision 'allow'")
        return self


def recorded_actor(name: str | None) -> str:
    """Who the record says answered through the API: the `owner`, whose token it is, with the name the caller gave
    quoted as its own words, as in `owner (says: "alice")`. Anyone with the API token can type any name, so a name
    can never pass for one of the people, the server or a policy rule."""
    return OWNER if name is None else f"{OWNER} (says: {_quoted(name)})"


def _quoted(text: str) -> str:
    """`text` in double quotes, its own quotes and control characters escaped: where it ends cannot be faked."""
    return json.dumps(text, ensure_ascii=False)


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())


def _broker(request: Request) -> Broker:
    broker: Broker = request.app.state.broker
    return broker


async def list_requests(request: Request) -> JSONResponse:
    status_text = request.query_params.get("status")
    try:
        status = Status(status_text) if status_text else None
    except ValueError:
        allowed = ", ".join(s.value for s in Status)
        raise BadRequest(f"unknown status {status_text!r}; use one of: {allowed}") from None
    limit_text = request.query_params.get("limit", "100")
    # `str.isdigit` is true of "¹" and "٣", which `int` reads one way or not at all: ASCII digits only.
    if not re.fullmatch(r"[0-9]{1,4}", limit_text) or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    rows = await _broker(request).store.recent(status=status, limit=int(limit_text))
    return JSONResponse({"requests": [row.to_json() for row in rows]})


async def get_request(request: Request) -> JSONResponse:
    broker = _broker(request)
    request_id = request.path_params["request_id"]
    row = await broker.store.get(request_id)
    if row is None:
        raise NotFound(f"no request {request_id}")
    return JSONResponse(row.to_json() | {"answers": await broker.store.answers_for(request_id)})


async def _json_body(request: Request, what: str, empty: Any = None) -> Any:
    """The body parsed as strict JSON (see `strict_json`); `empty`, when given, stands for an empty body."""
    raw = await read_body(request, MAX_BODY)
    if not raw and empty is not None:
        return empty
    try:
        return strict_json.loads(raw)
    except strict_json.NotJSON as exc:
        raise BadRequest(f"the body must be {what} ({exc})") from None
    except ValueError:
        raise BadRequest(f"the body must be {what}") from None
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None


async def post_decision(request: Request) -> JSONResponse:
    payload = await _json_body(request, "a JSON object")
    try:
        body = DecisionBody.model_validate(payload)
    except ValidationError as exc:
        raise BadRequest(_problems(exc)) from None
    answer = Answer(
        status=Status.ALLOWED if body.decision == "allow" else Status.DENIED,
        actor=recorded_actor(body.actor),
        channel=API_CHANNEL,
        message=body.message,
        updated_input=body.updated_input,
        remember=body.remember,
    )
    row = await _broker(request).decide(request.path_params["request_id"], answer)
    grants = await _broker(request).store.grants_from(row.id) if row.remembered else []
    return JSONResponse(row.to_json() | {"grants": [grant.to_json() for grant in grants]})


async def list_grants(request: Request) -> JSONResponse:
    """The grants in force, or with `?all=1` every grant, newest first."""
    everything = request.query_params.get("all") in ("1", "true")
    store = _broker(request).store
    grants = await store.grants(active_at=None if everything else await store.now())
    return JSONResponse({"grants": [grant.to_json() for grant in grants]})


class RevokeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor: str | None = Field(default=None, min_length=1, max_length=200)


async def revoke_grant(request: Request) -> JSONResponse:
    payload = await _json_body(request, "a JSON object", empty={})
    try:
        body = RevokeBody.model_validate(payload)
    except ValidationError as exc:
        raise BadRequest(_problems(exc)) from None
    grant = await _broker(request).revoke(request.path_params["grant_id"], recorded_actor(body.actor))
    return JSONResponse(grant.to_json())


async def _until_disconnected(request: Request) -> None:
    """Returns when the client hangs up (its body has been read, so the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def hook(request: Request) -> Response:
    """An agent's hook input (or event) in, that agent's answer out, once the request is decided (see `agents`).
    `/api/hook` is Claude Code's; `/api/hook/{kind}` any agent's."""
    payload = await _json_body(request, "the hook's JSON input")
    try:
        kind = agent_for(request.path_params.get("kind", "claude-code"))
    except ValueError as exc:
        raise NotFound(str(exc)) from None
    try:
        name = check_agent_name(request.headers.get("x-agent-name") or request.query_params.get("agent"))
        question = kind.parse(payload)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    # As the hook command read it (agents.versions), or as the payload says.
    version = plain_version(request.headers.get("x-agent-version")) or question.call.agent_version
    call = dataclasses.replace(
        question.call,
        agent=name,
        client=kind.client(question.event, version),
        agent_kind=kind.kind,
        agent_version=version,
        editable=kind.takes_edits,
        credential=API_CREDENTIAL,
    )
    deciding = asyncio.create_task(_broker(request).submit(call))
    hung_up = asyncio.create_task(_until_disconnected(request))
    try:
        await asyncio.wait({deciding, hung_up}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hung_up.cancel()
        if not deciding.done():  # the hook went away (killed by its timeout): the request is recorded as cancelled
            deciding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deciding
    if deciding.cancelled():
        return Response(status_code=499)
    return JSONResponse(kind.answer(question, deciding.result()))


async def events(request: Request) -> EventSourceResponse:
    hub = _broker(request).events

    async def stream() -> AsyncIterator[ServerSentEvent]:
        async with hub.subscribe() as subscription:
            yield ServerSentEvent(comment="subscribed")
            async for event in subscription:
                yield ServerSentEvent(event=event.kind, data=json.dumps(event.request.to_json()))

    return EventSourceResponse(stream(), ping=15)


routes: list[BaseRoute] = [
    Route("/requests", list_requests, methods=["GET"]),
    Route("/requests/{request_id}", get_request, methods=["GET"]),
    Route("/requests/{request_id}/decision", post_decision, methods=["POST"]),
    Route("/grants", list_grants, methods=["GET"]),
    Route("/grants/{grant_id}/revoke", revoke_grant, methods=["POST"]),
    Route("/events", events, methods=["GET"]),
]
