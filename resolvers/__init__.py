"""The schema: one module per domain type, each field guarded by the policy table.

``build_schema`` assembles it; the engine (``gateway.app``) calls it and nothing else here.
"""

from __future__ import annotations

from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import MaxTokensLimiter, ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig

from gateway.authz import install_fast_path
from gateway.config import Settings
from gateway.limits import DocumentLimits, LimitsExtension
from gateway.ratelimit import RateLimiter, RateLimitExtension
from gateway.schema import GatewaySchema
from gateway.subscriptions import build_websocket_extensions
from resolvers.clinician import Clinician
from resolvers.consultation import Consultation
from resolvers.mutation import Mutation
from resolvers.partner import Partner
from resolvers.patient import Patient
from resolvers.query import Query
from resolvers.recording import Recording
from resolvers.subscription import Subscription

__all__ = ["build_schema"]


def build_schema(
    settings: Settings | None = None, limiter: RateLimiter | None = None
) -> GatewaySchema:
    """The schema for ``settings`` (production defaults when None: no introspection, no
    suggestions, limits on). Limit rules are built here once, so the validation cache hits."""
    development = settings is not None and settings.development
    extensions: list = [lambda: ParserCache(maxsize=512)]
    rules: tuple = () if development else (NoSchemaIntrospectionCustomRule,)
    if settings is not None:
        limits = DocumentLimits(
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_aliases,
            max_directives=settings.max_directives,
            max_cost=settings.max_query_cost,
            page_size_max=settings.page_size_max,
        )
        rules += limits.rules()
        tokens = settings.max_tokens
        extensions.append(lambda: MaxTokensLimiter(max_token_count=tokens))
    extensions.append(type("GatewayLimits", (LimitsExtension,), {"rules": rules}))
    extensions.append(lambda: ValidationCache(maxsize=512))
    extensions.append(build_websocket_extensions(development))
    if limiter is not None:
        extensions.append(type("GatewayRateLimit", (RateLimitExtension,), {"limiter": limiter}))
    schema = GatewaySchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[Consultation, Recording, Patient, Clinician, Partner],
        extensions=extensions,
        config=StrawberryConfig(disable_field_suggestions=not development),
    )
    install_fast_path(schema)
    return schema
