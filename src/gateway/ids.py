"""Opaque Relay global IDs and pagination cursors.

A global ID is base64url("Type:uuid"); a cursor is base64url("c1|<iso time>|<uuid>"). Neither is
trusted: a decoded ID only says which loader to ask, and a cursor is only a keyset position inside
the caller's own rows, so a forged one can reveal nothing.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from uuid import UUID

from gateway.errors import BadUserInput

__all__ = [
    "decode_cursor",
    "decode_global_id",
    "decode_sequence_cursor",
    "encode_cursor",
    "encode_global_id",
    "encode_sequence_cursor",
]

_MAX_ID_LENGTH = 200
_MAX_SEQUENCE = 2**63 - 1  # data.access_events.seq is a bigint


_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def _b64encode(text: str) -> str:
    """base64url without padding (``base64.urlsafe_b64encode``, its two Python layers saved:
    this runs for every row a page hands out)."""
    encoded = binascii.b2a_base64(text.encode(), newline=False).translate(_URL_SAFE)
    return encoded.rstrip(b"=").decode("ascii")


def _b64decode(value: str) -> str:
    if len(value) > _MAX_ID_LENGTH:
        raise ValueError("too long")
    padded = value + "=" * (-len(value) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")


def encode_global_id(type_name: str, pk: UUID | int) -> str:
    return _b64encode(f"{type_name}:{pk}")


def decode_global_id(value: str) -> tuple[str, UUID]:
    """(type name, primary key) of a global ID; BAD_USER_INPUT when it is not one."""
    try:
        type_name, _, raw = _b64decode(value).partition(":")
        if not type_name.isidentifier():
            raise ValueError("bad type")
        return type_name, UUID(raw)
    except (ValueError, UnicodeError, binascii.Error):
        raise BadUserInput("Invalid ID") from None


def encode_cursor(scheduled_at: datetime, pk: UUID) -> str:
    return _b64encode(f"c1|{scheduled_at.isoformat()}|{pk}")


def decode_cursor(value: str) -> tuple[datetime, UUID]:
    try:
        version, at, raw = _b64decode(value).split("|")
        if version != "c1":
            raise ValueError("version")
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:
            raise ValueError("naive")
        return moment, UUID(raw)
    except (ValueError, UnicodeError, binascii.Error):
        raise BadUserInput("Invalid cursor") from None


def encode_sequence_cursor(sequence: int) -> str:
    return _b64encode(f"s1|{sequence}")


def decode_sequence_cursor(value: str) -> int:
    try:
        version, raw = _b64decode(value).split("|")
        if version != "s1" or not raw.isdigit():
            raise ValueError("bad cursor")
        sequence = int(raw)
        if sequence > _MAX_SEQUENCE:
            raise ValueError("past the audit chain's bigint sequence")
        return sequence
    except (ValueError, UnicodeError, binascii.Error):
        raise BadUserInput("Invalid cursor") from None
