"""Production settings for tests: an identity ``gateway serve`` accepts, and settings for a
schema built in process with every address pointing nowhere."""

from __future__ import annotations

from typing import Any


def production_identity(directory: Any, issuer: str) -> Any:
    """A signing key that ``gateway serve`` accepts: not the development issuer or key id."""
    import dataclasses
    import json

    from gateway.config import DEV_KEY_PREFIX
    from gateway.dev.identity import DevIdentity

    development = DevIdentity.load_or_create(directory)
    identity = dataclasses.replace(
        development, issuer=issuer, kid="prod-" + development.kid.removeprefix(DEV_KEY_PREFIX)
    )
    jwks = json.loads(development.jwks_file.read_text())
    jwks["keys"][0]["kid"] = identity.kid
    identity.jwks_file.write_text(json.dumps(jwks))
    return identity


def offline_production_settings(key_id: str) -> Any:
    """Production settings for a schema built without a database, identity or media store
    (compiling and running plans in process): every address points nowhere."""
    from gateway.config import Mode, load_settings

    return load_settings(
        {},
        mode=Mode.PRODUCTION,
        database_url="postgresql://unused/unused",
        jwt_issuer="unused",
        jwt_audience="unused",
        jwks_url="https://unused.invalid/jwks.json",
        media_signing_keys=f"{key_id}:{'k' * 40}",
        media_store="s3",
        media_s3_bucket="unused",
    )
