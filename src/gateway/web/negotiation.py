"""Content negotiation for GraphQL over HTTP: which media type a response is sent as.

``application/graphql-response+json`` when the client accepts it (then documents that do not parse
or validate get 400, as the GraphQL over HTTP specification says), ``application/json`` otherwise.
"""

from __future__ import annotations

__all__ = ["GRAPHQL_RESPONSE", "JSON", "negotiate"]

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"


def negotiate(accept: str | None) -> str | None:
    """The response media type for an Accept header, or None when none is acceptable."""
    if not accept:
        return JSON
    best: tuple[float, int, str] | None = None
    for part in accept.split(","):
        media, *params = (item.strip() for item in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        media = media.lower()
        if media == GRAPHQL_RESPONSE:
            candidate = (quality, 2, GRAPHQL_RESPONSE)
        elif media in {JSON, "application/*", "*/*"}:
            candidate = (quality, 1, JSON)
        else:
            continue
        if best is None or candidate > best:
            best = candidate
    return best[2] if best else None
