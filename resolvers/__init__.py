"""The schema: one module per domain type, each field guarded by the policy table.

``build_schema`` assembles it; the application factory and the CLI call it. Nothing here imports
the web layer: transport-specific extensions (the WebSocket's) are handed in by the caller.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import MaxTokensLimiter, ParserCache, ValidationCache
from strawberry.schema.config import StrawberryConfig

from gateway.authz.fast_path import install_fast_path
from gateway.authz.field_check import Conducted, Consented, Governed, Granted
from gateway.authz.schema_check import verify_schema
from gateway.config import Settings
from gateway.guards.document_limits import DocumentLimits, LimitsExtension
from gateway.guards.rate_limits import RateLimiter, RateLimitExtension
from resolvers.access_log import AccessedObject, AccessEvent
from resolvers.archived_period import ArchivedPeriod
from resolvers.break_glass import BreakGlassGrant
from resolvers.clinician import Clinician
from resolvers.consent import Consent, ConsentRequest
from resolvers.consultation import Consultation
from resolvers.mutation import Mutation
from resolvers.partner import Partner
from resolvers.patient import Patient
from resolvers.query import Query
from resolvers.recording import Recording
from resolvers.schema import GatewaySchema
from resolvers.subscription import Subscription
from resolvers.viewer import Viewer

__all__ = ["build_schema"]

# What the field check reads of each governed type's objects (gateway.authz.field_check's
# protocols), held by the type checker; verify_schema checks the policy table's needs at start.
_GOVERNED: tuple[type[Governed], ...] = (
    AccessEvent,
    AccessedObject,
    ArchivedPeriod,
    Clinician,
    Consent,
    ConsentRequest,
    Partner,
    Viewer,
)
_CONSENTED: tuple[type[Consented], ...] = (Consultation, Patient, Recording)
_GRANTED: tuple[type[Granted], ...] = (BreakGlassGrant, Consultation, Patient, Recording)
_CONDUCTED: tuple[type[Conducted], ...] = (Consultation,)


def build_schema(
    settings: Settings | None = None,
    limiter: RateLimiter | None = None,
    *,
    extensions: Sequence[Callable[[], Any]] = (),
) -> GatewaySchema:
    """The schema for ``settings`` (production defaults when None: no introspection, no
    suggestions, limits on). Limit rules are built here once, so the validation cache hits.
    Refuses to build with a gap in layer 1 (``gateway.authz.schema_check``)."""
    development = settings is not None and settings.development
    factories: list[Callable[[], Any]] = [functools.partial(ParserCache, maxsize=512)]
    rules: tuple[type[ASTValidationRule], ...] = (
        () if development else (NoSchemaIntrospectionCustomRule,)
    )
    if settings is not None:
        limits = DocumentLimits(
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_aliases,
            max_directives=settings.max_directives,
            max_cost=settings.max_query_cost,
            page_size_max=settings.page_size_max,
        )
        rules += limits.rules()
        factories.append(functools.partial(MaxTokensLimiter, max_token_count=settings.max_tokens))
    factories.append(functools.partial(LimitsExtension, rules=rules))
    factories.append(functools.partial(ValidationCache, maxsize=512))
    factories += extensions
    if limiter is not None:
        factories.append(functools.partial(RateLimitExtension, limiter=limiter))
    schema = GatewaySchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[Consultation, Recording, Patient, Clinician, Partner],
        extensions=factories,
        config=StrawberryConfig(disable_field_suggestions=not development),
    )
    schema.validation_rules = rules
    schema.max_tokens = settings.max_tokens if settings is not None else None
    verify_schema(schema)
    install_fast_path(schema)
    return schema
