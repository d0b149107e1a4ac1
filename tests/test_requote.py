"""A quoting loop against the simulator: every replace proven or a typed error, never two live quotes.

The loop keeps one quote on the book and moves it with ``replace_and_confirm``
1,000 times (``CADENZA_REQUOTE_N`` for more, ``CADENZA_REQUOTE_SEED`` for
other random choices; fills and faults also land at random wall-clock
moments, so no two runs are alike), while a market fills its quotes at random moments, fully or in
part, and faults hit at random: 5xx bursts on submits, cancels and look-ups,
submit replies lost after the order was placed, rejections, fills racing the
cancel, late events and replies, dropped WebSocket connections. The loop
itself is the code a user would write: when a call ends without a proof, it
finds the order by its ``clientOrderId`` and pulls it before quoting again.

The simulator counts, at every change of every order, how many of the
account's orders on the instrument are live: its peak must stay 1. Every
replace must end with a result whose parts agree with the exchange, or with a
:class:`~cadenza_async.errors.CadenzaError`; anything else fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter

import pytest
from oracle import is_final, submit_verdict
from support import client_for

from cadenza_async import (
    CadenzaClient,
    CadenzaError,
    ReplaceResult,
    SubmitResult,
    TradeOrder,
)
from cadenza_async.testing import CadenzaSimulator

INSTRUMENT = "BINANCE:BTC/USDT"
N = int(os.environ.get("CADENZA_REQUOTE_N", "1000"))
SEED = int(os.environ.get("CADENZA_REQUOTE_SEED", "13"))
TIMEOUT = 2.0


def quote(rng: random.Random, cid: str) -> dict[str, str]:
    return {
        "instrument_id": INSTRUMENT,
        "order_side": "BUY",
        "order_type": "LIMIT",
        "quantity": "2",
        "limit_price": str(50_000 + rng.randint(-50, 50)),
        "time_in_force": "GTC",
        "client_order_id": cid,
    }


async def market(sim: CadenzaSimulator, rng: random.Random) -> None:
    """Fill the loop's live quotes at random moments, in part or in full."""
    while True:
        await asyncio.sleep(rng.uniform(0.0, 0.02))
        live = sim.live_orders_of(INSTRUMENT)
        if not live:
            continue
        order = rng.choice(live)
        with contextlib.suppress(ValueError, KeyError):  # final meanwhile, or nothing left
            sim.fill(order.trade_order_id, "1" if rng.random() < 0.6 else None)


class Faults:
    """One random fault before a call (or none), and its undoing after it."""

    def __init__(self, sim: CadenzaSimulator, rng: random.Random, via: str) -> None:
        self.sim = sim
        self.rng = rng
        self.via = via
        self.seen: Counter[str] = Counter()
        self._undo: list[str] = []

    async def inject(self, current: str | None) -> None:
        sim, rng = self.sim, self.rng
        roll = rng.random()
        name = "none"
        if roll < 0.05:
            name = "submit 5xx burst"
            sim.fail_next_rest(rng.randint(1, 3), 503, endpoint="submit")
        elif roll < 0.08:
            name = "submit reply lost (reset)"
            sim.lose_next_submit_replies(1)
        elif roll < 0.10:
            name = "submit reply lost (500)"
            sim.lose_next_submit_replies(1, status=500)
        elif roll < 0.13:
            name = "cancel 5xx"
            sim.fail_next_rest(rng.randint(1, 2), 503, endpoint="cancel")
        elif roll < 0.15:
            name = "list 5xx"
            sim.fail_next_rest(1, 502, endpoint="list")
        elif roll < 0.19:
            name = "rejection"
            sim.reject_next_submits(1, reason="risk limit")
        elif roll < 0.24 and current is not None:
            name = "fill racing the cancel"
            with contextlib.suppress(KeyError):
                sim.fill_on_next_cancel(current)
        elif roll < 0.29 and current is not None:
            name = "filled before the replace"
            with contextlib.suppress(ValueError, KeyError):
                sim.fill(current)
        elif roll < 0.31:
            name = "late events"
            sim.delay_publications(0.02)
            self._undo.append("publications")
        elif roll < 0.33:
            name = "late submit reply"
            sim.delay_submit_reply(0.02)
            self._undo.append("submit reply")
        elif roll < 0.34:
            name = "websocket dropped"
            await sim.disconnect_all(3001)
        self.seen[name] += 1

    def undo(self) -> None:
        for what in self._undo:
            if what == "publications":
                self.sim.delay_publications(0)
            else:
                self.sim.delay_submit_reply(0)
        self._undo.clear()


async def find(client: CadenzaClient, account: str, cid: str) -> TradeOrder | None:
    """The order placed with ``cid``, by REST listing (what a user can do), or None."""
    offset = 0
    while True:
        page = await client.list_orders(trading_account_id=account, limit=1000, offset=offset)
        for order in page.orders:
            if order.client_order_id == cid:
                return order
        if len(page.orders) < 1000:
            return None
        offset += len(page.orders)


async def settle(client: CadenzaClient, account: str, cid: str) -> str | None:
    """A submit ended without proof: pull its order if it exists; the live id if that failed."""
    found: TradeOrder | None = None
    for _ in range(20):
        try:
            found = await find(client, account, cid)
        except CadenzaError:
            found = None
        if found is not None:
            if is_final(found.status):
                return None
            try:
                await client.cancel_and_confirm(found.trade_order_id, timeout=TIMEOUT)
            except CadenzaError:
                continue
            return None
        await asyncio.sleep(0.05)  # a submit the server still holds may be applied late
    return None if found is None else found.trade_order_id


def check_submit(sim: CadenzaSimulator, result: SubmitResult) -> None:
    """A submit's result agrees with the exchange: its order, and a verdict its status gives."""
    placed = sim.find_by_client_order_id(result.client_order_id)
    assert placed is not None
    assert placed.trade_order_id == result.order_id
    assert submit_verdict(result.order.status, result.order.executed_quantity) is result.accepted


def check_replace(sim: CadenzaSimulator, old: str, rep: ReplaceResult) -> None:
    assert isinstance(rep, ReplaceResult)
    if rep.cancel is None:
        assert rep.outcome == "old_not_final"
        assert isinstance(rep.cancel_error, CadenzaError)
        assert rep.submit is None
        return
    assert rep.cancel.order_id == old
    assert is_final(rep.cancel.status)
    final = sim.get_order(old)
    assert final is not None
    assert final.status == rep.cancel.status  # terminal is terminal: the exchange agrees
    if rep.outcome == "submitted":
        assert rep.submit is not None
        check_submit(sim, rep.submit)
    else:
        assert rep.submit is None
        assert rep.outcome in ("old_filled", "no_time_left")
        if rep.outcome == "old_filled":
            assert rep.cancel.status == "FILLED"


async def run_loop(via: str, n: int, seed: int) -> tuple[Counter[str], Counter[str], float]:
    rng = random.Random(seed)
    async with CadenzaSimulator(cancel_delay=0.002, accept_delay=0.002) as sim:
        account = sim.trading_account_id
        async with client_for(
            sim,
            cancel_via=via,
            submit_via=via,
            timeouts={"connect": 5.0, "request": 1.0, "confirm": TIMEOUT},
        ) as client:
            faults = Faults(sim, rng, via)
            outcomes: Counter[str] = Counter()
            filler = asyncio.ensure_future(market(sim, random.Random(seed + 1)))
            started = time.perf_counter()
            current: str | None = None
            try:
                for i in range(n):
                    cid = f"q{seed}-{i}"
                    await faults.inject(current)
                    try:
                        if current is None:
                            try:
                                sub = await client.submit_and_confirm(
                                    **quote(rng, cid), timeout=TIMEOUT
                                )
                            except CadenzaError as exc:
                                outcomes[f"submit raised {type(exc).__name__}"] += 1
                                current = await settle(client, account, cid)
                                continue
                            check_submit(sim, sub)
                            outcomes["submit " + ("accepted" if sub.accepted else "refused")] += 1
                            current = sub.order_id if sub.accepted else None
                            continue
                        old = current
                        try:
                            rep = await client.replace_and_confirm(
                                old,
                                **quote(rng, cid),
                                place_if_filled=rng.random() < 0.5,
                                timeout=TIMEOUT,
                            )
                        except CadenzaError as exc:
                            # The old order is final (proven); the new one's fate is unknown.
                            outcomes[f"replace raised {type(exc).__name__}"] += 1
                            current = await settle(client, account, cid)
                            continue
                        check_replace(sim, old, rep)
                        outcomes[f"replace {rep.outcome}"] += 1
                        if rep.outcome == "old_not_final":
                            continue  # the old one may be live: the next replace pulls it again
                        if rep.submit is not None and rep.submit.accepted:
                            current = rep.submit.order_id
                        else:
                            current = None
                    finally:
                        faults.undo()
                    assert sim.peak_live_orders(INSTRUMENT) <= 1, (seed, i, outcomes)
            finally:
                filler.cancel()
                await asyncio.gather(filler, return_exceptions=True)
            elapsed = time.perf_counter() - started
            assert sim.peak_live_orders(INSTRUMENT) == 1, (seed, outcomes)
            by_cid = Counter(o.client_order_id for o in sim.orders if o.client_order_id)
            assert by_cid.most_common(1)[0][1] == 1, by_cid.most_common(3)  # one order per key
    return outcomes, faults.seen, elapsed


@pytest.mark.timeout(240)
async def test_a_requote_loop_over_http_never_has_two_live_quotes():
    outcomes, faults, elapsed = await run_loop("http", N, SEED)
    print(f"\nseed {SEED}: {N} calls in {elapsed:.1f}s; {dict(outcomes)}; faults {dict(faults)}")
    assert sum(outcomes.values()) == N
    assert outcomes["replace submitted"] > N // 3  # the loop did requote, mostly
    assert outcomes["replace old_filled"] > 0  # and the market did fill some quotes


@pytest.mark.timeout(240)
async def test_a_requote_loop_over_the_websocket_never_has_two_live_quotes():
    n = max(50, N // 4)
    outcomes, faults, elapsed = await run_loop("ws", n, SEED + 7)
    print(
        f"\nseed {SEED + 7}: {n} calls in {elapsed:.1f}s; {dict(outcomes)}; faults {dict(faults)}"
    )
    assert sum(outcomes.values()) == n
    assert outcomes["replace submitted"] > n // 3
