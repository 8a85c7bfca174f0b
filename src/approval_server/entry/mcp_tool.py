"""The MCP entry point: the `permissions__approve` tool that Claude Code calls before a tool use.

It is a `Tool` subclass rather than a decorated function for two reasons. Its input schema allows
arguments it does not know (a newer Claude Code may send more; a FastMCP function tool would reject
them, which would deny everything), and those are recorded. Its result is exactly one text block with
no `structuredContent`, the only shape Claude Code accepts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Annotated, Any

import anyio
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.server.dependencies import get_context, get_http_request
from fastmcp.tools import Tool, ToolResult
from mcp.types import TextContent
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import SkipJsonSchema

from approval_server import SERVER_NAME, TOOL_NAME, strict_json
from approval_server.agents.claude_code import failure_output, hook_output, parse_hook_input
from approval_server.core.broker import Broker
from approval_server.decision import Decision, internal_error
from approval_server.models import ToolCall, check_agent_name, plain_version

logger = logging.getLogger(__name__)

# Claude Code aborts an HTTP tool call that sends nothing for 300 s; a progress notification resets that clock.
# At least every 15 s (the MCP SDK's own keep-alive rhythm), and no more often: each costs CPU per waiting call.
PROGRESS_INTERVAL_SECONDS = 14.0

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tool_name": {"type": "string", "description": "The tool the agent wants to use."},
        "input": {"type": "object", "description": "The tool's input, exactly as it would run."},
        "tool_use_id": {"type": ["string", "null"], "description": "The agent's id for this tool use."},
    },
    "required": ["tool_name", "input"],
    "additionalProperties": True,
}


class PermissionArguments(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    tool_name: str
    input: dict[str, Any]
    tool_use_id: str | None = None


def _text(text: str) -> ToolResult:
    """Exactly one text block and no structured content: the only shape Claude Code accepts."""
    return ToolResult(content=[TextContent(type="text", text=text)])


def _text_result(decision: Decision) -> ToolResult:
    return _text(decision.to_json_text())


AGENT_HEADER = "x-agent-name"
MCP_CREDENTIAL = "mcp"  # every call here came with the MCP token (see `fair_share`)
CWD_HEADER = "x-agent-cwd"


def _agent() -> tuple[str | None, str | None]:
    """The agent's name and working directory, from the MCP config's headers (`X-Agent-Name`, `X-Agent-Cwd`) or
    URL (`?agent=`, `?cwd=`); Claude Code fills `${VAR}` in both, so `"X-Agent-Cwd": "${PWD}"` works.

    Raises `ValueError` for a name that could pass for another or a relative directory: policy rules key on both.
    """
    try:
        request = get_http_request()
    except RuntimeError:  # stdio
        return None, None
    name = request.headers.get(AGENT_HEADER) or request.query_params.get("agent")
    cwd = request.headers.get(CWD_HEADER) or request.query_params.get("cwd")
    check_agent_name(name)
    if cwd is not None and not cwd.startswith("/"):
        raise ValueError(f"agent working directory {cwd!r} is not an absolute path")
    return name or None, cwd or None


def _client_info(context: Context) -> tuple[str | None, str | None]:
    """The MCP client's name and version as it introduced itself ("claude-code 2.1.328"), and Claude Code's version
    when it is Claude Code."""
    meta = context.request_context.meta if context.request_context else None
    info = (meta or {}).get("io.modelcontextprotocol/clientInfo")
    if not isinstance(info, dict) or not isinstance(info.get("name"), str):
        return None, None
    version = info.get("version") if isinstance(info.get("version"), str) else None
    own = plain_version(version) if info["name"] == "claude-code" else None
    return f"{info['name']} {version or ''}".strip(), own


def _parse(arguments: dict[str, Any]) -> PermissionArguments | str:
    """The tool's arguments, or what is wrong with them. FastMCP's JSON parser reads `NaN`, `Infinity` and `1e400`
    as floats, so those are looked for first (see `strict_json`)."""
    not_json = strict_json.problem(arguments)
    if not_json is not None:
        return not_json
    try:
        return PermissionArguments.model_validate(arguments)
    except ValidationError as exc:
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


class PermissionTool(Tool):
    """Ask a human to approve or deny a tool call; answers in Claude Code's permission-prompt protocol."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    broker: Annotated[SkipJsonSchema[Broker], Field(exclude=True)]

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        parsed = _parse(arguments)
        if isinstance(parsed, str):
            logger.warning("malformed permission request denied: %s", parsed)
            return _text_result(Decision.deny(f"Malformed permission request ({parsed}), so it was denied."))
        context = get_context()
        try:
            agent, cwd = _agent()
        except ValueError as exc:
            logger.warning("permission request denied: %s", exc)
            return _text_result(Decision.deny(f"The MCP configuration is not valid ({exc}), so it was denied."))
        client, version = _client_info(context)
        call = ToolCall(
            tool_name=parsed.tool_name,
            input=parsed.input,
            tool_use_id=parsed.tool_use_id,
            extra=dict(parsed.model_extra or {}),
            client=client,
            agent=agent,
            cwd=cwd,
            credential=MCP_CREDENTIAL,
            agent_kind="claude-code",  # the permission tool's protocol is Claude Code's
            agent_version=version,
        )
        return _text_result(await _decide(self.broker, context, call))


async def _decide(broker: Broker, context: Context, call: ToolCall) -> Decision:
    """Submit `call` and wait for its decision, reporting progress meanwhile; anything unexpected is a deny."""
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_report_progress, context, broker.timeout)
            decision = await broker.submit(call)
            group.cancel_scope.cancel()
    except Exception:
        logger.exception("permission request failed (the agent may have gone away); denying")
        decision = internal_error(None)
    return decision


HOOK_TOOL_NAME = "hook"
HOOK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "hook_event_name": {"type": "string", "enum": ["PreToolUse", "PermissionRequest"]},
        "tool_name": {"type": "string"},
        "tool_input": {"type": ["object", "string"], "description": "The tool's input; a JSON string is accepted."},
        "tool_use_id": {"type": ["string", "null"]},
        "session_id": {"type": ["string", "null"]},
        "cwd": {"type": ["string", "null"]},
    },
    "required": ["hook_event_name", "tool_name", "tool_input"],
    "additionalProperties": True,
}


class HookTool(Tool):
    """For Claude Code's `mcp_tool` hooks: the hook's fields in, the hook's output JSON in one text block out."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    broker: Annotated[SkipJsonSchema[Broker], Field(exclude=True)]

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        event = arguments.get("hook_event_name")
        known = event if event in ("PreToolUse", "PermissionRequest") else None
        try:
            agent, cwd = _agent()
            hook_event, call = parse_hook_input(arguments, agent)
        except ValueError as exc:
            logger.warning("hook request denied: %s", exc)
            output = failure_output(known, str(exc))
            if output is None:
                raise ToolError(f"not a hook input: {exc}") from None
            return _text(json.dumps(output, ensure_ascii=False, allow_nan=False))
        call = dataclasses.replace(call, cwd=call.cwd or cwd, credential=MCP_CREDENTIAL)
        decision = await _decide(self.broker, get_context(), call)
        return _text(json.dumps(hook_output(hook_event, decision), ensure_ascii=False, allow_nan=False))


async def _report_progress(context: Context, total: float) -> None:
    """Keep Claude Code's idle timer from firing while a human has not answered yet."""
    started = time.monotonic()
    while True:
        await anyio.sleep(PROGRESS_INTERVAL_SECONDS)
        waited = time.monotonic() - started
        await context.report_progress(
            progress=round(waited), total=total, message=f"waiting for a human decision ({round(waited)} s)"
        )


def build_mcp(broker: Broker) -> FastMCP:
    mcp = FastMCP(SERVER_NAME, mask_error_details=True)
    mcp.add_tool(
        PermissionTool(
            name=TOOL_NAME,
            description=(
                "Ask a human to approve or deny a tool call. Answers with one text block holding "
                '{"behavior":"allow","updatedInput":{…}} or {"behavior":"deny","message":"…"}.'
            ),
            parameters=INPUT_SCHEMA,
            broker=broker,
        )
    )
    mcp.add_tool(
        HookTool(
            name=HOOK_TOOL_NAME,
            description=(
                "For Claude Code mcp_tool hooks (PreToolUse, PermissionRequest): ask a human, answer with the hook's "
                "output JSON."
            ),
            parameters=HOOK_SCHEMA,
            broker=broker,
        )
    )
    return mcp
