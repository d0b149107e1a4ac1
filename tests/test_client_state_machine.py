"""Row 32: random interleavings of cancels and faults over the real client and the simulator.

A Hypothesis state machine drives two :class:`~cadenza_async.CadenzaClient`
instances (``cancel_via="http"`` and ``"ws"``) against a
:class:`~cadenza_async.testing.CadenzaSimulator` behind a
:class:`~cadenza_async.testing.faults.FaultProxy`. Cancels are started in the
background (``cancel_nowait`` and ``cancel_many`` tasks), so they are in flight
while the next rules inject faults: reset every connection, blackhole the
link briefly, restart the server with a new epoch, fill an order racing its
cancel, expire the token (a callable provider hands out the new one).

Each rule runs the machine's own event loop (created in ``__init__``,
closed in ``teardown``) until the rule's coroutine is done; background
cancels progress whenever the loop runs. Invariants, after every step:

* no order is both filled and cancelled: outcomes of one order never
  disagree, and each agrees with the exchange's state of that order;
* nothing is confirmed without evidence: every ``CancelResult`` matches
  the simulator (``cancelled=True`` only for CANCELLED);
* every finished cancel has exactly one outcome, a result or an error of
  the kinds a fault can honestly cause. At teardown every cancel started
  has finished (bounded wait), the registries are empty and the clients,
  proxy, simulator and loop close without warnings.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)
from oracle import is_final
from support import waiters_held

from cadenza_async import (
    CadenzaClient,
    CancelResult,
    ConfirmationTimeout,
    RateLimitError,
    RetryPolicy,
    ServerError,
    Timeouts,
    TransportError,
)
from cadenza_async.models import OrderStatus
from cadenza_async.testing import CadenzaSimulator
from cadenza_async.testing.faults import FaultProxy

HONEST_ERRORS = (ConfirmationTimeout, TransportError, ServerError, RateLimitError)
TIMEOUTS = Timeouts(connect=2.0, request=1.0, confirm=3.0)
RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, max_retry_after=0.5)
# Generous: a cancel's send, look-up and resend each retry (see test_soak's xfail).
SETTLE_BOUND = 30.0
# The clients drain for up to drain_timeout (10 s) each; then the proxy and the simulator close.
CLOSE_BOUND = 30.0


class ClientAndSimulator(RuleBasedStateMachine):
    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.stack = contextlib.AsyncExitStack()
        self.inflight: list[tuple[list[str], str, asyncio.Future[Any]]] = []
        # order id -> outcomes seen: ("result", status) or ("error", name, last status)
        self.outcomes: dict[str, list[tuple[str, ...]]] = {}
        self.started = 0
        self.finished = 0
        self.old_token: str | None = None
        self.run(self._open())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _open(self) -> None:
        stack = self.stack
        self.sim = await stack.enter_async_context(CadenzaSimulator(cancel_delay=0.02))
        self.px = await stack.enter_async_context(
            FaultProxy(target_host="127.0.0.1", target_port=self.sim.port)
        )
        self.token = self.sim.issue_token()
        self.clients = {}
        for via in ("http", "ws"):
            self.clients[via] = await stack.enter_async_context(
                CadenzaClient(
                    token=lambda: self.token,
                    api_url=self.px.url(self.sim.api_url),
                    ws_url=self.px.url(self.sim.ws_url),
                    trading_account_id=self.sim.trading_account_id,
                    cancel_via=via,
                    timeouts=TIMEOUTS,
                    retry=RETRY,
                )
            )

    # ---------------------------------------------------------------- rules

    @rule(target=orders, pre_filled=st.booleans())
    def new_order(self, pre_filled: bool) -> str:
        order = self.sim.create_order()
        if pre_filled:
            self.sim.fill_on_next_cancel(order.trade_order_id)
        return order.trade_order_id

    @rule(order_id=orders, via=st.sampled_from(["http", "ws"]))
    def cancel(self, order_id: str, via: str) -> None:
        async def start() -> asyncio.Task[Any]:
            # cancel_nowait needs the running loop: start it from inside this machine's loop.
            handle = self.clients[via].cancel_nowait(order_id)
            return asyncio.ensure_future(_await(handle))

        self.inflight.append(([order_id], "one", self.run(start())))
        self.started += 1

    @rule(ids=st.lists(orders, min_size=1, max_size=5), via=st.sampled_from(["http", "ws"]))
    def bulk(self, ids: list[str], via: str) -> None:
        coro = self.clients[via].cancel_many(ids, concurrency=4)
        task = self.loop.create_task(coro)
        self.inflight.append((ids, "bulk", task))
        self.started += len(ids)
        self.run(asyncio.sleep(0))

    @rule()
    def reset(self) -> None:
        self.run(self.px.reset_all())

    @rule()
    def blackhole(self) -> None:
        async def brief() -> None:
            self.px.blackhole()
            await asyncio.sleep(0.05)  # the fault's duration, not a synchronisation
            self.px.restore()

        self.run(brief())

    @rule()
    def restart_with_new_epoch(self) -> None:
        self.run(self.sim.restart())

    @rule(order_id=orders)
    def fill_racing_cancel(self, order_id: str) -> None:
        with contextlib.suppress(KeyError, ValueError):  # already final
            self.sim.fill(order_id)

    @rule()
    def token_expiry(self) -> None:
        # The provider switches to a new token; the one before the current is
        # expired now (so a token is never expired while it is the provider's).
        if self.old_token is not None:
            self.sim.expire_token(self.old_token)
        self.old_token, self.token = self.token, self.sim.issue_token()

    @precondition(lambda self: bool(self.inflight))
    @rule()
    def settle(self) -> None:
        futures = [f for _, _, f in self.inflight]
        self.run(asyncio.wait(futures, timeout=0.2))
        self._collect()

    # ---------------------------------------------------------------- checks

    def _collect(self) -> None:
        still = []
        for ids, kind, future in self.inflight:
            if not future.done():
                still.append((ids, kind, future))
                continue
            outcome = future.result()  # _await and cancel_many never raise
            items = outcome if kind == "bulk" else [outcome]
            assert len(items) == len(ids)
            for order_id, item in zip(ids, items, strict=True):
                self._record(order_id, item)
        self.inflight = still

    def _record(self, order_id: str, item: Any) -> None:
        self.finished += 1
        if isinstance(item, CancelResult):
            assert item.order_id == order_id
            assert is_final(item.status)
            assert item.cancelled == (item.status == OrderStatus.CANCELLED)
            self.outcomes.setdefault(order_id, []).append(("result", item.status))
            return
        assert isinstance(item, HONEST_ERRORS), f"{order_id}: {type(item).__name__}: {item}"
        last = None
        if isinstance(item, ConfirmationTimeout) and item.last_known is not None:
            last = item.last_known.status
            assert not is_final(last), "a terminal last_known is a proof, not a timeout"
        self.outcomes.setdefault(order_id, []).append(("error", type(item).__name__, str(last)))

    @invariant()
    def results_match_the_exchange(self) -> None:
        for order_id, seen in self.outcomes.items():
            statuses = {s[1] for s in seen if s[0] == "result"}
            assert len(statuses) <= 1, f"{order_id}: both {statuses}"
            order = self.sim.get_order(order_id)
            assert order is not None
            for status in statuses:
                assert status == order.status, f"{order_id}: confirmed {status}, is {order.status}"

    @invariant()
    def every_finished_cancel_has_one_outcome(self) -> None:
        recorded = sum(len(v) for v in self.outcomes.values())
        assert recorded == self.finished
        assert self.finished + sum(len(ids) for ids, _, _ in self.inflight) == self.started

    def teardown(self) -> None:
        try:
            if self.inflight:
                futures = [f for _, _, f in self.inflight]
                self.run(asyncio.wait(futures, timeout=SETTLE_BOUND))
                hung = [ids for ids, _, f in self.inflight if not f.done()]
                self._collect()
                assert not hung, f"cancels without an outcome after {SETTLE_BOUND}s: {hung}"
            self.results_match_the_exchange()
            self.every_finished_cancel_has_one_outcome()
            for client in self.clients.values():
                assert waiters_held(client) == 0
        finally:
            for _, _, future in self.inflight:
                future.cancel()
            try:
                # Bounded: a close that hangs fails the example instead of the session.
                self.run(asyncio.wait_for(self.stack.aclose(), CLOSE_BOUND))
            except asyncio.TimeoutError:
                raise AssertionError(
                    f"closing the clients, proxy and simulator hung for {CLOSE_BOUND}s"
                ) from None
            finally:
                self.run(self.loop.shutdown_asyncgens())
                self.loop.close()


async def _await(handle: Any) -> Any:
    """A background cancel's outcome, as a value (its error is returned, not raised)."""
    try:
        return await handle
    except Exception as exc:
        return exc


ClientAndSimulator.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestClientAndSimulator = ClientAndSimulator.TestCase
