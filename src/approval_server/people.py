"""The approvers, as people: each has a name and an identity on each channel that reaches them.

`people.toml` (or `PEOPLE_FILE`) lists them:

    [[person]]
    name = "alice"
    whatsapp = "+14155552671"
    telegram = "123456789"

Every key but `name` is a channel's name, and that channel says what an identity on it is (`Parse`): the file is
checked as a whole when the server starts, and a mistake is one readable `ConfigError` naming the file, the person
and the key. A channel's older settings may name people too (`APPROVAL_PHONE`): each such identity that no named
person has is one person, named by that identity.

Only these people count: an answer that arrives on a channel is taken as its person's, found by the identity the
channel saw (`by_identity`), and recorded under that person's name, whatever channel it came through.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from approval_server.errors import ConfigError

# A name is shown to other people and written in the audit trail: plain letters, digits and a few marks, so that no
# name can look like another or carry control or bidirectional characters. `+` lets a phone number be a name.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._+@-]{0,39}")
# Names the record already gives to someone else: whoever signs in with the dashboard token, and the server itself.
RESERVED = ("owner", "approval-server")

Parse = Callable[[object], str]
"""A channel's reading of a person's identity on it: the identity, normalised, or a `ValueError` saying why not."""


@dataclass(frozen=True)
class Person:
    name: str
    identities: Mapping[str, str] = field(default_factory=dict)

    def on(self, channel: str) -> str | None:
        """This person's identity on `channel`, or None when that channel does not reach them."""
        return self.identities.get(channel)


class People:
    """Everyone who may decide, looked up by name or by an identity on a channel."""

    def __init__(self, people: Iterable[Person] = ()) -> None:
        self._people = list(people)
        self._named = {person.name: person for person in self._people}
        self._identities = {
            (channel, identity): person for person in self._people for channel, identity in person.identities.items()
        }

    def __iter__(self) -> Iterator[Person]:
        return iter(self._people)

    def __len__(self) -> int:
        return len(self._people)

    def named(self, name: str) -> Person | None:
        return self._named.get(name)

    def by_identity(self, channel: str, identity: str) -> Person | None:
        """The person whose identity on `channel` is `identity`: the only way an answer on a channel counts."""
        return self._identities.get((channel, identity))

    def on(self, channel: str) -> list[tuple[Person, str]]:
        """The people `channel` reaches, each with their identity on it, in the order they are configured."""
        return [(person, identity) for person in self._people if (identity := person.on(channel)) is not None]


def _person(entry: object, where: str, channels: Mapping[str, Parse]) -> Person:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: each [[person]] is a table with a name and identities")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: name = {name!r} is not a name: 1 to 40 letters, digits, spaces or . _ + @ - (ASCII), starting "
            "with a letter or digit"
        )
    if name.lower() in RESERVED:
        raise ConfigError(
            f"{where}: name = {name!r} is the name the record gives to "
            + ("whoever signs in with the dashboard token" if name.lower() == "owner" else "the server itself")
            + "; choose another"
        )
    identities: dict[str, str] = {}
    for key, value in entry.items():
        if key == "name":
            continue
        parse = channels.get(key)
        if parse is None:
            known = ", ".join(sorted(channels)) or "none"
            raise ConfigError(f"{where} ({name}): {key} is not a channel (the channels are {known})")
        try:
            identities[key] = parse(value)
        except ValueError as exc:
            raise ConfigError(f"{where} ({name}): {key}: {exc}") from None
    return Person(name, identities)


def load_people(
    path: Path | None, channels: Mapping[str, Parse], unnamed: Mapping[str, Iterable[str]] | None = None
) -> People:
    """The people in `path` (None: nobody named), then one person per identity in `unnamed` (channel → identities,
    from that channel's own settings) that no named person has. Raises `ConfigError`: a file that does not parse, a
    bad name or identity, a name given twice, an identity given to two people."""
    people: list[Person] = []
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} cannot be read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        unknown = sorted(set(data) - {"person"})
        if unknown:
            raise ConfigError(f"{path}: {', '.join(unknown)} is not a section of a people file (only [[person]])")
        entries = data.get("person", [])
        if not isinstance(entries, list):
            raise ConfigError(f"{path}: person must be a list of tables, written [[person]]")
        people = [_person(entry, f"{path}, person {number}", channels) for number, entry in enumerate(entries, 1)]
    owners: dict[tuple[str, str], str] = {}
    names: set[str] = set()
    for person in people:
        if person.name in names:
            raise ConfigError(f"{path}: the name {person.name} is given to two people")
        names.add(person.name)
        for key in person.identities.items():
            if key in owners:
                raise ConfigError(f"{path}: {key[0]} {key[1]} is given to both {owners[key]} and {person.name}")
            owners[key] = person.name
    for channel, identities in (unnamed or {}).items():
        for identity in identities:
            if (channel, identity) not in owners and identity not in names:
                owners[(channel, identity)] = identity
                names.add(identity)
                people.append(Person(identity, {channel: identity}))
    return People(people)
