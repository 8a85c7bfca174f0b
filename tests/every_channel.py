"""One server with every channel on, for two people: alice on WhatsApp, Telegram, ntfy and an Apprise JSON endpoint,
bob on Telegram only. Every fake is local and speaks its service's wire format."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.apprise_targets import AppriseTargets
from tests.fake_ntfy import FakeNtfy
from tests.fake_telegram import FakeTelegram
from tests.fake_twilio import FakeTwilio
from tests.whatsapp_support import ALICE, whatsapp_env

TG_ALICE, TG_BOB = 111_111_111, 222_222_222
ALICE_TOPIC = "alice-approvals-7f3k9q2m4x8w"


@contextmanager
def fake_telegram() -> Iterator[FakeTelegram]:
    """The fake Bot API, alice and bob having started the bot."""
    with FakeTelegram() as fake:
        fake.add_user(TG_ALICE, "Alice")
        fake.add_user(TG_BOB, "Bob")
        yield fake


def every_channel_env(
    tmp_path: Path, fake: FakeTwilio, telegram: FakeTelegram, ntfy: FakeNtfy, targets: AppriseTargets, **extra: str
) -> dict[str, str]:
    """The server's settings, `extra` added, with the people file written in `tmp_path`."""
    people = tmp_path / "people.toml"
    people.write_text(
        f'[[person]]\nname = "alice"\nwhatsapp = "{ALICE}"\ntelegram = "{TG_ALICE}"\nntfy = "{ALICE_TOPIC}"\n'
        f'apprise = "{targets.url("alice")}"\n\n[[person]]\nname = "bob"\ntelegram = "{TG_BOB}"\n'
    )
    return whatsapp_env(
        fake, APPROVAL_PHONE=ALICE, PEOPLE_FILE=str(people), NTFY_URL=ntfy.base_url, **telegram.env(**extra)
    )
