"""Micro-benchmark of the pure batch applier: no database, one tenant, shorthand transfers.

Prints JSON: microseconds per transfer for ``settle.ledger.apply.apply_batch`` over a batch of
``--transfers`` random transfers between ``--accounts`` funded wallets (best of ``--repeat``).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
import uuid

from settle.ledger.apply import (
    AccountState,
    BatchState,
    ChainHead,
    TenantState,
    Unit,
    apply_batch,
)
from settle.ledger.requests import TransferSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--transfers", type=int, default=8190)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tenant = uuid.uuid4()
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(args.accounts)]
    requests = [
        TransferSpec.shorthand(
            tenant,
            uuid.UUID(int=rng.getrandbits(128), version=4),
            debit_account_id=rng.choice(ids),
            credit_account_id=rng.choice(ids),
            amount=rng.randrange(1, 1000),
            currency="USD",
        )
        for _ in range(args.transfers)
    ]

    def fresh_state() -> BatchState:
        t = TenantState(tenant, ChainHead(0, bytes(32), 0, 0), tenant.bytes)
        for account_id in ids:
            t.accounts[account_id.int] = AccountState(
                tenant, account_id, "USD", "active", True, False, None, 0, 10**9, 0, 0, 0,
                account_id.bytes,
            )  # fmt: skip
        return BatchState(1_700_000_000_000_000, {tenant: t}, lambda value: value.bytes)

    gc.disable()  # as the store does around a batch
    best = float("inf")
    for _ in range(args.repeat):
        state = fresh_state()
        started = time.perf_counter()
        apply_batch(state, [Unit(requests)])
        best = min(best, time.perf_counter() - started)
    print(
        json.dumps(
            {
                "transfers": args.transfers,
                "batch_ms": round(best * 1000, 2),
                "us_per_transfer": round(best / args.transfers * 1e6, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
