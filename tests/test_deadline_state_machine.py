"""Random fault schedules and random timeouts: every cancel ends on time with the truth.

A Hypothesis state machine drives one :class:`~cadenza_async.CadenzaClient`
against a :class:`~cadenza_async.testing.CadenzaSimulator` whose event loop
runs in a thread of its own for the whole example, so cancels progress (and
their deadlines run) while Hypothesis picks the next step, as they would in
a real program. Rules start cancels with random timeouts (some sharing one
order) and inject faults: slow or hung REST, 5xx bursts, 429 with a long
``Retry-After``, WebSocket drops, the WebSocket refused for a while, slow
subscribe replies, fills racing the cancels.

Invariants, over every finished call:

* it ended within its ``timeout`` plus :data:`SLACK`;
* its outcome is a ``CancelResult`` that agrees with the exchange, or one of
  the typed errors a fault can honestly cause;
* a ``ConfirmationTimeout`` means the cancel reached the API, or at least
  that the client wrote it (its cause says it may have been sent: a pause of
  the simulator's thread, a full collection for one, can keep a request
  written in time from being read before the client gives up on it); a cancel
  that never left says so (``TransportError`` with ``maybe_sent`` False);
* never two cancel requests for one order in flight at once (counted where the
  client sends them: the simulator notices a request the client gave up on
  only a few milliseconds later, so an HTTP retry could overlap it there).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from concurrent.futures import Future
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

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
from cadenza_async.testing import CadenzaSimulator

#: How late past its deadline a call may end here: the README states tens of
#: milliseconds; this leaves room for a loaded 2-core CI machine.
SLACK = 0.25
ALLOWED_ERRORS = (ConfirmationTimeout, RateLimitError, ServerError, TransportError)
TIMEOUTS = st.sampled_from([0.2, 0.5, 1.0, 2.0])


class _Call:
    __slots__ = ("elapsed", "order_id", "outcome", "timeout")

    def __init__(self, order_id: str, timeout: float) -> None:
        self.order_id = order_id
        self.timeout = timeout
        self.elapsed: float | None = None
        self.outcome: object = None


class DeadlinesUnderFaults(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="machine-loop")
        self.thread.start()
        self.calls: list[_Call] = []
        self.pending: list[Future[None]] = []
        self.checked = 0
        self.max_overrun = -math.inf
        self.run(self._open())

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _open(self) -> None:
        self.sim = CadenzaSimulator(cancel_delay=0.05)
        await self.sim.start()
        self.client = CadenzaClient(
            token=self.sim.token,
            api_url=self.sim.api_url,
            ws_url=self.sim.ws_url,
            trading_account_id=self.sim.trading_account_id,
            timeouts=Timeouts(connect=1.0, request=1.0, confirm=2.0),
            retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, max_retry_after=1.0),
            reconnect_max_delay=0.5,
        )
        await self.client.__aenter__()
        # Count, on the client's side, the cancels of each order in flight at once
        # (the simulator's own count can overlap by the time it takes to notice that
        # a client gave up on a request: an HTTP retry may arrive meanwhile).
        self.in_flight: dict[str, int] = {}
        self.peaks: dict[str, int] = {}
        machine = self
        inner = self.client._canceller._http_cancel

        class Counted:
            async def cancel(
                self, order_id: str, account_id: str | None, /, *, deadline: float
            ) -> Any:
                machine.in_flight[order_id] = machine.in_flight.get(order_id, 0) + 1
                machine.peaks[order_id] = max(
                    machine.peaks.get(order_id, 0), machine.in_flight[order_id]
                )
                try:
                    return await inner.cancel(order_id, account_id, deadline=deadline)
                finally:
                    machine.in_flight[order_id] -= 1

        self.client._canceller._http_cancel = Counted()

    async def _timed(self, call: _Call) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            call.outcome = await self.client.cancel_and_confirm(call.order_id, timeout=call.timeout)
        except Exception as exc:
            call.outcome = exc
        call.elapsed = loop.time() - started

    async def _start(self, orders: int, timeout: float, shared: bool) -> None:
        for order in self.sim.create_orders(orders):
            for _ in range(2 if shared else 1):
                call = _Call(order.trade_order_id, timeout)
                self.calls.append(call)
                self.pending.append(asyncio.run_coroutine_threadsafe(self._timed(call), self.loop))

    # ------------------------------------------------------------------ rules

    @rule(orders=st.integers(1, 3), timeout=TIMEOUTS, shared=st.booleans())
    def cancel(self, orders: int, timeout: float, shared: bool) -> None:
        self.run(self._start(orders, timeout, shared))

    @rule(
        endpoint=st.sampled_from(["cancel", "list", None]),
        seconds=st.sampled_from([0.3, 1.5, math.inf]),
    )
    def slow_rest(self, endpoint: str | None, seconds: float) -> None:
        self.loop.call_soon_threadsafe(lambda: self.sim.delay_rest(seconds, endpoint=endpoint))

    @rule()
    def rest_back(self) -> None:
        self.loop.call_soon_threadsafe(lambda: self.sim.delay_rest(0))

    @rule(seconds=st.sampled_from([0.2, 0.6]), status=st.sampled_from([502, 503, 504]))
    def outage(self, seconds: float, status: int) -> None:
        self.loop.call_soon_threadsafe(lambda: self.sim.rest_outage(seconds, status=status))

    @rule(retry_after=st.sampled_from([0.1, 5.0]))
    def rate_limited(self, retry_after: float) -> None:
        self.loop.call_soon_threadsafe(
            lambda: self.sim.rate_limit_next_rest(1, retry_after=retry_after)
        )

    @rule()
    def drop_websocket(self) -> None:
        self.run(self.sim.disconnect_all(3001))

    @rule(seconds=st.sampled_from([0.3, 1.5]))
    def websocket_down(self, seconds: float) -> None:
        async def down() -> None:
            await self.sim.refuse_websocket(503)
            self.loop.call_later(seconds, self.sim.accept_websocket)

        self.run(down())

    @rule(seconds=st.sampled_from([0.3, 3.0]))
    def slow_subscribe(self, seconds: float) -> None:
        async def slow() -> None:
            self.sim.delay_subscribe_replies(seconds)
            self.loop.call_later(seconds, self.sim.delay_subscribe_replies, 0)
            await self.sim.disconnect_all(3001)  # resubscribing now meets the slow replies

        self.run(slow())

    @rule(pick=st.integers(0, 1000))
    def fill_one(self, pick: int) -> None:
        async def fill() -> None:
            open_ids = sorted(o.trade_order_id for o in self.sim.orders if o.status == "OPEN")
            if open_ids:
                self.sim.fill(open_ids[pick % len(open_ids)])

        self.run(fill())

    @rule(seconds=st.sampled_from([0.05, 0.3, 1.0]))
    def time_passes(self, seconds: float) -> None:
        time.sleep(seconds)  # the loop thread runs the cancels and their faults meanwhile

    @rule()
    def settle(self) -> None:
        for future in list(self.pending):
            future.result(timeout=30)
        self.pending.clear()

    # ------------------------------------------------------------------ invariants

    @invariant()
    def every_finished_call_ended_on_time_with_the_truth(self) -> None:
        for call in self.calls[self.checked :]:
            if call.elapsed is None:
                break
            self.checked += 1
            overrun = call.elapsed - call.timeout
            self.max_overrun = max(self.max_overrun, overrun)
            assert overrun <= SLACK, (call.order_id, call.timeout, call.elapsed, call.outcome)
            outcome = call.outcome
            if isinstance(outcome, CancelResult):
                status = self.run(self._status(call.order_id))
                assert outcome.order.trade_order_id == call.order_id
                assert outcome.cancelled == (outcome.status == "CANCELLED")
                assert outcome.status == status, (outcome, status)
            else:
                assert isinstance(outcome, ALLOWED_ERRORS), repr(outcome)
                assert getattr(outcome, "order_id", None) == call.order_id
                if isinstance(outcome, TransportError):
                    # (the simulator drops no connection here: only a cancel that never left)
                    assert outcome.maybe_sent is False, repr(outcome)
                if isinstance(outcome, ConfirmationTimeout):
                    # A timeout never hides a cancel that was not sent: the API saw it,
                    # or the client wrote it and says it may have been sent.
                    seen = call.order_id in self.sim.max_concurrent_cancels
                    cause = outcome.__cause__
                    assert seen or getattr(cause, "maybe_sent", False), (call.timeout, repr(cause))

    @invariant()
    def never_two_cancel_requests_for_one_order_at_once(self) -> None:
        peaks = dict(self.peaks)
        assert all(peak <= 1 for peak in peaks.values()), peaks

    async def _status(self, order_id: str) -> str:
        order = self.sim.get_order(order_id)
        assert order is not None
        return order.status

    def teardown(self) -> None:
        try:
            for future in self.pending:  # every call ends by its own deadline, faults or not
                future.result(timeout=30)
            self.loop.call_soon_threadsafe(self._heal)
            self.every_finished_call_ended_on_time_with_the_truth()
            assert self.checked == len(self.calls)
            report = os.environ.get("CADENZA_MACHINE_REPORT")
            if report and self.calls:
                with open(report, "a", encoding="utf-8") as out:
                    out.write(f"{len(self.calls)} {self.max_overrun:.4f}\n")
            self.run(self._close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def _heal(self) -> None:
        self.sim.delay_rest(0)
        self.sim.delay_subscribe_replies(0)
        self.sim.accept_websocket()

    async def _close(self) -> None:
        await self.client.aclose()
        await self.sim.stop()


DeadlinesUnderFaults.TestCase.settings = settings(
    # CADENZA_MACHINE_EXAMPLES=200 (make soak) for a longer search.
    max_examples=int(os.environ.get("CADENZA_MACHINE_EXAMPLES", "20")),
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDeadlinesUnderFaults = DeadlinesUnderFaults.TestCase
