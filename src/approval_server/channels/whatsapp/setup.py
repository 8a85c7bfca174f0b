"""`approval-server setup whatsapp`: from a Twilio account to a server that asks its approvers on WhatsApp (and
`setup-template`, the template alone).

Asks for (or takes as flags) the account SID and auth token, the WhatsApp sender, the approvers' numbers and the public
URL Twilio calls; checks them against Twilio's API (the account, the sender), creates or reuses the template with
Approve / Deny buttons (`template`), writes them all into the server's `.env` (its other lines kept), and says
where to paste the webhook URL in the Twilio Console and which message to send to try it all. Any failure is one line
and exit code 2, with nothing written.

The Twilio library is imported only when the command runs: every other command (the hook on each tool call) starts
without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from dotenv import dotenv_values

from approval_server.channels.whatsapp.settings import WhatsAppSection, WhatsAppSettings, configure
from approval_server.config import Settings, load_section, load_settings
from approval_server.errors import ConfigError
from approval_server.people import People, Person

TEST_MESSAGE = "hi"


@dataclass
class Answers:
    """What the user gave, as typed (checked by the settings class once all are in)."""

    account_sid: str | None
    auth_token: str | None
    sender: str | None
    approvers: str | None
    public_url: str | None


def _questions(sandbox: str) -> dict[str, tuple[str, str, str]]:
    """Each answer's setting, flag and question."""
    return {
        "account_sid": (
            "TWILIO_ACCOUNT_SID",
            "--account-sid",
            "Twilio account SID (AC…, Twilio Console, Account info)",
        ),
        "auth_token": ("TWILIO_AUTH_TOKEN", "--auth-token", "Twilio auth token (next to the SID; typing is not shown)"),
        "sender": ("TWILIO_WHATSAPP_FROM", "--from", f"WhatsApp sender number (the Twilio Sandbox's is {sandbox})"),
        "approvers": (
            "APPROVAL_PHONE",
            "--approver",
            "Approvers' WhatsApp numbers, international form, comma-separated",
        ),
        "public_url": (
            "PUBLIC_URL",
            "--public-url",
            "Public HTTPS URL of this server for Twilio (https://abc.ngrok.app)",
        ),
    }


def _current(env_file: Path, names: list[str]) -> dict[str, str]:
    """The values of `names` set now, as the server would read them: its environment first, then `env_file`."""
    values = (
        {key.upper(): value for key, value in dotenv_values(env_file).items() if value} if env_file.exists() else {}
    )
    for name in names:
        if os.environ.get(name):
            values[name] = os.environ[name]
    return values


def _ask(answers: Answers, env_file: Path, sandbox: str, interactive: bool) -> Answers:
    """Fill in what no flag gave: from a prompt (the current value as its default), or, with `--yes`, from the
    current settings. Raises `ConfigError` naming the flags still missing."""
    questions = _questions(sandbox)
    current = _current(env_file, [name for name, _, _ in questions.values()])
    missing: list[str] = []
    for field, (name, flag, question) in questions.items():
        if getattr(answers, field):
            continue
        default = current.get(name)
        if interactive:
            secret = field == "auth_token"
            shown = " (Enter keeps the current one)" if secret and default else ""
            value = typer.prompt(question + shown, default=default, hide_input=secret, show_default=not secret)
            setattr(answers, field, value.strip())
        elif default:
            setattr(answers, field, default)
        else:
            missing.append(flag)
    if missing:
        raise ConfigError(f"setup whatsapp --yes needs {', '.join(missing)} (or run it without --yes to be asked).")
    return answers


def _checked(answers: Answers, env_file: Path) -> WhatsAppSettings:
    """The answers as the server will read them, or a `ConfigError` that says which one is wrong."""
    url = urlsplit(answers.public_url or "")
    if url.path.strip("/") or url.query:
        base = f"{url.scheme}://{url.netloc}"
        raise ConfigError(
            f"--public-url is the server's base URL, without a path: use {base} (got {answers.public_url}; the server "
            "adds /twilio-webhook itself)."
        )
    files = env_file if env_file.exists() else None
    settings = load_settings(files, [WhatsAppSection], public_url=answers.public_url)
    section = load_section(
        WhatsAppSection,
        files,
        [Settings],
        twilio_account_sid=answers.account_sid,
        twilio_auth_token=answers.auth_token,
        twilio_whatsapp_from=answers.sender,
        approval_phone=answers.approvers,
    )
    people = People(Person(number, {"whatsapp": number}) for number in section.approval_phone)
    whatsapp = configure(section, settings, people)
    assert whatsapp is not None  # every setting it needs was given
    return whatsapp


def setup_whatsapp(
    account_sid: Annotated[str | None, typer.Option("--account-sid", help="The Twilio account SID (AC…).")] = None,
    auth_token: Annotated[
        str | None, typer.Option("--auth-token", help="The account's auth token (else asked, or TWILIO_AUTH_TOKEN).")
    ] = None,
    sender: Annotated[
        str | None, typer.Option("--from", help="The WhatsApp sender number: the Twilio Sandbox's, or your own.")
    ] = None,
    approvers: Annotated[
        list[str] | None, typer.Option("--approver", help="An approver's WhatsApp number; repeat for each.")
    ] = None,
    public_url: Annotated[
        str | None, typer.Option("--public-url", help="The public HTTPS base URL at which Twilio reaches the server.")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Ask nothing: what no flag gives comes from the current settings.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(help="The template definition (default: ./template_config.json, else the packaged one)."),
    ] = None,
    env_file: Annotated[Path, typer.Option("--env-file", help="The server's .env file to write.")] = Path(".env"),
) -> None:
    """Set up WhatsApp through Twilio: check the account and sender, make the template, write .env, say what is left."""
    from approval_server.channels.whatsapp.checks import SANDBOX, check_account, check_sender, twilio_client
    from approval_server.channels.whatsapp.template import create_or_reuse, read_config, template_path
    from approval_server.config import write_env

    given = Answers(account_sid, auth_token, sender, ",".join(approvers) if approvers else None, public_url)
    answers = _ask(given, env_file, SANDBOX.removeprefix("whatsapp:"), interactive=not yes)
    whatsapp = _checked(answers, env_file)
    template = read_config(template_path(config))

    client = twilio_client(whatsapp.account_sid, whatsapp.auth_token, whatsapp.api_base_url)
    typer.echo(f"  ok    {check_account(client, whatsapp.account_sid)}")
    typer.echo(f"  ok    {check_sender(client, whatsapp.sender)}")
    content_sid, created = create_or_reuse(client, template)
    typer.echo(f"  ok    template {content_sid} ({template.friendly_name}) {'created' if created else 'found'}")

    number = whatsapp.sender.removeprefix("whatsapp:")
    values = {
        "TWILIO_ACCOUNT_SID": whatsapp.account_sid,
        "TWILIO_AUTH_TOKEN": whatsapp.auth_token,
        "TWILIO_WHATSAPP_FROM": number,
        "TWILIO_CONTENT_SID": content_sid,
        "APPROVAL_PHONE": ",".join(whatsapp.approvers),
        "PUBLIC_URL": whatsapp.public_url,
    }
    write_env(env_file, values)
    typer.echo(f"  ok    {', '.join(values)} written to {env_file}")
    typer.echo("")
    typer.echo(_next_steps(whatsapp, env_file, sandbox=whatsapp.sender == SANDBOX))


def setup_template(
    config: Annotated[Path, typer.Option(help="The template definition.")] = Path("template_config.json"),
    env_file: Annotated[Path, typer.Option("--env-file", help="The server's .env file to read settings from.")] = Path(
        ".env"
    ),
) -> None:
    """Create the WhatsApp template with Approve / Deny buttons and write its SID into .env (safe to rerun)."""
    from approval_server.channels.plugin import sections
    from approval_server.channels.whatsapp.template import set_up_template

    section = load_section(WhatsAppSection, env_file if env_file.exists() else None, [Settings, *sections()])
    sid, created = set_up_template(section, config, env_file)
    typer.echo(f"{'Created' if created else 'Found'} template {sid}; TWILIO_CONTENT_SID={sid} is in {env_file}.")
    typer.echo("Restart the server to use it.")


def _next_steps(whatsapp: WhatsAppSettings, env_file: Path, sandbox: bool) -> str:
    number = whatsapp.sender.removeprefix("whatsapp:")
    where = (
        "Messaging > Try it out > Send a WhatsApp message > Sandbox settings"
        if sandbox
        else f"Messaging > Senders > WhatsApp senders > {number}"
    )
    serve = "approval-server serve" + ("" if env_file == Path(".env") else f" --env-file {env_file}")
    steps = [
        f'In the Twilio Console ({where}), set "When a message comes in" to\n'
        f"       {whatsapp.webhook_url}\n       method POST.",
    ]
    if sandbox:
        steps.append(f"From each approver's phone, send the Sandbox's join code (shown there) to {number}.")
    steps += [
        f"Start the server (restart it if it runs: it reads {env_file} on start):  {serve}",
        f'Test: from {whatsapp.approvers[0]}, send "{TEST_MESSAGE}" to {number} on WhatsApp. The server answers at '
        'once, "To answer, tap a button or reply APPROVE <id>…". No answer: check the URL above, then run  '
        "approval-server doctor",
    ]
    return "Next:\n" + "\n".join(f"  {n}. {step}" for n, step in enumerate(steps, 1))
