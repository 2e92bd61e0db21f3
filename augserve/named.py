"""Things steps read by name from their spec (sound sets, table statistics): registered in process, or
declared by a server and read the first time a step needs them. A spec stays plain data on the wire."""

from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

from augserve.spec import did_you_mean, shown

Item = TypeVar("Item")


class Named(Generic[Item]):
    """A registry of one kind of thing by name; ``how`` tells a user how to make one (for the refusal)."""

    def __init__(self, kind: str, how: str):
        self.kind, self.how = kind, how
        self._items: dict[str, Item | Callable[[], Item]] = {}
        self._ready: set[str] = set()
        self._loading: dict[str, threading.Lock] = {}  # one per declared name: a load blocks only its askers
        self._lock = threading.Lock()  # held for dictionary reads and writes only, never for a load

    def put(self, name: str, item: Item) -> Item:
        """Make ``item`` the one called ``name`` (replacing one of that name)."""
        with self._lock:
            self._items[name] = item
            self._ready.add(name)
        return item

    def declare(self, name: str, load: Callable[[], Item]) -> None:
        """Name one that ``load`` makes the first time it is asked for."""
        with self._lock:
            self._items[name] = load
            self._ready.discard(name)
            self._loading[name] = threading.Lock()

    def known(self, name: str) -> bool:
        with self._lock:
            return name in self._items

    def unknown_message(self, name: str) -> str:
        """Why ``name`` is not one, and what is."""
        with self._lock:
            names = sorted(self._items)
        return (f"no {self.kind} named {shown(name)}{did_you_mean(name, names)} (known: {', '.join(names) or 'none'}; "
                f"{self.how})")

    def get(self, name: str) -> Item:
        """The one called ``name``, made now if it was only declared (once: a second asker waits for the first,
        and nobody else waits); KeyError if none."""
        with self._lock:
            if name not in self._items:
                raise KeyError(name)
            if name in self._ready:
                return self._items[name]
            loading = self._loading[name]
        with loading:
            with self._lock:
                if name in self._ready:
                    return self._items[name]
                load = self._items[name]
            item = load()
            with self._lock:
                if self._items.get(name) is load:  # not replaced meanwhile
                    self._items[name] = item
                    self._ready.add(name)
            return item
