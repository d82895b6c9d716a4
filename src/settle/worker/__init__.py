"""Background runners: work that happens on a timer, outside any request."""

from settle.worker.maintenance import MaintenanceRunner

__all__ = ["MaintenanceRunner"]
