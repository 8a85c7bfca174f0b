"""The example policy against an agent that wants what it denies: every attempt to read `.env` and friends, through
git, pagers, scripts, globs, quoting and other spellings, is denied or asked, never allowed."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from approval_server.policy.rule_set import RuleSet, load_rules
from tests.support import REPO

CWD = "/proj"
EXAMPLE = load_rules(REPO / "policy.example.toml")

TARGETS = [
    ".env",
    "./.env",
    "../proj/.env",
    "/proj/.env",
    ".ENV",
    ".Env",
    "sub/dir/.env",
    ".env.local",
    ".ENV.production",
    ".en?",
    ".e*",
    ".en[v]",
    "'.env'",
    '".env"',
    "~/.ssh/id_rsa",
]
TEMPLATES = [
    "cat {}",
    "less {}",
    "head -n 5 {}",
    "tail -f {}",
    "sed -n 1p {}",
    "awk 1 {}",
    "grep -r KEY {}",
    "git diff --no-index {} /dev/null",
    "git diff --no-index /dev/null {}",
    "git log -p -- {}",
    "git log --follow -p -- {}",
    "git show HEAD:{}",
    "git blame {}",
    "git diff HEAD -- {}",
    "git grep --no-index KEY -- {}",
    "git cat-file -p HEAD:{}",
    "echo ok && cat {}",
    "git status && git log -p -- {}",
    "find . -name x -exec cat {} ;",
    "sh -c 'cat {}'",
    "cat $(echo {})",
    "echo {} | xargs cat",
    "python -c 'print(open(\"{}\").read())'",
    "git -c core.pager='cat {}' log",
]
ATTEMPTS = [template.format(target) for template, target in itertools.product(TEMPLATES, TARGETS)]


def test_the_corpus_is_large() -> None:
    assert len(set(ATTEMPTS)) >= 100


@pytest.mark.parametrize("agent", [None, "ci-nightly"])
def test_no_attempt_to_read_what_the_example_policy_denies_is_allowed(agent: str | None) -> None:
    allowed = [
        command
        for command in ATTEMPTS
        if EXAMPLE.evaluate("Bash", {"command": command}, agent=agent, cwd=CWD).action == "allow"
    ]
    assert allowed == []


@pytest.mark.parametrize("path", ["/proj/.env", "/proj/.ENV", "/proj/.Env", "/proj/sub/.eNv.local", ".ENV"])
def test_no_spelling_of_env_is_allowed_to_the_read_tool(path: str) -> None:
    assert EXAMPLE.evaluate("Read", {"file_path": path}, cwd=CWD).action == "deny"


@pytest.mark.parametrize(
    "command", ["git diff --no-index .env /dev/null", "git log -p -- .env", "git show HEAD:.env", "git blame .env"]
)
def test_git_reading_env_meets_the_read_deny_rule(command: str) -> None:
    verdict = EXAMPLE.evaluate("Bash", {"command": command}, cwd=CWD)
    assert verdict.action == "deny"
    assert verdict.rule is not None
    assert verdict.rule.endswith(" deny Read(.env)")


@pytest.mark.parametrize(
    "command",
    [
        "git -c core.pager=sh log",
        "git --config-env=core.pager=X log",
        "git log --output=/tmp/x",
        "git diff --ext-diff",
        "git diff --textconv",
        "git -C /elsewhere log",
    ],
)
def test_git_options_that_run_programs_or_write_files_need_an_exact_rule(command: str) -> None:
    assert EXAMPLE.evaluate("Bash", {"command": command}, cwd=CWD).action != "allow"


def test_plain_git_reads_stay_allowed() -> None:
    for command in ("git log --oneline", "git diff HEAD -- src/app.py", "git log -p -- src/"):
        assert EXAMPLE.evaluate("Bash", {"command": command}, cwd=CWD).action == "allow", command


def test_allow_rules_stay_case_sensitive() -> None:
    rules = RuleSet.from_toml('[permissions]\nallow = ["Read(./src/**)"]')
    assert rules.evaluate("Read", {"file_path": "/proj/src/a.py"}, cwd=CWD).action == "allow"
    assert rules.evaluate("Read", {"file_path": "/proj/SRC/a.py"}, cwd=CWD).action == "ask"


RUNNERS = ["uv run pytest", "uv run pytest tests", "npm test", "npm run test -- x", "pytest", "python -m pytest"]
RUNNERS += ["npm run lint", "make", "make test", "tox", "cargo test", "go test ./..."]


@pytest.mark.parametrize("agent", [None, "ci-nightly"])
def test_the_example_never_lets_the_agent_write_code_then_run_it_unasked(agent: str | None) -> None:
    writes = [
        path
        for path in ("/proj/src/app.py", "/proj/tests/test_app.py", "/proj/conftest.py", "/proj/Makefile")
        if EXAMPLE.evaluate(
            "Edit", {"file_path": path, "old_string": "a", "new_string": "b"}, agent=agent, cwd=CWD
        ).action
        == "allow"
    ]
    runs = [
        command
        for command in RUNNERS
        if EXAMPLE.evaluate("Bash", {"command": command}, agent=agent, cwd=CWD).action == "allow"
    ]
    assert not (writes and runs), (writes, runs)


def test_a_symlink_out_of_an_allowed_folder_is_not_allowed_by_its_rule(tmp_path: Path) -> None:
    project, outside = tmp_path / "proj", tmp_path / "home"
    (project / "src").mkdir(parents=True)
    outside.mkdir()
    (outside / "id_rsa").write_text("secret")
    (project / "src" / "key").symlink_to(outside / "id_rsa")
    (project / "src" / "ok.py").write_text("")
    rules = RuleSet.from_toml('[permissions]\nallow = ["Read(./src/**)", "Edit(./src/**)"]')
    for tool in ("Read", "Edit"):
        assert rules.evaluate(tool, {"file_path": str(project / "src/key")}, cwd=str(project)).action == "ask"
        assert rules.evaluate(tool, {"file_path": str(project / "src/ok.py")}, cwd=str(project)).action == "allow"


def test_a_symlink_to_a_denied_file_is_denied(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KEY=1")
    (tmp_path / "notes.txt").symlink_to(tmp_path / ".env")
    assert EXAMPLE.evaluate("Read", {"file_path": str(tmp_path / "notes.txt")}, cwd=str(tmp_path)).action == "deny"
    assert EXAMPLE.evaluate("Bash", {"command": "cat notes.txt"}, cwd=str(tmp_path)).action == "deny"
