"""Approvers are people: the people file, checked by each channel; answers recorded under the person's name, with the
channel they came through; `APPROVAL_PHONE` still one unnamed person per number; the file out of every agent's reach."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from approval_server.channels.plugin import channel_plugins
from approval_server.errors import ConfigError
from approval_server.people import People, load_people
from tests.dashboard_support import answer, ask, browser, csrf_of, link_for, local
from tests.fake_twilio import FakeTwilio
from tests.support import ServerProcess, wait_for_status
from tests.whatsapp_support import ALICE, BOB, MALLORY, sent_to, text_of

PARSERS = {name: plugin.identity for name, plugin in channel_plugins().items()}


def people_from(tmp_path: Path, text: str, **unnamed: list[str]) -> People:
    path = tmp_path / "people.toml"
    path.write_text(text)
    return load_people(path, PARSERS, unnamed)


def test_a_people_file_names_each_person_with_an_identity_per_channel(tmp_path: Path) -> None:
    people = people_from(
        tmp_path,
        f'[[person]]\nname = "alice"\nwhatsapp = "+1 (415) 555-2671"\n\n[[person]]\nname = "bob"\nwhatsapp = "{BOB}"\n',
    )
    assert [person.name for person in people] == ["alice", "bob"]
    alice = people.by_identity("whatsapp", ALICE)  # normalised by the channel, as its answers will name it
    assert alice is not None
    assert alice.name == "alice"
    assert people.on("whatsapp") == [(alice, ALICE), (people.named("bob"), BOB)]
    assert people.by_identity("whatsapp", MALLORY) is None
    assert people.by_identity("telegram", ALICE) is None


def test_approval_phone_is_one_unnamed_person_per_number_unless_a_person_has_it(tmp_path: Path) -> None:
    people = people_from(tmp_path, f'[[person]]\nname = "alice"\nwhatsapp = "{ALICE}"\n', whatsapp=[ALICE, BOB])
    assert [(person.name, dict(person.identities)) for person in people] == [
        ("alice", {"whatsapp": ALICE}),
        (BOB, {"whatsapp": BOB}),
    ]
    assert [person.name for person in load_people(None, PARSERS, {"whatsapp": [ALICE]})] == [ALICE]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('[[person]]\nname = "alice"\nwhatsapp = "+1415"\n', "person 1 (alice): whatsapp: '+1415' is not a valid"),
        ('[[person]]\nname = "alice"\nwhatsapp = 14155552671\n', "person 1 (alice): whatsapp: 14155552671 is not a"),
        ('[[person]]\nname = "alice"\nicq = "123"\n', "person 1 (alice): icq is not a channel (the channels are"),
        ('[[person]]\nname = "al\\u202eice"\n', "person 1: name = 'al\\u202eice' is not a name"),
        ('[[person]]\nname = ""\n', "person 1: name = '' is not a name"),
        ("[[person]]\nwhatsapp = '+14155552671'\n", "person 1: name = None is not a name"),
        ('[[person]]\nname = "a"\n[[person]]\nname = "a"\n', "the name a is given to two people"),
        (
            f'[[person]]\nname = "a"\nwhatsapp = "{ALICE}"\n[[person]]\nname = "b"\nwhatsapp = "{ALICE}"\n',
            f"whatsapp {ALICE} is given to both a and b",
        ),
        ('[person]\nname = "a"\n', "person must be a list of tables, written [[person]]"),
        ('[[people]]\nname = "a"\n', "people is not a section of a people file"),
        ('[[person]\nname = "a"\n', "is not valid TOML"),
    ],
)
def test_a_mistake_in_the_people_file_is_one_line_naming_the_person_and_the_key(
    tmp_path: Path, text: str, said: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        people_from(tmp_path, text)
    assert said in str(raised.value)
    assert str(tmp_path / "people.toml") in str(raised.value)


def test_a_bad_people_file_stops_the_start_in_one_line_with_exit_2(tmp_path: Path) -> None:
    people = tmp_path / "people.toml"
    people.write_text('[[person]]\nname = "alice"\nwhatsapp = "+1415"\n')
    result = ServerProcess(data_dir=tmp_path / "data", env={"PEOPLE_FILE": str(people)}).start_expecting_failure()
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{people}, person 1 (alice): whatsapp:" in result.stderr
    missing = ServerProcess(data_dir=tmp_path / "data", env={"PEOPLE_FILE": str(tmp_path / "nobody.toml")})
    assert "PEOPLE_FILE=" in missing.start_expecting_failure().stderr


async def test_a_decision_is_recorded_under_the_persons_name_on_every_channel(
    tmp_path: Path, start_whatsapp: Callable[..., ServerProcess], fake: FakeTwilio
) -> None:
    """alice is named in the people file, BOB's number only in APPROVAL_PHONE: her tap is recorded as alice via
    whatsapp, and his link's answer as his number via link; a number that is no one's changes nothing."""
    people = tmp_path / "people.toml"
    people.write_text(f'[[person]]\nname = "alice"\nwhatsapp = "{ALICE}"\n')
    server = start_whatsapp(PEOPLE_FILE=str(people))
    assert "People:                2: alice, +14155552672" in server.log()
    async with server.mcp() as mcp, server.api() as api:
        call, pending = await ask(mcp, api, {"command": "make deploy"})
        to_alice = (await sent_to(fake, ALICE))[0]
        await fake.send_inbound(from_=MALLORY, body=f"APPROVE {pending['id']}")
        await fake.send_inbound(from_=ALICE, body=f"APPROVE {pending['id']}")
        assert (await answer(call))["behavior"] == "allow"
        row = await wait_for_status(api, pending["id"], "allowed")
        assert (row["decided_by"], row["decided_via"]) == ("alice", "whatsapp")
        notice = (await sent_to(fake, BOB, 2))[-1]
        assert notice.body == f"Request {pending['id']} was approved by alice via whatsapp."
        assert text_of((await sent_to(fake, ALICE, 2))[-1]).startswith(f"✅ Request {pending['id']} approved")
        assert pending["id"] in text_of(to_alice)

        call, pending = await ask(mcp, api, {"command": "make clean"})
        link = local(await link_for(fake, BOB, pending["id"]), server)
        async with browser(server) as http:
            page = await http.get(link)
            form = {"csrf": csrf_of(page.text), "decision": "deny", "message": "not today"}
            assert (await http.post(link, data=form)).status_code == 200
        reply = await answer(call)
        row = await wait_for_status(api, pending["id"], "denied")
    assert (row["decided_by"], row["decided_via"]) == (BOB, "web link")
    assert reply["message"].startswith(f"Denied by {BOB} via web link")
    assert "not today" in reply["message"]


@pytest.mark.parametrize("where", ["configured", "default"])
async def test_no_agent_may_touch_the_people_file_even_before_it_exists(
    tmp_path: Path, start_server: Callable[..., ServerProcess], where: str
) -> None:
    """An agent that wrote `people.toml` where the server starts would choose its approvers at the next start."""
    configured = tmp_path / "team" / "people.toml"
    configured.parent.mkdir()
    configured.write_text('[[person]]\nname = "alice"\n')
    server = start_server(**({"PEOPLE_FILE": str(configured)} if where == "configured" else {}))
    target = configured if where == "configured" else server.data_dir / "people.toml"
    assert not (where == "default" and target.exists())
    async with server.mcp() as mcp:
        call = mcp.call_tool_mcp(
            "permissions__approve",
            {"tool_name": "Write", "input": {"file_path": str(target), "content": '[[person]]\nname = "mallory"\n'}},
        )
        result = json.loads((await asyncio.wait_for(call, 15)).content[0].text)
    assert result["behavior"] == "deny"
