"""The development identity: a signing key, its JWKS and token minting, in a data folder.

The key is EC P-256; ``gateway serve`` refuses keys and issuers made here."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.config import DEV_ISSUER, DEV_KEY_PREFIX
from gateway.errors import ConfigurationError

__all__ = ["DEV_AUDIENCE", "DevIdentity"]

DEV_AUDIENCE = "consultation-gateway"


@dataclass(frozen=True)
class DevIdentity:
    directory: Path
    private_key: ec.EllipticCurvePrivateKey
    kid: str
    media_secret: str
    issuer: str = DEV_ISSUER
    audience: str = DEV_AUDIENCE

    @property
    def jwks_file(self) -> Path:
        return self.directory / "jwks.json"

    @classmethod
    def load_or_create(cls, directory: Path) -> DevIdentity:
        directory.mkdir(parents=True, exist_ok=True)
        key_file = directory / "signing-key.pem"
        secret_file = directory / "media-secret"
        if key_file.exists():
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ConfigurationError(f"{key_file}: not an EC private key")
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            key_file.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            key_file.chmod(0o600)
        if not secret_file.exists():
            secret_file.write_text(secrets.token_urlsafe(48))
            secret_file.chmod(0o600)
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        kid = DEV_KEY_PREFIX + _thumbprint(public)
        identity = cls(directory, key, kid, secret_file.read_text().strip())
        public.update({"kid": kid, "use": "sig", "alg": "ES256"})
        identity.jwks_file.write_text(json.dumps({"keys": [public]}, indent=2))
        return identity

    @classmethod
    def load(cls, directory: Path) -> DevIdentity:
        if not (directory / "signing-key.pem").exists():
            raise ConfigurationError(
                f"--data-dir: {directory} is not a development data folder (run `gateway dev`)"
            )
        return cls.load_or_create(directory)

    def token(self, subject: str, *, ttl: int = 3600, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            **claims,
        }
        return jwt.encode(payload, self.private_key, algorithm="ES256", headers={"kid": self.kid})

    def media_keys(self) -> str:
        return f"dev:{self.media_secret}"


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an EC public key, shortened."""
    canonical = json.dumps(
        {k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()[:16]
