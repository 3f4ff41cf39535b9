"""Shared pieces of the attack catalogues: a few well-known tokens and request shapes."""

from __future__ import annotations

import contextlib

from gateway import create_app
from tests.support.server import GraphQLClient, serving

GENERIC_INVALID = {
    "message": "The GraphQL document is not valid for this API",
    "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
}


@contextlib.contextmanager
def gateway_with(env, **settings):
    with serving(create_app(env.settings(**settings))) as server:
        yield GraphQLClient(server.url)


def patient_token(env, index: int = 0) -> str:
    return env.token(env.patients()[index][0])
