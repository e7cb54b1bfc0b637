"""A named registry: components register themselves by decorator and are looked up by config string.

Families, losses, penalties, metric suites and data sources all use this, so the training loop never branches on
names (no `if family == ...` chains) and a new component is one file plus its registration.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownComponentError(KeyError):
    """Raised when a config names a component nobody registered. `kind` is the registry's name (a spec path)."""

    kind: str = ""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str, declared: "Registry[Any] | None" = None, home: str = "trainers/catalog.py") -> None:
        """`declared`: the torch-free list of names (in the file `home`) that implementations must come from."""
        self.kind = kind
        self.declared = declared
        self.home = home
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        if self.declared is not None and name not in self.declared:
            raise ValueError(f"{self.kind} {name!r} is not declared in {self.home}")

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._items, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            error = UnknownComponentError(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._items))})")
            error.kind = self.kind
            raise error from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
