"""The Apprise channel's sends: a notice of each request to every URL, and of how it ended to those that took it.

Each URL is sent on its own, all at once, so the log says which one failed. A notice that no URL takes is a failed
delivery (then, with no other channel that reaches people, the request is denied at once); one URL taking it is
enough. No send holds the server beyond APPRISE_TIMEOUT (see `targets.send`).

The URLs that took a request's notice are recorded in the store, each by a hash of its URL (never the URL, which holds
secrets), so that its outcome follows wherever and whenever the request closes: after a restart or on another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging

from approval_server.channels.apprise.notice import notice, outcome, title
from approval_server.channels.apprise.settings import AppriseSettings
from approval_server.channels.apprise.targets import Target, send
from approval_server.channels.base import Channel, Delivery
from approval_server.channels.plugin import ChannelDeps
from approval_server.errors import StoreError
from approval_server.models import ApprovalRequest
from approval_server.store.outbox import Outbox

logger = logging.getLogger(__name__)


class AppriseChannel(Channel):
    name = "apprise"

    def __init__(self, settings: AppriseSettings, deps: ChannelDeps) -> None:
        self.settings = settings
        self._deps = deps
        self.outbox = Outbox(deps.store, self.name)

    async def notify(self, request: ApprovalRequest) -> Delivery:
        # A person's own URL carries their own link; a URL of APPRISE_URLS, whose readers are not known, the
        # request's dashboard page, where each signs in as themselves.
        sends = [
            (target, f"Read it all and decide, as {person.name}: {self._deps.link(request.id, person)}")
            for person, target in self.settings.people
        ]
        page = f"{self.settings.public_url}/requests/{request.id}"
        sends += [
            (target, f"Read it all and decide on the dashboard (sign in): {page}") for target in self.settings.shared
        ]
        sending = asyncio.ensure_future(self._send_and_record(request, sends))
        try:
            failures = await asyncio.shield(sending)
        except asyncio.CancelledError:  # decided meanwhile: the notices in flight end (within the timeout) and are
            while not sending.done():  # recorded, so that those who got one are told how it ended
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({sending})
            raise
        took = len(sends) - len(list(filter(None, failures)))
        if not took:
            return Delivery(
                reached=False, detail=f"no Apprise URL took the notice ({'; '.join(filter(None, failures))})"
            )
        return Delivery(reached=True, detail=f"{took} of {len(sends)} Apprise URL(s) took it")

    async def _send_and_record(self, request: ApprovalRequest, sends: list[tuple[Target, str]]) -> list[str | None]:
        """Send each notice, then record the URLs that took one; why each did not (None: it did). Never cancelled
        part way (see `notify`): a notice recorded only in part would leave its outcome untold."""
        failures = await asyncio.gather(
            *(self._send(target, title(request), notice(request, target, how), request.id) for target, how in sends)
        )
        await self._record(request.id, [target for (target, _), why in zip(sends, failures, strict=True) if not why])
        return failures

    async def _record(self, request_id: str, took: list[Target]) -> None:
        try:
            for key in map(_key, took):
                await self.outbox.sent(f"{request_id}:{key}", request_id, key)
        except StoreError as exc:  # the notice went out all the same; only its outcome may not follow it
            logger.warning("could not record the Apprise notices of request %s: %s", request_id, exc)

    async def withdraw(self, request: ApprovalRequest) -> None:
        """Tell the URLs that took the request's notice how it ended (a URL no longer configured is not told)."""
        if not self.settings.outcomes:
            return
        took = await self.outbox.recipients(request.id)
        shown = [target for target in self.settings.targets if _key(target) in took]
        text = outcome(request)
        await asyncio.gather(*(self._send(target, f"Request {request.id}", text, request.id) for target in shown))

    async def _send(self, target: Target, title: str, body: str, about: str) -> str | None:
        return await send(target, title, body, self.settings.timeout, f"request {about}")


def _key(target: Target) -> str:
    return hashlib.sha256(target.canonical.encode()).hexdigest()[:32]
