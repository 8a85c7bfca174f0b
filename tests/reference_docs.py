"""The reference pages made from the code itself, so that they cannot drift from it: `docs/configuration.md` from the
settings class, `docs/cli.md` from the command-line app. `test_docs` checks that the committed pages are current;
`scripts/reference-docs` writes them again (`python -m tests.reference_docs`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from pydantic_core import PydanticUndefined

from approval_server.cli import app
from approval_server.config import Settings

REPO = Path(__file__).resolve().parent.parent
CONFIGURATION = REPO / "docs" / "configuration.md"
CLI = REPO / "docs" / "cli.md"

CONFIGURATION_HEAD = """# Configuration

The server's settings come from the environment or a `.env` file in the directory it is started in (`--env-file`
for another; see `.env.example`). A bad value stops the server at start-up with a message naming it (exit code 2).
The commands that act for an agent or an approver (`hook`, `stdio`, `requests`, `approve`, …) never read `./.env`:
they use `--url`, `--env-file`, the environment (not for `hook` and `stdio`, whose environment a project can set) and
`~/.config/approval-server/client.env` (`$XDG_CONFIG_HOME`; `APPROVAL_URL`, the tokens, `APPROVAL_DATA_DIR`), which
they refuse if another user could have written it.

This page is made from the settings class (`scripts/reference-docs`), so it names every setting there is.

| Setting | Default | What it does |
|---|---|---|
"""

CLI_HEAD = """# Commands

Every command of `approval-server`, as `approval-server COMMAND -h` shows it. This page is made from the command-line
app itself (`scripts/reference-docs`).
"""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(field: Any) -> str:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "shown_default" in extra:  # a default that depends on the machine, in words
        return str(extra["shown_default"])
    if field.default_factory is not None:
        return "none" if field.default_factory() == [] else "generated"
    if field.default is PydanticUndefined or field.default is None or field.default == "":
        return "unset"
    if isinstance(field.default, float):
        return f"`{field.default:g}`"
    value = field.default if isinstance(field.default, str) else json.dumps(field.default)
    return f"`{value}`"


def configuration() -> str:
    rows = []
    for name, field in Settings.model_fields.items():
        rows.append(f"| `{name.upper()}` | {_default(field)} | {_cell(field.description or '')} |")
    return CONFIGURATION_HEAD + "\n".join(rows) + "\n"


def _commands(command: Any, path: list[str], context: Any) -> Iterator[tuple[list[str], Any]]:
    if hasattr(command, "list_commands"):
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is not None and not sub.hidden:
                yield from _commands(sub, [*path, name], context)
    else:
        yield path, command


def cli() -> str:
    root = typer.main.get_command(app)
    context = root.make_context("approval-server", [], resilient_parsing=True)
    sections = [CLI_HEAD]
    for path, command in _commands(root, [], context):
        name = " ".join(path)
        usage = " ".join(command.collect_usage_pieces(context))
        lines = [f"## `approval-server {name}`", "", f"`approval-server {name} {usage}`", ""]
        if command.help:
            lines += [" ".join(command.help.split("\n\n")[0].split()), ""]
        options = []
        for param in command.params:
            record = param.get_help_record(context)
            if record is not None:
                options.append(f"- `{record[0]}`: {_cell(record[1])}" if record[1] else f"- `{record[0]}`")
        lines += [*options, ""] if options else []
        sections.append("\n".join(lines))
    return "\n".join(sections).rstrip() + "\n"


def main() -> None:
    CONFIGURATION.write_text(configuration())
    CLI.write_text(cli())
    print(f"wrote {CONFIGURATION.relative_to(REPO)} and {CLI.relative_to(REPO)}")


if __name__ == "__main__":
    main()
