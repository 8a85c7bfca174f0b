"""The server's whole configuration, read once: the core settings, every channel's section, and the people.

The order matters: the channels' sections first (a channel's own settings may name people, `APPROVAL_PHONE`), then
the people file, each identity checked by its channel, then each channel's configuration, which may depend on who it
reaches. A mistake anywhere is a `ConfigError` naming the setting or the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from approval_server.channels.plugin import AnyPlugin, channel_plugins, sections
from approval_server.config import Settings, SettingsSection, load_section, load_settings
from approval_server.errors import ConfigError
from approval_server.people import People, load_people


@dataclass(frozen=True)
class Configured:
    """One channel as configured: `config` when it is on, None when it is off, `error` when it is half set up."""

    plugin: AnyPlugin
    config: Any = None
    error: ConfigError | None = None


@dataclass(frozen=True)
class Configuration:
    settings: Settings
    people: People
    channels: list[Configured] = field(default_factory=list)

    def on(self) -> list[Configured]:
        """The channels that are on. Raises the first half-configured channel's `ConfigError`."""
        for each in self.channels:
            if each.error is not None:
                raise each.error
        return [each for each in self.channels if each.config is not None]


def load_server_settings(env_file: Path | None, **overrides: Any) -> Settings:
    """The core settings of the server's `.env` (or the environment alone), knowing every channel's names."""
    return load_settings(env_file, sections(), **overrides)


def load_configuration(env_file: Path | None, **overrides: Any) -> Configuration:
    """Everything `serve` and `doctor` need. Raises `ConfigError` for the core settings, a channel's section that
    does not validate, or the people file; a channel half set up is kept as its `error` (see `Configuration.on`)."""
    settings = load_server_settings(env_file, **overrides)
    plugins = channel_plugins()
    others: list[type[SettingsSection]] = [Settings, *sections()]
    loaded = {name: load_section(plugin.section, env_file, others, warn=False) for name, plugin in plugins.items()}
    people = load_people(
        settings.people_path,
        {name: plugin.identity for name, plugin in plugins.items()},
        {name: plugin.unnamed(loaded[name]) for name, plugin in plugins.items()},
    )
    channels = []
    for name, plugin in plugins.items():
        try:
            channels.append(Configured(plugin, plugin.configure(loaded[name], settings, people)))
        except ConfigError as exc:
            channels.append(Configured(plugin, error=exc))
    return Configuration(settings, people, channels)
