"""Which version of an agent runs a hook: read by the hook command from the package the agent was installed from.

No agent tells its hooks its version, so the hook command looks at the processes above it (the agent, or the
shell it started the hook through) and, from each program or script they run, up the folders for the first
`package.json` whose name is one of the agent's packages. It is shown to the approver and kept in the record, never
trusted for anything: a wrong or missing version changes no decision.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

ANCESTORS = 4  # the hook command, a shell or two, the agent


def _parent(pid: int) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])  # the name in parentheses may hold spaces
    return None


def _programs(pid: int) -> list[Path]:
    found: list[Path] = []
    with contextlib.suppress(OSError):
        found.append(Path(os.readlink(f"/proc/{pid}/exe")))
    with contextlib.suppress(OSError):
        for argument in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:3]:
            if argument.startswith(b"/"):
                found.append(Path(os.fsdecode(argument)))
    return found


def _version_near(program: Path, packages: tuple[str, ...]) -> str | None:
    with contextlib.suppress(OSError):
        program = program.resolve()
    for folder in program.parents:
        manifest = folder / "package.json"
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(manifest.read_text())
            if isinstance(data, dict) and data.get("name") in packages and isinstance(data.get("version"), str):
                return str(data["version"])[:32]
    return None


def running_version(packages: tuple[str, ...]) -> str | None:
    """The version of the first of `packages` found above this process, or None."""
    if not packages:
        return None
    pid: int | None = os.getpid()
    for _ in range(ANCESTORS):
        pid = _parent(pid) if pid else None
        if not pid or pid == 1:
            return None
        for program in _programs(pid):
            version = _version_near(program, packages)
            if version is not None:
                return version
    return None
