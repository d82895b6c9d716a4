"""SQLite's write-ahead log is folded back by a thread of its own, and never runs away.

The ledger writer's connection no longer checkpoints on commit; a checkpointer thread does it
after each commit, and the writer waits for one in progress before its next transaction. The
log must therefore restart from its beginning again and again: after many batches it is no
bigger than a few batches' worth, and once the store is closed nothing is left in it.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from settle.ledger.errors import ResultCode
from settle.ledger.model import AccountType
from settle.store.db import upgrade_database
from settle.store.ledger_store import LedgerStore

from .stories import open_usd, pay

R = ResultCode


def test_many_batches_keep_the_log_small_and_closing_leaves_it_empty(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = LedgerStore(f"sqlite:///{path}")
    upgrade_database(store.db)
    tenant = uuid.uuid4()
    bank = open_usd(store, tenant, "bank", AccountType.ASSET)
    wallets = [open_usd(store, tenant, f"w{i}", AccountType.LIABILITY) for i in range(50)]
    checkpointer = store.committer.checkpointer
    assert checkpointer is not None

    sizes = []
    for round_ in range(40):
        batch = [pay(tenant, bank, wallets[(round_ + i) % 50], 1 + i) for i in range(300)]
        assert {r.code for r in store.submit(batch)} == {R.OK}
        sizes.append((path.parent / "ledger.db-wal").stat().st_size)

    writer = store.committer._writer().driver_connection
    assert writer.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    assert checkpointer.checkpoints >= 20
    # Each batch appends about 1.6 MB; without the checkpointer (the writer's own is off) the
    # log would pass 60 MB. It restarts after every checkpoint instead.
    assert max(sizes) < 3 * sizes[0]

    store.close()
    assert checkpointer.checkpoints >= 21  # the last one, at close
    with sqlite3.connect(path) as conn:
        busy, frames, folded = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0
        assert frames == folded
        assert conn.execute("SELECT count(*) FROM ledger_transfers").fetchone() == (40 * 300,)
