"""The policy's terms: one rule as written (`Bash(npm test)`, `Read(./src/**)`), its action and the tools rules
name; what a policy answers about a tool call (`Verdict`), and the interface the broker asks a policy through
(`Policy`).

The rule set (`rule_set`) evaluates rules; `rule_index` parses and indexes them; `policy_file` reads them from TOML;
the rules and the server's self-protection (`self_protect`) return `Verdict`s, and `policy` combines them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from approval_server.models import ToolCall

Action = Literal["allow", "deny", "ask"]
ACTIONS_BY_PRECEDENCE: tuple[Action, ...] = ("deny", "ask", "allow")

# Built-in tools that take a path, and the input field that holds it. `Read(path)` rules cover the first family and
# `Edit(path)` rules the second, as in Claude Code; so do the bare `Read` and `Edit` rules.
READ_TOOLS = {"Read": "file_path", "NotebookRead": "notebook_path", "Glob": "path", "Grep": "path", "LS": "path"}
EDIT_TOOLS = {"Edit": "file_path", "MultiEdit": "file_path", "Write": "file_path", "NotebookEdit": "notebook_path"}


@dataclass(frozen=True)
class Rule:
    """One rule string as written, with where it came from."""

    text: str
    action: Action
    source: str  # "policy.toml:12", or "default" for the built-in rules
    agent: str | None = None
    message: str | None = None

    @property
    def label(self) -> str:
        """How the audit trail names the rule: `policy.toml:12 deny Bash(rm:*)`."""
        agent = f' agent "{self.agent}"' if self.agent is not None else ""
        return f"{self.source}{agent} {self.action} {self.text}"


class RuleError(ValueError):
    """A rule string that cannot be used; the loader adds the file and line."""


@dataclass(frozen=True)
class Verdict:
    action: Action
    rule: str | None = None
    reason: str | None = None


class Policy(Protocol):
    def evaluate(self, call: ToolCall) -> Verdict: ...
