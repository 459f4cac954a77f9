"""One generic registry for named components (methods, metrics, trackers, executors, ...).

An entry is the component itself, or a ``"module:attribute"`` string for a built-in whose module
is heavy to import (the Slurm executor imports submitit): :meth:`Registry.load` imports it on use.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

T = TypeVar("T")
_ALL: list[Registry] = []


class Registry(Generic[T]):
    """Maps names to objects; an unknown name raises ``KeyError`` listing what is registered."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        _ALL.append(self)

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = item
            return item

        return add

    def __getitem__(self, name: str) -> T:
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise KeyError(f"unknown {self.kind} '{name}'.{hint} Registered: {', '.join(sorted(self._items))}")
        return self._items[name]

    def load(self, name: str) -> T:
        """The component registered as ``name``, importing it first when it was registered by path."""
        item = self[name]
        if isinstance(item, str) and ":" in item:
            import importlib

            module, attr = item.split(":", 1)
            item = getattr(importlib.import_module(module), attr)
        return item

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def order(self) -> list[str]:
        """Registered names in the order they were registered."""
        return list(self._items)


def registered() -> tuple:
    """What every registry holds now, as a hashable key: config defaults drawn from a registry
    (the default metric list) are cached per state, so a plugin registered later is seen."""
    return tuple((r.kind, tuple(r._items)) for r in _ALL)
