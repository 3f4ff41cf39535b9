"""The consultation gateway: a GraphQL gateway that cannot show one patient's data to another."""

from gateway.app import create_app
from gateway.config import Settings, load_settings

__all__ = ["Settings", "create_app", "load_settings"]
