"""`approval-server bridge opencode`: answer the permission asks of an `opencode serve` through approval-server.

OpenCode's server publishes each ask as a `permission.asked` event on `GET /global/event` (every project folder it
serves, each event with its `directory`) and waits for `POST /permission/{id}/reply` as long as it takes (observed
with 1.18.33). The bridge listens there and, for each ask, in a task of its own, posts it to the server's
`/api/hook/opencode` with the MCP token (as `approval-server hook` does) and replies with the answer (see
`agents.opencode`).

It fails closed: when it gets no decision (the server unreachable, an error status, an answer that is not a reply,
no answer within the expiry and a margin) it replies `reject` with a message that says why, which OpenCode hands the
model. It never replies `always`. Stopping it (or losing OpenCode) leaves the asks pending, which OpenCode keeps
waiting on, and on every (re)connection it asks again about the asks already waiting (`GET /permission`), so a
restart does not leave a session hanging. When someone else answers an ask first (the TUI), its request is
withdrawn.

One exception to asking: OpenCode asks `external_directory` (with the whole command) and then `bash` for the same
shell command outside the project. The first is the command's question (`agents.opencode`); when the server allows
it, the bridge answers the second, for the same session, tool call and command, with the same allow.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
import typer
from httpx_sse import EventSource

from approval_server.agents.opencode_setup import OPENCODE_URL, opencode_auth
from approval_server.entry.agent_setup import ClientEnvFile, Url, agent_name
from approval_server.entry.client_config import load_client_settings
from approval_server.entry.security import load_tokens
from approval_server.logs import configure_logging, hide
from approval_server.models import JSONObject, plain_version

log = logging.getLogger(__name__)

MARGIN_SECONDS = 10  # past the expiry, at which the server has answered at the latest
STREAM_READ_SECONDS = 30  # OpenCode sends a heartbeat every 10 s: a silent stream is a dead one
BACKOFF_SECONDS = (0.5, 10.0)  # the first wait before reconnecting, and the longest
REMEMBERED = 1000  # asks answered, remembered so that a listing racing the reply does not ask twice
SAME_CALL_SECONDS = 120  # how long an allowed external_directory stands for the bash ask of the same call

# The route OpenCode's asks are posted to: the `opencode` agent's (`agents.opencode`, which imports this module).
HOOK_PATH = "/api/hook/opencode"


def reject(why: str) -> JSONObject:
    return {"reply": "reject", "message": f"approval-server could not decide ({why}), so the action was denied."}


def _reply_in(answer: Any) -> JSONObject | None:
    """The reply in the server's answer, if it is one: `once`, or `reject` with an optional message; else None."""
    if not isinstance(answer, dict) or not set(answer) <= {"reply", "message"}:
        return None
    message = answer.get("message")
    if answer.get("reply") == "once":
        return {"reply": "once"}
    if answer.get("reply") == "reject" and isinstance(message, str | None):
        return {"reply": "reject", "message": message or "denied by approval-server"}
    return None


async def sse_events(response: httpx.Response) -> AsyncIterator[JSONObject]:
    """The JSON objects an event stream carries; anything that is not one is skipped."""
    async for event in EventSource(response).aiter_sse():
        try:
            value = json.loads(event.data)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


@dataclass
class Bridge:
    """One `opencode serve` (`opencode`) and the approval server (`server`, with the MCP token)."""

    opencode: httpx.AsyncClient
    server: httpx.AsyncClient
    agent: str | None = None
    version: str | None = None
    deciding: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    answered: OrderedDict[str, None] = field(default_factory=OrderedDict)
    worktrees: dict[str, str | None] = field(default_factory=dict)  # by the folder OpenCode serves
    allowed_calls: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict)
    connected: bool = False

    async def run(self) -> None:
        """Listen for asks until cancelled, reconnecting after a wait that doubles up to a limit and starts over
        once a connection was made (a plain loop: a retry library would count a long connection as one attempt)."""
        wait = BACKOFF_SECONDS[0]
        while True:
            self.connected = False
            try:
                await self.listen()
                log.warning("OpenCode's event stream at %s ended: reconnecting", self.opencode.base_url)
            except (httpx.HTTPError, OSError, ValueError) as exc:
                log.warning("cannot listen to OpenCode at %s (%r): retrying", self.opencode.base_url, exc)
            except Exception:  # a bug here must not stop the asks already being decided, nor the next ones
                log.exception("listening to OpenCode at %s failed: retrying", self.opencode.base_url)
            if self.connected:
                wait = BACKOFF_SECONDS[0]
            await asyncio.sleep(wait)
            wait = min(wait * 2, BACKOFF_SECONDS[1])

    async def listen(self) -> None:
        """One connection: subscribe, take up the asks already waiting, then each new one as it comes."""
        timeout = httpx.Timeout(10, read=STREAM_READ_SECONDS)
        async with self.opencode.stream("GET", "/global/event", timeout=timeout) as response:
            response.raise_for_status()
            health = (await self.opencode.get("/global/health")).raise_for_status().json()
            version = health.get("version") if isinstance(health, dict) else None
            self.version = plain_version(version) if isinstance(version, str) else None
            home = (await self.opencode.get("/path")).raise_for_status().json()
            if not isinstance(home, dict) or not isinstance(home.get("directory"), str):
                raise ValueError(f"OpenCode's /path says no directory: {home!r}")
            self.worktrees.setdefault(home["directory"], home.get("worktree"))
            self.connected = True
            log.info("listening to OpenCode %s at %s", self.version, self.opencode.base_url)
            for folder in list(self.worktrees):
                waiting = await self.opencode.get("/permission", params={"directory": folder})
                for ask in waiting.raise_for_status().json():
                    self.take(ask, folder)
            async for event in sse_events(response):
                payload, directory = event.get("payload"), event.get("directory")
                if isinstance(payload, dict) and isinstance(directory, str):
                    self.on_event(payload, directory)

    def on_event(self, event: JSONObject, directory: str) -> None:
        properties = event.get("properties")
        if not isinstance(properties, dict):
            return
        if event.get("type") == "permission.asked":
            self.take(properties, directory)
        elif event.get("type") == "permission.replied":
            task = self.deciding.pop(str(properties.get("requestID")), None)
            if task is not None:  # answered elsewhere first (the TUI): the server's request is withdrawn
                task.cancel()

    def take(self, ask: Any, directory: str) -> None:
        """Start deciding an ask, unless it is being decided or was answered."""
        if not isinstance(ask, dict) or not isinstance(ask.get("id"), str):
            return
        ask_id = ask["id"]
        if ask_id in self.deciding or ask_id in self.answered:
            return
        task = asyncio.create_task(self.answer(ask, directory), name=f"opencode ask {ask_id}")
        self.deciding[ask_id] = task
        task.add_done_callback(lambda done: self._done(ask_id, done))

    def _done(self, ask_id: str, task: asyncio.Task[None]) -> None:
        if self.deciding.get(ask_id) is task:  # it failed before its reply: asked again on the next connection
            del self.deciding[ask_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("ask %s was not answered", ask_id, exc_info=task.exception())

    async def answer(self, ask: JSONObject, directory: str) -> None:
        reply = await self.decide(ask, directory)
        if self.deciding.pop(ask["id"], None) is None:
            return  # answered elsewhere meanwhile
        self._remember(ask, reply)
        log.info("%s %s: %s %s", ask.get("permission"), ask["id"], reply["reply"], reply.get("message") or "")
        try:
            response = await self.opencode.post(
                f"/permission/{ask['id']}/reply", params={"directory": directory}, json=reply
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:  # still pending in OpenCode: asked again on the next connection
            self.answered.pop(ask["id"], None)
            log.warning("could not reply to OpenCode's ask %s (%s)", ask["id"], exc)

    def _remember(self, ask: JSONObject, reply: JSONObject) -> None:
        self.answered[ask["id"]] = None
        while len(self.answered) > REMEMBERED:
            self.answered.popitem(last=False)
        now = time.monotonic()
        self.allowed_calls = {
            key: kept for key, kept in self.allowed_calls.items() if now - kept[1] < SAME_CALL_SECONDS
        }
        command, key = self._command_and_call(ask)
        if ask.get("permission") == "external_directory" and reply["reply"] == "once" and command and key:
            self.allowed_calls[key] = (command, now)

    @staticmethod
    def _command_and_call(ask: JSONObject) -> tuple[str | None, tuple[str, str] | None]:
        metadata, tool = ask.get("metadata"), ask.get("tool")
        command = metadata.get("command") if isinstance(metadata, dict) else None
        call = tool.get("callID") if isinstance(tool, dict) else None
        key = (str(ask.get("sessionID")), call) if isinstance(call, str) else None
        return (command if isinstance(command, str) else None), key

    async def decide(self, ask: JSONObject, directory: str) -> JSONObject:
        """The server's reply to an ask, or a reject saying why there is none."""
        command, key = self._command_and_call(ask)
        if ask.get("permission") == "bash" and key and command and self.allowed_calls.get(key, ("",))[0] == command:
            del self.allowed_calls[key]
            return {"reply": "once"}  # the same call's external_directory ask, with this command, was allowed
        if directory not in self.worktrees:
            self.worktrees[directory] = await self._worktree(directory)
        body: JSONObject = {"type": "permission.asked", "properties": ask, "directory": directory}
        body["worktree"] = self.worktrees[directory]
        headers = ({"X-Agent-Name": self.agent} if self.agent else {}) | (
            {"X-Agent-Version": self.version} if self.version else {}
        )
        try:
            response = await self.server.post(HOOK_PATH, json=body, headers=headers)
        except httpx.TimeoutException:
            return reject(f"no answer from approval-server within {self.server.timeout.read:g} s")
        except httpx.HTTPError as exc:
            return reject(f"cannot reach approval-server at {self.server.base_url}: {exc.__class__.__name__}")
        if not response.is_success:
            return reject(f"approval-server answered {response.status_code}: {response.text[:200]}")
        try:
            reply = _reply_in(response.json())
        except ValueError:
            reply = None
        return reply or reject("approval-server's answer is not an OpenCode reply")

    async def _worktree(self, directory: str) -> str | None:
        try:
            folders = (await self.opencode.get("/path", params={"directory": directory})).raise_for_status().json()
        except (httpx.HTTPError, ValueError):
            return None
        worktree = folders.get("worktree") if isinstance(folders, dict) else None
        return worktree if isinstance(worktree, str) else None


async def run_bridge(opencode_url: str, server_url: str, token: str, expiry: float, agent: str | None = None) -> None:
    """Bridge the OpenCode server at `opencode_url` to the approval server at `server_url`, whose requests expire
    after `expiry` seconds, until cancelled."""
    opencode = httpx.AsyncClient(base_url=opencode_url, auth=opencode_auth(), timeout=10, trust_env=False)
    server = httpx.AsyncClient(
        base_url=server_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(expiry + MARGIN_SECONDS, connect=10),
        trust_env=False,
    )
    bridge = Bridge(opencode, server, agent)
    try:
        await bridge.run()
    finally:
        for task in list(bridge.deciding.values()):
            task.cancel()
        await asyncio.gather(*bridge.deciding.values(), return_exceptions=True)
        await opencode.aclose()
        await server.aclose()


def bridge(
    opencode_url: Annotated[str, typer.Option("--opencode-url", help="Where `opencode serve` listens.")] = OPENCODE_URL,
    agent: Annotated[
        str | None, typer.Option(help="Name this agent: recorded with its requests and matched by the policy.")
    ] = None,
    url: Url = None,
    env_file: ClientEnvFile = None,
) -> None:
    """Answer the asks of an `opencode serve` (OpenCode's permission questions) through approval-server, failing
    closed: an ask it cannot get a decision for is rejected. Set OPENCODE_SERVER_PASSWORD if OpenCode's server
    has one. `approval-server connect opencode` says how to start both."""
    settings = load_client_settings(env_file, url, for_agent=True)
    tokens, _ = load_tokens(settings)
    configure_logging(settings.approval_log_level)
    hide(tokens.mcp, os.environ.get("OPENCODE_SERVER_PASSWORD"))
    coroutine = run_bridge(opencode_url, settings.url, tokens.mcp, settings.approval_timeout_seconds, agent_name(agent))
    try:
        asyncio.run(coroutine)
    except KeyboardInterrupt:
        log.info("stopped: OpenCode's asks wait for the next bridge")
