"""Name -> builder registries, one per kind of part (vision tower, projector, backbone, checkpoint format)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from qbench.inputs import UserError

T = TypeVar("T")


class UnknownName(KeyError, UserError):
    """A name that no registry entry matches; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownName(f"unknown {self.kind} {name!r}; choose from: {', '.join(self.names())}")
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)
