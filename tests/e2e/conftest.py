"""Fixtures for the end-to-end tests that drive the real `claude` CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.claude_cli import claude_available
from tests.e2e.fake_anthropic import FakeAnthropic, Script


@pytest.fixture
def require_claude() -> None:
    """Fail when the pinned CLIs are not installed in tests/e2e: these tests must never be skipped silently."""
    if claude_available():
        return
    pytest.fail(
        "claude CLI not installed: run `npm install --prefix tests/e2e --no-save` (the README's test command does)"
    )


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    """An empty working directory for the CLI (its cwd)."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """Where a run keeps HOME, stdout, stderr and the debug log."""
    return tmp_path / "run"


@pytest.fixture
def fake_anthropic() -> Iterator[Callable[..., FakeAnthropic]]:
    """Factory: ``fake_anthropic(script, final_text=...)`` starts a fake; all stop after."""
    started: list[FakeAnthropic] = []

    def make(script: Script = (), **kwargs: str) -> FakeAnthropic:
        fake = FakeAnthropic(script, **kwargs).start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()
