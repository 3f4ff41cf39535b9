"""Global IDs and cursors: base64url without padding, exactly as the standard library makes it,
and back."""

from __future__ import annotations

import base64
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from gateway.ids import _b64encode, decode_global_id, encode_global_id


@given(st.text())
def test_the_encoding_is_base64url_without_padding(text):
    assert _b64encode(text) == base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@given(st.sampled_from(["Consultation", "Recording", "Patient"]), st.uuids())
def test_a_global_id_decodes_to_its_type_and_key(type_name, pk: UUID):
    assert decode_global_id(encode_global_id(type_name, pk)) == (type_name, pk)
