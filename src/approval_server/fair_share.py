"""Fair share: how many requests one agent, and one token, may have waiting for a human at once.

Past either limit a request is denied at once, so that one agent cannot bury the approvers (and the server's memory)
under requests while the others wait. Only requests that would wait count: a call the policy or a grant decides at
once is never refused for this.

Whose share a request uses, from what the server knows of its caller:

- `agent:<name>`: the name its owner gave it (`X-Agent-Name` or `?agent=` on `/mcp` and `/api/hook`);
- `session:<id>`: unnamed, the hook's `session_id` (one per Claude Code process);
- `token:<mcp|api>`: neither, every such caller of one token shares one share.

A name or a session id is chosen by whoever holds the token, so an agent that can read the token can take a new
name for each call. The limit per token bounds that: all the requests waiting under one token, whatever their names.

The counts are kept in the store (the requests waiting, on every replica) and checked and taken in one step there,
so that requests racing each other, on one server or several, never pass a limit together (`Store.admit`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from approval_server.models import ToolCall

# Who decided, in the record, when a request is refused for this.
FAIR_SHARE_CHANNEL = "fair share"
IN_PROCESS = "local"
_TOKEN_NAMES = {"mcp": "the MCP token", "api": "the API token"}


@dataclass(frozen=True)
class Share:
    """Whose share a request uses: `key` within the requests of `credential`."""

    key: str
    credential: str

    @classmethod
    def of(cls, call: ToolCall) -> Share:
        credential = call.credential or IN_PROCESS
        if call.agent:
            return cls(f"agent:{call.agent}", credential)
        if call.session:
            return cls(f"session:{call.session}", credential)
        return cls(f"token:{credential}", credential)

    def describe(self) -> str:
        """Who this is, for the agent's message. A session id is the caller's free text: never repeated."""
        kind, _, name = self.key.partition(":")
        if kind == "agent":
            return f"agent {name!r}"
        if kind == "session":
            return "this session"
        return f"callers of {_TOKEN_NAMES.get(self.credential, 'this server')} that give no agent name"


@dataclass(frozen=True)
class Limits:
    """At most `per_agent` requests of one share, and `per_token` of one token, wait at once."""

    per_agent: int
    per_token: int

    def refusal(self, share: Share, waiting_in_share: int, waiting_for_token: int) -> str:
        """The deny message for a request over a limit, given what waits now."""
        if waiting_in_share >= self.per_agent:
            return (
                f"Denied at once: {waiting_in_share} requests of {share.describe()} already wait for a human, the most "
                f"one agent may have waiting (APPROVAL_MAX_PENDING_PER_AGENT={self.per_agent}). Wait for those to be "
                "answered before asking again."
            )
        token = _TOKEN_NAMES.get(share.credential, "this server")
        return (
            f"Denied at once: {waiting_for_token} requests made with {token} already wait for a human, the most one "
            f"token may have waiting (APPROVAL_MAX_PENDING_PER_TOKEN={self.per_token}), whatever agent names they "
            "give. Wait for those to be answered before asking again."
        )


class Turns:
    """At most `at_once` calls of one share are being decided at once on this server (recorded, checked against the
    policy, grants and the limits); the others wait their turn, in order, before any of that work.

    Waiting for a human is not part of a turn. The limits above bound how many requests of one agent wait; this bounds
    how much of the server one agent's flood of calls, each denied at once, can take from the others at any moment:
    without it, every connection the agent opens is another request in the database's queue ahead of theirs."""

    def __init__(self, at_once: int = 2) -> None:
        self._at_once = at_once
        self._gates: dict[Share, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, call: ToolCall) -> AsyncIterator[None]:
        share = Share.of(call)
        gate, users = self._gates.get(share, (asyncio.Semaphore(self._at_once), 0))
        self._gates[share] = (gate, users + 1)
        try:
            async with gate:
                yield
        finally:
            gate, users = self._gates[share]
            if users == 1:
                del self._gates[share]  # nothing kept for agents that are gone
            else:
                self._gates[share] = (gate, users - 1)
