"""An agent's hook command run as the agent runs it: the command line `connect` wrote, through `/bin/sh -c`, with
the hook's JSON on stdin, a bare PATH and the user's HOME; and a human answering the request it opens."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support import ServerProcess, wait_for_pending

BARE_PATH = "/usr/bin:/bin"


def run_hook(command: str, payload: Any, home: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", command],
        input=payload if isinstance(payload, str) else json.dumps(payload),
        env={"PATH": BARE_PATH, "HOME": str(home)},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def hook_answered(
    server: ServerProcess, command: str, payload: Any, home: Path, body: dict[str, Any], api_token: str
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """Run the hook, answer the request it opens with `body` through the API; the request and the hook's run."""
    running = asyncio.create_task(asyncio.to_thread(run_hook, command, payload, home))
    async with server.api(api_token) as api:
        pending = await wait_for_pending(api, within=20)
        response = await api.post(f"/api/requests/{pending['id']}/decision", json=body)
        assert response.status_code == 200, response.text
    return pending, await running
