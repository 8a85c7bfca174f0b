"""`doctor` and `setup-template` check the WhatsApp settings live against Twilio (here the local fake, in Twilio's wire
format): a wrong token, a content template that does not exist (what Twilio refuses with 21655 at send time) or a
Twilio that cannot be reached is said in one line, never a traceback; `setup-template` then exits with 2."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_twilio import FakeTwilio
from tests.support import REPO
from tests.test_cli import cli
from tests.whatsapp_support import make_template, whatsapp_env

OWN_SENDER = "whatsapp:+15017122661"
CONFIG = str(REPO / "template_config.json")


def one_line_and_exit_2(result: subprocess.CompletedProcess[str]) -> str:
    """The only line the command printed on stderr, once checked that it exited with 2 and showed no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def own_sender() -> Iterator[FakeTwilio]:
    """A fake Twilio account with a WhatsApp sender of its own (not the Sandbox)."""
    with FakeTwilio(senders=[OWN_SENDER]) as twilio:
        yield twilio


def test_setup_template_with_a_wrong_token_is_one_line_and_exit_2(tmp_path: Path, fake: FakeTwilio) -> None:
    env = {**fake.env(), "TWILIO_AUTH_TOKEN": "not-the-token"}
    line = one_line_and_exit_2(cli("setup-template", "--config", CONFIG, cwd=tmp_path, env=env))
    assert line.startswith("approval-server: The account SID and auth token do not go together")
    assert "Twilio error 20003: Authenticate" in line
    assert "not-the-token" not in line
    assert not (tmp_path / ".env").exists()


def test_setup_template_when_twilio_cannot_be_reached_is_one_line_and_exit_2(tmp_path: Path, fake: FakeTwilio) -> None:
    fake.refuse_connections()
    line = one_line_and_exit_2(cli("setup-template", "--config", CONFIG, cwd=tmp_path, env=fake.env()))
    assert f"Cannot reach Twilio ({fake.base_url}: connection refused)" in line


def test_setup_template_outside_the_repository_uses_the_template_of_the_package(
    tmp_path: Path, fake: FakeTwilio
) -> None:
    """An empty directory, as after `uv tool install`: no template_config.json there."""
    result = cli("setup-template", cwd=tmp_path, env=fake.env())
    assert result.returncode == 0, result.stderr
    [template] = fake.contents
    assert template.friendly_name == "approval_server_request_v2"
    assert [a["title"] for a in template.quick_replies] == ["✅ Approve", "🔁 Allow for session", "❌ Deny"]
    assert f"TWILIO_CONTENT_SID={template.sid}" in (tmp_path / ".env").read_text()
    assert (tmp_path / ".env").stat().st_mode & 0o077 == 0


def doctor(tmp_path: Path, env: dict[str, str]) -> list[str]:
    """doctor's lines (no server runs: that is one problem of its own)."""
    result = cli("doctor", cwd=tmp_path, env={"SERVER_PORT": "9", **env})
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout.splitlines()


def problems(lines: list[str]) -> list[str]:
    return [line.removeprefix("  FIX   ") for line in lines if line.startswith("  FIX ") and "no server" not in line]


def test_doctor_says_twilio_refuses_a_wrong_token(tmp_path: Path, fake: FakeTwilio) -> None:
    lines = doctor(tmp_path, whatsapp_env(fake, TWILIO_AUTH_TOKEN="not-the-token"))
    assert problems(lines) == [
        "The account SID and auth token do not go together: copy both again from the Twilio Console "
        "(Twilio error 20003: Authenticate)."
    ]
    assert not any("not-the-token" in line for line in lines)


def test_doctor_says_the_content_template_does_not_exist(tmp_path: Path, fake: FakeTwilio) -> None:
    """A template deleted, or made in another account: every send of it is refused with 21655."""
    stale = "HX" + "0123456789abcdef" * 2
    [problem] = problems(doctor(tmp_path, whatsapp_env(fake, TWILIO_CONTENT_SID=stale)))
    assert problem.startswith(f"TWILIO_CONTENT_SID={stale} is not a content template of this Twilio account")
    assert "approval-server setup-template" in problem


def test_doctor_says_when_it_cannot_reach_twilio(tmp_path: Path, fake: FakeTwilio) -> None:
    fake.refuse_connections()
    [problem] = problems(doctor(tmp_path, whatsapp_env(fake)))
    assert problem.startswith(f"Cannot reach Twilio ({fake.base_url}: connection refused) to check the account")
    assert problem.endswith("The sender and the template were not checked.")


def test_doctor_says_the_sender_is_not_the_accounts(tmp_path: Path, own_sender: FakeTwilio) -> None:
    env = whatsapp_env(own_sender, TWILIO_WHATSAPP_FROM="+15017122662")
    [problem] = problems(doctor(tmp_path, env))
    assert problem.startswith(
        "+15017122662 is not a WhatsApp sender of this Twilio account (its senders: +15017122661)"
    )


def test_doctor_says_the_sender_is_offline(tmp_path: Path, own_sender: FakeTwilio) -> None:
    own_sender.set_sender_status(OWN_SENDER, "OFFLINE")
    [problem] = problems(doctor(tmp_path, whatsapp_env(own_sender, TWILIO_WHATSAPP_FROM=OWN_SENDER)))
    assert problem.startswith("The WhatsApp sender +15017122661 is OFFLINE, not ONLINE")


def test_doctor_checks_the_account_the_sender_and_the_template(tmp_path: Path, own_sender: FakeTwilio) -> None:
    sid = make_template(own_sender)
    lines = doctor(tmp_path, whatsapp_env(own_sender, TWILIO_WHATSAPP_FROM=OWN_SENDER, TWILIO_CONTENT_SID=sid))
    assert problems(lines) == []
    ok = [line.removeprefix("  ok    ") for line in lines if line.startswith("  ok ")]
    assert f"Twilio account {own_sender.account_sid} (My first Twilio account) answers and is active" in ok
    assert "sender +15017122661 is a WhatsApp sender of this account, online" in ok
    assert f"template {sid} (approval_server_request_v2) exists, with Approve / Deny buttons" in ok
    fetched = [r.path for r in own_sender.requests if r.method == "GET"]
    assert f"/2010-04-01/Accounts/{own_sender.account_sid}.json" in fetched
    assert "/v2/Channels/Senders" in fetched
    assert f"/v1/Content/{sid}" in fetched
