"""Logging: one setup, from settings, for the gateway's loggers and uvicorn's.

``GATEWAY_LOG_FORMAT=json`` (the default) writes one JSON object per line (python-json-logger);
``console`` writes text for people. Fields travel as ``extra``. What may be logged is identifiers
and codes: request ids, subjects, roles, document hashes, statuses, error codes. Never a query's
text, variables, response data, a token or a field value. Exceptions are written as their type and
stack frames without their message, because a driver's message can quote a row's values.
"""

from __future__ import annotations

import logging
import logging.config
import traceback
from types import TracebackType
from typing import IO, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

from gateway.config import Settings

__all__ = ["ConsoleFormatter", "JsonFormatter", "configure_logging", "logging_config"]

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
_RESERVED = frozenset(RESERVED_ATTRS) | {"message", "asctime", "color_message", "taskName"}


def _exception_without_message(exc_info: ExcInfo) -> str:
    """The stack and the exception types (with their causes), never the messages."""
    kind, value, tb = exc_info
    lines = traceback.format_tb(tb)
    lines.append(f"{kind.__module__}.{kind.__qualname__} (message withheld)")
    cause = value.__cause__ or value.__context__
    while cause is not None:
        lines.append(f"\ncaused by {type(cause).__module__}.{type(cause).__qualname__}")
        cause = cause.__cause__ or cause.__context__
    return "".join(lines)


class JsonFormatter(OrjsonFormatter):
    """``{"timestamp", "level", "logger", "event", ...extra}`` on one line."""

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger", "message": "event"},
            timestamp="timestamp",
            reserved_attrs=[*RESERVED_ATTRS, "color_message", "taskName"],
        )

    def formatException(self, ei: Any) -> str:
        return _exception_without_message(ei)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        log_data["level"] = log_data["level"].lower()
        return log_data


class ConsoleFormatter(logging.Formatter):
    """``time level logger event key=value ...`` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-8s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in _RESERVED and not key.startswith("_")
        )
        if not extra:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} {extra}{newline}{rest}"

    def formatException(self, ei: Any) -> str:
        return _exception_without_message(ei)


def logging_config(settings: Settings, stream: IO[str] | None = None) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary (also uvicorn's ``log_config``): one handler
    on the root logger; uvicorn's loggers propagate to it; uvicorn's access log is off, because
    the gateway writes its own line per request (``gateway.request``); httpx's request lines are
    off."""
    formatter = JsonFormatter if settings.log_format == "json" else ConsoleFormatter
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"gateway": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "gateway": {
                "class": "logging.StreamHandler",
                "formatter": "gateway",
                "stream": stream if stream is not None else "ext://sys.stdout",
            }
        },
        "root": {"handlers": ["gateway"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "CRITICAL"},
            # httpx logs every URL it fetches at info; URLs can carry signatures or tokens.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }


def configure_logging(settings: Settings, stream: IO[str] | None = None) -> dict[str, Any]:
    """Apply :func:`logging_config` to this process and return it."""
    config = logging_config(settings, stream)
    logging.config.dictConfig(config)
    return config
