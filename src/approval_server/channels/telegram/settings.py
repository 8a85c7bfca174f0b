"""Telegram's settings: the bot's token, the webhook's secret, where the Bot API is; and what a person's identity on
Telegram is (their numeric user id). `configure` makes them the channel's `TelegramConfig`, or says what is missing.

No message here ever quotes the token or the secret: they are checked by their shape and named, never shown.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from pydantic import Field, HttpUrl, SecretStr, field_validator

from approval_server.config import Settings, SettingsSection
from approval_server.errors import ConfigError
from approval_server.people import People

WEBHOOK_PATH = "/telegram-webhook"
DEFAULT_API = "https://api.telegram.org"
# A bot token as @BotFather gives it: the bot's id, a colon, and a secret of letters, digits, - and _.
TOKEN = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{20,100}")
# What Telegram accepts as a webhook's secret_token.
SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
# A user id: a positive number (Telegram's fit in 52 bits); groups and channels, negative, are not people.
USER_ID = re.compile(r"[1-9][0-9]{0,15}")


def user_id(value: object) -> str:
    """A person's Telegram identity, their numeric user id, as a string: `123456789` or `"123456789"`."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f'{value!r} is not a Telegram user id: write the number, e.g. "123456789"')
    text = str(value).strip()
    if not USER_ID.fullmatch(text):
        raise ValueError(
            f'{text!r} is not a Telegram user id: the number Telegram gives the person (e.g. "123456789"; the bot '
            "tells each person theirs when they send it /start), not a @username or a phone number"
        )
    return text


def derived_secret(token: str) -> str:
    """The webhook's secret when none is set: derived from the token, so every replica and `setup telegram` agree."""
    digest = hmac.new(token.encode(), b"approval-server telegram webhook", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class TelegramConfig:
    token: str
    webhook_secret: str
    public_url: str
    webhook_url: str
    api_base_url: str
    chats: dict[str, str]  # a person's user id (their private chat with the bot) → their name
    send_timeout: float = 10.0

    @property
    def bot_id(self) -> str:
        return self.token.split(":", 1)[0]


class TelegramSection(SettingsSection):
    """The Telegram channel's settings."""

    prefixes = ("TELEGRAM_",)

    telegram_bot_token: SecretStr | None = None
    """The bot's token from @BotFather (`123456789:AA…`). Telegram is on when it is set: each person with a
    `telegram` user id in the people file is asked there, with buttons."""
    telegram_webhook_secret: SecretStr | None = Field(
        default=None, json_schema_extra={"shown_default": "derived from the bot token"}
    )
    """The secret Telegram sends with each update (`X-Telegram-Bot-Api-Secret-Token`), 1 to 256 of `A-Z a-z 0-9 _ -`;
    updates without it are refused. Run `approval-server setup telegram` again after changing it."""
    telegram_api_base_url: HttpUrl | None = Field(default=None, json_schema_extra={"shown_default": DEFAULT_API})
    """Send Bot API calls to another host: a fake Telegram in tests, or a local Bot API server."""
    telegram_send_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    """The longest one call to the Bot API may take, all included; past it, that message has failed, and when every
    person's has, the request is denied at once."""

    @field_validator("telegram_bot_token", "telegram_webhook_secret", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not TOKEN.fullmatch(value.get_secret_value().strip()):
            raise ValueError("not a bot token: @BotFather gives one as <digits>:<letters, digits, - and _>")
        return None if value is None else SecretStr(value.get_secret_value().strip())

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not SECRET.fullmatch(value.get_secret_value()):
            raise ValueError("Telegram accepts 1 to 256 of the characters A-Z, a-z, 0-9, _ and - only")
        return value


def configure(section: TelegramSection, settings: Settings, people: People) -> TelegramConfig | None:
    """The Telegram configuration, or None when it is off. Raises `ConfigError` when it is half set up."""
    reached = people.on("telegram")
    if section.telegram_bot_token is None:
        if section.telegram_webhook_secret is not None or reached:
            why = "TELEGRAM_WEBHOOK_SECRET is set" if section.telegram_webhook_secret else "people have a telegram id"
            raise ConfigError(
                f"Telegram is half configured: {why}, but TELEGRAM_BOT_TOKEN is not. Set the bot's token (from "
                "@BotFather), or remove the telegram settings and ids."
            )
        return None
    # Nobody with a user id yet is no half set up: the bot is how a person learns theirs (it answers /start), so the
    # channel runs and reaches no one, and a request it alone would carry is denied at once (`notify`).
    if settings.public_url is None:
        raise ConfigError(
            "Telegram is half configured: TELEGRAM_BOT_TOKEN is set, but PUBLIC_URL (the public base URL Telegram "
            "posts updates to) is not (see docs/channels/telegram.md)."
        )
    token = section.telegram_bot_token.get_secret_value()
    secret = section.telegram_webhook_secret
    public_url = str(settings.public_url).rstrip("/")
    api = section.telegram_api_base_url
    return TelegramConfig(
        token=token,
        webhook_secret=secret.get_secret_value() if secret is not None else derived_secret(token),
        public_url=public_url,
        webhook_url=public_url + WEBHOOK_PATH,
        api_base_url=str(api).rstrip("/") if api is not None else DEFAULT_API,
        chats={identity: person.name for person, identity in reached},
        send_timeout=section.telegram_send_timeout_seconds,
    )
