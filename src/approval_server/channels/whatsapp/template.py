"""`approval-server setup-template`: create the WhatsApp template with Approve / Deny buttons, once.

Reads `template_config.json` (the Content API's own create body: the one in the current directory, else the one that
comes with the package), reuses a template of the same `friendly_name` if the account has one already (so running it
twice creates nothing new), and writes its SID into `.env` as `TWILIO_CONTENT_SID` without touching the other lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from twilio.rest import Client
from twilio.rest.content.v1.content import ContentList

from approval_server.channels.whatsapp.checks import talking, twilio_client
from approval_server.channels.whatsapp.settings import WhatsAppSection
from approval_server.config import write_env
from approval_server.errors import ConfigError

TEMPLATE_FILE = "template_config.json"
PACKAGED_TEMPLATE = Path(__file__).with_name(TEMPLATE_FILE)


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


def template_path(given: Path | None) -> Path:
    """The template definition to read: `given`, unless it is None or the default name and missing; then the current
    directory's `template_config.json`, else the one that comes with the package."""
    default = Path(TEMPLATE_FILE)
    if given is None or (given == default and not given.exists()):
        return default if default.exists() else PACKAGED_TEMPLATE
    return given


def read_config(path: Path) -> TemplateConfig:
    try:
        return TemplateConfig.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ConfigError(
            f"{path} does not exist (leave out --config to use the one that comes with the package)"
        ) from None
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


def create_or_reuse(client: Client, config: TemplateConfig) -> tuple[str, bool]:
    """The SID of the account's template named `config.friendly_name`, made now if there is none; and whether it
    was. Raises `TwilioProblem`."""
    with talking(client, "list the account's content templates"):
        existing = [c.sid for c in client.content.v1.contents.list() if c.friendly_name == config.friendly_name]
    if existing:
        return str(existing[0]), False
    with talking(client, f"create the content template {config.friendly_name}"):
        return str(client.content.v1.contents.create(content_create_request(config)).sid), True


def set_up_template(settings: WhatsAppSection, config_path: Path, env_file: Path) -> tuple[str, bool]:
    """Create (or find) the template and record its SID in `env_file`; returns (sid, created)."""
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        raise ConfigError("Set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (in .env) before setting up the template.")
    config = read_config(template_path(config_path))
    base_url = str(settings.twilio_api_base_url) if settings.twilio_api_base_url else None
    client = twilio_client(settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value(), base_url)
    sid, created = create_or_reuse(client, config)
    write_env(env_file, {"TWILIO_CONTENT_SID": sid})
    return sid, created
