from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.apprise_targets import AppriseTargets
from tests.browser import CHROMIUM_FLAGS, chromium_path
from tests.databases import POSTGRESQL, Databases, backend_changes
from tests.fake_ntfy import FakeNtfy
from tests.fake_twilio import FakeTwilio
from tests.support import STARTED, ServerProcess
from tests.whatsapp_support import PUBLIC_URL, whatsapp_env

LOG_LINES_SHOWN = 200


@pytest.fixture(autouse=True)
def _servers_of_this_test() -> None:
    STARTED.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report ends with the log of each server it started (its last lines), which is gone with the
    test's temporary directory on a CI machine."""
    report: pytest.TestReport = yield
    if report.failed and report.when == "call":
        for server in STARTED:
            lines = server.log().splitlines()[-LOG_LINES_SHOWN:]
            report.sections.append((f"log of the server at {server.url} (last lines)", "\n".join(lines)))
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL pass runs only the tests the backend can change (see `backend_changes`); a selection with none
    (`scripts/test tests/test_rules.py`) runs whole on both passes rather than find no test on one."""
    if not POSTGRESQL:
        return
    same = [item for item in items if not backend_changes(item)]
    if same and len(same) < len(items):
        config.hook.pytest_deselected(items=same)
        items[:] = [item for item in items if backend_changes(item)]


@pytest.fixture(scope="session")
def databases() -> Iterator[Databases]:
    """Makes the databases of the selected backend (APPROVAL_TEST_BACKEND): use `database_url` in a test."""
    made = Databases()
    yield made
    made.close()


@pytest.fixture
def database_url(databases: Databases, tmp_path: Path) -> Iterator[str]:
    """A new database for this test, ready for a server; dropped after it. Every store and server of a test uses
    this one URL (SQLite: approval.db in the data directory, where the server's default would be)."""
    url = databases.create(tmp_path / "data")
    yield url
    databases.drop(url)


@pytest.fixture
def start_server(tmp_path: Path, database_url: str) -> Iterator[Callable[..., ServerProcess]]:
    """Start `approval-server serve` with extra environment; every server started is stopped at the end."""
    started: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        server = ServerProcess(data_dir=tmp_path / "data", database_url=database_url, env=env)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    return start_server()


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    """A local fake Twilio, stopped at the end."""
    with FakeTwilio() as twilio:
        yield twilio


@pytest.fixture
def ntfy() -> Iterator[FakeNtfy]:
    """A local fake ntfy server, stopped at the end."""
    with FakeNtfy() as fake:
        yield fake


@pytest.fixture
def targets() -> Iterator[AppriseTargets]:
    """Local endpoints that Apprise's json:// and form:// URLs post to, stopped at the end."""
    with AppriseTargets() as served:
        yield served


@pytest.fixture
def start_whatsapp(start_server: Callable[..., ServerProcess], fake: FakeTwilio) -> Callable[..., ServerProcess]:
    """Start the server with WhatsApp on, talking to the fake, whose webhooks reach it signed for PUBLIC_URL."""

    def start(**extra: str) -> ServerProcess:
        server = start_server(**whatsapp_env(fake, **extra))
        fake.configure_webhook(f"{PUBLIC_URL}/twilio-webhook", deliver_to=f"{server.url}/twilio-webhook")
        return server

    return start


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's chromium, driven by Playwright (its own browser download is never used)."""
    executable = chromium_path()
    if executable is None:
        pytest.fail("chromium is not installed: run `apt-get install chromium` (.ci/run does) or set CHROMIUM")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        await browser.close()
