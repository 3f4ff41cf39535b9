"""Domain objects made from database rows.

``from_row`` makes one, ``maybe`` one from a loader's answer that may be None (no such row, or not
yours to see: the same), ``many`` a list.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Self

from asyncpg import Record

__all__ = ["FromRow"]


class FromRow:
    @classmethod
    def from_row(cls, row: Record) -> Self:
        raise NotImplementedError

    @classmethod
    def maybe(cls, row: Record | None) -> Self | None:
        return cls.from_row(row) if row is not None else None

    @classmethod
    def many(cls, rows: Iterable[Any]) -> list[Self]:
        return [cls.from_row(row) for row in rows]
