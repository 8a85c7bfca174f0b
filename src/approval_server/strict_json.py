"""JSON as RFC 8259 defines it, for everything that enters from outside: no `NaN`, no `Infinity`, no number too large
for a float (`1e400`), no string that is not Unicode (a lone surrogate such as `"\\ud800"`).

Python's `json` accepts all four (it reads `1e400` as `inf`), and pydantic, which FastMCP uses for MCP messages, does
likewise. None of them can be written back as JSON: one such value in a tool call made every answer that carries it
fail (the API's listing, the agent's allow). So every entry point reads JSON with `loads`, or checks what another
library parsed with `problem`, before the broker sees it, and treats a hit as a malformed request.
"""

from __future__ import annotations

import json
import math
from typing import Any


class NotJSON(ValueError):
    """A value that JSON cannot carry; `str(exc)` says which and where."""


def loads(text: str | bytes) -> Any:
    """Parse `text` strictly. Raises `NotJSON` (saying where), `json.JSONDecodeError` or `UnicodeDecodeError` (all
    `ValueError`), or `RecursionError` for nesting too deep."""
    value = json.loads(text)  # reads NaN and Infinity as floats, and 1e400 as inf: `problem` finds them with a path
    where = problem(value)
    if where is not None:
        raise NotJSON(where)
    return value


def problem(value: Any, path: str = "") -> str | None:
    """Where `value` (already parsed) holds something JSON cannot carry, in words; None if nothing does.

    Iterative, so that a deeply nested value cannot exhaust the stack."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return f"{_shown(where)}: {item!r} is not a JSON number (NaN and Infinity are not JSON)"
        if isinstance(item, str) and not _is_unicode(item):
            return f"{_shown(where)}: the string holds a lone surrogate, which is not Unicode"
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and not _is_unicode(key):
                    return f"{_shown(where)}: a key holds a lone surrogate, which is not Unicode"
                stack.append((f"{where}.{key}" if where else str(key), child))
        elif isinstance(item, list | tuple):
            stack.extend((f"{where}[{index}]", child) for index, child in enumerate(item))
    return None


def _shown(where: str) -> str:
    """The path for a message: never empty, never long, and itself encodable (a key may hold a lone surrogate)."""
    text = (where or "the value").encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= 120 else text[:119] + "…"


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
