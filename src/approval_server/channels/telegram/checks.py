"""`setup telegram`'s and `doctor`'s questions to the Bot API itself: is the token a bot's, where does its webhook
point, did Telegram's last deliveries fail. No line they print shows the token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from telegram import Bot, User
from telegram.error import BadRequest, InvalidToken, TelegramError
from telegram.request import HTTPXRequest

from approval_server.channels.telegram.channel import why
from approval_server.channels.telegram.settings import TelegramConfig
from approval_server.errors import ApprovalServerError, ConfigError

Report = Callable[[str], None]
UPDATES = ["message", "callback_query"]


@asynccontextmanager
async def _bot(config: TelegramConfig) -> AsyncIterator[Bot]:
    timeout = config.send_timeout
    request = HTTPXRequest(connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout, pool_timeout=timeout)
    try:
        yield Bot(config.token, base_url=f"{config.api_base_url}/bot", request=request)
    finally:
        await request.shutdown()


async def _me(bot: Bot, config: TelegramConfig) -> User:
    """The bot the token is for. Raises `ConfigError` when Telegram refuses it, `ApprovalServerError` otherwise."""
    try:
        async with asyncio.timeout(config.send_timeout):
            return await bot.get_me()
    except InvalidToken:
        raise ConfigError(
            "Telegram refused TELEGRAM_BOT_TOKEN: copy it again from @BotFather (/mybots, your bot, API Token)."
        ) from None
    except (TelegramError, TimeoutError) as exc:
        raise ApprovalServerError(f"Telegram could not check the token: {why(exc, config)}") from None


async def point_webhook(config: TelegramConfig, echo: Report) -> str:
    """Check the token, then set the webhook to this server with its secret; returns the bot's username."""
    async with _bot(config) as bot:
        me = await _me(bot, config)
        echo(f"  ok    TELEGRAM_BOT_TOKEN is the token of @{me.username}")
        try:
            async with asyncio.timeout(config.send_timeout):
                await bot.set_webhook(config.webhook_url, secret_token=config.webhook_secret, allowed_updates=UPDATES)
        except BadRequest as exc:
            raise ConfigError(
                f"Telegram refused the webhook {config.webhook_url}: {exc.message}. PUBLIC_URL must be an HTTPS URL "
                "that Telegram can reach, on port 443, 80, 88 or 8443."
            ) from None
        except (TelegramError, TimeoutError) as exc:
            raise ApprovalServerError(f"Telegram could not set the webhook: {why(exc, config)}") from None
        echo(f"  ok    Telegram will post updates to {config.webhook_url}, with the webhook's secret")
        return me.username or me.first_name


def report(config: TelegramConfig, ok: Report, problem: Report, note: Report) -> None:
    """`doctor`'s Telegram lines: who it reaches, the token, and the webhook as Telegram has it."""
    if config.chats:
        ok(f"Telegram: {len(config.chats)} person(s) ({', '.join(config.chats.values())})")
    else:
        problem(
            "Telegram: no person has a telegram user id, so it reaches no one: each person sends /start to the bot, "
            "which answers with their id, to put in the people file"
        )
    asyncio.run(_live(config, ok, problem, note))


async def _live(config: TelegramConfig, ok: Report, problem: Report, note: Report) -> None:
    async with _bot(config) as bot:
        try:
            me = await _me(bot, config)
            async with asyncio.timeout(config.send_timeout):
                info = await bot.get_webhook_info()
        except ApprovalServerError as exc:
            problem(str(exc))
            return
        except (TelegramError, TimeoutError) as exc:
            problem(f"Telegram could not tell the webhook: {why(exc, config)}")
            return
    ok(f"Telegram: the token is @{me.username}'s")
    if info.url != config.webhook_url:
        problem(
            f"Telegram posts updates to {info.url or 'no webhook'}, not {config.webhook_url}: run "
            "`approval-server setup telegram`"
        )
    else:
        ok(f"Telegram posts updates to {config.webhook_url}")
    if info.last_error_message:
        when = info.last_error_date or datetime.now(UTC)
        waiting = info.pending_update_count
        (problem if waiting else note)(
            f"Telegram's last delivery to the webhook failed at {when:%Y-%m-%d %H:%M} UTC: {info.last_error_message} "
            f"({waiting} update(s) waiting)"
        )
