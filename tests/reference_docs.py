"""The reference pages made from the code itself, so that they cannot drift from it: `docs/configuration.md` from the
core settings class, `docs/cli.md` from the command-line app, and in each channel's page (`docs/channels/<name>.md`)
its settings and commands, between two markers. `test_docs` checks that the committed pages are current;
`scripts/reference-docs` writes them again (`python -m tests.reference_docs`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from pydantic_core import PydanticUndefined

from approval_server.channels.plugin import AnyPlugin, channel_plugins
from approval_server.config import Settings, SettingsSection
from approval_server.entry.cli import app

REPO = Path(__file__).resolve().parent.parent
CONFIGURATION = REPO / "docs" / "configuration.md"
CLI = REPO / "docs" / "cli.md"
CHANNELS = REPO / "docs" / "channels"
BEGIN = "<!-- reference: made by scripts/reference-docs from the channel's code; do not edit -->"
END = "<!-- end of reference -->"

CONFIGURATION_HEAD = """# Configuration

The server's settings come from the environment or a `.env` file in the directory it is started in (`--env-file`
for another; see `.env.example`). A bad value stops the server at start-up with a message naming it (exit code 2).
The commands that act for an agent or an approver (`hook`, `stdio`, `requests`, `approve`, …) never read `./.env`:
they use `--url`, `--env-file`, the environment (not for `hook` and `stdio`, whose environment a project can set) and
`~/.config/approval-server/client.env` (`$XDG_CONFIG_HOME`; `APPROVAL_URL`, the tokens, `APPROVAL_DATA_DIR`), which
they refuse if another user could have written it.

This page is made from the settings class (`scripts/reference-docs`), so it names every core setting there is. Each
channel's own settings are on its page in [channels/](channels/), made the same way.

"""
TABLE_HEAD = """| Setting | Default | What it does |
|---|---|---|
"""

CLI_HEAD = """# Commands

Every command of `approval-server`, as `approval-server COMMAND -h` shows it. This page is made from the command-line
app itself (`scripts/reference-docs`).
"""


CHANNEL_COMMANDS = "Each channel's own commands (`setup <channel>`, …) are on its page in [channels/](channels/)."


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


def _table(section: type[SettingsSection]) -> str:
    rows = [
        f"| `{name.upper()}` | {_default(field)} | {_cell(field.description or '')} |"
        for name, field in section.model_fields.items()
    ]
    return TABLE_HEAD + "\n".join(rows) + "\n"


def configuration() -> str:
    return CONFIGURATION_HEAD + _table(Settings)


def _channel_app(plugin: AnyPlugin) -> typer.Typer:
    """An app holding only `plugin`'s commands, as it adds them to the real one."""
    channel_app, setup = typer.Typer(), typer.Typer()
    plugin.commands(channel_app, setup)
    channel_app.add_typer(setup, name="setup")
    return channel_app


def _channel_commands() -> set[str]:
    """The commands the channels add, as `setup whatsapp`: each is told on its channel's page, not in cli.md."""
    found = set()
    for plugin in channel_plugins().values():
        root = typer.main.get_command(_channel_app(plugin))
        context = root.make_context("approval-server", [], resilient_parsing=True)
        found |= {" ".join(path) for path, _ in _commands(root, [], context)}
    return found


def _commands(command: Any, path: list[str], context: Any) -> Iterator[tuple[list[str], Any]]:
    if hasattr(command, "list_commands"):
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is not None and not sub.hidden:
                yield from _commands(sub, [*path, name], context)
    else:
        yield path, command


def _command_pages(typer_app: typer.Typer, head: str, level: str, skip: set[str]) -> str:
    root = typer.main.get_command(typer_app)
    context = root.make_context("approval-server", [], resilient_parsing=True)
    sections = [head] if head else []
    for path, command in _commands(root, [], context):
        name = " ".join(path)
        if name in skip:
            continue
        usage = " ".join(command.collect_usage_pieces(context))
        lines = [f"{level} `approval-server {name}`", "", f"`approval-server {name} {usage}`", ""]
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


def cli() -> str:
    skip = _channel_commands()
    head = f"{CLI_HEAD}\n{CHANNEL_COMMANDS}\n"
    return _command_pages(app, head, "##", skip)


def channel_reference(plugin: AnyPlugin) -> str:
    """The block of `plugin`'s page between the markers: its settings, then its commands."""
    commands = _command_pages(_channel_app(plugin), "", "###", set())
    return f"{BEGIN}\n## Settings\n\n{_table(plugin.section)}\n## Commands\n\n{commands}{END}"


def channel_page(plugin: AnyPlugin) -> tuple[Path, str, str]:
    """`plugin`'s page, its text now, and its text with the reference block as the code makes it (appended when the
    page has no block yet)."""
    page = CHANNELS / f"{plugin.name}.md"
    text = page.read_text() if page.exists() else f"# {plugin.title}\n"
    block = channel_reference(plugin)
    if BEGIN in text and END in text:
        made = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        made = text.rstrip("\n") + "\n\n" + block + "\n"
    return page, text, made


def main() -> None:
    CONFIGURATION.write_text(configuration())
    CLI.write_text(cli())
    written = [CONFIGURATION, CLI]
    for plugin in channel_plugins().values():
        page, _, made = channel_page(plugin)
        page.write_text(made)
        written.append(page)
    print("wrote " + ", ".join(str(path.relative_to(REPO)) for path in written))


if __name__ == "__main__":
    main()
