"""The Apprise channel's configuration, checked without a request: a bad URL's message (never the URL), one URL
given twice, `doctor`, `setup apprise` against local targets, and what a notice says as composed."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from approval_server.channels.apprise.notice import notice as notice_text
from approval_server.channels.apprise.targets import load_target
from approval_server.models import ApprovalRequest
from tests.apprise_targets import AppriseTargets
from tests.support import ServerProcess
from tests.test_apprise import HEADER_KEY, PASSWORD, QUERY_TOKEN, people_file
from tests.test_cli import cli
from tests.whatsapp_support import PUBLIC_URL


@pytest.mark.parametrize(
    ("urls", "said", "secret"),
    [
        ("json://127.0.0.1:9/ok, tgram://notatoken-SECRETVALUE/chat", "APPRISE_URLS, URL 2 (tgram://…)", "SECRETVALUE"),
        ("nosuchservice://user:SECRETVALUE@host", "not a service Apprise knows", "SECRETVALUE"),
        ("SECRETVALUE", "APPRISE_URLS, URL 1 is not an Apprise URL", "SECRETVALUE"),
    ],
)
def test_a_bad_url_is_a_readable_config_error_that_shows_no_secret(
    tmp_path: Path, urls: str, said: str, secret: str
) -> None:
    server = ServerProcess(data_dir=tmp_path / "data", env={"APPRISE_URLS": urls, "PUBLIC_URL": PUBLIC_URL})
    result = server.start_expecting_failure()
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert said in output
    assert secret not in output
    assert "Traceback" not in output


def test_a_bad_url_in_the_people_file_names_the_person_not_the_url(tmp_path: Path) -> None:
    people = people_file(tmp_path / "people.toml", bob="slack://SECRETVALUE")
    server = ServerProcess(data_dir=tmp_path / "data", env={"PEOPLE_FILE": str(people), "PUBLIC_URL": PUBLIC_URL})
    result = server.start_expecting_failure()
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert "(bob): apprise: URL 1 (slack://…) is not a valid Slack URL" in output
    assert "SECRETVALUE" not in output


def test_doctor_names_each_url_by_its_service_and_never_shows_a_secret(tmp_path: Path, targets: AppriseTargets) -> None:
    env = {
        "APPRISE_URLS": targets.url("team", user="ops", password=PASSWORD),
        "PUBLIC_URL": PUBLIC_URL,
        "SERVER_PORT": "9",
    }
    result = cli("doctor", cwd=tmp_path, env=env)
    assert re.search(r"ok\s+Apprise: JSON \(json://ops:\*\*\*\*@127\.0\.0\.1:\d+/team\) is a valid URL", result.stdout)
    bad = cli("doctor", cwd=tmp_path, env={**env, "APPRISE_URLS": f"{env['APPRISE_URLS']} discord://{PASSWORD}"})
    assert re.search(r"FIX\s+APPRISE_URLS, URL 2 \(discord://…\) is not a valid Discord URL", bad.stdout)
    assert PASSWORD not in result.stdout + result.stderr + bad.stdout + bad.stderr


def request_of(tool_input: dict[str, str]) -> ApprovalRequest:
    now = datetime.now(UTC)
    return ApprovalRequest(
        id="7kq2m9xa",
        tool_name="Bash",
        input=tool_input,
        tool_use_id=None,
        extra={},
        client=None,
        rendered="",
        created_at=now,
        expires_at=now + timedelta(minutes=5),
        agent="deployer",
        cwd="/srv/prod",
    )


def test_a_notice_longer_than_its_service_takes_describes_the_input_instead() -> None:
    """Read as composed: no service that takes only short messages listens on loopback."""
    request = request_of({"command": "echo " + "B" * 300})
    roomy = load_target("json://127.0.0.1:9/x", "the URL")
    sms = replace(roomy, max_length=160)
    assert "B" * 300 in notice_text(request, roomy, "Decide at the link")
    short = notice_text(request, sms, "Decide at the link")
    assert "B" * 10 not in short
    assert "The input (323 characters) is too long to show here" in short
    assert "Decide at the link" in short
    few_lines = replace(roomy, max_lines=3)
    assert "B" * 10 not in notice_text(request, few_lines, "Decide at the link")


def test_what_the_log_hides_of_a_url_is_what_apprise_masks_and_its_headers_and_parameters() -> None:
    target = load_target(f"json://ops:{PASSWORD}@127.0.0.1:9/x?+X-Api-Key={HEADER_KEY}&-token={QUERY_TOKEN}", "URL")
    assert target.shown == "json://ops:****@127.0.0.1:9/x"
    assert {PASSWORD, HEADER_KEY, QUERY_TOKEN} <= target.secrets
    assert not any(secret in target.shown for secret in target.secrets)
    plain = load_target("json://127.0.0.1:9/x", "URL")
    assert (plain.shown, plain.secrets) == ("json://127.0.0.1:9/x", frozenset())
    slack = load_target("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general", "URL")
    assert {"T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ"} <= slack.secrets
    assert "#general" not in slack.secrets
    assert slack.service == "Slack"


def test_setup_sends_a_test_notice_to_each_url_and_writes_them(tmp_path: Path, targets: AppriseTargets) -> None:
    urls = [targets.url("team", user="ops", password=PASSWORD), targets.url("pager", "form")]
    result = cli("setup", "apprise", *urls, "--env-file", str(tmp_path / ".env"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "A test notice from approval-server" in targets.wait_for("team")[0].message
    assert targets.wait_for("pager")[0].kind == "form"
    assert f"APPRISE_URLS={','.join(urls)}" in (tmp_path / ".env").read_text()
    assert PASSWORD not in result.stdout + result.stderr
    assert "JSON (json://ops:****@127.0.0.1" in result.stdout


def test_setup_says_which_url_failed_and_writes_nothing(tmp_path: Path, targets: AppriseTargets) -> None:
    targets.fail("down", 500)
    urls = [targets.url("team"), targets.url("down", user="ops", password=PASSWORD)]
    result = cli("setup", "apprise", *urls, "--env-file", str(tmp_path / ".env"), cwd=tmp_path)
    assert result.returncode == 1
    assert re.search(r"FAIL\s+JSON \(json://ops:\*\*\*\*@127\.0\.0\.1:\d+/down\): JSON: failure", result.stdout)
    assert "Nothing written" in result.stdout
    assert not (tmp_path / ".env").exists()
    assert PASSWORD not in result.stdout + result.stderr


def test_setup_refuses_a_bad_url_with_exit_code_2(tmp_path: Path) -> None:
    result = cli("setup", "apprise", "slack://SECRETVALUE", "--env-file", str(tmp_path / ".env"), cwd=tmp_path)
    assert result.returncode == 2
    assert "URL 1 (slack://…) is not a valid Slack URL" in result.stdout + result.stderr
    assert "SECRETVALUE" not in result.stdout + result.stderr


def test_one_url_given_to_a_person_and_to_everyone_is_refused(tmp_path: Path) -> None:
    """Everyone who reads the team's URL would get alice's link, which decides as her."""
    alice = f"json://ops:{PASSWORD}@127.0.0.1:9/alice"
    people = people_file(tmp_path / "people.toml", alice=alice)
    env = {"PEOPLE_FILE": str(people), "PUBLIC_URL": PUBLIC_URL, "APPRISE_URLS": f"json://127.0.0.1:9/x {alice}"}
    result = ServerProcess(data_dir=tmp_path / "data", env=env).start_expecting_failure()
    output = result.stdout + result.stderr
    assert result.returncode == 2
    assert "APPRISE_URLS, URL 2 and alice's apprise URL 1 are the same JSON URL" in output
    assert PASSWORD not in output


def test_setup_refuses_what_the_env_file_would_read_as_another_setting(tmp_path: Path) -> None:
    url = "json://ops:pa${HOME}ss@127.0.0.1:9/x"
    result = cli("setup", "apprise", url, "--env-file", str(tmp_path / ".env"), cwd=tmp_path)
    assert result.returncode == 2
    assert "write each $ in an Apprise URL as %24" in result.stdout + result.stderr
    assert not (tmp_path / ".env").exists()


def test_an_edit_is_a_diff_each_line_in_a_span_of_its_own() -> None:
    request = replace(request_of({}), tool_name="Edit")
    request = replace(request, input={"file_path": "/a *b*", "old_string": "x\n\ny", "new_string": "x\n\nz"})
    roomy = load_target("json://127.0.0.1:9/x", "the URL")
    text = notice_text(request, roomy, "Decide at the link")
    assert "Tool: ```Edit```\nFile: ```/a *b*```\nChange:\n┃ ``` x```\n┃ ``` ```\n┃ ```-y```\n┃ ```+z```\n" in text
