"""Telegram's settings, `setup telegram` and `doctor`, as a user runs them, against a local fake Bot API: readable
errors that never quote the token, a webhook set with its secret, and checks that find what is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.fake_telegram import FakeTelegram
from tests.support import ServerProcess

PUBLIC_URL = "https://approvals.example.test"
WEBHOOK = f"{PUBLIC_URL}/telegram-webhook"
ALICE, BOB = 111_111_111, 222_222_222
PEOPLE = f'[[person]]\nname = "alice"\ntelegram = "{ALICE}"\n\n[[person]]\nname = "bob"\ntelegram = {BOB}\n'
TOKEN_SECRET_PART = "Zq7SecretPartOfTheToken0123456789"


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        fake.add_user(ALICE, "Alice")
        fake.add_user(BOB, "Bob")
        yield fake


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "approval_server", *args],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "HOME": str(cwd), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def set_webhook(fake: FakeTelegram, secret: str | None, url: str = WEBHOOK) -> None:
    body = {"url": url} | ({"secret_token": secret} if secret else {})
    response = httpx.post(f"{fake.base_url}/bot{fake.token}/setWebhook", json=body)
    assert response.json()["ok"], response.text


@pytest.mark.parametrize(
    ("env", "people", "said"),
    [
        (
            {"TELEGRAM_BOT_TOKEN": f"not-a-token-{TOKEN_SECRET_PART}"},
            None,
            "TELEGRAM_BOT_TOKEN: not a bot token: @BotFather gives one as <digits>:<letters, digits, - and _>",
        ),
        (
            {"TELEGRAM_BOT_TOKEN": f"123:{TOKEN_SECRET_PART}", "TELEGRAM_WEBHOOK_SECRET": "has a space"},
            None,
            "TELEGRAM_WEBHOOK_SECRET: Telegram accepts 1 to 256 of the characters A-Z, a-z, 0-9, _ and - only",
        ),
        (
            {"TELEGRAM_BOT_TOKEN": f"123:{TOKEN_SECRET_PART}"},
            None,
            "TELEGRAM_BOT_TOKEN is set, but PUBLIC_URL (the public base URL Telegram posts updates to) is not",
        ),
        ({}, PEOPLE, "people have a telegram id, but TELEGRAM_BOT_TOKEN is not"),
        (
            {"TELEGRAM_BOT_TOKEN": f"123:{TOKEN_SECRET_PART}", "PUBLIC_URL": PUBLIC_URL},
            '[[person]]\nname = "alice"\ntelegram = "@alice"\n',
            "person 1 (alice): telegram: '@alice' is not a Telegram user id",
        ),
        (
            {"TELEGRAM_BOT_TOKEN": f"123:{TOKEN_SECRET_PART}", "PUBLIC_URL": PUBLIC_URL},
            '[[person]]\nname = "alice"\ntelegram = -100123\n',
            "person 1 (alice): telegram: '-100123' is not a Telegram user id",
        ),
    ],
)
def test_bad_settings_stop_the_server_with_a_readable_error(
    env: dict[str, str], people: str | None, said: str, tmp_path: Path
) -> None:
    if people is not None:
        (tmp_path / "people.toml").write_text(people)
        env = {**env, "PEOPLE_FILE": str(tmp_path / "people.toml")}
    served = run_cli(["serve"], {**env, "APPROVAL_DATA_DIR": str(tmp_path / "data")}, tmp_path)
    assert served.returncode == 2, served.stdout + served.stderr
    assert said in served.stderr
    assert TOKEN_SECRET_PART not in served.stdout + served.stderr
    assert "Traceback" not in served.stderr


async def test_setup_sets_the_webhook_and_doctor_checks_it(
    start_server: Callable[..., ServerProcess], telegram: FakeTelegram, tmp_path: Path
) -> None:
    people = tmp_path / "people.toml"
    people.write_text(PEOPLE)
    env = telegram.env(PUBLIC_URL=PUBLIC_URL, PEOPLE_FILE=str(people), APPROVAL_DATA_DIR=str(tmp_path / "data"))
    setup = run_cli(["setup", "telegram"], env, tmp_path)
    assert setup.returncode == 0, setup.stderr
    assert f"TELEGRAM_BOT_TOKEN is the token of @{telegram.username}" in setup.stdout
    assert f"https://t.me/{telegram.username}" in setup.stdout
    assert telegram.webhook.url == WEBHOOK
    assert telegram.webhook.secret_token  # derived from the token, as the server derives it
    assert telegram.token not in setup.stdout + setup.stderr

    server = start_server(**{k: v for k, v in env.items() if k != "APPROVAL_DATA_DIR"})
    telegram.route_webhooks_to(server.url)
    response = await telegram.deliver(telegram.text(ALICE, "hello"))
    assert response.status_code == 200  # the server expects the secret setup gave Telegram

    doctor = run_cli(["doctor"], env, tmp_path)
    assert f"ok    Telegram: the token is @{telegram.username}'s" in doctor.stdout
    assert f"ok    Telegram posts updates to {WEBHOOK}" in doctor.stdout
    assert "ok    Telegram: 2 person(s) (alice, bob)" in doctor.stdout
    assert "Telegram's last delivery" not in doctor.stdout

    set_webhook(telegram, "another-secret")  # another secret than the server's: Telegram's deliveries are refused
    assert (await telegram.deliver(telegram.text(ALICE, "hello"))).status_code == 403
    doctor = run_cli(["doctor"], env, tmp_path)
    assert "FIX   Telegram's last delivery to the webhook failed at" in doctor.stdout
    assert "Wrong response from the webhook: 403 Forbidden (1 update(s) waiting)" in doctor.stdout
    set_webhook(telegram, None, "https://elsewhere.example/hook")
    doctor = run_cli(["doctor"], env, tmp_path)
    assert f"FIX   Telegram posts updates to https://elsewhere.example/hook, not {WEBHOOK}" in doctor.stdout
    assert telegram.token.split(":")[1] not in doctor.stdout + doctor.stderr

    wrong = run_cli(["setup", "telegram"], {**env, "TELEGRAM_BOT_TOKEN": "123:" + "A" * 30}, tmp_path)
    assert wrong.returncode == 2
    assert "Telegram refused TELEGRAM_BOT_TOKEN" in wrong.stderr
