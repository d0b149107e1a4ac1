"""CadenzaClient: owns the HTTP layer, the order stream and the confirmation registry."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from decimal import Decimal
from types import TracebackType
from typing import Any

import msgspec

from ._auth import TokenSource
from ._ratelimit import RateGate
from ._validate import check_account_id, check_order_id
from .bulk import run_bulk, run_bulk_iter
from .cancels import CHANNEL_PREFIX, CancelHandle, Canceller
from .config import ClientConfig, TokenProvider
from .errors import CadenzaError, ClientClosedError, StreamError
from .http import HttpApi, OrderPage
from .models import CancelResult, TradeOrder, decode_order_event, is_terminal
from .protocol.centrifugo import UNDECODABLE_DATA
from .protocol.confirm import ConfirmationRegistry
from .stream import OrderStream
from .updates import OrderUpdates

log = logging.getLogger("cadenza_async.client")

BackgroundErrorHandler = Callable[[BaseException, str], object]


class ClientStats(msgspec.Struct, frozen=True):
    """A snapshot of what a client is doing and has seen (see :meth:`CadenzaClient.stats`)."""

    pending_cancels: int
    background_cancels: int
    confirmed_by: dict[str, int]
    stream_connected: bool
    stream_reconnects: int
    bad_events: int
    updates_dropped: int
    account_mismatches: int
    terminal_conflicts: int


BulkOutcome = CancelResult | TradeOrder | CadenzaError

__all__ = ["CadenzaClient", "ClientStats"]


class CadenzaClient:
    """The Cadenza API client. Use it as ``async with CadenzaClient(...) as client:``.

    ``async with`` connects the order stream and subscribes the default
    account before the body runs; leaving it waits (up to ``drain_timeout``)
    for every fire-and-forget cancel, then closes the stream and the HTTP
    session. A closed client cannot be reopened: every call after
    :meth:`aclose` raises :class:`~cadenza_async.errors.ClientClosedError`.

    ``on_background_error(exc, order_id)`` is called for a fire-and-forget
    cancel that failed while nobody was awaiting its handle (the failure is
    also logged once).
    """

    def __init__(
        self,
        token: TokenProvider | None = None,
        api_url: str | None = None,
        ws_url: str | None = None,
        trading_account_id: str | None = None,
        *,
        config: ClientConfig | None = None,
        on_background_error: BackgroundErrorHandler | None = None,
        **options: Any,
    ) -> None:
        given = {
            "token": token,
            "api_url": api_url,
            "ws_url": ws_url,
            "trading_account_id": trading_account_id,
            **options,
        }
        given = {k: v for k, v in given.items() if v is not None}
        if config is None:
            config = ClientConfig(**given)
        elif given:
            config = config.with_changes(**given)
        self.config = config
        self._closed = False
        self._tokens = TokenSource(config.token)
        self._gate = RateGate(config.max_rate)
        self._http = HttpApi(config, self._tokens, self._gate)
        # Settled ids: trailing events of finished cancels are dropped, not buffered.
        self._registry = ConfirmationRegistry(settled_capacity=10_000)
        self._updates = OrderUpdates(config.order_updates_buffer)
        self._canceller = Canceller(
            http=self._http,
            gate=self._gate,
            registry=self._registry,
            ensure_stream=self._ensure_stream,
            cancel_via=config.cancel_via,
            confirm_timeout=config.timeouts.confirm,
            request_timeout=config.timeouts.request,
            default_account=config.trading_account_id,
        )
        self._on_background_error = on_background_error
        self._stream: OrderStream | None = None
        self._stream_ready: asyncio.Future[None] | None = None
        self._background: dict[asyncio.Task[CancelResult], str] = {}
        self._chores: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channel_accounts: dict[str, str] = {}
        self.bad_events = 0
        self._last_bad_event_log = 0.0

    @classmethod
    def from_env(
        cls, *, on_background_error: BackgroundErrorHandler | None = None, **overrides: Any
    ) -> CadenzaClient:
        """A client configured from ``CADENZA_*`` environment variables; overrides win.

        Raises :class:`~cadenza_async.errors.ConfigurationError` without a token.
        """
        return cls(
            config=ClientConfig.from_env(**overrides), on_background_error=on_background_error
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<CadenzaClient {self.config.api_url} {state}>"

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` has begun."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("the client is closed")

    async def __aenter__(self) -> CadenzaClient:
        self._check_open()
        try:
            await self._ensure_stream()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Drain fire-and-forget cancels (up to ``drain_timeout``), then stop everything.

        A background cancel still unfinished at the drain deadline is logged
        and reported to ``on_background_error`` with a
        :class:`~cadenza_async.errors.ClientClosedError`, then cancelled:
        nothing is dropped silently. Safe to call twice.
        """
        if self._closed:
            return
        self._closed = True
        try:
            await self._drain_for_close()
        finally:
            for task in self._chores:
                task.cancel()
            if self._chores:
                await asyncio.gather(*self._chores, return_exceptions=True)
            await self._canceller.aclose()
            self._updates.close()
            stream = self._stream
            if stream is not None:
                await stream.aclose()
            await self._http.aclose()

    async def _drain_for_close(self) -> None:
        background = set(self._background)
        if not background:
            return
        _done, unfinished = await asyncio.wait(background, timeout=self.config.drain_timeout)
        if not unfinished:
            return
        ids = sorted(self._background.get(task, task.get_name()) for task in unfinished)
        log.error(
            "closing with %d fire-and-forget cancel(s) unconfirmed after %.1fs: %s",
            len(ids),
            self.config.drain_timeout,
            ", ".join(ids[:20]) + (" ..." if len(ids) > 20 else ""),
        )
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        for order_id in ids:
            exc = ClientClosedError(f"client closed before the cancel of {order_id} was confirmed")
            exc.order_id = order_id
            self._report_background_error(exc, order_id)

    async def drain(self) -> None:
        """Wait until every fire-and-forget cancel started so far has its outcome."""
        while self._background:
            await asyncio.wait(set(self._background))

    # -- the order stream ---------------------------------------------------------------

    async def _ensure_stream(self) -> None:
        """Start the stream once (concurrent callers share the start); raise if it cannot."""
        ready = self._stream_ready
        if ready is not None and ready.done() and ready.exception() is None:
            return
        if ready is None or ready.done():
            self._check_open()
            loop = asyncio.get_running_loop()
            self._loop = loop
            ready = self._stream_ready = loop.create_future()
            try:
                stream = self._stream
                if stream is None:
                    stream = self._stream = OrderStream(
                        self.config,
                        self._tokens,
                        on_publication=self._on_publication,
                        on_gap=self._on_gap,
                        on_failure=self._on_stream_failure,
                    )
                    self._canceller.attach_stream(stream)
                await stream.start()
                account = self.config.trading_account_id
                if account is not None:
                    await self._canceller.ensure_subscribed(account)
            except BaseException as exc:
                ready.set_exception(exc)
                ready.exception()
                stream = self._stream
                self._stream = None
                if stream is not None:
                    await stream.aclose()
                raise
            ready.set_result(None)
            return
        await asyncio.shield(ready)

    def _on_publication(self, channel: str, data: msgspec.Raw, offset: int | None) -> None:
        try:
            order = decode_order_event(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            if data == UNDECODABLE_DATA:
                self._bad_event(channel, "undecodable order event (nested too deeply)")
            else:
                self._bad_event(channel, f"malformed order event: {exc}")
            return
        if order is None:
            return
        account = self._channel_accounts.get(channel)
        if account is None and channel.startswith(CHANNEL_PREFIX):
            account = self._channel_accounts[channel] = channel[len(CHANNEL_PREFIX) :]
        if account is not None and order.trading_account_id != account:
            self._bad_event(channel, "order event for another account")
            return
        loop = self._loop
        now = loop.time() if loop is not None else time.monotonic()
        self._canceller.observe_event(order, now, account)
        if self._updates:
            self._updates.publish(order)

    def _bad_event(self, channel: str, what: str) -> None:
        self.bad_events += 1
        now = time.monotonic()
        if now - self._last_bad_event_log >= 1.0:
            self._last_bad_event_log = now
            log.warning("%s on %s dropped (%d so far)", what, channel, self.bad_events)

    def _on_gap(self, channel: str) -> None:
        account = channel[len(CHANNEL_PREFIX) :] if channel.startswith(CHANNEL_PREFIX) else None
        if self._closed:
            return
        stream = self._stream
        if account is not None and stream is not None and channel not in stream.channels:
            # Unsubscribed by the server for good: no event will come on it any more.
            self._canceller.forget_subscription(account)
        self._spawn_chore(self._canceller.reconcile_pending(account))

    def _on_stream_failure(self, exc: StreamError) -> None:
        log.error("order stream stopped: %s", exc)
        self._canceller.stream_failed(exc)

    def _spawn_chore(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    # -- cancels with confirmation ------------------------------------------------------

    async def cancel_and_confirm(
        self,
        order_id: str,
        *,
        trading_account_id: str | None = None,
        timeout: float | None = None,
    ) -> CancelResult:
        """Cancel and return once the exchange has proven a terminal state.

        Returns a :class:`CancelResult` for every terminal state: ``cancelled``
        is True for CANCELLED (also when it was cancelled before this call),
        False for FILLED, REJECTED, EXPIRED, ... ``source`` says what proved it.
        Raises ``ValueError`` for a malformed id (nothing is sent),
        :class:`~cadenza_async.errors.OrderNotFoundError`, the other
        :class:`~cadenza_async.errors.ApiError` subclasses,
        :class:`~cadenza_async.errors.TransportError` when nothing can be
        reached, :class:`~cadenza_async.errors.StreamError` when the stream
        stopped for good, and :class:`~cadenza_async.errors.ConfirmationTimeout`
        (with ``last_known``) when no terminal state was proven in ``timeout``
        seconds (default ``timeouts.confirm``). Concurrent calls for one order
        share one request.
        """
        self._check_open()
        ready = self._stream_ready
        if ready is None or not ready.done() or ready.exception() is not None:
            await self._ensure_stream()
        return await self._canceller.cancel_and_confirm(
            order_id, trading_account_id=trading_account_id, timeout=timeout
        )

    def cancel_nowait(
        self,
        order_id: str,
        *,
        trading_account_id: str | None = None,
        timeout: float | None = None,
    ) -> CancelHandle:
        """Start ``cancel_and_confirm`` in the background and return its handle at once.

        The client owns the cancel until it has an outcome: closing the client
        drains it. Raises ``ValueError`` at once for a malformed id and
        :class:`~cadenza_async.errors.ClientClosedError` after close. Must be
        called from a running event loop.
        """
        self._check_open()
        check_order_id(order_id)
        if trading_account_id is not None:
            check_account_id(trading_account_id)
        task = asyncio.ensure_future(
            self._confirm_in_background(order_id, trading_account_id, timeout)
        )
        handle = CancelHandle(order_id, task)
        self._background[task] = order_id
        task.add_done_callback(lambda t: self._background_done(t, handle))
        return handle

    async def _confirm_in_background(
        self, order_id: str, trading_account_id: str | None, timeout: float | None
    ) -> CancelResult:
        # Not through cancel_and_confirm: a cancel started before close must
        # still run while the client drains.
        ready = self._stream_ready
        if ready is None or not ready.done() or ready.exception() is not None:
            await self._ensure_stream()
        return await self._canceller.cancel_and_confirm(
            order_id, trading_account_id=trading_account_id, timeout=timeout
        )

    def _background_done(self, task: asyncio.Task[CancelResult], handle: CancelHandle) -> None:
        self._background.pop(task, None)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here: never "exception was never retrieved"
        if exc is not None and not handle.observed:
            self._report_background_error(exc, handle.order_id)

    def _report_background_error(self, exc: BaseException, order_id: str) -> None:
        log.error("fire-and-forget cancel of %s failed: %s: %s", order_id, type(exc).__name__, exc)
        callback = self._on_background_error
        if callback is None:
            return
        try:
            callback(exc, order_id)
        except Exception:
            log.exception("on_background_error raised")

    async def cancel_many(
        self,
        order_ids: Iterable[str],
        *,
        concurrency: int = 64,
        confirm: bool = True,
        timeout: float | None = None,
        trading_account_id: str | None = None,
    ) -> list[BulkOutcome]:
        """Cancel many orders concurrently; one outcome per input, in input order.

        Each item is a :class:`CancelResult` (``confirm=False``: the
        :class:`TradeOrder` of the HTTP reply) or that order's error (its
        ``order_id`` set); a single order's failure never raises. Repeated
        ids are cancelled once. At most ``concurrency`` cancels are in flight;
        cancelling the caller cancels the rest and waits for them to unwind.
        """
        self._check_open()
        one = self._bulk_one(confirm=confirm, timeout=timeout, account=trading_account_id)
        return await run_bulk(order_ids, one, concurrency=concurrency)

    async def cancel_many_iter(
        self,
        order_ids: Iterable[str],
        *,
        concurrency: int = 64,
        confirm: bool = True,
        timeout: float | None = None,
        trading_account_id: str | None = None,
    ) -> AsyncIterator[BulkOutcome]:
        """Like :meth:`cancel_many`, but yield each outcome as it completes.

        Every item has the order's id: ``CancelResult.order_id``,
        ``TradeOrder.trade_order_id`` or the error's ``order_id``. To stop the
        remaining work at once when leaving the loop early, iterate inside
        ``contextlib.aclosing(client.cancel_many_iter(...))``; otherwise it
        stops when the event loop finalizes the abandoned generator.
        """
        self._check_open()
        one = self._bulk_one(confirm=confirm, timeout=timeout, account=trading_account_id)
        outcomes = run_bulk_iter(order_ids, one, concurrency=concurrency)
        try:
            async for _order_id, outcome in outcomes:
                yield outcome
        finally:
            # Leaving early (break, error, cancellation) stops the work in flight now,
            # not whenever the inner generator is collected.
            await outcomes.aclose()

    def _bulk_one(
        self, *, confirm: bool, timeout: float | None, account: str | None
    ) -> Callable[[str], Any]:
        if account is not None:
            check_account_id(account)
        if confirm:

            async def confirmed(order_id: str) -> CancelResult:
                return await self.cancel_and_confirm(
                    order_id, trading_account_id=account, timeout=timeout
                )

            return confirmed

        async def unconfirmed(order_id: str) -> TradeOrder:
            return await self.cancel(order_id, trading_account_id=account)

        return unconfirmed

    async def cancel_all_open(
        self,
        trading_account_id: str,
        *,
        instrument_id: str | None = None,
        concurrency: int = 64,
        timeout: float | None = None,
        page_size: int = 500,
    ) -> list[BulkOutcome]:
        """Cancel, with confirmation, every non-terminal order of an account.

        Lists the account's orders page by page, then runs :meth:`cancel_many`.
        """
        self._check_open()
        check_account_id(trading_account_id)
        open_ids: list[str] = []
        offset = 0
        while True:
            page = await self._http.list_orders(
                trading_account_id=trading_account_id,
                instrument_id=instrument_id,
                limit=page_size,
                offset=offset,
            )
            open_ids += [o.trade_order_id for o in page.orders if not is_terminal(o.status)]
            offset += len(page.orders)
            more = page.pagination.has_next if page.pagination is not None else None
            if not page.orders or more is False or (more is None and len(page.orders) < page_size):
                break
        return await self.cancel_many(
            open_ids,
            concurrency=concurrency,
            timeout=timeout,
            trading_account_id=trading_account_id,
        )

    async def order_updates(self) -> AsyncIterator[TradeOrder]:
        """Every order update on the subscribed accounts, as it arrives.

        Never slows the stream: each reader has a bounded buffer
        (``order_updates_buffer``); a reader that falls behind loses the
        oldest updates, which is logged and counted in ``updates_dropped``.
        Ends when the client closes.
        """
        self._check_open()
        await self._ensure_stream()
        async for order in self._updates.subscribe():
            yield order

    def stats(self) -> ClientStats:
        """Counters for monitoring: pending work, what confirmed cancels, stream health."""
        registry = self._registry.stats
        stream = self._stream
        return ClientStats(
            pending_cancels=self._registry.pending_count,
            background_cancels=len(self._background),
            confirmed_by=dict(registry.resolved_by_source),
            stream_connected=stream is not None and stream.connected,
            stream_reconnects=stream.reconnects if stream is not None else 0,
            bad_events=self.bad_events,
            updates_dropped=self._updates.dropped,
            account_mismatches=registry.account_mismatches,
            terminal_conflicts=registry.terminal_conflicts,
        )

    @property
    def updates_dropped(self) -> int:
        """How many order updates slow ``order_updates()`` readers lost."""
        return self._updates.dropped

    async def subscribe_account(self, trading_account_id: str) -> None:
        """Receive the account's order updates (cancels subscribe on their own)."""
        self._check_open()
        check_account_id(trading_account_id)
        await self._ensure_stream()
        await self._canceller.ensure_subscribed(trading_account_id)

    # -- REST calls -------------------------------------------------------------------

    async def cancel(self, order_id: str, *, trading_account_id: str | None = None) -> TradeOrder:
        """Send the cancel over HTTP; the order as the server shows it in its reply.

        Returns when the HTTP call returned, not when the exchange confirmed:
        the status may still be non-terminal (e.g. PENDING_CANCEL). Raises
        ``ValueError`` for a malformed id (nothing is sent),
        :class:`~cadenza_async.errors.OrderNotCancellableError`,
        :class:`~cadenza_async.errors.OrderNotFoundError`, the other
        :class:`~cadenza_async.errors.ApiError` subclasses, or
        :class:`~cadenza_async.errors.TransportError` once retries are spent.
        """
        self._check_open()
        check_order_id(order_id)
        if trading_account_id is not None:
            check_account_id(trading_account_id)
        return await self._http.cancel_order(order_id, trading_account_id)

    async def get_order(
        self, order_id: str, *, trading_account_id: str | None = None
    ) -> TradeOrder:
        """The order's current state by REST look-up.

        Raises ``ValueError`` for a malformed id and
        :class:`~cadenza_async.errors.OrderNotFoundError` when there is no such order.
        """
        self._check_open()
        check_order_id(order_id)
        if trading_account_id is not None:
            check_account_id(trading_account_id)
        return await self._http.get_order(order_id, trading_account_id)

    async def list_orders(
        self,
        *,
        trading_account_id: str | None = None,
        order_status: str | None = None,
        instrument_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        cursor: str | None = None,
    ) -> OrderPage:
        """One page of orders matching the filters (``OrderPage.orders``, ``.pagination``)."""
        self._check_open()
        if trading_account_id is not None:
            check_account_id(trading_account_id)
        return await self._http.list_orders(
            trading_account_id=trading_account_id,
            order_status=order_status,
            instrument_id=instrument_id,
            limit=limit,
            offset=offset,
            cursor=cursor,
        )

    async def submit_order(
        self,
        *,
        instrument_id: str,
        order_side: str,
        order_type: str,
        quantity: str | Decimal,
        limit_price: str | Decimal | None = None,
        stop_price: str | Decimal | None = None,
        time_in_force: str | None = None,
        client_order_id: str | None = None,
        trading_account_id: str | None = None,
    ) -> TradeOrder:
        """Place an order on ``trading_account_id`` (default: the configured account).

        Never retried on transport errors or 5xx: a
        :class:`~cadenza_async.errors.TransportError` means the order may or
        may not exist. Raises ``ValueError`` when no account is known.
        """
        self._check_open()
        account = trading_account_id or self.config.trading_account_id
        if account is None:
            raise ValueError("submit_order needs trading_account_id (none configured)")
        check_account_id(account)
        return await self._http.submit_order(
            trading_account_id=account,
            instrument_id=instrument_id,
            order_side=order_side,
            order_type=order_type,
            quantity=quantity,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
            client_order_id=client_order_id,
        )
