"""The schema: one module per domain type, each field guarded by the policy table.

``build_schema`` assembles it; the engine (``gateway.app``) calls it and nothing else here.
"""

from __future__ import annotations

from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from gateway.config import Settings
from gateway.schema import GatewaySchema
from resolvers.clinician import Clinician
from resolvers.consultation import Consultation
from resolvers.mutation import Mutation
from resolvers.partner import Partner
from resolvers.patient import Patient
from resolvers.query import Query
from resolvers.recording import Recording

__all__ = ["build_schema"]


def build_schema(settings: Settings | None = None) -> GatewaySchema:
    """The schema for ``settings`` (production defaults when None: no introspection, no
    suggestions, limits on)."""
    development = settings is not None and settings.development
    extensions: list = [lambda: ParserCache(maxsize=512), lambda: ValidationCache(maxsize=512)]
    if settings is not None:
        depth, aliases, tokens = settings.max_query_depth, settings.max_aliases, settings.max_tokens
        extensions += [
            lambda: QueryDepthLimiter(max_depth=depth),
            lambda: MaxAliasesLimiter(max_alias_count=aliases),
            lambda: MaxTokensLimiter(max_token_count=tokens),
        ]
    if not development:
        extensions.append(lambda: AddValidationRules([NoSchemaIntrospectionCustomRule]))
    return GatewaySchema(
        query=Query,
        mutation=Mutation,
        types=[Consultation, Recording, Patient, Clinician, Partner],
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=not development),
    )
