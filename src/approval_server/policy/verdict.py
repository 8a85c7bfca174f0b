"""What a policy answers about a tool call (`Verdict`), and the interface the broker asks a policy through (`Policy`).

Both sides build on this module: the broker holds a `Policy`; the rules (`rule_set`) and the server's self-protection
(`self_protect`) return `Verdict`s, and `policy` combines them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from approval_server.models import ToolCall


@dataclass(frozen=True)
class Verdict:
    action: Literal["allow", "deny", "ask"]
    rule: str | None = None
    reason: str | None = None


class Policy(Protocol):
    def evaluate(self, call: ToolCall) -> Verdict: ...
