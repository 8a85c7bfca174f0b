"""The owner's policy: what may run without a human, what never may, and what needs an answer.

The rules themselves (their syntax and matching) live in `rules`; this is the broker's view of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from approval_server.models import ToolCall

if TYPE_CHECKING:  # rules and self_protect import Verdict from here
    from approval_server.rules import RuleSet
    from approval_server.self_protect import SelfProtection


@dataclass(frozen=True)
class Verdict:
    action: Literal["allow", "deny", "ask"]
    rule: str | None = None
    reason: str | None = None


class Policy(Protocol):
    def evaluate(self, call: ToolCall) -> Verdict: ...


class RulesPolicy:
    """The policy of a rules file (or of the built-in default set), after the server's built-in self-protection,
    which no rule of the file (and, since the broker consults grants only when no rule decided, no grant) overrides.
    """

    def __init__(self, rules: RuleSet, protection: SelfProtection | None = None) -> None:
        self.rules = rules
        self.protection = protection

    def evaluate(self, call: ToolCall) -> Verdict:
        built_in = self.protection.check(call.tool_name, call.input, call.cwd) if self.protection else None
        if built_in is not None and built_in.action == "deny":
            return built_in
        verdict = self.rules.evaluate(call.tool_name, call.input, agent=call.agent, cwd=call.cwd)
        return verdict if built_in is None or verdict.action == "deny" else built_in
