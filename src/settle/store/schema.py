"""The whole schema: every context's tables, on one ``MetaData`` (the migrations build it).

Each context keeps its tables in a module of its own; importing this module registers them all.
"""

from __future__ import annotations

from settle.store import job_tables as job_tables
from settle.store import payment_tables as payment_tables
from settle.store import webhook_tables as webhook_tables
from settle.store.tables import metadata

__all__ = ["metadata"]
