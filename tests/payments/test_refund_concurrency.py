"""Refunds racing each other: their total never passes what was captured."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import TYPE_CHECKING

from settle.errors import SettleError
from settle.payments.refunds import NewRefund, create_refund

from .support import Shop, fee

if TYPE_CHECKING:
    from settle.payments.model import Refund
    from settle.simulator import SimulatorThread


async def test_concurrent_refunds_never_exceed_the_capture(
    shop: Shop, sim_a: SimulatorThread
) -> None:
    paid = await shop.until_status((await shop.pay(10_000))["id"], "succeeded")
    intent_id = uuid.UUID(paid["id"])
    start = threading.Barrier(8)
    made: list[Refund] = []
    refused: list[str] = []
    lock = threading.Lock()

    def refund() -> None:
        start.wait()
        try:
            r = create_refund(
                shop.state.store.uow(), NewRefund(shop.tenant.id, intent_id, amount=2_000)
            )
        except SettleError as exc:
            with lock:
                refused.append(exc.code)
        else:
            with lock:
                made.append(r)

    threads = [threading.Thread(target=refund) for _ in range(8)]
    for t in threads:
        t.start()
    await asyncio.to_thread(lambda: [t.join() for t in threads])

    assert len(made) == 5
    assert refused == ["refund_exceeds_captured"] * 3
    assert shop.held("payments:merchant:USD") == (10_000, 0)
    for r in made:
        done = await shop.settle(
            lambda r=r: shop.refund(str(r.id)), lambda x: x["status"] != "pending"
        )
        assert done["status"] == "succeeded"
    assert (await shop.intent(paid["id"]))["amount_refunded"] == 10_000
    assert shop.balance("payments:merchant:USD") == 10_000 - fee(10_000) - 10_000
