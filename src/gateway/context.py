"""The request context: built once per authenticated request, frozen, dropped with it."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.changes import AccessChanges
from gateway.config import Settings
from gateway.identity import Principal
from gateway.ledger import Ledger
from gateway.loaders import Loaders
from gateway.media import PlaybackSigner

__all__ = ["RequestContext"]


@dataclass(frozen=True, slots=True)
class RequestContext:
    principal: Principal
    loaders: Loaders
    ledger: Ledger
    request_id: str
    settings: Settings
    playback: PlaybackSigner
    changes: AccessChanges
