"""WhatsApp's settings: the Twilio account, the sender, the template, and the approvers' numbers (`APPROVAL_PHONE`),
each checked with its own message; `configure` makes them the channel's `WhatsAppSettings`, or says what is missing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import phonenumbers
from pydantic import Field, HttpUrl, SecretStr, field_validator
from pydantic_settings import NoDecode

from approval_server.config import Settings, SettingsSection
from approval_server.errors import ConfigError
from approval_server.people import People

WEBHOOK_PATH = "/twilio-webhook"

EXAMPLE_PHONE = "+14155552671"
_LENGTH_PROBLEMS = {
    phonenumbers.ValidationResult.TOO_SHORT: "too short",
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too short (its area code may be missing)",
    phonenumbers.ValidationResult.TOO_LONG: "too long",
    phonenumbers.ValidationResult.INVALID_LENGTH: "not of a length in use",
}


def e164(number: str) -> str:
    """`+1 (415) 555-2671` or `whatsapp:+14155552671` → `+14155552671`; anything else is a `ValueError` that says
    what is wrong: not in the international form, the wrong length, or well-formed but no valid number."""
    shown = number.strip()
    try:
        parsed = phonenumbers.parse(shown.removeprefix("whatsapp:"), None)
    except phonenumbers.NumberParseException:
        raise ValueError(
            f"{shown!r} is not a phone number in the international form (+, the country code, then the number, "
            f"e.g. {EXAMPLE_PHONE})"
        ) from None
    code = parsed.country_code or 0  # set by every parse that succeeds
    country = f"+{code} ({phonenumbers.region_code_for_country_code(code)})"
    length = _LENGTH_PROBLEMS.get(phonenumbers.is_possible_number_with_reason(parsed))
    if length is not None:
        raise ValueError(f"{shown!r} is not a valid phone number: {length} for {country}")
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"{shown!r} is well-formed but not a valid number for its country, {country}: check it")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True)
class WhatsAppSettings:
    account_sid: str
    auth_token: str
    sender: str
    approvers: list[str]
    public_url: str
    webhook_url: str
    content_sid: str | None
    api_base_url: str | None
    per_minute: int = 6
    quiet_seconds: float = 15.0
    send_timeout: float = 10.0


class WhatsAppSection(SettingsSection):
    """The WhatsApp channel's settings."""

    prefixes = ("TWILIO_", "APPROVAL_")

    twilio_account_sid: str | None = Field(default=None, pattern=r"^AC[0-9a-fA-F]{32}$")
    """Your Twilio account SID (`AC…`); WhatsApp is on when this, the auth token, the sender and the approvers are
    set."""
    twilio_auth_token: SecretStr | None = None
    """The account's auth token (it signs Twilio's webhooks; an API key secret cannot check them)."""
    twilio_whatsapp_from: str | None = None
    """The WhatsApp sender, e.g. `whatsapp:+14155238886` (the sandbox)."""
    twilio_content_sid: str | None = Field(default=None, pattern=r"^HX[0-9a-fA-F]{32}$")
    """The Content API template with the Approve / Deny buttons (`HX…`, made by `setup whatsapp` or
    `setup-template`); without it, or when Twilio refuses it, plain text with reply instructions."""
    twilio_api_base_url: HttpUrl | None = Field(default=None, json_schema_extra={"shown_default": "Twilio's own"})
    """Send Twilio API calls to another host: a fake Twilio in tests or load tests."""
    approval_phone: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """The approvers' WhatsApp numbers, international form, comma-separated: only they are asked and only they
    count."""
    approval_whatsapp_per_minute: int = Field(default=6, ge=1, le=1000)
    """Requests sent to one approver a minute; past it, requests are held back (they still wait) and one message says
    how many, with the dashboard's link."""
    approval_whatsapp_quiet_seconds: float = Field(default=15.0, ge=0, le=600)
    """A reply with no request id (`yes`, `no`) counts only when the only waiting request's message has been the last
    one the approver got for this long."""
    approval_send_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    """The longest one call to Twilio may take, all included; past it, that message has failed, and when every
    approver's has, the request is denied at once. Sends never hold up an answer."""

    @field_validator("twilio_account_sid", "twilio_content_sid", "twilio_whatsapp_from", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("twilio_whatsapp_from")
    @classmethod
    def _whatsapp_address(cls, value: str | None) -> str | None:
        return None if value is None else "whatsapp:" + e164(value)

    @field_validator("approval_phone", mode="before")
    @classmethod
    def _phone_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [e164(number) for number in value.split(",") if number.strip()]
        return value


def configure(section: WhatsAppSection, settings: Settings, people: People) -> WhatsAppSettings | None:
    """The WhatsApp settings, or None when WhatsApp is off. Raises `ConfigError` when it is half configured."""
    needed = {
        "TWILIO_ACCOUNT_SID": section.twilio_account_sid,
        "TWILIO_AUTH_TOKEN": section.twilio_auth_token,
        "TWILIO_WHATSAPP_FROM": section.twilio_whatsapp_from,
        "APPROVAL_PHONE": section.approval_phone or None,
    }
    if all(value is None for value in needed.values()):
        return None  # a number in the people file alone does not turn WhatsApp on
    if people.on("whatsapp"):  # named people with a number are approvers as much as APPROVAL_PHONE's
        needed.pop("APPROVAL_PHONE")
    missing = [name for name, value in needed.items() if value is None]
    if settings.public_url is None:
        missing.append("PUBLIC_URL")
    if missing or not (section.twilio_account_sid and section.twilio_auth_token and section.twilio_whatsapp_from):
        who = "; instead of APPROVAL_PHONE, people may have a whatsapp number in the people file" * (
            "APPROVAL_PHONE" in missing
        )
        raise ConfigError(
            f"WhatsApp is half configured: {', '.join(missing)} missing. Set them (PUBLIC_URL is the public "
            f"base URL Twilio calls, needed to check its signatures{who}), or remove the other TWILIO_* settings."
        )
    public_url = str(settings.public_url).rstrip("/")
    return WhatsAppSettings(
        account_sid=section.twilio_account_sid,
        auth_token=section.twilio_auth_token.get_secret_value(),
        sender=section.twilio_whatsapp_from,
        approvers=[number for _, number in people.on("whatsapp")],
        public_url=public_url,
        webhook_url=public_url + WEBHOOK_PATH,
        content_sid=section.twilio_content_sid,
        api_base_url=str(section.twilio_api_base_url).rstrip("/") if section.twilio_api_base_url else None,
        per_minute=section.approval_whatsapp_per_minute,
        quiet_seconds=section.approval_whatsapp_quiet_seconds,
        send_timeout=section.approval_send_timeout_seconds,
    )
