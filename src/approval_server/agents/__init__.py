"""The coding agents this server answers, one module each: what the agent asks turned into the common tool call,
and a decision turned back into that agent's exact answer.

Each module in this package defines `AGENT`, an `AgentHook`. `agents()` finds them by walking the package, so adding
an agent is adding a module: neither the broker, the policy, the store nor the routes name an agent. Tool names are
translated to Claude Code's (`Bash`, `Read`, `Edit`, `Write`, `WebFetch`, `mcp__server__tool`, …) so that one policy
file, the grants and the renderer apply to every agent unchanged; the agent's own payload is kept in the record.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from approval_server.decision import Decision
from approval_server.errors import ConfigError
from approval_server.models import JSONObject, ToolCall

if TYPE_CHECKING:
    from approval_server.agents.setup import Plan, Report, Target


@dataclass(frozen=True)
class Question:
    """One permission question from an agent: the tool call, and what its answer must say it answers."""

    call: ToolCall
    event: str


@dataclass(frozen=True)
class Failure:
    """What the hook command does when it has no decision: print `stdout` (if any), `stderr`, exit `code`. Each agent
    reads a different combination as a deny; anything else would let the call run or hand it to someone else."""

    stdout: JSONObject | None
    stderr: str
    code: int


class AgentHook(ABC):
    """One agent's side of the permission question."""

    kind: str  # the agent's name in URLs, commands and the record: "codex"
    title: str  # what a person reads: "Codex CLI"
    # Whether the agent runs an input the approver edited. If not, an allow must be for the input as shown.
    takes_edits: bool = False
    # The npm packages the agent is installed from: the hook command reads its version from theirs (`versions`).
    packages: tuple[str, ...] = ()

    @abstractmethod
    def parse(self, payload: Any) -> Question:
        """The question in an agent's payload. Raises `ValueError` with a readable message."""

    @abstractmethod
    def answer(self, question: Question, decision: Decision) -> JSONObject:
        """What the agent is told for `decision`."""

    def checked_answer(self, output: Any) -> JSONObject:
        """The server's answer, as the hook command got it, if the agent reads it as what it says; raises
        `ValueError` otherwise, and the hook command fails closed. By default any JSON object: an agent that runs
        the call on an answer it does not understand (Gemini CLI) checks more."""
        if not isinstance(output, dict):
            raise ValueError("the server's answer is not a JSON object")
        return output

    def failure(self, event: str | None, why: str) -> Failure:
        """What the hook command does when no decision can be had (the default: exit 2, the reason on stderr)."""
        return Failure(None, f"approval-server could not decide ({why}), so the action was denied.", 2)

    def connect(self, target: Target) -> Plan:
        """The files `approval-server connect <kind>` writes, and what it says then."""
        raise ConfigError(f"`connect` cannot set up {self.title} yet: see docs/agents.md")

    def doctor(self, target: Target | None, ok: Report, problem: Report, note: Report) -> None:
        """`doctor`'s checks of this agent's set-up (`target` is None when no server settings were found); none by
        default."""
        return

    def guarded_paths(self) -> list[Path]:
        """The agent's own files that decide whether and where its hooks ask (the ones `connect` writes): the
        server denies any tool call that names one, so the agent cannot unhook itself. None by default."""
        return []

    def bridge(self) -> Callable[..., None] | None:
        """The `approval-server bridge <kind>` command, for an agent asked over its own API rather than by a hook
        (it watches the agent and asks the server); None for a hook."""
        return None

    def client(self, event: str, version: str | None) -> str:
        """How the request's record names the agent and its route: "Codex CLI 0.169.0, PermissionRequest hook"."""
        return f"{self.title}{f' {version}' if version else ''}, {event} hook"


def canonical(tool_input: JSONObject, keys: dict[str, str]) -> JSONObject:
    """`tool_input` with the agent's keys renamed to Claude Code's (`path` → `file_path`), in place and order; a key
    whose new name is taken already is kept as it is, so nothing is lost or overwritten."""
    renamed: JSONObject = {}
    for key, value in tool_input.items():
        new = keys.get(key, key)
        renamed[new if new not in tool_input and new not in renamed else key] = value
    return renamed


@functools.cache
def agents() -> dict[str, AgentHook]:
    """Every agent, by kind: each module of this package that defines `AGENT`."""
    found: dict[str, AgentHook] = {}
    for module in pkgutil.iter_modules(__path__, f"{__name__}."):
        agent = getattr(importlib.import_module(module.name), "AGENT", None)
        if isinstance(agent, AgentHook):
            found[agent.kind] = agent
    return dict(sorted(found.items()))


def guarded_paths() -> list[Path]:
    """Every agent's `guarded_paths`."""
    return [path for agent in agents().values() for path in agent.guarded_paths()]


def agent_for(kind: str) -> AgentHook:
    """The agent of that kind; raises `ValueError` naming the known ones."""
    try:
        return agents()[kind]
    except KeyError:
        raise ValueError(f"no agent {kind!r}: known agents are {', '.join(agents())}") from None
