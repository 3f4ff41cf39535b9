"""The Relay ``Node`` interface and ``node(id:)``."""

from __future__ import annotations

import strawberry

__all__ = ["Node"]


@strawberry.interface(description="An object with an opaque global ID (Relay).")
class Node:
    id: strawberry.ID
