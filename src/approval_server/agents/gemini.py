"""Gemini CLI's `BeforeTool` hook: its input turned into the common tool call, and a decision into its answer.

Observed with Gemini CLI 0.61.0 (docs/agents/gemini.md): the hook runs before every tool call its matcher names,
before Gemini's own policy, and gets `{"session_id", "cwd", "hook_event_name": "BeforeTool", "tool_name",
"tool_input", "mcp_context"?, …}` on stdin. It answers `{"decision": "allow"}` or `{"decision": "deny", "reason": …}`;
the reason reaches the model as the tool's error. An allow may carry `hookSpecificOutput.tool_input`, which
replaces the whole input before the call runs (so an approver's edit is what runs, and a key the approver removed
is gone), and Gemini tells the model that a hook changed it.

Gemini runs the call when the hook exits 0 or 1 without a deny, prints nothing or garbage, or is killed by its
timeout: only a deny, or an exit of 2 or more with some text, blocks. `failure` does both.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from approval_server import strict_json
from approval_server.agents import AgentHook, Failure, Question
from approval_server.agents.gemini_setup import EVENT, KIND
from approval_server.decision import Decision
from approval_server.models import JSONObject, ToolCall

if TYPE_CHECKING:
    from pathlib import Path

    from approval_server.agents.setup import Plan, Report, Target


# Gemini's built-in tools and the keys that differ from Claude Code's, from the tool declarations of
# @google/gemini-cli 0.61.0 (bundle/chunk-JDPZ4CE3.js: "tools/definitions/base-declarations.js" for the names and
# argument names, "model-family-sets/gemini-3.js" for the declarations). Every other key is kept as it is. A
# `dir_path` is where Glob, Grep and LS look, which Claude Code calls `path`; the shell's `dir_path` stays (the
# command runs there, and `cwd` says so). `web_fetch` has only a `prompt` holding its URLs: it gets no `url`, so a
# `WebFetch(domain:…)` rule never matches it and a human is asked.
TOOLS: dict[str, tuple[str, dict[str, str]]] = {
    "run_shell_command": ("Bash", {}),  # command, description, dir_path, is_background
    "write_file": ("Write", {}),  # file_path, content
    "replace": ("Edit", {}),  # file_path, old_string, new_string, instruction, allow_multiple
    "read_file": ("Read", {}),  # file_path, start_line, end_line
    "glob": ("Glob", {"dir_path": "path"}),  # pattern, dir_path, case_sensitive, respect_*_ignore
    "grep_search": ("Grep", {"dir_path": "path"}),  # pattern, dir_path, include_pattern, exclude_pattern, …
    "list_directory": ("LS", {"dir_path": "path"}),  # dir_path, ignore, file_filtering_options
    "web_fetch": ("WebFetch", {}),  # prompt
    "google_web_search": ("WebSearch", {}),  # query
    "write_todos": ("TodoWrite", {}),  # todos: the agent's own to-do list
}

# Keys Claude Code's tool reads (and so the policy and the grants) that Gemini's does not: a call holding one is
# refused, or a `WebFetch(domain:…)` rule would judge a URL other than the ones in the prompt Gemini fetches.
# (Glob, Grep and LS refuse a `path` for the same reason: see `_renamed`.)
UNREAD = {"web_fetch": ("url",)}


class HookInput(BaseModel):
    """The fields of the hook's stdin this server uses; the rest is kept in the record's `extra`."""

    model_config = ConfigDict(extra="allow")

    hook_event_name: Literal["BeforeTool"]
    tool_name: str = Field(min_length=1)
    tool_input: JSONObject
    session_id: str | None = None
    cwd: str | None = None
    mcp_context: JSONObject | None = None  # {"server_name", "tool_name", …} for an MCP server's tool


def _renamed(values: JSONObject, keys: dict[str, str], tool: str) -> JSONObject:
    """`values` with each key of `keys` renamed. An input that already holds a new name is refused: the tool does
    not read that key, and the policy would see it in place of the one the tool uses."""
    renamed = dict(values)
    for old, new in keys.items():
        if new in values:
            raise ValueError(f"{tool} input has {new!r}, which stands for its {old!r} here: cannot tell what it uses")
        if old in renamed:
            renamed[new] = renamed.pop(old)
    return renamed


def canonical_name(hook: HookInput) -> str:
    """Claude Code's name for the tool: `mcp__<server>__<tool>` for an MCP tool (from `mcp_context`: Gemini's own
    `mcp_<server>_<tool>` cannot be split when the server's name has a `_`), else from `TOOLS`, else its own."""
    context = hook.mcp_context or {}
    server, tool = context.get("server_name"), context.get("tool_name")
    if isinstance(server, str) and isinstance(tool, str) and server and tool:
        return f"mcp__{server}__{tool}"
    return TOOLS.get(hook.tool_name, (hook.tool_name, {}))[0]


def parse_hook_input(payload: Any) -> tuple[HookInput, ToolCall]:
    """The hook's input and the tool call it asks about. Raises `ValueError` with a readable message."""
    where = strict_json.problem(payload)
    if where is not None:
        raise ValueError(f"not JSON: {where}")
    try:
        hook = HookInput.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"not a Gemini CLI BeforeTool hook input ({problems})") from None
    if hook.cwd is not None and not hook.cwd.startswith("/"):
        raise ValueError(f"cwd {hook.cwd!r} is not an absolute path")
    keys = {} if hook.mcp_context else TOOLS.get(hook.tool_name, ("", {}))[1]
    tool_input = _renamed(hook.tool_input, keys, hook.tool_name)
    for key in [] if hook.mcp_context else UNREAD.get(hook.tool_name, ()):
        if key in tool_input:
            raise ValueError(f"{hook.tool_name} input has {key!r}, which Gemini CLI does not read")
    name = canonical_name(hook)
    cwd = hook.cwd
    if name == "Bash" and cwd is not None and isinstance(hook.tool_input.get("dir_path"), str):
        cwd = posixpath.normpath(posixpath.join(cwd, hook.tool_input["dir_path"]))  # where the command runs
    extra = hook.model_dump(exclude={"tool_input"}, exclude_none=True)
    call = ToolCall(
        tool_name=name,
        input=tool_input,
        extra=extra,
        client=f"Gemini CLI, {EVENT} hook",
        session=hook.session_id,
        cwd=cwd,
        agent_kind=KIND,
    )
    return hook, call


def gemini_input(call: ToolCall, tool_input: JSONObject) -> JSONObject:
    """`tool_input` (in Claude Code's keys) in the keys of the Gemini tool `call` came from."""
    original = call.extra.get("tool_name")
    if call.tool_name.startswith("mcp__") or original not in TOOLS:
        return dict(tool_input)
    keys = TOOLS[str(original)][1]
    return _renamed(tool_input, {new: old for old, new in keys.items()}, str(original))


def hook_output(call: ToolCall, decision: Decision) -> JSONObject:
    """What the hook prints for `decision`: an allow carries the input only when the approver changed it (Gemini
    then tells the model so)."""
    if decision.behavior == "deny":
        return {"decision": "deny", "reason": decision.message or "Denied by approval-server."}
    if decision.updated_input is None or decision.updated_input == call.input:
        return {"decision": "allow"}
    try:
        edited = gemini_input(call, decision.updated_input)
    except ValueError as exc:
        return {"decision": "deny", "reason": f"The approved input cannot be given to Gemini CLI ({exc})."}
    return {"decision": "allow", "hookSpecificOutput": {"hookEventName": EVENT, "tool_input": edited}}


def is_answer(output: Any) -> bool:
    """Whether `output` is one `hook_output` gives: Gemini runs the call on any other JSON (`{}` included), so the
    hook command prints nothing else."""
    if not isinstance(output, dict):
        return False
    if output.get("decision") == "deny":
        return set(output) == {"decision", "reason"} and isinstance(output["reason"], str) and bool(output["reason"])
    edited = output.get("hookSpecificOutput", {"tool_input": {}})
    return (
        output.get("decision") == "allow"
        and set(output) <= {"decision", "hookSpecificOutput"}
        and isinstance(edited, dict)
        and set(edited) <= {"hookEventName", "tool_input"}
        and isinstance(edited.get("tool_input"), dict)
    )


class GeminiHook(AgentHook):
    kind = KIND
    title = "Gemini CLI"
    takes_edits = True
    packages = ("@google/gemini-cli",)

    def parse(self, payload: Any) -> Question:
        _, call = parse_hook_input(payload)
        return Question(call, EVENT)

    def answer(self, question: Question, decision: Decision) -> JSONObject:
        return hook_output(question.call, decision)

    def checked_answer(self, output: Any) -> JSONObject:
        if not is_answer(output):
            raise ValueError("the server's answer is neither an allow nor a deny of Gemini CLI's")
        return dict(output)

    def failure(self, event: str | None, why: str) -> Failure:
        """A deny on stdout and exit 2 with the reason on stderr: Gemini blocks on either. Exit 1, no output or
        plain text with exit 0 would let the call run."""
        reason = f"approval-server could not decide ({why}), so the action was denied."
        return Failure({"decision": "deny", "reason": reason}, reason, 2)

    def connect(self, target: Target) -> Plan:
        from approval_server.agents.gemini_setup import plan

        return plan(target)

    def doctor(self, target: Target | None, ok: Report, problem: Report, note: Report) -> None:
        from approval_server.agents.gemini_setup import check

        check(target, ok, problem, note)

    def guarded_paths(self) -> list[Path]:
        from approval_server.agents.gemini_setup import gemini_files

        return gemini_files()


AGENT = GeminiHook()
