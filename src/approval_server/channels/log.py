"""The log channel: every request and its outcome in the server's log, where the operator's terminal shows it."""

from __future__ import annotations

import logging
import textwrap

from approval_server.channels.base import Channel, Delivery
from approval_server.models import ApprovalRequest

logger = logging.getLogger("approval_server.requests")


class LogChannel(Channel):
    name = "log"
    reaches_people = False

    async def notify(self, request: ApprovalRequest) -> Delivery:
        logger.info(
            "request %s waits for a decision until %s:\n%s\n  approve: approval-server approve %s\n"
            "  deny:    approval-server deny %s --message '…'",
            request.id,
            request.expires_at.strftime("%H:%M:%S UTC"),
            textwrap.indent(request.rendered, "    "),
            request.id,
            request.id,
        )
        return Delivery(reached=True, detail="server log")

    async def withdraw(self, request: ApprovalRequest) -> None:
        by = f" by {request.decided_by} via {request.decided_via}" if request.decided_by else ""
        logger.info("request %s is %s%s", request.id, request.status.value, by)
