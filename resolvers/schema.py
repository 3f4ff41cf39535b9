"""The Strawberry schema class the resolvers assemble: it logs only unexpected errors.

Denials, bad input and invalid documents are the normal traffic of a hostile internet; logging
each with a traceback would cost time and fill logs. Unexpected errors are logged by the HTTP
layer with the request id.
"""

from __future__ import annotations

from graphql import GraphQLError
from strawberry import Schema
from strawberry.types import ExecutionContext

__all__ = ["GatewaySchema"]


class GatewaySchema(Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        return None
