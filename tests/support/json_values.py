"""What a JSON answer holds, read as a whole: a leak test looks for a foreign id anywhere in it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def all_strings(value: Any) -> Iterator[str]:
    """Every string anywhere in a JSON value (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from all_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from all_strings(item)
