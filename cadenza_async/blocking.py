"""BlockingCadenzaClient: one CadenzaClient on its own event-loop thread, called from plain threads.

::

    from cadenza_async import BlockingCadenzaClient

    with BlockingCadenzaClient.from_env() as client:
        result = client.cancel_and_confirm(order_id, timeout=5.0)

The client starts an anyio blocking portal (an asyncio event loop in a
daemon thread of its own) and runs one :class:`~cadenza_async.CadenzaClient`
on it. Every method hands its call to that loop and blocks the calling
thread until the outcome is there, so any number of threads may call it at
once: they share the client's one WebSocket, its HTTP connection pool and its
rate gate, and concurrent cancels of one order share one request as they do
in the async client. Results and exceptions are the async client's own
(:class:`~cadenza_async.CancelResult`, :class:`~cadenza_async.errors.OrderNotFoundError`, ...).

Do not call a blocking client from its own loop thread (an
``on_background_error`` callback, a handle's done callback): that raises
``RuntimeError`` instead of deadlocking. Nor from a thread where an event
loop runs (``async`` code, a Jupyter cell): that raises
:class:`~cadenza_async.errors.BlockingInEventLoopError` (a RuntimeError) at
once instead of stalling that loop for the whole call; use
:class:`~cadenza_async.CadenzaClient` there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, suppress
from decimal import Decimal
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import TaskStatus
from anyio.from_thread import BlockingPortal, start_blocking_portal
from anyio.streams.memory import MemoryObjectReceiveStream

from .account._blocking import BlockingAccountMethods
from .background import BackgroundErrorHandler
from .cancels import CancelHandle
from .client import BulkOutcome, CadenzaClient, ClientStats
from .config import ClientConfig, TokenProvider
from .errors import BlockingInEventLoopError, ClientClosedError
from .http import OrderPage
from .models import CancelResult, NewOrder, ReplaceResult, SubmitResult, TradeOrder
from .placing import SubmitOutcome

__all__ = ["BlockingCadenzaClient", "BlockingCancelHandle"]

T = TypeVar("T")


class _Next(Generic[T]):
    """One step of a pumped async iterator: an item, or the error that ended it."""

    __slots__ = ("error", "item")

    def __init__(self, item: T | None = None, error: Exception | None = None) -> None:
        self.item = item
        self.error = error


class BlockingCadenzaClient(BlockingAccountMethods):
    """The Cadenza API client for code that is not asyncio: same methods, no ``await``.

    Takes the arguments of :class:`~cadenza_async.CadenzaClient` and runs
    one on a private event-loop thread. Use it as ``with
    BlockingCadenzaClient(...) as client:`` (entering connects the order
    stream and subscribes the default account), or call :meth:`close` when
    done. Closing drains fire-and-forget cancels like ``aclose()`` (up to
    ``drain_timeout``), then stops the loop thread. A call made after close,
    or still running when close ends it, raises
    :class:`~cadenza_async.errors.ClientClosedError`.

    Thread-safe: every method may be called from any number of threads at
    once. Constructing it raises what ``CadenzaClient(...)`` raises
    (:class:`~cadenza_async.errors.ConfigurationError`), and leaves no
    thread behind when it does.
    """

    _portal: BlockingPortal
    _portal_cm: AbstractContextManager[BlockingPortal]
    _client: CadenzaClient

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
        def build() -> CadenzaClient:
            return CadenzaClient(
                token,
                api_url,
                ws_url,
                trading_account_id,
                config=config,
                on_background_error=on_background_error,
                **options,
            )

        self._start(build)

    @classmethod
    def from_env(
        cls, *, on_background_error: BackgroundErrorHandler | None = None, **overrides: Any
    ) -> BlockingCadenzaClient:
        """A client configured from ``CADENZA_*`` environment variables; overrides win.

        Raises :class:`~cadenza_async.errors.ConfigurationError` without a token.
        """
        self = cls.__new__(cls)
        self._start(
            lambda: CadenzaClient.from_env(on_background_error=on_background_error, **overrides)
        )
        return self

    def _start(self, build: Callable[[], CadenzaClient]) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._stopped = threading.Event()
        portal_cm = start_blocking_portal("asyncio")
        portal = portal_cm.__enter__()
        try:
            # Built on the loop thread: whatever it binds, it binds to that loop.
            self._client = portal.call(build)
            self._loop_thread = portal.call(threading.get_ident)
        except BaseException:
            portal_cm.__exit__(None, None, None)
            raise
        self._portal = portal
        self._portal_cm = portal_cm

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<BlockingCadenzaClient {self._client.config.api_url} {state}>"

    def __del__(self) -> None:
        # Only a client that was built whole and never closed: its loop thread is still running.
        if getattr(self, "_closed", True) or not hasattr(self, "_portal_cm"):
            return
        warnings.warn(
            f"unclosed {self!r}: call close() or use 'with'", ResourceWarning, stacklevel=1
        )

    @property
    def config(self) -> ClientConfig:
        """The settings of the client (read-only)."""
        return self._client.config

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has begun."""
        return self._closed

    # -- running calls on the loop thread ---------------------------------------------

    def _check_caller(self) -> None:
        """Refuse a call that would block a running event loop (not the client's own)."""
        if self._closed:
            raise ClientClosedError("the client is closed")
        if threading.get_ident() == self._loop_thread:
            return  # (the portal refuses it with its own RuntimeError)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        raise BlockingInEventLoopError(
            "BlockingCadenzaClient was called from a running event loop: it would block that "
            "loop (every task on it) for the whole call. In async code or a Jupyter cell, use "
            "CadenzaClient with await (async with CadenzaClient.from_env() as client: ...)"
        )

    def _submit(self, call: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        self._check_caller()
        try:
            return self._portal.start_task_soon(call)
        except RuntimeError:
            if self._closed:  # the loop stopped between the check and the hand-over
                raise ClientClosedError("the client is closed") from None
            raise

    def _wait(self, future: concurrent.futures.Future[T]) -> T:
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self._closed:
                raise ClientClosedError("the client was closed during the call") from None
            raise
        except KeyboardInterrupt:
            future.cancel()  # stop the call on the loop too, as cancelling a task would
            raise

    def _run(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call()`` (a coroutine function) on the loop; its result or its exception."""
        future: concurrent.futures.Future[T] = self._submit(call)
        return self._wait(future)

    def _run_sync(self, call: Callable[[], T]) -> T:
        """Run a plain function on the loop thread (where the client's state lives).

        Its result comes back boxed: the portal would await an awaitable
        result (a :class:`~cadenza_async.CancelHandle`) instead of returning it.
        """
        future: concurrent.futures.Future[tuple[T]] = self._submit(lambda: (call(),))
        return self._wait(future)[0]

    def _on_loop(self, call: Callable[[], object]) -> None:
        """Run ``call`` on the loop thread if the loop still runs; skip it otherwise."""
        if threading.get_ident() == self._loop_thread:
            call()
            return
        with suppress(RuntimeError):  # RuntimeError: the loop has stopped, nothing left to do
            self._portal.call(call)

    def run(self, call: Callable[[CadenzaClient], Awaitable[T]]) -> T:
        """Run ``call(async_client)`` on the client's loop and return its result.

        For anything the blocking methods do not cover: ``call`` gets the
        underlying :class:`~cadenza_async.CadenzaClient` and must be an async
        function. Raises what ``call`` raises, and
        :class:`~cadenza_async.errors.ClientClosedError` after close.
        """
        client = self._client
        return self._run(lambda: call(client))

    # -- lifecycle --------------------------------------------------------------------

    def __enter__(self) -> BlockingCadenzaClient:
        try:
            self._run(self._client.__aenter__)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Drain fire-and-forget cancels (up to ``drain_timeout``), close, stop the loop thread.

        Calls still running in other threads end with their result or
        :class:`~cadenza_async.errors.ClientClosedError`; their iterators
        end. Returns once the loop thread has ended. Safe to call twice and
        from several threads (later callers wait for the first).
        """
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("close() cannot be called from the client's own event loop thread")
        with self._lock:
            first = not self._closed
            self._closed = True
        if not first:
            self._stopped.wait()
            return
        portal = self._portal
        try:
            portal.call(self._client.aclose)
        finally:
            # Whatever still runs after aclose (an iterator's pump, a call that
            # raced the close) is cancelled: closing never hangs on a reader.
            with suppress(RuntimeError):
                portal.call(portal.stop, True)
            self._portal_cm.__exit__(None, None, None)
            self._stopped.set()

    # -- cancels ----------------------------------------------------------------------

    def cancel_and_confirm(
        self,
        order_id: str,
        *,
        trading_account_id: str | None = None,
        timeout: float | None = None,
    ) -> CancelResult:
        """Cancel and return once the exchange has proven a terminal state.

        Same result and errors as ``CadenzaClient.cancel_and_confirm``: a
        :class:`~cadenza_async.CancelResult` for every terminal state;
        ``ValueError`` for a malformed id,
        :class:`~cadenza_async.errors.OrderNotFoundError`,
        :class:`~cadenza_async.errors.ConfirmationTimeout` after ``timeout``
        seconds (plus a small slack), and the other
        :class:`~cadenza_async.errors.CadenzaError` subclasses.
        """
        client = self._client
        return self._run(
            lambda: client.cancel_and_confirm(
                order_id, trading_account_id=trading_account_id, timeout=timeout
            )
        )

    def cancel(self, order_id: str, *, trading_account_id: str | None = None) -> TradeOrder:
        """Send the cancel over HTTP; the order as the server shows it in its reply.

        Proves nothing yet (the status may be PENDING_CANCEL); errors as
        ``CadenzaClient.cancel``.
        """
        client = self._client
        return self._run(lambda: client.cancel(order_id, trading_account_id=trading_account_id))

    def cancel_nowait(
        self,
        order_id: str,
        *,
        trading_account_id: str | None = None,
        timeout: float | None = None,
    ) -> BlockingCancelHandle:
        """Start ``cancel_and_confirm`` in the background; return its handle at once.

        The client owns the cancel until it has an outcome, and closing the
        client drains it. A failure nobody asked the handle about is logged
        and passed to ``on_background_error``. Raises ``ValueError`` at once
        for a malformed id.
        """
        client = self._client
        handle = self._run_sync(
            lambda: client.cancel_nowait(
                order_id, trading_account_id=trading_account_id, timeout=timeout
            )
        )
        return BlockingCancelHandle(handle, self)

    def cancel_many(
        self,
        order_ids: Iterable[str],
        *,
        concurrency: int = 64,
        confirm: bool = True,
        timeout: float | None = None,
        trading_account_id: str | None = None,
    ) -> list[BulkOutcome]:
        """Cancel many orders concurrently; one outcome per input, in input order.

        As ``CadenzaClient.cancel_many``: each item is a
        :class:`~cadenza_async.CancelResult` (a
        :class:`~cadenza_async.TradeOrder` with ``confirm=False``) or that
        order's error; a single order's failure never raises.
        """
        ids = list(order_ids)  # read here, not on the loop thread
        client = self._client
        return self._run(
            lambda: client.cancel_many(
                ids,
                concurrency=concurrency,
                confirm=confirm,
                timeout=timeout,
                trading_account_id=trading_account_id,
            )
        )

    def cancel_many_iter(
        self,
        order_ids: Iterable[str],
        *,
        concurrency: int = 64,
        confirm: bool = True,
        timeout: float | None = None,
        trading_account_id: str | None = None,
    ) -> Iterator[BulkOutcome]:
        """Like :meth:`cancel_many`, but yield each outcome as it completes.

        Leaving the loop early (``break``, an exception, ``close()`` on the
        generator) stops the cancels still in flight. Closing the client
        ends the iteration.
        """
        ids = list(order_ids)
        client = self._client
        return self._iterate(
            lambda: client.cancel_many_iter(
                ids,
                concurrency=concurrency,
                confirm=confirm,
                timeout=timeout,
                trading_account_id=trading_account_id,
            )
        )

    def cancel_all_open(
        self,
        trading_account_id: str,
        *,
        instrument_id: str | None = None,
        concurrency: int = 64,
        timeout: float | None = None,
        page_size: int = 500,
    ) -> list[BulkOutcome]:
        """Cancel, with confirmation, every non-terminal order of an account (see ``cancel_many``)."""
        client = self._client
        return self._run(
            lambda: client.cancel_all_open(
                trading_account_id,
                instrument_id=instrument_id,
                concurrency=concurrency,
                timeout=timeout,
                page_size=page_size,
            )
        )

    def drain(self) -> None:
        """Wait until every fire-and-forget cancel started so far has its outcome."""
        self._run(self._client.drain)

    # -- orders and the stream --------------------------------------------------------

    def get_order(self, order_id: str, *, trading_account_id: str | None = None) -> TradeOrder:
        """The order's current state by REST look-up.

        Raises ``ValueError`` for a malformed id and
        :class:`~cadenza_async.errors.OrderNotFoundError` when there is no such order.
        """
        client = self._client
        return self._run(lambda: client.get_order(order_id, trading_account_id=trading_account_id))

    def list_orders(
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
        client = self._client
        return self._run(
            lambda: client.list_orders(
                trading_account_id=trading_account_id,
                order_status=order_status,
                instrument_id=instrument_id,
                limit=limit,
                offset=offset,
                cursor=cursor,
            )
        )

    def submit_order(
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
        client = self._client
        return self._run(
            lambda: client.submit_order(
                instrument_id=instrument_id,
                order_side=order_side,
                order_type=order_type,
                quantity=quantity,
                limit_price=limit_price,
                stop_price=stop_price,
                time_in_force=time_in_force,
                client_order_id=client_order_id,
                trading_account_id=trading_account_id,
            )
        )

    def submit_and_confirm(self, **order: Any) -> SubmitResult:
        """Place an order and return once the exchange has proven it accepted or refused it.

        Same keywords, result and errors as ``CadenzaClient.submit_and_confirm``
        (``instrument_id``, ``order_side``, ``order_type``, ``quantity``,
        ``limit_price``, ``time_in_force``, ``client_order_id``,
        ``trading_account_id``, ``timeout``, ...).
        """
        client = self._client
        return self._run(lambda: client.submit_and_confirm(**order))

    def replace_and_confirm(self, old_order_id: str, **order: Any) -> ReplaceResult:
        """Cancel ``old_order_id``, and only once it is proven final, place the new order.

        Same keywords, result and errors as ``CadenzaClient.replace_and_confirm``
        (the new order's fields, ``place_if_filled``, ``timeout``).
        """
        client = self._client
        return self._run(lambda: client.replace_and_confirm(old_order_id, **order))

    def submit_many(
        self,
        orders: Iterable[NewOrder | Mapping[str, Any]],
        *,
        concurrency: int = 16,
        timeout: float | None = None,
    ) -> list[SubmitOutcome]:
        """Place many orders concurrently; one outcome per order, in input order.

        Same as ``CadenzaClient.submit_many``.
        """
        client = self._client
        items = list(orders)
        return self._run(
            lambda: client.submit_many(items, concurrency=concurrency, timeout=timeout)
        )

    def subscribe_account(self, trading_account_id: str) -> None:
        """Receive the account's order updates (cancels subscribe on their own)."""
        client = self._client
        self._run(lambda: client.subscribe_account(trading_account_id))

    def order_updates(self) -> Iterator[TradeOrder]:
        """Every order update on the subscribed accounts, as it arrives (a blocking iterator).

        Ends when the client closes. Each iterator has the async client's
        bounded buffer: a reader that falls behind loses the oldest updates.
        Close the generator (or ``break``) to stop reading.
        """
        client = self._client
        return self._iterate(client.order_updates)

    def stats(self) -> ClientStats:
        """Counters for monitoring: pending work, what confirmed cancels, stream health."""
        return self._run_sync(self._client.stats)

    # -- async iterators as blocking iterators -----------------------------------------

    def _iterate(self, make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        """Drive ``make()`` in one task on the loop; hand its items over one at a time.

        Checks that the client is open (and the caller not on an event loop)
        now, not at the first ``next()``.
        """
        self._check_caller()
        return self._pull(make)

    def _pull(self, make: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        try:
            future, started = self._portal.start_task(_pump, make)
        except RuntimeError:
            if self._closed:
                raise ClientClosedError("the client is closed") from None
            raise
        scope: anyio.CancelScope = started[0]
        receive: MemoryObjectReceiveStream[_Next[T]] = started[1]
        try:
            while True:
                try:
                    step = self._portal.call(receive.receive)
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    return
                except (RuntimeError, concurrent.futures.CancelledError):
                    if self._closed:  # the client closed while this reader waited
                        return
                    raise
                if step.error is not None:
                    raise step.error
                yield step.item  # type: ignore[misc]  # an item step always carries its item
        finally:
            self._on_loop(scope.cancel)
            if threading.get_ident() != self._loop_thread:
                concurrent.futures.wait([future])
            self._on_loop(receive.close)
            receive.close()  # idempotent; closes it here if the loop had already stopped


async def _pump(
    make: Callable[[], AsyncIterator[T]],
    *,
    task_status: TaskStatus[tuple[anyio.CancelScope, MemoryObjectReceiveStream[_Next[T]]]],
) -> None:
    """Iterate ``make()`` in this one task, sending each item when the reader asks for it."""
    send, receive = anyio.create_memory_object_stream[_Next[T]](0)
    with anyio.CancelScope() as scope, send:
        task_status.started((scope, receive))
        iterator = make()
        try:
            async for item in iterator:
                await send.send(_Next(item))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the reader went away
        except Exception as exc:
            with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await send.send(_Next(error=exc))
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await close()


class BlockingCancelHandle:
    """A fire-and-forget cancel of a :class:`BlockingCadenzaClient`, waited on from any thread.

    The blocking counterpart of :class:`~cadenza_async.CancelHandle`, shaped
    like ``concurrent.futures.Future``: :meth:`done`, :meth:`result`,
    :meth:`exception`, :meth:`add_done_callback`.
    """

    __slots__ = ("_handle", "_lock", "_outcome", "_owner", "order_id")

    def __init__(self, handle: CancelHandle, owner: BlockingCadenzaClient) -> None:
        self.order_id = handle.order_id
        self._handle = handle
        self._owner = owner
        self._lock = threading.Lock()
        self._outcome: concurrent.futures.Future[CancelResult] | None = None

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<BlockingCancelHandle {self.order_id} {state}>"

    def done(self) -> bool:
        """True once the cancel has an outcome (a result or an error)."""
        return self._handle.done()

    def result(self, timeout: float | None = None) -> CancelResult:
        """Wait up to ``timeout`` seconds (None: no limit) for the outcome and return it.

        Raises the cancel's error, or ``TimeoutError`` when it has none yet
        (the cancel goes on).
        """
        try:
            return self._watch().result(timeout)
        except concurrent.futures.TimeoutError:  # not the builtin before Python 3.11
            raise TimeoutError(f"the cancel of {self.order_id} has no outcome yet") from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait like :meth:`result`; the cancel's error, or None when it succeeded."""
        try:
            return self._watch().exception(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"the cancel of {self.order_id} has no outcome yet") from None

    def add_done_callback(self, fn: Callable[[BlockingCancelHandle], object]) -> None:
        """Call ``fn(handle)`` once the cancel has its outcome (at once if it has).

        ``fn`` runs on the client's loop thread (or in this thread when the
        outcome is already there): keep it short and do not call the client from it.
        """
        self._watch().add_done_callback(lambda _future: fn(self))

    def _watch(self) -> concurrent.futures.Future[CancelResult]:
        """A thread-safe future that mirrors the cancel's outcome (made on first use)."""
        with self._lock:
            outcome = self._outcome
            if outcome is not None:
                return outcome
            outcome = self._outcome = concurrent.futures.Future()
        handle = self._handle

        def copy(_handle: CancelHandle) -> None:
            try:
                outcome.set_result(handle.result())
            except asyncio.CancelledError:
                exc = ClientClosedError(f"client closed before the cancel of {self.order_id} ended")
                exc.order_id = self.order_id
                outcome.set_exception(exc)
            except BaseException as exc:
                outcome.set_exception(exc)

        if handle.done():
            copy(handle)  # a finished task no longer changes: safe from any thread
            return outcome
        owner = self._owner
        if threading.get_ident() == owner._loop_thread:
            handle.add_done_callback(copy)
            return outcome
        try:
            owner._portal.call(handle.add_done_callback, copy)
        except RuntimeError:
            # The loop has stopped: close drained (or cancelled) every background cancel.
            copy(handle)
        return outcome
