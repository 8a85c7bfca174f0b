"""The owner's policy: what may run without a human, what never may, and what needs an answer."""

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


class AskForEverything:
    """The default policy: every tool call needs a human."""

    def evaluate(self, call: ToolCall) -> Verdict:
        return Verdict(action="ask")
