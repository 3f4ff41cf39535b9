"""Every error the gateway raises on purpose, each with a stable ``extensions.code``.

    GatewayError                      code            shown to the client
    ├── ConfigurationError            -               (start-up only: one line, exit non-zero)
    ├── AuthenticationError           UNAUTHENTICATED HTTP 401 + WWW-Authenticate
    ├── BadRequest                    BAD_REQUEST     HTTP 4xx before any GraphQL work
    ├── BadUserInput                  BAD_USER_INPUT  as a GraphQL error at the field's path
    ├── Forbidden                     FORBIDDEN       as a GraphQL error at the field's path
    ├── ResponseWithheld              WITHHELD        the whole response's data is withheld
    └── ServiceUnavailable            UNAVAILABLE     HTTP 503 + Retry-After
        └── AuditUnavailable          AUDIT_UNAVAILABLE  the audit write failed: no data sent

Anything else that escapes a resolver is masked as INTERNAL_SERVER_ERROR; its text is logged with
the request id and never sent.
"""

from __future__ import annotations

__all__ = [
    "AuditUnavailable",
    "AuthenticationError",
    "BadRequest",
    "BadUserInput",
    "ConfigurationError",
    "Forbidden",
    "GatewayError",
    "ResponseWithheld",
    "ServiceUnavailable",
]


class GatewayError(Exception):
    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(GatewayError):
    code = "CONFIGURATION"


class AuthenticationError(GatewayError):
    """The request carries no token, or one that does not verify or names no known account."""

    code = "UNAUTHENTICATED"

    def __init__(self, message: str, *, credentials_present: bool = True) -> None:
        super().__init__(message)
        self.credentials_present = credentials_present


class BadRequest(GatewayError):
    code = "BAD_REQUEST"

    def __init__(self, message: str, *, status: int = 400, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        if code is not None:
            self.code = code


class BadUserInput(GatewayError):
    code = "BAD_USER_INPUT"


class Forbidden(GatewayError):
    code = "FORBIDDEN"


class ResponseWithheld(GatewayError):
    code = "WITHHELD"


class ServiceUnavailable(GatewayError):
    code = "UNAVAILABLE"

    def __init__(self, message: str = "Service temporarily unavailable", *, retry_after: int = 2):
        super().__init__(message)
        self.retry_after = retry_after


class AuditUnavailable(ServiceUnavailable):
    code = "AUDIT_UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__("Response withheld: the audit trail could not be written")
