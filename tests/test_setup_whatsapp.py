"""`approval-server setup whatsapp`: the Twilio settings asked for (or given as flags), checked against Twilio (the
local fake), the template made or reused, `.env` written, and what is left said: the webhook URL for the Twilio
Console and a test message, which then gets its answer from the server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from dotenv import dotenv_values

from tests.fake_twilio import DEFAULT_SENDER, FakeTwilio
from tests.support import ServerProcess
from tests.test_cli import cli
from tests.test_twilio_checks import OWN_SENDER, one_line_and_exit_2
from tests.whatsapp_support import ALICE, BOB, PUBLIC_URL, sent_to, text_of

SANDBOX = DEFAULT_SENDER.removeprefix("whatsapp:")


def flags(fake: FakeTwilio, **changes: str) -> list[str]:
    given = {
        "--account-sid": fake.account_sid,
        "--auth-token": fake.auth_token,
        "--from": SANDBOX,
        "--public-url": PUBLIC_URL,
        **changes,
    }
    return [*(part for flag, value in given.items() for part in (flag, value)), "--approver", ALICE, "--approver", BOB]


async def test_setup_checks_twilio_writes_env_and_its_test_message_is_answered(
    tmp_path: Path, fake: FakeTwilio, start_server: Callable[..., ServerProcess]
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# mine\nSERVER_PORT=8123\n")
    base = {"TWILIO_API_BASE_URL": fake.base_url}
    result = await asyncio.to_thread(cli, "setup", "whatsapp", *flags(fake), "--yes", cwd=tmp_path, env=base)
    assert result.returncode == 0, result.stderr
    [template] = fake.contents
    written = dotenv_values(env_file)
    assert written == {
        "SERVER_PORT": "8123",
        "TWILIO_ACCOUNT_SID": fake.account_sid,
        "TWILIO_AUTH_TOKEN": fake.auth_token,
        "TWILIO_WHATSAPP_FROM": SANDBOX,
        "TWILIO_CONTENT_SID": template.sid,
        "APPROVAL_PHONE": f"{ALICE},{BOB}",
        "PUBLIC_URL": PUBLIC_URL,
    }
    assert env_file.read_text().startswith("# mine\n")
    out = result.stdout
    assert f"Twilio account {fake.account_sid} (My first Twilio account) answers and is active" in out
    assert f"template {template.sid} (approval_server_request_v2) created" in out
    assert f"\n       {PUBLIC_URL}/twilio-webhook\n" in out
    assert f'from {ALICE}, send "hi" to {SANDBOX} on WhatsApp' in out
    assert fake.auth_token not in out + result.stderr

    # Run again: the template is found, not made twice.
    again = await asyncio.to_thread(cli, "setup", "whatsapp", *flags(fake), "--yes", cwd=tmp_path, env=base)
    assert again.returncode == 0, again.stderr
    assert f"template {template.sid} (approval_server_request_v2) found" in again.stdout
    assert len(fake.contents) == 1

    # The server started with what was written answers the test message, as the last step says.
    settings = {key: value for key, value in written.items() if value and key != "SERVER_PORT"}
    server = start_server(**settings, **base)
    fake.configure_webhook(f"{PUBLIC_URL}/twilio-webhook", deliver_to=f"{server.url}/twilio-webhook")
    assert (await fake.send_inbound(from_=ALICE, body="hi")).status_code == 200
    [answer] = await sent_to(fake, ALICE)
    assert text_of(answer).startswith("To answer, tap a button or reply APPROVE <id>")


def test_setup_asks_for_what_no_flag_gives(tmp_path: Path, fake: FakeTwilio) -> None:
    answers = f"{fake.account_sid}\n{SANDBOX}\n{ALICE}, {BOB}\n{PUBLIC_URL}\n"
    result = cli(
        "setup", "whatsapp", "--auth-token", fake.auth_token,
        cwd=tmp_path, env={"TWILIO_API_BASE_URL": fake.base_url}, stdin=answers,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for question in ("Twilio account SID", "WhatsApp sender number", "Approvers' WhatsApp numbers", "Public HTTPS URL"):
        assert question in result.stdout
    assert "auth token" not in result.stdout  # given as a flag
    written = dotenv_values(tmp_path / ".env")
    assert written["APPROVAL_PHONE"] == f"{ALICE},{BOB}"
    assert written["TWILIO_CONTENT_SID"] == fake.contents[0].sid


def test_setup_with_yes_takes_what_is_set_already(tmp_path: Path, fake: FakeTwilio) -> None:
    (tmp_path / ".env").write_text(f"TWILIO_ACCOUNT_SID={fake.account_sid}\nAPPROVAL_PHONE={ALICE}\n")
    env = {"TWILIO_API_BASE_URL": fake.base_url, "TWILIO_AUTH_TOKEN": fake.auth_token}
    result = cli("setup", "whatsapp", "--yes", "--from", SANDBOX, "--public-url", PUBLIC_URL, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    written = dotenv_values(tmp_path / ".env")
    assert (written["TWILIO_AUTH_TOKEN"], written["APPROVAL_PHONE"]) == (fake.auth_token, ALICE)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            {"--auth-token": "not-the-token"},
            "approval-server: The account SID and auth token do not go together: copy both again from the Twilio "
            "Console (Twilio error 20003: Authenticate).",
        ),
        (
            {"--from": "+15017122662"},
            "approval-server: +15017122662 is not a WhatsApp sender of this Twilio account (its senders: "
            "+15017122661): set TWILIO_WHATSAPP_FROM to one of them, or to the Sandbox number +14155238886.",
        ),
        (
            {"--public-url": f"{PUBLIC_URL}/twilio-webhook"},
            f"approval-server: --public-url is the server's base URL, without a path: use {PUBLIC_URL} (got "
            f"{PUBLIC_URL}/twilio-webhook; the server adds /twilio-webhook itself).",
        ),
    ],
)
def test_setup_refuses_in_one_line_and_writes_nothing(tmp_path: Path, change: dict[str, str], said: str) -> None:
    with FakeTwilio(senders=[OWN_SENDER]) as fake:
        given = flags(fake, **{"--from": OWN_SENDER.removeprefix("whatsapp:"), **change})
        result = cli("setup", "whatsapp", *given, "--yes", cwd=tmp_path, env={"TWILIO_API_BASE_URL": fake.base_url})
        assert fake.contents == []
    assert one_line_and_exit_2(result) == said
    assert not (tmp_path / ".env").exists()


def test_setup_when_twilio_cannot_be_reached_is_one_line(tmp_path: Path, fake: FakeTwilio) -> None:
    fake.refuse_connections()
    env = {"TWILIO_API_BASE_URL": fake.base_url}
    line = one_line_and_exit_2(cli("setup", "whatsapp", *flags(fake), "--yes", cwd=tmp_path, env=env))
    assert line.startswith(f"approval-server: Cannot reach Twilio ({fake.base_url}: connection refused)")
    assert not (tmp_path / ".env").exists()


def test_setup_with_yes_names_the_flags_missing(tmp_path: Path) -> None:
    result = cli("setup", "whatsapp", "--yes", "--from", SANDBOX, cwd=tmp_path)
    assert one_line_and_exit_2(result) == (
        "approval-server: setup whatsapp --yes needs --account-sid, --auth-token, --approver, --public-url (or run "
        "it without --yes to be asked)."
    )
