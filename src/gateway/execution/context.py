"""The request context: built once per authenticated request, frozen, dropped with it.

Everything a resolver may use (the caller, per-request loaders writing into the request's ledger,
the playback signer, the changes of access) and nothing shared with another request: the
resolvers' ``Context`` (``gateway.authz.context``), as each event of a subscription is too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.authz.playback import PlaybackSigner
from gateway.config import Settings
from gateway.data.changes import AccessChanges
from gateway.data.edge import Fetch
from gateway.data.loaders import Loaders
from gateway.identity import Principal
from gateway.ledger import Ledger

if TYPE_CHECKING:
    from gateway.ops.tracing import Tracing

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

    @classmethod
    def open(
        cls,
        principal: Principal,
        request_id: str,
        *,
        fetch: Fetch,
        settings: Settings,
        playback: PlaybackSigner,
        explaining: bool = False,
        tracing: Tracing | None = None,
    ) -> RequestContext:
        """A context with a new ledger (explaining each field decision when asked) and new
        loaders over ``fetch``."""
        ledger = Ledger(explaining=explaining)
        return cls(
            principal=principal,
            loaders=Loaders(fetch, principal, ledger, tracing),
            ledger=ledger,
            request_id=request_id,
            settings=settings,
            playback=playback,
            changes=AccessChanges(fetch, principal, ledger, request_id, settings),
        )
