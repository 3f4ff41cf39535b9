"""The consultation gateway: a GraphQL gateway that cannot show one patient's data to another.

The public surface is ``create_app`` and the settings (``Settings``, ``load_settings``). They
are loaded on first use, so that importing one layer (``gateway.policy``, say) does not import
the application factory and, through it, every other layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.app import create_app
    from gateway.config import Settings, load_settings

__all__ = ["Settings", "create_app", "load_settings"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from gateway.app import create_app

        return create_app
    if name in {"Settings", "load_settings"}:
        from gateway import config

        return getattr(config, name)
    raise AttributeError(f"module 'gateway' has no attribute {name!r}")
