"""Plug-ins by name: one small registry class for networks, objectives, metrics, output formats
and app tabs, so adding one is writing it (plus a decorator), and every list of choices comes from
the registry's keys.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from core.errors import UserError, quote

T = TypeVar("T")


class Registry(Generic[T]):
    """name -> plug-in, in registration order; an unknown name is a one-line error naming the choices."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: @REGISTRY.register("name") above a class or function."""
        def add(item: T) -> T:
            self.add(name, item)
            return item
        return add

    def add(self, name: str, item: T) -> T:
        if name in self._items and self._items[name] is not item:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    def __getitem__(self, name: object) -> T:
        if not isinstance(name, str) or name not in self._items:
            raise UserError(f"unknown {self.kind} {quote(name)}; choose one of: {', '.join(self._items) or 'none'}")
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())
