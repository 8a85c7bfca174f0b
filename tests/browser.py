"""Test support for the dashboard in a real browser: Debian's chromium, driven by Playwright.

`.ci/run` installs chromium with apt-get; Playwright's own browser download is never used. Screenshots go to the
test artefacts folder (`TEST_ARTIFACTS`, default `test-artifacts/` in the repository) for a human to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.support import REPO

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]
DASHBOARD_TOKEN = "test-dashboard-token-0123456789"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str | None:
    """The system chromium (Debian's package), or None."""
    configured = os.environ.get("CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def artifacts_dir() -> Path:
    path = Path(os.environ.get("TEST_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path
