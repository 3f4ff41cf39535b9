"""The client's view of GraphQL errors, the same over HTTP and WebSocket.

Typed errors keep their message and code; errors of the document keep a message without
suggestions in production; everything else is masked as INTERNAL_SERVER_ERROR.
"""

from __future__ import annotations

import re
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError

from gateway.errors import Code, GatewayError

__all__ = ["document_error", "format_error"]

_SUGGESTION = re.compile(r" Did you mean .*$", re.DOTALL)


def format_error(error: GraphQLError, *, development: bool) -> dict[str, Any]:
    original = error.original_error
    if isinstance(original, GatewayError):
        message, code = original.message, original.code
    elif original is None and (error.extensions or {}).get("code") == Code.LIMIT_EXCEEDED:
        message, code = error.message, Code.LIMIT_EXCEEDED
    elif original is None:
        message = error.message if development else _SUGGESTION.sub("", error.message)
        code = Code.GRAPHQL_VALIDATION_FAILED
    else:
        message, code = "Internal server error", Code.INTERNAL_SERVER_ERROR
    formatted: dict[str, Any] = {"message": message}
    if error.locations:
        formatted["locations"] = [{"line": x.line, "column": x.column} for x in error.locations]
    if error.path:
        formatted["path"] = error.path
    formatted["extensions"] = {"code": code}
    return formatted


def document_error(errors: list[GraphQLError]) -> dict[str, Any]:
    """Production's one error for a document that does not parse or validate: the same text
    for a made-up field, a real field used wrongly or ten unknown directives, so guessing names
    from differences between errors recovers nothing. Limits say which limit."""
    for error in errors:
        if (error.extensions or {}).get("code") == Code.LIMIT_EXCEEDED:
            return {"message": error.message, "extensions": {"code": Code.LIMIT_EXCEEDED}}
    if any(isinstance(error, GraphQLSyntaxError) for error in errors):
        return {
            "message": "Syntax error in the GraphQL document",
            "extensions": {"code": Code.GRAPHQL_PARSE_FAILED},
        }
    return {
        "message": "The GraphQL document is not valid for this API",
        "extensions": {"code": Code.GRAPHQL_VALIDATION_FAILED},
    }
