"""The README, run as written: every shell command and JSON block of its "Quick start" and "Connect Claude Code"
sections, in a fresh copy of the repository with a scratch HOME, the `claude` lines against the tests' fake model
API, and a request approved as a newcomer would approve it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.e2e.claude_cli import run_claude_async
from tests.e2e.fake_anthropic import FakeAnthropic, tool_use
from tests.support import REPO, free_port, wait_for_pending

MakeFake = Callable[..., FakeAnthropic]
pytestmark = pytest.mark.usefixtures("require_claude")

# What the test does not run, and why: each is run elsewhere.
NOT_RUN = {
    "./scripts/test": "the suite this test is part of",
    "uv tool install git+https://github.com/approval-server/approval-server": (
        "needs GitHub; tests/test_package.py installs the same package with uv tool install"
    ),
}


def section(readme: str, title: str) -> str:
    return readme.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def blocks(text: str, language: str) -> list[str]:
    return [block.strip() for block in re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)]


def commands(text: str) -> list[str]:
    """Each command of the shell blocks, comments and continuation lines taken care of."""
    found = []
    for block in blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split(" #", 1)[0].strip()
            if command and not command.startswith("#"):
                found.append(command)
    return found


def fresh_copy(destination: Path) -> Path:
    """The repository's files as a clone has them (what git tracks or would track), without any build output."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_symlink() or source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)
    return destination


@pytest.fixture
def newcomer(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A fresh copy, and the environment of the user's shell with a scratch HOME: the machine's own settings (its
    certificates, proxies, uv's download cache) but none of approval-server's or of the test run's."""
    home = tmp_path / "home"
    home.mkdir()
    cache = os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv")
    ours = ("APPROVAL_", "SERVER_", "TWILIO_", "DATABASE_URL", "PUBLIC_URL", "POLICY_FILE", "XDG_", "VIRTUAL_ENV")
    env = {name: value for name, value in os.environ.items() if not name.startswith(ours)}
    return fresh_copy(tmp_path / "approval-server"), env | {"HOME": str(home), "UV_CACHE_DIR": cache}


def run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def wait_for_health(url: str, server: subprocess.Popen[str], log: Path, within: float = 240) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the server stopped: {log.read_text()}"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no server at {url} within {within} s: {log.read_text()}")


async def test_the_quick_start_and_connect_sections_run_as_written(
    newcomer: tuple[Path, dict[str, str]], tmp_path: Path, work_dir: Path, fake_anthropic: MakeFake
) -> None:
    readme = (REPO / "README.md").read_text()
    quick_start, connect = section(readme, "Quick start"), section(readme, "Connect Claude Code")
    clone, env = newcomer
    assert not blocks(quick_start + connect, "json")  # none today; a JSON block would be parsed and compared here
    first, *rest = commands(quick_start)
    assert first == "./scripts/serve"
    assert set(rest) == set(NOT_RUN)

    # Started as written, on a port of the test's own: the README says --port is remembered by every command.
    # The first run installs; a port is only taken once the server starts, so it is chosen then (a port chosen
    # before a long install may be another test's by the time the server binds it).
    installed = await asyncio.to_thread(run, f"{first} --help", clone, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    port, log = free_port(), tmp_path / "serve.log"
    with log.open("w") as output:
        await run_newcomer(first, connect, clone, env, port, log, output, tmp_path, work_dir, fake_anthropic)


async def run_newcomer(
    first: str,
    connect: str,
    clone: Path,
    env: dict[str, str],
    port: int,
    log: Path,
    output: IO[str],
    tmp_path: Path,
    work_dir: Path,
    fake_anthropic: MakeFake,
) -> None:
    """The server as the README starts it, then the connect section's commands, then the server stopped."""
    server = await asyncio.to_thread(
        subprocess.Popen,
        f"{first} --port {port}",
        shell=True,
        cwd=clone,
        env=env,
        text=True,
        start_new_session=True,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        await asyncio.to_thread(wait_for_health, f"http://127.0.0.1:{port}", server, log)
        connect_command, *claude_lines = commands(connect)
        connected = await asyncio.to_thread(run, connect_command, clone, env)
        assert connected.returncode == 0, connected.stdout + connected.stderr
        # The README's `claude` lines are the ones `connect` prints, word for word (the shell expands ~).
        home = env["HOME"]
        readme_lines = [[word.replace("~", home, 1) for word in shlex.split(line)] for line in claude_lines]
        printed = [shlex.split(line) for line in connected.stdout.splitlines() if line.strip().startswith("claude ")]
        assert readme_lines == printed, connected.stdout
        api_token = (Path(env["HOME"]) / ".local/share/approval-server/api-token").read_text().strip()
        for number, line in enumerate(claude_lines):
            marker = tmp_path / f"approved-{number}"
            fake = fake_anthropic(
                [[tool_use("Bash", {"command": f"echo ok > {marker}", "description": "x"}, id=f"toolu_{number}")]]
            )
            words = readme_lines[number]
            assert words[0] == "claude"
            args = words[3:] if words[1] == "-p" else words[1:]  # the harness gives its own prompt with -p
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {api_token}"}
            ) as api:
                claude = asyncio.create_task(
                    run_claude_async(
                        "write the marker",
                        base_url=fake.base_url,
                        cwd=work_dir,
                        mcp_config=None,
                        permission_tool=None,
                        extra_args=args,
                        extra_env={"HOME": env["HOME"], "PATH": "/usr/bin:/bin"},
                        run_dir=tmp_path / f"run-{number}",
                        timeout=180,
                    )
                )
                pending = await wait_for_pending(api, {"tool_name": "Bash"}, within=120)
                decided = await api.post(
                    f"/api/requests/{pending['id']}/decision", json={"decision": "allow", "actor": "newcomer"}
                )
                result = await claude
            assert decided.status_code == 200, decided.text
            assert result.returncode == 0, result.describe()
            assert marker.read_text() == "ok\n", line
        doctor = await asyncio.to_thread(run, connect_command.replace("connect claude-code", "doctor"), clone, env)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    finally:
        with contextlib.suppress(ProcessLookupError):  # unless it stopped by itself
            os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
