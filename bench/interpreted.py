"""The gateway with its compiled plans switched off: every trusted document runs through
Strawberry and graphql-core, as before plans existed, to price the plans. Bench only: the shipped
gateway compiles every trusted document it can."""

from __future__ import annotations

from typing import Any

from gateway.app import create_app_from_environment
from gateway.execution import executor
from gateway.execution.compiler import NotCompilable


def _not_compiled(*args: Any, **kwargs: Any) -> Any:
    raise NotCompilable("plans switched off (bench.interpreted)")


def create_app() -> Any:
    executor.compile_operation = _not_compiled
    return create_app_from_environment()
