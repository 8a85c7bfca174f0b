"""Docs stay honest: every setting is documented, and the repo's example files are valid."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from approval_server.channels.plugin import channel_plugins
from approval_server.config import Settings
from tests.browser import DOC_IMAGES
from tests.reference_docs import channel_page, cli, configuration
from tests.support import REPO

SETTINGS = [name.upper() for name in Settings.model_fields]


@pytest.mark.parametrize("name", SETTINGS)
def test_every_setting_is_in_the_reference_and_env_example(name: str) -> None:
    assert f"`{name}`" in (REPO / "docs" / "configuration.md").read_text()
    assert name in (REPO / ".env.example").read_text()


def test_env_example_is_a_valid_configuration() -> None:
    settings = Settings(_env_file=REPO / ".env.example")  # type: ignore[call-arg]
    assert settings.server_port == 8000
    assert settings.approval_timeout_seconds == 300


def test_mcp_servers_json_points_claude_code_at_the_server() -> None:
    config = json.loads((REPO / "mcp-servers.json").read_text())["mcpServers"]["approval-server"]
    assert config["type"] == "http"
    assert config["url"].endswith("/mcp")
    assert config["headers"]["Authorization"] == "Bearer ${APPROVAL_MCP_TOKEN}"
    assert config["timeout"] > Settings.model_fields["approval_timeout_seconds"].default * 1000


def test_every_picture_in_the_docs_is_made_by_a_browser_test() -> None:
    """A picture in the docs is one a browser test takes (`scripts/screenshots` makes them again), never one drawn by
    hand that would go stale; and every one it makes is shown somewhere."""
    texts = [(REPO / "README.md").read_text()] + [page.read_text() for page in (REPO / "docs").glob("*.md")]
    shown = {Path(link).name for text in texts for link in re.findall(r"(?:\]\(|src=\")([^)\"]+\.png)", text)}
    assert shown == set(DOC_IMAGES)
    assert {image.name for image in (REPO / "docs" / "images").iterdir()} == set(DOC_IMAGES)


@pytest.mark.parametrize(("page", "make"), [("configuration.md", configuration), ("cli.md", cli)])
def test_the_reference_pages_are_made_from_the_code(page: str, make: Callable[[], str]) -> None:
    """Run scripts/reference-docs after changing a setting or a command."""
    assert (REPO / "docs" / page).read_text() == make()


@pytest.mark.parametrize("channel", sorted(channel_plugins()))
def test_each_channel_has_a_page_with_its_settings_and_commands_made_from_its_code(channel: str) -> None:
    """Run scripts/reference-docs after changing a channel's settings or commands."""
    page, text, made = channel_page(channel_plugins()[channel])
    assert page.exists()
    assert text == made
