"""The Relay ``Node`` interface (``Query.node(id:)`` resolves it, in ``query.py``)."""

from __future__ import annotations

import strawberry

__all__ = ["Node"]


@strawberry.interface(description="An object with an opaque global ID (Relay).")
class Node:
    id: strawberry.ID
