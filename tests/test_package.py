"""approval-server is a real Python package: the wheel holds everything its commands need (the dashboard's templates
and static files, the migrations, the default WhatsApp template, the licence), and once installed with `uv tool
install` or with pip, the command works from an empty directory with a fresh HOME: `--version`, `-h`, `serve` (until
/healthz answers), `doctor` against it, `setup-template --help`.

The wheel is built with `uv build` and installed with the locked versions of its dependencies, from uv's cache when
they are there (`--offline`), else from the package index.
"""

from __future__ import annotations

import email
import json
import os
import shutil
import signal
import subprocess
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.support import REPO, free_port

PACKAGE = REPO / "src" / "approval_server"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
VERSION = PROJECT["version"]
URL = "https://github.com/approval-server/approval-server"


def uv(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`uv <command> --offline …`, then without `--offline` if what it needs is not in uv's cache."""
    executable = shutil.which("uv")
    if executable is None:
        pytest.fail("uv is not on PATH (scripts/uv.sh installs it)")
    command, *rest = (str(arg) for arg in args)
    environment = {**os.environ, **(env or {})}
    for offline in (["--offline"], []):
        result = subprocess.run(
            [executable, command, *offline, *rest],
            cwd=cwd,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode == 0:
            return result
    raise AssertionError(f"uv {command} failed:\n{result.stderr}")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    uv("build", "--wheel", "--out-dir", out, REPO, cwd=out)
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def constraints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The locked versions of the dependencies, so that the installed package runs what the tests ran."""
    path = tmp_path_factory.mktemp("lock") / "constraints.txt"
    uv("export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "--output-file", path, cwd=REPO)
    return path


def test_the_wheel_holds_what_the_commands_need_and_its_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = f"approval_server-{VERSION}.dist-info"
        metadata = email.message_from_bytes(archive.read(f"{dist_info}/METADATA"))
        licence = archive.read(f"{dist_info}/licenses/LICENSE").decode()
        template = json.loads(archive.read("approval_server/channels/whatsapp/template_config.json"))
    for folder in ("entry/templates", "entry/static", "store/migrations"):
        files = {
            f"approval_server/{path.relative_to(PACKAGE)}"
            for path in (PACKAGE / folder).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        }
        assert files, folder
        assert files <= names, f"missing from the wheel: {sorted(files - names)}"
    assert template == json.loads((REPO / "template_config.json").read_text())
    assert licence.startswith("MIT License\n\nCopyright (c) 2026 approval-server contributors\n")
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Author"] == "approval-server contributors"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata["Keywords"]
    urls = dict(value.split(", ", 1) for value in metadata.get_all("Project-URL", []))
    assert urls["Repository"] == URL
    assert urls["Issues"] == f"{URL}/issues"
    classifiers = metadata.get_all("Classifier", [])
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert metadata["Requires-Python"] == ">=3.11"


@pytest.fixture(params=["uv tool install", "pip install"])
def installed(request: pytest.FixtureRequest, wheel: Path, constraints: Path, tmp_path: Path) -> Path:
    """The `approval-server` command, installed from the wheel one way or the other, outside the repository."""
    if request.param == "uv tool install":
        tools = {"UV_TOOL_DIR": str(tmp_path / "tools"), "UV_TOOL_BIN_DIR": str(tmp_path / "bin")}
        uv("tool", "install", "--constraints", constraints, wheel, cwd=tmp_path, env=tools)
        return tmp_path / "bin" / "approval-server"
    # pip installs the wheel itself and checks that the dependencies it declares are met; these come from uv's cache
    # (pip has none), at their locked versions.
    venv = tmp_path / "venv"
    uv("venv", "--seed", "--clear", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    uv("pip", "install", "--python", python, "--requirements", constraints, cwd=tmp_path)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--no-index", "--no-deps", str(wheel)], check=True, capture_output=True)
    checked = subprocess.run([*pip, "check"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout
    return venv / "bin" / "approval-server"


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[Path]:
    """An empty working directory, left as empty by every command."""
    path = tmp_path / "empty"
    path.mkdir()
    yield path
    assert list(path.iterdir()) == []


def test_the_installed_command_serves_from_an_empty_directory(installed: Path, empty: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "SERVER_PORT": str(port)}
    log = tmp_path / "serve.log"

    def start(*args: str, output: IO[bytes] | int = subprocess.PIPE) -> subprocess.Popen[bytes]:
        return subprocess.Popen([str(installed), *args], cwd=empty, env=env, stdout=output, stderr=output)

    def finish(process: subprocess.Popen[bytes]) -> tuple[int, str]:
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr.decode()
        return process.returncode, stdout.decode()

    # One after the other: the first one run writes the bytecode the others then read.
    assert finish(start("--version")) == (0, f"approval-server {VERSION}\n")
    _, text = finish(start("-h"))
    assert "Usage: approval-server [OPTIONS] COMMAND" in text
    assert "setup-template" in text
    assert "--config" in finish(start("setup-template", "--help"))[1]

    with log.open("wb") as output:
        server = start("serve", output=output)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"no answer on /healthz within 60 s:\n{log.read_text()}"
            time.sleep(0.1)
        _, doctor = finish(start("doctor"))
        assert f"ok    server is running at http://127.0.0.1:{port}" in doctor
        assert "All checks passed." in doctor
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(15)
    assert "Traceback" not in log.read_text()
    assert "Finished server process" in log.read_text()  # stopped cleanly
    assert (home / ".local" / "share" / "approval-server" / "approval.db").is_file()
