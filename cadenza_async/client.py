"""CadenzaClient: owns the HTTP layer, the order stream and the confirmation registry."""

from __future__ import annotations

import asyncio
import functools
import logging
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal

import msgspec

from ._auth import TokenSource
from ._listing import list_open
from ._placing_client import PlacingMethods
from ._ratelimit import RateGate
from ._validate import (
    check_account_id,
    check_bool,
    check_count,
    check_order_id,
    check_timeout,
)
from .account._client import Account, AccountMethods
from .background import BackgroundCancels, BackgroundErrorHandler
from .bulk import Many, run_bulk, run_bulk_iter, run_many, run_many_iter
from .cancels import CancelHandle, Canceller
from .config import ClientConfig, RetryPolicy, Timeouts, TokenProvider
from .errors import (
    CadenzaError,
    ClientClosedError,
    PermissionDeniedError,
    StreamAuthenticationError,
    StreamError,
    StreamRpcError,
    TransportError,
)
from .http import HttpApi, OrderPage
from .market._client import Market, MarketMethods
from .models import CancelResult, TradeOrder
from .placing import Placer
from .protocol.confirm import ConfirmationRegistry
from .protocol.placement import PlacementRegistry
from .stream import OrderStream, channel_for
from .transports import HttpCancel, HttpSubmit, http_list_orders, http_look_up
from .updates import OrderUpdates

log = logging.getLogger("cadenza_async.client")


class ClientStats(msgspec.Struct, frozen=True):
    """A snapshot of what a client is doing and has seen (see :meth:`CadenzaClient.stats`)."""

    pending_cancels: int
    background_cancels: int
    confirmed_by: dict[str, int]
    stream_connected: bool
    stream_reconnects: int
    degraded: bool
    rest_polls: int
    bad_events: int
    updates_dropped: int
    account_mismatches: int
    terminal_conflicts: int
    pending_submits: int = 0
    #: Publications on account channels that are not order updates, by kind
    #: (``"portfolio"``, ``"trading_account"``, ...): read, never counted as bad.
    account_events: dict[str, int] = msgspec.field(default_factory=dict)
    #: Bad order events by shape (the decoder's words: the field and the type it saw).
    bad_event_shapes: dict[str, int] = msgspec.field(default_factory=dict)


BulkOutcome = CancelResult | TradeOrder | CadenzaError

__all__ = ["CadenzaClient", "ClientStats"]


class CadenzaClient(MarketMethods, PlacingMethods, AccountMethods):
    """The Cadenza API client. Use it as ``async with CadenzaClient(...) as client:``.

    ``async with`` connects the order stream and subscribes the default
    account before the body runs (waiting up to ``timeouts.connect``). It
    raises :class:`~cadenza_async.errors.StreamAuthenticationError` (an
    ``AuthenticationError``) when the WebSocket refuses the token and
    :class:`~cadenza_async.errors.PermissionDeniedError` when the token may
    not see the default account; a WebSocket that cannot be reached does not
    stop it: the stream goes on connecting in the background and cancels are
    sent over HTTP and proven by REST meanwhile (degraded mode, see
    :meth:`stats`). Leaving the block waits (up to ``drain_timeout``) for
    every fire-and-forget cancel, then closes the stream and the HTTP
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
        timeouts: Timeouts | Mapping[str, float] | None = None,
        retry: RetryPolicy | Mapping[str, Any] | None = None,
        cancel_via: Literal["http", "ws"] | None = None,
        submit_via: Literal["http", "ws"] | None = None,
        wire: Literal["current", "legacy"] | None = None,
        allow_insecure: bool | None = None,
        drain_timeout: float | None = None,
        max_rate: float | None = None,
        order_updates_buffer: int | None = None,
        channel_idle_release: float | None = None,
        ping_grace: float | None = None,
        reconnect_min_delay: float | None = None,
        reconnect_max_delay: float | None = None,
        max_message_size: int | None = None,
        max_response_size: int | None = None,
        proxy: str | None = None,
    ) -> None:
        # Every setting of ClientConfig by name (None: not given; ``config`` or
        # the defaults decide). Mappings for ``timeouts``/``retry`` are accepted.
        given: dict[str, Any] = {
            "token": token,
            "api_url": api_url,
            "ws_url": ws_url,
            "trading_account_id": trading_account_id,
            "timeouts": timeouts,
            "retry": retry,
            "cancel_via": cancel_via,
            "submit_via": submit_via,
            "wire": wire,
            "allow_insecure": allow_insecure,
            "drain_timeout": drain_timeout,
            "max_rate": max_rate,
            "order_updates_buffer": order_updates_buffer,
            "channel_idle_release": channel_idle_release,
            "ping_grace": ping_grace,
            "reconnect_min_delay": reconnect_min_delay,
            "reconnect_max_delay": reconnect_max_delay,
            "max_message_size": max_message_size,
            "max_response_size": max_response_size,
            "proxy": proxy,
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
            http_cancel=HttpCancel(self._http),
            look_up_order=http_look_up(self._http),
            list_page=http_list_orders(self._http),
            gate=self._gate,
            registry=self._registry,
            cancel_via=config.cancel_via,
            confirm_timeout=config.timeouts.confirm,
            request_timeout=config.timeouts.request,
            default_account=config.trading_account_id,
        )
        self._placer = Placer(
            http_submit=HttpSubmit(self._http),
            look_up_order=http_look_up(self._http),
            list_recent=http_list_orders(self._http),
            gate=self._gate,
            registry=PlacementRegistry(),
            submit_via=config.submit_via,
            confirm_timeout=config.timeouts.confirm,
            request_timeout=config.timeouts.request,
            default_account=config.trading_account_id,
            wire=config.wire,
        )
        self._background = BackgroundCancels(on_background_error)
        self._stream = OrderStream(
            config,
            self._tokens,
            # (the placer and order_updates() listen while they need events)
            on_order=(self._canceller.observe_event,),
            # what the stream says about channels and itself, to both engines
            on_gap=self._both("channel_gap"),
            on_refused=self._both("channel_refused"),
            on_failure=self._both("stream_failed"),
            on_state=self._both("stream_state"),
            on_bad_event=self._both("bad_event"),
            # (the account/ part decides what the accounts' own events mean)
            on_account_event=(
                lambda event, account: self._account.on_account_event(event, account),
            ),
        )
        self._canceller.attach_stream(self._stream)
        # Accounts whose channel stays whatever: the configured one, those the
        # caller subscribed; and every one while order_updates() has a reader.
        self._pinned: set[str] = set()
        if config.trading_account_id is not None:
            self._pinned.add(config.trading_account_id)
        self._canceller.release_idle_after(config.channel_idle_release, self._keeps_channel)
        self._placer.attach_stream(self._stream)
        self._updates.attach_stream(self._stream)
        self._stream_start: asyncio.Task[None] | None = None
        # Market data (instruments and their rules, books, tickers, candles): market/.
        self._market = Market(
            self._http, self._stream, self._ensure_stream, config.timeouts.request
        )
        # Portfolios, trading accounts, quotes, health: account/.
        self._account = Account(
            self._http,
            self._stream,
            self._ensure_stream,
            config.timeouts.request,
            keeps=lambda account: (
                self._keeps_channel(account)
                or bool(self._registry.pending_count_for_account(account))
            ),
            fail_account=self._both("fail_account"),
        )

    def _keeps_channel(self, account: str) -> bool:
        """Whether ``account``'s channel stays wanted whatever its cancels do."""
        return (
            account in self._pinned
            or bool(self._updates)
            or self._placer.pending_on(account)
            or self._account.holds(account)
        )

    def _both(self, method: str) -> Callable[..., None]:
        """Call ``method`` of the canceller, then of the placer (the stream's callbacks)."""
        first = getattr(self._canceller, method)
        second = getattr(self._placer, method)

        def both(*args: Any) -> None:
            first(*args)
            second(*args)

        return both

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

        A background cancel still unfinished at the drain deadline ends with
        :class:`~cadenza_async.errors.ClientClosedError` (in its handle, in
        the log and in ``on_background_error``): nothing is dropped silently.
        Safe to call twice.
        """
        if self._closed:
            return
        self._closed = True
        try:
            await self._background.drain_for_close(self.config.drain_timeout)
        finally:
            start = self._stream_start
            if start is not None and not start.done():
                start.cancel()
                await asyncio.gather(start, return_exceptions=True)
            await self._canceller.aclose()
            await self._placer.aclose()
            await self._background.finish()
            self._updates.close()
            await self._market.aclose()
            await self._account.aclose()
            await self._stream.aclose()
            await self._http.aclose()

    async def drain(self) -> None:
        """Wait until every fire-and-forget cancel started so far has its outcome."""
        await self._background.drain()

    # -- the order stream ---------------------------------------------------------------

    def _start_stream(self) -> asyncio.Task[None]:
        """Start the stream once, in a task of the client's (cancels never wait for it)."""
        start = self._stream_start
        if start is None:
            self._check_open()
            start = self._stream_start = asyncio.get_running_loop().create_task(
                self._connect_stream(), name="cadenza-async-stream-start"
            )
            start.add_done_callback(_retrieve)
        return start

    async def _ensure_stream(self) -> None:
        """Wait (up to ``timeouts.connect``) for the stream's first connection attempt.

        Raises only what entering the client raises (a refused token, no
        access to the default account); an unreachable WebSocket is logged
        and the stream keeps connecting in the background.
        """
        await asyncio.shield(self._start_stream())

    async def _connect_stream(self) -> None:
        stream = self._stream
        try:
            await stream.start(keep_trying=True)
        except TransportError as exc:
            log.warning(
                "order stream not connected (%s): cancels go over HTTP and are proven by REST "
                "until it connects",
                exc,
            )
            self._canceller.stream_state("disconnected")
        except StreamAuthenticationError:
            raise
        except StreamError as exc:
            log.error("order stream refused (%s): cancels are proven by REST", exc)
            return
        account = self.config.trading_account_id
        if account is None or stream.failure is not None:
            return
        channel = channel_for(account)
        if not stream.connected:
            stream.want(channel)
            return
        try:
            await stream.subscribe(channel, timeout=self.config.timeouts.connect)
        except StreamRpcError as exc:
            if exc.errno == 103:
                raise PermissionDeniedError(
                    f"no access to trading account {account}", errno=exc.errno
                ) from None
            log.warning("could not subscribe to the default account: %s", exc)
        except TransportError as exc:
            log.warning("the default account's subscription is not confirmed yet: %s", exc)

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
        ``timeout`` (default ``timeouts.confirm``) bounds the whole call: it
        returns or raises by then plus a few milliseconds of scheduling slack.
        The cancel goes out at once, whatever the stream's state; when the
        stream cannot prove the outcome, REST polling does (``source="rest"``).

        Raises ``ValueError`` for a malformed id (nothing is sent),
        :class:`~cadenza_async.errors.OrderNotFoundError`, the other
        :class:`~cadenza_async.errors.ApiError` subclasses (a
        :class:`~cadenza_async.errors.RateLimitError` at once when a rate-limit
        pause outlasts the deadline: nothing was sent),
        :class:`~cadenza_async.errors.TransportError` or
        :class:`~cadenza_async.errors.ServerError` at once when the cancel
        provably never reached the API and retries are spent,
        :class:`~cadenza_async.errors.ClientClosedError` when the client
        closes first, and :class:`~cadenza_async.errors.ConfirmationTimeout`
        (with ``last_known``, and the last failed send as ``__cause__``) when
        no terminal state was proven in time. Concurrent calls for one order
        share one request.
        """
        self._check_open()
        order_id, trading_account_id = _checked_ids(order_id, trading_account_id)
        check_timeout(timeout)
        self._start_stream()
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
        order_id, trading_account_id = _checked_ids(order_id, trading_account_id)
        check_timeout(timeout)
        return self._background.start(
            order_id, self._confirm_in_background(order_id, trading_account_id, timeout)
        )

    async def _confirm_in_background(
        self, order_id: str, trading_account_id: str | None, timeout: float | None
    ) -> CancelResult:
        # Not through cancel_and_confirm: a cancel started before close must
        # still run while the client drains.
        if self._stream_start is None and not self._closed:
            self._start_stream()
        return await self._canceller.cancel_and_confirm(
            order_id, trading_account_id=trading_account_id, timeout=timeout
        )

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
        trading_account_id = _checked_bulk(confirm, concurrency, timeout, trading_account_id)
        if confirm:
            many = self._confirm_many(concurrency, timeout, trading_account_id)
            return list(await run_many(order_ids, many, concurrency=concurrency))
        one = self._cancel_one(trading_account_id)
        return list(await run_bulk(order_ids, one, concurrency=concurrency))

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
        trading_account_id = _checked_bulk(confirm, concurrency, timeout, trading_account_id)
        outcomes: AsyncGenerator[tuple[str, BulkOutcome], None]
        if confirm:
            many = self._confirm_many(concurrency, timeout, trading_account_id)
            outcomes = run_many_iter(order_ids, many, concurrency=concurrency)
        else:
            one = self._cancel_one(trading_account_id)
            outcomes = run_bulk_iter(order_ids, one, concurrency=concurrency)
        try:
            async for _order_id, outcome in outcomes:
                yield outcome
        finally:
            # Leaving early (break, error, cancellation) stops the work in flight now,
            # not whenever the inner generator is collected.
            await outcomes.aclose()

    def _confirm_many(
        self,
        concurrency: int,
        timeout: float | None,
        account: str | None,
        accounts: Mapping[str, str] | None = None,
        deadline: float | None = None,
    ) -> Many[CancelResult]:
        """The confirmed bulk: :meth:`Canceller.confirm_many` (its checks made by the caller).

        The stream starts when the bulk has an order to cancel (not for a
        bulk whose every id was refused). With a ``timeout`` the whole bulk
        ends by it (``deadline``, when not given).
        """
        if timeout is not None and deadline is None:
            deadline = asyncio.get_running_loop().time() + self._canceller._check_timeout(timeout)
        confirm_many = functools.partial(
            self._canceller.confirm_many,
            concurrency=concurrency,
            timeout=timeout,
            trading_account_id=account,
            accounts=accounts,
            still_open=self._is_open,
            deadline=deadline,
        )

        async def many(order_ids: list[str], record: Callable[[str, Any], None]) -> None:
            self._start_stream()
            await confirm_many(order_ids, record)

        return many

    def _is_open(self) -> bool:
        return not self._closed

    def _cancel_one(self, account: str | None) -> Callable[[str], Awaitable[TradeOrder]]:
        """The unconfirmed bulk's step: :meth:`cancel` (the HTTP reply) per order."""

        async def unconfirmed(order_id: str) -> TradeOrder:
            return await self.cancel(order_id, trading_account_id=account)

        return unconfirmed

    async def cancel_all_open(
        self,
        trading_account_id: str | None = None,
        *,
        account_ids: Iterable[str] | None = None,
        instrument_id: str | None = None,
        concurrency: int = 64,
        timeout: float | None = None,
        page_size: int = 500,
        max_pages: int = 10_000,
    ) -> list[BulkOutcome]:
        """Cancel, with confirmation, every non-terminal order of an account (or of many).

        ``trading_account_id`` names one account; ``account_ids`` many (both
        may be given). Each account's orders are listed page by page (by the
        server's ``cursor`` when it gives one, else by offset; the accounts
        ``concurrency`` at a time), then every open order found is cancelled
        in one bulk with one bounded ``concurrency``: one outcome per order,
        in listing order (see :meth:`cancel_many`). A listing that stops
        making progress (a page with no order not already listed, a cursor
        that does not move) or reaches ``max_pages`` ends there with a
        warning, and what was found is cancelled. ``timeout``
        (``timeouts.confirm`` when None) bounds the whole call, the listing
        and the cancels: a listing still going at it ends there and what it
        found is cancelled in the time left (an order whose turn comes too
        late is not sent: :class:`~cadenza_async.errors.TransportError`); a
        listing that found nothing in time raises its error.
        """
        self._check_open()
        accounts = [] if trading_account_id is None else [trading_account_id]
        if account_ids is not None:
            if isinstance(account_ids, str):
                raise TypeError("account_ids must be an iterable of account ids, not a string")
            accounts += [a for a in account_ids if a not in accounts]
        if not accounts:
            raise ValueError("cancel_all_open needs trading_account_id or account_ids")
        accounts = list(dict.fromkeys(check_account_id(account) for account in accounts))
        check_count(concurrency, "concurrency")
        check_count(page_size, "page_size")
        check_count(max_pages, "max_pages")
        timeout = self._canceller._check_timeout(timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        limit = asyncio.Semaphore(concurrency)

        async def listed(account: str) -> list[str]:
            async with limit:
                return await self._list_open(account, instrument_id, page_size, max_pages, deadline)

        per_account = await asyncio.gather(*(listed(a) for a in accounts))
        account_of = {
            order_id: account
            for account, ids in zip(accounts, per_account, strict=True)
            for order_id in ids
        }
        many = self._confirm_many(concurrency, timeout, None, account_of, deadline)
        return list(await run_many(list(account_of), many, concurrency=concurrency))

    async def _list_open(
        self,
        account: str,
        instrument_id: str | None,
        page_size: int,
        max_pages: int,
        deadline: float,
    ) -> list[str]:
        """The ids of an account's open orders, listed within ``deadline`` (see cancel_all_open)."""
        orders, ended = await list_open(
            self._http.list_orders,
            account,
            instrument_id,
            page_size=page_size,
            max_pages=max_pages,
            deadline=deadline,
        )
        if ended:
            log.warning(
                "cancel_all_open: the order listing of %s ended early (%s); "
                "cancelling the %d open orders found",
                account,
                ended,
                len(orders),
            )
        return [o.trade_order_id for o in orders]

    async def list_open_orders(
        self,
        trading_account_id: str | None = None,
        *,
        instrument_id: str | None = None,
        page_size: int = 500,
        max_pages: int = 10_000,
        timeout: float | None = None,
    ) -> list[TradeOrder]:
        """Every non-terminal order of an account (default: the configured one), all pages.

        Listed as :meth:`cancel_all_open` lists them (the server's cursor or
        offsets; it ends early at a stall, at ``max_pages`` or at ``timeout``,
        ``timeouts.confirm`` when None, with a warning, and returns what it
        found). Raises the listing's error when nothing was listed in time.
        """
        self._check_open()
        account = trading_account_id or self.config.trading_account_id
        if account is None:
            raise ValueError("list_open_orders needs trading_account_id (none configured)")
        account = check_account_id(account)
        check_count(page_size, "page_size")
        check_count(max_pages, "max_pages")
        deadline = asyncio.get_running_loop().time() + self._canceller._check_timeout(timeout)
        orders, ended = await list_open(
            self._http.list_orders,
            account,
            instrument_id,
            page_size=page_size,
            max_pages=max_pages,
            deadline=deadline,
        )
        if ended:
            log.warning("the order listing of %s ended early (%s)", account, ended)
        return orders

    async def order_updates(self) -> AsyncIterator[TradeOrder]:
        """Every order update on the subscribed accounts, as it arrives.

        Never slows the stream: each reader has a bounded buffer
        (``order_updates_buffer``); a reader that falls behind loses the
        oldest updates, which is logged and counted in ``stats().updates_dropped``.
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
            stream_connected=stream.connected,
            stream_reconnects=stream.reconnects,
            degraded=self._canceller.degraded,
            rest_polls=self._canceller.rest_polls + self._placer.rest_polls,
            bad_events=stream.bad_events,
            updates_dropped=self._updates.dropped,
            account_mismatches=registry.account_mismatches + stream.account_mismatches,
            terminal_conflicts=registry.terminal_conflicts,
            pending_submits=self._placer.pending,
            account_events=dict(stream.account_events),
            bad_event_shapes=dict(stream.bad_event_shapes),
        )

    @property
    def bad_events(self) -> int:
        """Order events dropped as undecodable or naming another account than their channel."""
        return self._stream.bad_events

    @property
    def updates_dropped(self) -> int:
        """How many order updates slow ``order_updates()`` readers lost.

        Deprecated: read ``stats().updates_dropped`` (warns with DeprecationWarning).
        """
        warnings.warn(
            "CadenzaClient.updates_dropped is deprecated; use stats().updates_dropped",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._updates.dropped

    async def subscribe_account(self, trading_account_id: str) -> None:
        """Receive the account's order updates (cancels subscribe on their own)."""
        self._check_open()
        trading_account_id = check_account_id(trading_account_id)
        self._pinned.add(trading_account_id)
        await self._ensure_stream()
        try:
            await self._stream.subscribe(
                channel_for(trading_account_id), timeout=self.config.timeouts.connect
            )
        except StreamRpcError as exc:
            if exc.errno == 103:
                raise PermissionDeniedError(
                    f"no access to trading account {trading_account_id}", errno=exc.errno
                ) from None
            raise

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
        order_id, trading_account_id = _checked_ids(order_id, trading_account_id)
        return await self._canceller.cancel_once(order_id, trading_account_id)

    async def get_order(
        self, order_id: str, *, trading_account_id: str | None = None
    ) -> TradeOrder:
        """The order's current state by REST look-up.

        Raises ``ValueError`` for a malformed id and
        :class:`~cadenza_async.errors.OrderNotFoundError` when there is no such order.
        """
        self._check_open()
        order_id, trading_account_id = _checked_ids(order_id, trading_account_id)
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
            trading_account_id = check_account_id(trading_account_id)
        if limit is not None:
            check_count(limit, "limit")
        if offset is not None:
            check_count(offset, "offset", minimum=0)
        return await self._http.list_orders(
            trading_account_id=trading_account_id,
            order_status=order_status,
            instrument_id=instrument_id,
            limit=limit,
            offset=offset,
            cursor=cursor,
        )


def _checked_ids(order_id: str, account: str | None) -> tuple[str, str | None]:
    """An order id and an optional account id, checked (lower case); ``InvalidOrderIdError``."""
    return check_order_id(order_id), None if account is None else check_account_id(account)


def _checked_bulk(
    confirm: bool, concurrency: int, timeout: float | None, account: str | None
) -> str | None:
    """A bulk cancel's settings checked before anything starts; the account (lower case)."""
    check_bool(confirm, "confirm")
    check_count(concurrency, "concurrency")
    check_timeout(timeout)
    return None if account is None else check_account_id(account)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a task's exception as seen (whoever needs it awaits the task itself)."""
    if not task.cancelled():
        task.exception()
