"""The channel interface, in the manner of an httpx transport: a few async methods, one module per channel.

A channel is told about a request that needs a human (`notify`) and that a request is over (`withdraw`:
decided elsewhere, expired or cancelled) so it can update the human. Answers do not come back through this
interface: they arrive at the channel's own entry point (a webhook, a form) and go to `Broker.decide`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

from approval_server.models import ApprovalRequest


@dataclass(frozen=True)
class Delivery:
    """Whether a channel could put the request in front of at least one human, and if not, why."""

    reached: bool
    detail: str = ""


class Channel:
    name: str = "channel"
    # False for a channel that only records (the log): when every channel that does reach people fails,
    # the request is denied at once rather than left to expire.
    reaches_people: bool = True

    async def notify(self, request: ApprovalRequest) -> Delivery:
        raise NotImplementedError

    async def withdraw(self, request: ApprovalRequest) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release what the channel holds (HTTP clients, connections)."""

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()
