"""`approval-server setup-template`: create the WhatsApp template with Approve / Deny buttons, once.

Reads `template_config.json` (the Content API's own create body), reuses a template of the same
`friendly_name` if the account has one already (so running it twice creates nothing new), and writes its
SID into `.env` as `TWILIO_CONTENT_SID` without touching the other lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dotenv import set_key
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client
from twilio.rest.content.v1.content import ContentList

from approval_server.config import Settings
from approval_server.errors import ApprovalServerError, ConfigError


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=20)
    id: str = Field(min_length=1, max_length=256)


class _QuickReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1, max_length=1024)
    actions: list[_Action] = Field(min_length=1, max_length=10)


class _Text(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1, max_length=1600)


class _Types(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    quick_reply: _QuickReply = Field(alias="twilio/quick-reply")
    text: _Text | None = Field(default=None, alias="twilio/text")


class TemplateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    friendly_name: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    language: str = Field(min_length=2)
    variables: dict[str, str]
    types: _Types


def read_config(path: Path) -> TemplateConfig:
    try:
        return TemplateConfig.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; the repository ships one to start from") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    except ValidationError as exc:
        problems = "\n".join(f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path} is not a valid template:\n{problems}") from None


def content_create_request(config: TemplateConfig) -> Any:
    quick = config.types.quick_reply
    types: dict[str, Any] = {
        "twilio/quick-reply": ContentList.TwilioQuickReply(
            {
                "body": quick.body,
                "actions": [ContentList.QuickReplyAction({"title": a.title, "id": a.id}) for a in quick.actions],
            }
        )
    }
    if config.types.text is not None:
        types["twilio/text"] = ContentList.TwilioText({"body": config.types.text.body})
    return ContentList.ContentCreateRequest(
        {
            "friendly_name": config.friendly_name,
            "language": config.language,
            "variables": config.variables,
            "types": ContentList.Types(types),
        }
    )


def set_up_template(settings: Settings, config_path: Path, env_file: Path) -> tuple[str, bool]:
    """Create (or find) the template and record its SID in `env_file`; returns (sid, created)."""
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        raise ConfigError("Set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (in .env) before setting up the template.")
    config = read_config(config_path)
    client = Client(settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value())
    if settings.twilio_api_base_url:
        client.content.base_url = str(settings.twilio_api_base_url).rstrip("/")
    try:
        existing = [c for c in client.content.v1.contents.list() if c.friendly_name == config.friendly_name]
        if existing:
            sid, created = existing[0].sid, False
        else:
            sid, created = client.content.v1.contents.create(content_create_request(config)).sid, True
    except TwilioRestException as exc:
        raise ApprovalServerError(f"Twilio refused: {exc.msg} (error {exc.code})") from None
    set_key(str(env_file), "TWILIO_CONTENT_SID", sid, quote_mode="never")
    return sid, created
