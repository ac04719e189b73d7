"""Name -> object tables that plugins fill, with errors that list what exists and the closest match.

Plugins contribute rewards, rollout backends, loggers and task sources by name. A lookup of a name that
nobody registered is the most common user error, so :class:`UnknownNameError` says what was asked for,
what exists, the closest spelling, and which plugins failed to load (their contribution may be the one
missing).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


def plural(kind: str) -> str:
    """``"reward"`` -> ``"rewards"``, ``"sandbox"`` -> ``"sandboxes"``."""
    return kind + ("es" if kind.endswith(("s", "x", "ch", "sh")) else "s")


class UnknownNameError(KeyError, ValueError):
    """A lookup of a name nobody registered (a KeyError for registries, a ValueError for bad config)."""

    def __init__(self, kind: str, name: str, known: list[str], failed_plugins: Mapping[str, str] | None = None):
        self.kind, self.name, self.known = kind, name, sorted(known)
        msg = f"unknown {kind} {name!r}. Known {plural(kind)}: {', '.join(self.known) or '(none)'}."
        close = difflib.get_close_matches(name, self.known, n=1)
        if close:
            msg += f" Did you mean {close[0]!r}?"
        for plugin, reason in (failed_plugins or {}).items():
            msg += f"\nNote: plugin {plugin!r} failed to load and registered nothing: {reason}"
        self.message = msg
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


def pick(table: Mapping[str, T], name: str, kind: str) -> T:
    """``table[name]``, or an :class:`UnknownNameError` listing the known names and the closest one.

    For the small fixed tables of variants (advantage estimators, loss aggregations, LR schedules) that a
    config chooses from by name.
    """
    try:
        return table[name]
    except KeyError:
        raise UnknownNameError(kind, name, list(table)) from None


@dataclass
class Entry(Generic[T]):
    """One registered object and the plugin that contributed it."""

    name: str
    obj: T
    plugin: str
    description: str = ""


@dataclass
class Registry(Generic[T]):
    """A table of named contributions of one kind (``kind`` is used in error messages)."""

    kind: str
    entries: dict[str, Entry[T]] = field(default_factory=dict)
    failed_plugins: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, obj: T, *, plugin: str, description: str = "") -> None:
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r} from plugin {plugin!r}")
        if name in self.entries and self.entries[name].plugin != plugin:
            raise ValueError(
                f"{self.kind} {name!r} is registered twice: by {self.entries[name].plugin!r} and by {plugin!r}; "
                "rename one of them"
            )
        self.entries[name] = Entry(name, obj, plugin, description)

    def get(self, name: str) -> T:
        try:
            return self.entries[name].obj
        except KeyError:
            raise UnknownNameError(self.kind, name, list(self.entries), self.failed_plugins) from None

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.entries))

    def __len__(self) -> int:
        return len(self.entries)
