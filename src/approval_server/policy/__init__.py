"""The owner's policy: what may run without a human, what never may, and what needs an answer.

The rules themselves (their syntax and matching) live in `rule_set` and the modules it uses, the built-in protection
of the server's own files in `self_protect`; this combines them into the `Policy` the broker asks (see `rule`).
"""

from __future__ import annotations

from approval_server.models import ToolCall
from approval_server.policy.rule import Verdict
from approval_server.policy.rule_set import RuleSet
from approval_server.policy.self_protect import SelfProtection


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
