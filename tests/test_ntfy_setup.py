"""`setup ntfy`, ntfy's `doctor` checks and its settings, run as a user runs them against the local fake ntfy."""

from __future__ import annotations

from pathlib import Path

import pytest
from dotenv import dotenv_values

from tests.fake_ntfy import FakeNtfy, new_token
from tests.support import ServerProcess
from tests.test_cli import cli

PUBLIC_URL = "https://approvals.example.com"
TOPIC = "alice-approvals-7f3k9q2m4x8w"


def setup(tmp_path: Path, fake: FakeNtfy, *args: str, token: str | None = None) -> tuple[int, str]:
    env = {"NTFY_TOKEN": token} if token else {}
    flags = ("--url", fake.base_url, "--public-url", PUBLIC_URL, "--yes", *args)
    result = cli("setup", "ntfy", *flags, cwd=tmp_path, env=env)
    assert "Traceback" not in result.stdout + result.stderr
    return result.returncode, result.stdout + result.stderr


def test_setup_publishes_a_first_push_with_the_token_and_writes_the_settings(tmp_path: Path, ntfy: FakeNtfy) -> None:
    ntfy.deny_anonymous("*")
    token = ntfy.add_token("approvals", write=("alice-*", "bob-*"))
    (tmp_path / "people.toml").write_text('# who answers\n[[person]]\nname = "alice"\nwhatsapp = "+14155552671"\n')
    code, output = setup(tmp_path, ntfy, "--person", "alice", "--topic", TOPIC, token=token)
    assert code == 0, output
    (first,) = ntfy.on(TOPIC)
    assert first.authorization == f"Bearer {token}"
    assert "alice's approval requests will come here" in first.message
    env = dotenv_values(tmp_path / ".env")
    assert (env["NTFY_URL"], env["NTFY_TOKEN"], env["PUBLIC_URL"]) == (ntfy.base_url, token, PUBLIC_URL)
    assert token not in output
    assert TOPIC not in output
    code, output = setup(tmp_path, ntfy, "--person", "bob", "--topic", "bob-approvals-h2v8c4n6z1qp", token=token)
    assert code == 0, output
    people = (tmp_path / "people.toml").read_text()
    assert people.startswith("# who answers\n")  # the file's other lines are kept
    assert f'name = "alice"\nwhatsapp = "+14155552671"\nntfy = "{TOPIC}"' in people
    assert 'name = "bob"\nntfy = "bob-approvals-h2v8c4n6z1qp"' in people
    doctor = cli("doctor", cwd=tmp_path, env={"SERVER_PORT": "9"}).stdout  # reads what setup wrote
    assert f"  ok    ntfy: {ntfy.base_url} answers" in doctor
    assert "  ok    ntfy: bob's topic is protected: anonymous readers are refused" in doctor


@pytest.mark.parametrize(
    ("access", "told"),
    [
        ("unknown token", "ntfy does not know this access token (HTTP 401)"),
        ("token of another topic", "ntfy refuses this access token on this topic (HTTP 403)"),
        ("anonymous on a protected topic", "ntfy refuses an anonymous publisher (no NTFY_TOKEN) on this topic"),
    ],
)
def test_setup_refused_by_ntfy_says_why_and_writes_nothing(
    tmp_path: Path, ntfy: FakeNtfy, access: str, told: str
) -> None:
    ntfy.deny_anonymous("*")
    token = {
        "unknown token": new_token(),
        "token of another topic": ntfy.add_token("bob", write=("bob-*",)),
        "anonymous on a protected topic": None,
    }[access]
    code, output = setup(tmp_path, ntfy, "--person", "alice", "--topic", TOPIC, token=token)
    assert code == 2
    assert told in output
    assert not (tmp_path / ".env").exists()
    assert not (tmp_path / "people.toml").exists()
    assert ntfy.published == []


def test_setup_refuses_what_is_no_topic_and_a_server_that_is_not_ntfy(tmp_path: Path, ntfy: FakeNtfy) -> None:
    code, output = setup(tmp_path, ntfy, "--person", "alice", "--topic", "my topic")
    assert code == 2
    assert "'my topic' is not an ntfy topic: 1 to 64 letters, digits, - or _" in output
    code, output = setup(tmp_path, ntfy, "--person", "alice", "--topic", "v1")
    assert code == 2
    assert "a name ntfy keeps for its own pages" in output
    code, output = setup(tmp_path, ntfy, "--person", "Owner", "--topic", TOPIC)
    assert code == 2
    assert "--person 'Owner' is a name the record gives to someone else" in output
    ntfy.refuse_connections()
    code, output = setup(tmp_path, ntfy, "--person", "alice", "--topic", TOPIC)
    assert code == 2
    assert f"{ntfy.base_url} does not answer as an ntfy server: ntfy unreachable (ConnectError)" in output
    assert not (tmp_path / ".env").exists()


def doctor_lines(tmp_path: Path, people: dict[str, str], **env: str) -> list[str]:
    (tmp_path / "people.toml").write_text(
        "".join(f'[[person]]\nname = "{name}"\nntfy = "{topic}"\n' for name, topic in people.items())
    )
    result = cli("doctor", cwd=tmp_path, env={"SERVER_PORT": "9", "PUBLIC_URL": PUBLIC_URL, **env})
    assert "Traceback" not in result.stdout + result.stderr
    for topic in people.values():
        assert topic not in result.stdout
    return [line for line in result.stdout.splitlines() if "ntfy" in line]


def test_doctor_says_who_may_read_each_topic(tmp_path: Path, ntfy: FakeNtfy) -> None:
    lines = doctor_lines(tmp_path, {"alice": "q7x2", "bob": TOPIC}, NTFY_URL=ntfy.base_url)
    assert f"  ok    ntfy: {ntfy.base_url} answers" in lines
    assert any(line.startswith("  FIX   ntfy: anyone may read alice's topic, and it is short") for line in lines)
    assert any(line.startswith("  note  ntfy: whoever knows bob's topic reads its pushes") for line in lines)
    ntfy.deny_anonymous("*")
    token = ntfy.add_token("approvals", write=("*",))
    lines = doctor_lines(tmp_path, {"alice": "q7x2"}, NTFY_URL=ntfy.base_url, NTFY_TOKEN=token)
    assert "  ok    ntfy: alice's topic is protected: anonymous readers are refused" in lines
    assert not any(token in line for line in lines)


def test_doctor_says_ntfy_does_not_know_the_token_or_is_not_there(tmp_path: Path, ntfy: FakeNtfy) -> None:
    wrong = new_token()
    lines = doctor_lines(tmp_path, {"alice": TOPIC}, NTFY_URL=ntfy.base_url, NTFY_TOKEN=wrong)
    assert "  FIX   ntfy: the server does not know NTFY_TOKEN (HTTP 401): every push will fail" in lines
    assert not any(wrong in line for line in lines)
    ntfy.refuse_connections()
    lines = doctor_lines(tmp_path, {"alice": TOPIC}, NTFY_URL=ntfy.base_url)
    assert f"  FIX   ntfy: {ntfy.base_url} does not answer as an ntfy server: ntfy unreachable (ConnectError)" in lines


@pytest.mark.parametrize(
    ("people", "env", "told"),
    [
        ('ntfy = "v1"', {}, "ntfy: 'v1' is a name ntfy keeps for its own pages"),
        ('ntfy = "a/b"', {}, "ntfy: 'a/b' is not an ntfy topic"),
        ("ntfy = 7", {}, "ntfy: an ntfy topic is a string"),
        (f'ntfy = "{TOPIC}"', {"PUBLIC_URL": ""}, "ntfy needs PUBLIC_URL"),
        (
            'whatsapp = "+14155552671"',
            {"NTFY_TOKEN": new_token()},
            "NTFY_TOKEN is set, but no person has an ntfy topic",
        ),
        (f'ntfy = "{TOPIC}"', {"NTFY_TOKEN": "hunter2-typed-here"}, "NTFY_TOKEN: is not an ntfy access token: tk_"),
        (f'ntfy = "{TOPIC}"', {"NTFY_URL": "https://ntfy.example.com/?u=1"}, "NTFY_URL: must be the ntfy server's"),
        (f'ntfy = "{TOPIC}"', {"NTFY_PRIORITY": "9"}, "NTFY_PRIORITY: Input should be less than or equal to 5"),
    ],
)
def test_a_bad_ntfy_setting_stops_the_server_with_its_name(
    tmp_path: Path, people: str, env: dict[str, str], told: str
) -> None:
    (tmp_path / "people.toml").write_text(f'[[person]]\nname = "alice"\n{people}\n')
    server = ServerProcess(
        data_dir=tmp_path / "data",
        # An empty value leaves the setting out (PUBLIC_URL="" would be the core settings' error, not ntfy's).
        env={
            name: value
            for name, value in {"PEOPLE_FILE": str(tmp_path / "people.toml"), "PUBLIC_URL": PUBLIC_URL, **env}.items()
            if value
        },
    )
    result = server.start_expecting_failure()
    assert result.returncode == 2, result.stdout + result.stderr
    assert told in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr  # a mistyped token is named, never shown
