"""Test support for the dashboard in a real browser: Debian's chromium, driven by Playwright.

`.ci/run` installs chromium with apt-get; Playwright's own browser download is never used. Screenshots go to the
test artefacts folder (`TEST_ARTIFACTS`, default `test-artifacts/` in the repository) for a human to look at; those of
`DOC_IMAGES` are also the docs' pictures: `scripts/screenshots` runs their tests with `UPDATE_DOC_IMAGES=1`, which
copies them into `docs/images/`, so that no picture in the docs is made by hand or left to go stale.
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


# The docs' pictures (in docs/images/), each made by a browser test (see `shot`).
DOC_IMAGES = (
    "dashboard-desktop.png",
    "dashboard-phone.png",
    "grants.png",
    "display-390.png",
    "display-1280.png",
)


def shot(name: str) -> Path:
    """Where a test saves the screenshot `name`: the artefacts folder. Once saved, `to_docs` makes it a docs image."""
    return artifacts_dir() / name


def to_docs(saved: Path, image: str) -> None:
    """With UPDATE_DOC_IMAGES=1 (`scripts/screenshots`), copy a screenshot into docs/images/ as `image`."""
    assert image in DOC_IMAGES, image
    if os.environ.get("UPDATE_DOC_IMAGES"):
        shutil.copyfile(saved, REPO / "docs" / "images" / image)
