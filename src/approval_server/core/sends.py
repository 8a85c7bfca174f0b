"""The channels' side of a request waited for here: it is sent on every channel at once, each send in a task of its
own that never holds up the answer; what each channel reached is tracked; once the request closes, each channel
withdraws it (once its own send is over, so that an approver who was sent it is then told how it ended)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence

from approval_server.channels import Channel, Delivery
from approval_server.decision import SERVER_ACTOR
from approval_server.models import Answer, ApprovalRequest, Status

logger = logging.getLogger(__name__)


class Sends:
    def __init__(self, channels: Sequence[Channel]) -> None:
        self.channels = list(channels)
        self._reach: dict[str, dict[str, str | None]] = {}  # request id → channel → why it cannot reach anyone
        self._notified: set[str] = set()  # requests shown on the channels, which withdraw them once closed
        self._sending: dict[str, dict[Channel, asyncio.Task[Delivery]]] = {}  # request id → the sends under way
        self._background: set[asyncio.Task[None]] = set()

    def send(self, request: ApprovalRequest) -> asyncio.Future[list[Delivery | BaseException]]:
        """Tell every channel of `request`; the future is done when all have answered. The sends outlive the
        caller's wait (see `withdraw`)."""
        self._notified.add(request.id)
        sending = {channel: asyncio.create_task(self._notify(channel, request)) for channel in self.channels}
        self._sending[request.id] = sending
        for channel, task in sending.items():
            task.add_done_callback(functools.partial(self._sent, request.id, channel))
        return asyncio.gather(*sending.values(), return_exceptions=True)

    def _sent(self, request_id: str, channel: Channel, _task: asyncio.Task[Delivery]) -> None:
        sending = self._sending.get(request_id, {})
        sending.pop(channel, None)
        if not sending:
            self._sending.pop(request_id, None)

    async def _notify(self, channel: Channel, request: ApprovalRequest) -> Delivery:
        try:
            return await channel.notify(request)
        except Exception as exc:
            logger.exception("channel %s failed to notify request %s", channel.name, request.id)
            return Delivery(reached=False, detail=f"error: {exc.__class__.__name__}")

    def unreached(self, request_id: str, deliveries: list[Delivery | BaseException]) -> Answer | None:
        """The deny when no channel that reaches people could reach anyone (None: someone was reached, or no channel
        reaches people at all)."""
        reach = self._reach.setdefault(request_id, {})
        for channel, delivery in zip(self.channels, deliveries, strict=True):
            if channel.reaches_people:
                reached = isinstance(delivery, Delivery) and delivery.reached
                detail = delivery.detail if isinstance(delivery, Delivery) else "not sent"
                reach.setdefault(channel.name, None if reached else detail)
        if reach and all(why is not None for why in reach.values()):
            return _unreachable(reach)
        return None

    def learned_unreachable(self, request_id: str, channel: str, why: str) -> Answer | None:
        """A channel learned late (a failed delivery report) that it reaches nobody: the deny when that leaves no
        channel able to reach anyone."""
        reach = self._reach.setdefault(request_id, {})
        reach[channel] = why
        reaching = {c.name for c in self.channels if c.reaches_people}
        if reaching <= reach.keys() and all(reason is not None for reason in reach.values()):
            return _unreachable(reach)
        return None

    def done_with(self, request_id: str) -> None:
        """Its caller has its answer: nothing more is sent about it."""
        self._reach.pop(request_id, None)
        self._notified.discard(request_id)
        for sending in self._sending.get(request_id, {}).values():
            _stop(sending)

    def withdraw(self, row: ApprovalRequest, shown_elsewhere: bool = False) -> None:
        """Tell every channel that showed `row` that it is closed (none did when the policy or a grant decided).
        `shown_elsewhere`: by a process now gone (a restart, a replica taken over); each channel withdraws what it
        recorded of its sends."""
        if row.id not in self._notified and not shown_elsewhere:
            return
        for channel in self.channels:
            task = asyncio.create_task(self._withdraw(channel, row))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _withdraw(self, channel: Channel, row: ApprovalRequest) -> None:
        sending = self._sending.get(row.id, {}).get(channel)
        if sending is not None:  # nothing more is sent about it; a message in flight goes out, then the withdrawal
            _stop(sending)
            await asyncio.wait({sending})
        try:
            await channel.withdraw(row)
        except Exception:
            logger.exception("channel %s failed to withdraw request %s", channel.name, row.id)

    async def aclose(self) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        for channel in self.channels:
            await channel.aclose()


def _unreachable(reach: dict[str, str | None]) -> Answer:
    why = "; ".join(f"{name}: {reason}" for name, reason in reach.items())
    message = f"No approval channel could reach anyone ({why}), so the action was denied"
    return Answer(Status.DENIED, SERVER_ACTOR, SERVER_ACTOR, message)


def _stop(sending: asyncio.Task[Delivery]) -> None:
    """Cancel a send once (a second cancellation would cut short the message it finishes; see the channels)."""
    if not sending.done() and not sending.cancelling():
        sending.cancel()
