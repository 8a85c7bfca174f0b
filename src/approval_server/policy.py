"""The owner's policy: what may run without a human, what never may, and what needs an answer.

The rules themselves (their syntax and matching) live in `rules`; this is the broker's view of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from approval_server.models import ToolCall

if TYPE_CHECKING:  # rules imports Verdict from here
    from approval_server.rules import RuleSet


@dataclass(frozen=True)
class Verdict:
    action: Literal["allow", "deny", "ask"]
    rule: str | None = None
    reason: str | None = None


class Policy(Protocol):
    def evaluate(self, call: ToolCall) -> Verdict: ...


class RulesPolicy:
    """The policy of a rules file (or of the built-in default set)."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules

    def evaluate(self, call: ToolCall) -> Verdict:
        return self.rules.evaluate(call.tool_name, call.input, agent=call.agent, cwd=call.cwd)
