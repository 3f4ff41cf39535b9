"""Every error the gateway raises on purpose, and every ``extensions.code`` a client can see.

    GatewayError                      code               shown to the client
    ├── ConfigurationError            CONFIGURATION      (start-up: one line per problem, exit 2)
    ├── AuthenticationError           UNAUTHENTICATED    HTTP 401 + WWW-Authenticate
    ├── BadRequest                    BAD_REQUEST (or    HTTP 4xx before any GraphQL work
    │                                 a code of its own)
    ├── BadUserInput                  BAD_USER_INPUT     as a GraphQL error at the field's path
    ├── Forbidden                     FORBIDDEN          as a GraphQL error at the field's path
    ├── ResponseWithheld              WITHHELD           the whole response's data is withheld
    └── ServiceUnavailable            UNAVAILABLE        HTTP 503 + Retry-After
        └── AuditUnavailable          AUDIT_UNAVAILABLE  the audit write failed: no data sent

``Code`` lists every code, these and the ones raised by the document guards and the HTTP layer;
README's list is kept equal to it by a test. Anything else that escapes a resolver is masked as
INTERNAL_SERVER_ERROR; its text is logged with the request id and never sent.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AuditUnavailable",
    "AuthenticationError",
    "BadRequest",
    "BadUserInput",
    "Code",
    "ConfigurationError",
    "Forbidden",
    "GatewayError",
    "ResponseWithheld",
    "ServiceUnavailable",
]


class Code(StrEnum):
    """Every ``extensions.code`` the gateway sends, and the one start-up code."""

    UNAUTHENTICATED = "UNAUTHENTICATED"  # 401: no token, or one that does not verify
    BAD_REQUEST = "BAD_REQUEST"  # 4xx: the HTTP request is malformed
    NOT_ACCEPTABLE = "NOT_ACCEPTABLE"  # 406: no acceptable response media type
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"  # 405: GET /graphql outside GraphiQL
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"  # a hash not in the manifest
    TRUSTED_DOCUMENTS_ONLY = "TRUSTED_DOCUMENTS_ONLY"  # 403: free-form document refused
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"  # the document does not parse
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"  # it does not validate
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"  # depth, aliases, directives, cost, tokens, `first`
    RATE_LIMITED = "RATE_LIMITED"  # 429 + Retry-After
    BAD_USER_INPUT = "BAD_USER_INPUT"  # an argument is invalid
    FORBIDDEN = "FORBIDDEN"  # a field or change the policy denies
    WITHHELD = "WITHHELD"  # the exit check withheld the response
    UNAVAILABLE = "UNAVAILABLE"  # 503 + Retry-After: database down, busy, timed out
    AUDIT_UNAVAILABLE = "AUDIT_UNAVAILABLE"  # 503: the audit trail could not be written
    NOT_FOUND = "NOT_FOUND"  # 404: a recording's media file is missing from the store
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"  # anything unexpected, masked
    CONFIGURATION = "CONFIGURATION"  # start-up only, never sent


class GatewayError(Exception):
    code: str = Code.INTERNAL_SERVER_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(GatewayError):
    code = Code.CONFIGURATION


class AuthenticationError(GatewayError):
    """The request carries no token, or one that does not verify or names no known account."""

    code = Code.UNAUTHENTICATED

    def __init__(self, message: str, *, credentials_present: bool = True) -> None:
        super().__init__(message)
        self.credentials_present = credentials_present


class BadRequest(GatewayError):
    code = Code.BAD_REQUEST

    def __init__(self, message: str, *, status: int = 400, code: Code | None = None) -> None:
        super().__init__(message)
        self.status = status
        if code is not None:
            self.code = code


class BadUserInput(GatewayError):
    code = Code.BAD_USER_INPUT


class Forbidden(GatewayError):
    code = Code.FORBIDDEN


class ResponseWithheld(GatewayError):
    code = Code.WITHHELD


class ServiceUnavailable(GatewayError):
    code = Code.UNAVAILABLE

    def __init__(self, message: str = "Service temporarily unavailable", *, retry_after: int = 2):
        super().__init__(message)
        self.retry_after = retry_after


class AuditUnavailable(ServiceUnavailable):
    code = Code.AUDIT_UNAVAILABLE

    def __init__(self) -> None:
        super().__init__("Response withheld: the audit trail could not be written")
