"""The local Apprise targets are faithful: Apprise itself posts to them, and what it reports matches what they did."""

from __future__ import annotations

import apprise
import httpx

from tests.apprise_targets import AppriseTargets


def send(*urls: str, body: str = "body", title: str = "title", timeout: float = 10) -> apprise.AppriseResult:
    notifier = apprise.Apprise()
    for url in urls:
        assert notifier.add(url), url
    return notifier.notify(body, title=title, body_format=apprise.NotifyFormat.TEXT, timeout=timeout)


def test_json_and_form_posts_arrive_as_apprise_sent_them(targets: AppriseTargets) -> None:
    body = "Tool: Bash\nCommand: rm -rf /tmp/x && echo 'é ⟨U+202E⟩'"
    result = send(targets.url("alice"), targets.url("team", "form"), body=body, title="Approval needed")
    assert result.status == apprise.AppriseResultStatus.SUCCESS
    (json_notice,) = targets.wait_for("alice")
    (form_notice,) = targets.wait_for("team")
    assert (json_notice.kind, json_notice.title, json_notice.message, json_notice.type) == (
        "json",
        "Approval needed",
        body,
        "info",
    )
    assert (form_notice.kind, form_notice.title, form_notice.message) == ("form", "Approval needed", body)
    assert json_notice.headers["content-type"] == "application/json"
    assert form_notice.headers["content-type"] == "application/x-www-form-urlencoded"


def test_a_target_with_credentials_takes_only_posts_that_carry_them(targets: AppriseTargets) -> None:
    good = targets.url("alice", user="alice", password="s3cret:/@pw")
    assert send(good)
    assert targets.wait_for("alice")[0].user == "alice"
    wrong = good.replace("s3cret", "guess")
    assert not send(wrong)
    assert not send(targets.url("alice"))  # the same target without credentials
    assert len(targets.received("alice")) == 1
    assert targets.refused == 2


def test_each_target_reports_its_own_failure(targets: AppriseTargets) -> None:
    targets.fail("down", 503)
    result = send(targets.url("up"), targets.url("down", "form"))
    assert result.status == apprise.AppriseResultStatus.PARTIAL
    assert [service.name for service in result if service] == ["JSON"]
    assert [service.name for service in result if not service] == ["Form"]
    assert len(targets.received("up")) == 1
    assert targets.received("down") == []
    targets.clear_failures()
    assert send(targets.url("down", "form"))
    assert len(targets.wait_for("down")) == 1


def test_refused_connections_fail_and_the_port_comes_back(targets: AppriseTargets) -> None:
    url = targets.url("alice")
    targets.refuse_connections()
    assert send(url).status == apprise.AppriseResultStatus.FAILURE
    targets.accept_connections()
    assert send(url)
    assert len(targets.wait_for("alice")) == 1


async def test_a_hanging_target_is_a_timeout_of_the_call(targets: AppriseTargets) -> None:
    targets.hang("slow", 5)
    notifier = apprise.Apprise(targets.url("slow"))
    result = await notifier.async_notify("body", title="title", timeout=0.5)
    assert result.status == apprise.AppriseResultStatus.TIMEOUT
    assert targets.received("slow") == []


def test_a_post_not_in_apprises_format_is_refused(targets: AppriseTargets) -> None:
    for content_type, body in (
        ("application/json", b'{"title": "t"}'),
        ("application/json", b"not json"),
        ("application/x-www-form-urlencoded", b"title=t&message=m"),
        ("text/plain", b"message"),
    ):
        response = httpx.post(f"{targets.base_url}/alice", content=body, headers={"content-type": content_type})
        assert response.status_code == 400, body
    assert targets.notices == []
    assert targets.refused == 4
