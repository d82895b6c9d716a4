"""The HTTP API: a FastAPI app over the ledger, built by :func:`create_app`."""

from settle.api.app import create_app, create_app_from_env
from settle.api.settings import Settings

__all__ = ["Settings", "create_app", "create_app_from_env"]
