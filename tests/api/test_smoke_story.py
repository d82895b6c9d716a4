"""A first story over HTTP: open two accounts, fund one, pay, and read the balances back."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .support import Api


async def test_fund_a_wallet_and_pay_a_shop(api: Api) -> None:
    bank = await api.account("bank", type="asset")
    wallet = await api.account("wallet", debits_must_not_exceed_credits=True)
    shop = await api.account("shop")
    funded = await api.transfer(bank["id"], wallet["id"], 10_000)
    assert funded.status_code == 201, funded.text
    paid = await api.transfer(wallet["id"], shop["id"], 2_500, description="coffee beans")
    assert paid.status_code == 201, paid.text
    assert paid.json()["description"] == "coffee beans"
    refused = await api.transfer(wallet["id"], shop["id"], 7_501)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "insufficient_funds"
    balance = await api.client.get(f"/v1/accounts/{wallet['id']}/balance", headers=api.headers)
    assert balance.json()["balances"]["posted"] == 7_500
    assert balance.json()["balances"]["available"] == 7_500
