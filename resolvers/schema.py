"""The Strawberry schema class the resolvers assemble: it logs only unexpected errors.

Denials, bad input and invalid documents are the normal traffic of a hostile internet; logging
each with a traceback would cost time and fill logs. Unexpected errors are logged by the HTTP
layer with the request id.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError
from strawberry import Schema
from strawberry.types import ExecutionContext

__all__ = ["GatewaySchema"]


class GatewaySchema(Schema):
    # The validation rules and token limit requests meet beyond the standard rules (production
    # and document limits), so that plans compiled from trusted documents meet the same.
    validation_rules: tuple[Any, ...] = ()
    max_tokens: int | None = None

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        return None
