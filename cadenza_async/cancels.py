"""Cancel orchestration: turns a cancel request into exactly one proven outcome.

This is the asyncio side of :class:`~cadenza_async.protocol.confirm.ConfirmationRegistry`.
The registry decides *whether* evidence proves a terminal state; this module
sends the cancels, feeds the registry with what the HTTP reply, the order
stream and REST look-ups say, and wakes the callers waiting on each order.

The confirmation rules it carries out (DESIGN.md):

1. the waiter is registered before the cancel is sent;
2. a terminal state from the WS event, the cancel's own reply or a REST look-up resolves it;
3. "cannot cancel" -> look the order up and resolve with its terminal state;
4. transport error / 5xx on the cancel -> reconcile by REST, send again if still open;
5. a stream gap -> every pending waiter is reconciled by REST (``reconcile_pending``);
6. deadline -> one final REST look-up, then :class:`ConfirmationTimeout` with the last known state;
7. duplicates and stale events are harmless (the registry's rules);
8. one dict look-up per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec

from ._validate import check_account_id, check_order_id
from .errors import (
    ApiError,
    AuthenticationError,
    CadenzaError,
    ClientClosedError,
    ConfirmationTimeout,
    InvalidRequestError,
    OrderNotCancellableError,
    OrderNotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    StreamError,
    TransportError,
    UnexpectedResponseError,
)
from .http import _is_not_cancellable
from .models import CancelResult, OrderStatus, TradeOrder, encoder
from .protocol.confirm import ConfirmationRegistry, Waiter
from .stream import StreamRpcError

if TYPE_CHECKING:
    from ._ratelimit import RateGate
    from .http import HttpApi
    from .stream import OrderStream

__all__ = ["CancelHandle", "Canceller"]

log = logging.getLogger("cadenza_async.cancels")

RPC_CANCEL: Final = "command.trade_order.cancel"
_CENTRIFUGO_PERMISSION_DENIED: Final = 103
CHANNEL_PREFIX: Final = "tradingAccount:"


class _RpcError(msgspec.Struct, omit_defaults=True):
    code: int = 0
    message: str = ""
    temporary: bool = False
    status: int = 0  # the HTTP status of the same error, when the server says it


class _RpcCancelReply(msgspec.Struct, omit_defaults=True):
    data: TradeOrder | None = None
    error: _RpcError | None = None


_rpc_reply_decoder: Final = msgspec.json.Decoder(_RpcCancelReply)


def channel_for(account_id: str) -> str:
    """The Centrifugo channel that carries an account's order updates."""
    return CHANNEL_PREFIX + account_id


_RPC_STATUS_ERRORS: Final[dict[int, type[ApiError]]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: OrderNotFoundError,
    429: RateLimitError,
}


def _rpc_error(err: _RpcError) -> ApiError:
    """Map an RPC cancel error to the HTTP error of the same meaning.

    The error's ``status`` decides when the server sends one (as the HTTP
    error table); otherwise its code and text do.
    """
    text = err.message or "rpc error"
    lowered = text.lower()
    kind: type[ApiError]
    status = err.status
    if status:
        if status == 400:
            kind = (
                OrderNotCancellableError
                if _is_not_cancellable(err.code, text)
                else InvalidRequestError
            )
        elif status >= 500:
            kind = ServerError
        else:
            kind = _RPC_STATUS_ERRORS.get(status, UnexpectedResponseError)
    elif err.code in (404, 102) or "not found" in lowered:
        kind = OrderNotFoundError
    elif err.code in (403, 103) or "permission" in lowered or "forbidden" in lowered:
        kind = PermissionDeniedError
    elif _is_not_cancellable(err.code, text) or "cannot" in lowered or err.code == 409:
        kind = OrderNotCancellableError
    elif err.temporary or err.code in (100, 500, 502, 503, 504):
        kind = ServerError
    else:
        kind = InvalidRequestError
    return kind(text, status=status or None, errno=err.code)


class _Pending:
    """What the I/O side keeps for one waiter: its callers' wake-up futures and the cancel's fate.

    Each caller waits on a future of its own, so cancelling one caller never
    disturbs the others sharing the waiter.
    """

    __slots__ = ("acked_at", "driver", "error", "futures")

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[None]] = []
        self.acked_at: float | None = None
        self.error: BaseException | None = None
        self.driver: asyncio.Task[None] | None = None

    def wake(self) -> None:
        futures = self.futures
        if futures:
            self.futures = []
            for future in futures:
                if not future.done():
                    future.set_result(None)


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class CancelHandle:
    """A fire-and-forget cancel: awaitable, and inspectable without awaiting.

    ``await handle`` gives the :class:`CancelResult` or raises the cancel's
    error. The client keeps a strong reference to the task behind it, so the
    cancel runs to its end even if this handle is dropped.
    """

    __slots__ = ("_observed", "_task", "order_id")

    def __init__(self, order_id: str, task: asyncio.Task[CancelResult]) -> None:
        self.order_id = order_id
        self._task = task
        self._observed = False

    def __repr__(self) -> str:
        state = "done" if self._task.done() else "pending"
        return f"<CancelHandle {self.order_id} {state}>"

    def __await__(self) -> Generator[Any, None, CancelResult]:
        self._observed = True
        return self._task.__await__()

    def done(self) -> bool:
        """True once the cancel has an outcome (a result or an error)."""
        return self._task.done()

    def result(self) -> CancelResult:
        """The outcome; raises the cancel's error, or ``asyncio.InvalidStateError`` if not done."""
        self._observed = True
        return self._task.result()

    def exception(self) -> BaseException | None:
        """The cancel's error, ``None`` on success; ``asyncio.InvalidStateError`` if not done."""
        self._observed = True
        return self._task.exception()

    def add_done_callback(self, fn: Callable[[CancelHandle], object]) -> None:
        """Call ``fn(handle)`` when the cancel has its outcome (at once if it already has)."""
        self._observed = True
        self._task.add_done_callback(lambda _task: fn(self))

    @property
    def observed(self) -> bool:
        """True once someone awaited the handle or asked for its outcome."""
        return self._observed


class Canceller:
    """Runs cancels against the HTTP API or the stream and waits for their proof.

    Owned by :class:`~cadenza_async.CadenzaClient`, which gives it the HTTP
    layer, the rate gate, the registry and a way to reach the stream.
    """

    def __init__(
        self,
        *,
        http: HttpApi,
        gate: RateGate,
        registry: ConfirmationRegistry,
        ensure_stream: Callable[[], Any],
        cancel_via: Literal["http", "ws"],
        confirm_timeout: float,
        request_timeout: float,
        default_account: str | None = None,
    ) -> None:
        self._http = http
        self._gate = gate
        self._registry = registry
        self._ensure_stream = ensure_stream
        self._stream: OrderStream | None = None
        self._subscribed: set[str] = set()
        self._subscribing: dict[str, asyncio.Future[None]] = {}
        self._cancel_via = cancel_via
        self._confirm_timeout = confirm_timeout
        self._request_timeout = request_timeout
        self._default_account = default_account
        self._failure: StreamError | ClientClosedError | None = None
        self._drivers: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        """The client is closing: every caller still waiting gets ``ClientClosedError`` at once.

        Cancels still being sent are stopped.
        """
        if self._failure is None:
            self._failure = ClientClosedError(
                "the client was closed before the cancel was confirmed"
            )
        self._wake_all()
        drivers = list(self._drivers)
        for task in drivers:
            task.cancel()
        if drivers:
            await asyncio.gather(*drivers, return_exceptions=True)

    @property
    def failure(self) -> StreamError | ClientClosedError | None:
        """Why no cancel can be confirmed any more (stream failed for good, client closed)."""
        return self._failure

    # -- the stream side -------------------------------------------------------

    def attach_stream(self, stream: OrderStream) -> None:
        """Use ``stream`` for subscriptions and RPC cancels from now on."""
        self._stream = stream

    def stream_failed(self, exc: StreamError) -> None:
        """The stream stopped for good: every waiter fails with ``exc`` unless already proven."""
        self._failure = exc
        self._wake_all()

    def _wake_all(self) -> None:
        for waiter in list(self._registry.pending()):
            pending = waiter.handle
            if isinstance(pending, _Pending):
                pending.wake()

    def observe_event(self, order: TradeOrder, now: float, channel_account: str | None) -> None:
        """An order update from the stream; wakes the waiter it resolves, if any."""
        waiter = self._registry.resolve_from_event(order, now, channel_account=channel_account)
        if waiter is not None:
            pending = waiter.handle
            if isinstance(pending, _Pending):
                pending.wake()

    def forget_subscription(self, account_id: str) -> None:
        """The server dropped the account's channel: the next cancel on it subscribes again."""
        self._subscribed.discard(account_id)

    async def ensure_subscribed(self, account_id: str) -> None:
        """Subscribe to the account's channel once; concurrent callers share the wait.

        Raises :class:`PermissionDeniedError` when the token may not see the
        account, and what ``OrderStream.subscribe`` raises otherwise.
        """
        while account_id not in self._subscribed:
            waiting = self._subscribing.get(account_id)
            if waiting is None:
                await self._subscribe(account_id)
                return
            await asyncio.wait((waiting,))  # raises only if *this* caller is cancelled
            if not waiting.cancelled():
                waiting.result()  # the subscription's own error, if it failed
                return
            # The caller that was subscribing was cancelled: try again ourselves.

    async def _subscribe(self, account_id: str) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._subscribing[account_id] = fut
        try:
            stream = self._stream
            if stream is None:
                await self._ensure_stream()
                stream = self._stream
            if stream is None:  # pragma: no cover - ensure_stream attaches one or raises
                raise StreamError("no order stream")
            try:
                await stream.subscribe(channel_for(account_id))
            except StreamRpcError as exc:
                if exc.errno != _CENTRIFUGO_PERMISSION_DENIED:
                    raise
                raise PermissionDeniedError(
                    f"no access to trading account {account_id}", errno=exc.errno
                ) from None
            self._subscribed.add(account_id)
            fut.set_result(None)
        except asyncio.CancelledError:
            fut.cancel()  # only this caller was cancelled: sharers try again
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: sharers re-raise it
            raise
        finally:
            del self._subscribing[account_id]

    # -- reconciliation --------------------------------------------------------

    async def look_up(self, waiter: Waiter, deadline: float | None = None) -> None:
        """One REST look-up of a waiter's order; wakes it if the answer is terminal.

        Raises what the look-up raises (``TransportError``, ``OrderNotFoundError``, ...).
        """
        order = await self._http.get_order(
            waiter.order_id, trading_account_id=waiter.account_id, deadline=deadline
        )
        loop = asyncio.get_running_loop()
        if self._registry.resolve_from_rest(order, loop.time()) is not None:
            pending = waiter.handle
            if isinstance(pending, _Pending):
                pending.wake()

    async def reconcile_pending(
        self, account_id: str | None = None, *, concurrency: int = 16
    ) -> int:
        """Look up every pending waiter (of one account, or all) by REST; returns how many.

        Look-up failures are logged and left to the waiters' own deadlines.
        """
        if account_id is None:
            waiters = list(self._registry.pending())
        else:
            waiters = list(self._registry.pending_for_account(account_id))
            waiters += [w for w in self._registry.pending() if w.account_id is None]
        if not waiters:
            return 0
        limit = asyncio.Semaphore(concurrency)

        async def one(waiter: Waiter) -> None:
            async with limit:
                if waiter.done:
                    return
                try:
                    await self.look_up(waiter)
                except CadenzaError as exc:
                    log.warning(
                        "reconciling order %s failed: %s", waiter.order_id, type(exc).__name__
                    )

        await asyncio.gather(*(one(w) for w in waiters))
        return len(waiters)

    # -- the cancels -----------------------------------------------------------

    async def send_cancel(
        self,
        order_id: str,
        account_id: str | None,
        *,
        via: Literal["http", "ws"] | None = None,
        deadline: float | None = None,
    ) -> TradeOrder:
        """Send one cancel (paced by the rate gate) and return the order from its reply.

        ``via="ws"`` needs a connected stream and the order's account (the
        client's default account is tried when none is given, and HTTP when the
        order is not on it); otherwise the cancel goes over HTTP.
        """
        via = via or self._cancel_via
        stream = self._stream
        if via == "ws" and stream is not None and stream.connected:
            rpc_account = account_id or self._default_account
            if rpc_account is not None:
                await self._gate.acquire()
                try:
                    return await self._rpc_cancel(stream, order_id, rpc_account, deadline)
                except (OrderNotFoundError, PermissionDeniedError):
                    if account_id is not None:
                        raise
                    # The default account was a guess and the order is not on it:
                    # the HTTP cancel needs no account, and its reply names it.
        return await self._http.cancel_order(order_id, account_id, deadline=deadline)

    async def _rpc_cancel(
        self, stream: OrderStream, order_id: str, account_id: str, deadline: float | None
    ) -> TradeOrder:
        payload = encoder.encode({"tradingAccountId": account_id, "tradeOrderId": order_id})
        timeout = self._request_timeout
        if deadline is not None:
            timeout = min(timeout, deadline - asyncio.get_running_loop().time())
            if timeout <= 0:
                raise TransportError("the deadline passed before the cancel could be sent")
        raw = await stream.rpc(RPC_CANCEL, payload, timeout=timeout)
        try:
            reply = _rpc_reply_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise UnexpectedResponseError("malformed reply to the cancel RPC") from None
        if reply.error is not None:
            raise _rpc_error(reply.error)
        if reply.data is None:
            raise UnexpectedResponseError("the cancel RPC replied without an order")
        return reply.data

    async def cancel_and_confirm(
        self,
        order_id: str,
        *,
        trading_account_id: str | None = None,
        timeout: float | None = None,
    ) -> CancelResult:
        """Cancel and wait until a terminal state is proven; see ``CadenzaClient``."""
        check_order_id(order_id)
        if trading_account_id is not None:
            check_account_id(trading_account_id)
        if timeout is None:
            timeout = self._confirm_timeout
        elif not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        if self._failure is not None:
            raise self._failure
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout
        if trading_account_id is not None and trading_account_id not in self._subscribed:
            await self.ensure_subscribed(trading_account_id)
        registry = self._registry
        waiter, created = registry.register(order_id, loop.time(), account_id=trading_account_id)
        try:
            if waiter.done:
                return self._result(waiter, started)
            if created:
                pending = _Pending()
                waiter.handle = pending
                await self._drive_inline(waiter, pending, started, deadline)
            else:
                handle = waiter.handle
                if not isinstance(handle, _Pending):  # pragma: no cover - set at creation
                    raise RuntimeError("waiter without a future")
                pending = handle
            if not waiter.done:
                await self._wait(waiter, pending, deadline)
            if _proven(waiter):
                return self._result(waiter, started)
            failure = self.failure
            if pending.error is not None:
                if failure is not None and isinstance(pending.error, TransportError):
                    raise failure  # the root cause: the stream stopped for good
                raise pending.error
            if failure is not None:
                raise failure
            # Rule 6: one last look-up, then a timeout that tells what is known.
            with contextlib.suppress(CadenzaError):
                await self.look_up(waiter, loop.time() + self._request_timeout)
            if _proven(waiter):
                return self._result(waiter, started)
            raise ConfirmationTimeout(order_id, waiter.last_known, timeout)
        except CadenzaError as exc:
            # One error can reach many callers (a dropped link fails every RPC at
            # once): each caller's error names its own order.
            if exc.order_id is None:
                exc.order_id = order_id
            elif exc.order_id != order_id:
                raise _for_order(exc, order_id) from exc
            raise
        finally:
            registry.release(waiter)
            if waiter.refs == 0 and not waiter.done:
                # Every caller gave up (deadline or cancelled): stop sending for nobody.
                handle = waiter.handle
                if isinstance(handle, _Pending) and handle.driver is not None:
                    handle.driver.cancel()

    async def _drive_inline(
        self, waiter: Waiter, pending: _Pending, started: float, deadline: float
    ) -> None:
        """Send the cancel from the caller's own task: no extra task, no extra loop turn.

        Every request it makes is bounded by the caller's deadline. If the
        caller is cancelled while others share the waiter, a task of its own
        takes the sending over for them (a cancel is idempotent).
        """
        try:
            await self._drive(waiter, pending, started, deadline)
        except asyncio.CancelledError:
            if waiter.refs > 1 and not waiter.done and self._failure is None:
                pending.driver = self._start_driver(waiter, pending, started, deadline)
            raise

    def _start_driver(
        self, waiter: Waiter, pending: _Pending, started: float, deadline: float
    ) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(
            self._drive(waiter, pending, started, deadline), name=f"cancel {waiter.order_id}"
        )
        self._drivers.add(task)
        task.add_done_callback(self._driver_done)
        return task

    def _driver_done(self, task: asyncio.Task[None]) -> None:
        self._drivers.discard(task)
        if not task.cancelled():
            task.exception()  # its error reached the callers through ``pending.error``

    async def _wait(self, waiter: Waiter, pending: _Pending, deadline: float) -> None:
        """Return when the waiter is proven, failed, or the deadline passed."""
        loop = asyncio.get_running_loop()
        while not waiter.done and pending.error is None and self._failure is None:
            if loop.time() >= deadline:
                return
            future: asyncio.Future[None] = loop.create_future()
            pending.futures.append(future)
            timer = loop.call_at(deadline, _expire, future)
            try:
                await future  # only this caller's own future: cancelling it harms no sharer
            finally:
                timer.cancel()
                if pending.futures:  # still listed after a timeout or a cancellation
                    with contextlib.suppress(ValueError):
                        pending.futures.remove(future)

    async def _drive(
        self, waiter: Waiter, pending: _Pending, started: float, deadline: float
    ) -> None:
        """Send the cancel and fold its reply into the registry; fatal errors are raised."""
        loop = asyncio.get_running_loop()
        account = waiter.account_id
        subscribed_before = frozenset(self._subscribed) if account is None else frozenset()
        try:
            order = await self.send_cancel(waiter.order_id, account, deadline=deadline)
        except OrderNotCancellableError:
            # Rule 3: already final (or racing a fill): the order's own state decides.
            pending.acked_at = loop.time()
            try:
                await self.look_up(waiter, deadline)
            except CadenzaError as exc:
                pending.error = exc
                pending.wake()
                raise
            return
        except (TransportError, ServerError) as exc:
            # Rule 4: the exchange may have applied it. Reconcile, then try again if still open.
            await self._after_failed_send(waiter, pending, exc, deadline)
            return
        except asyncio.CancelledError:
            raise  # only this caller is cancelled; sharers keep their own deadlines
        except Exception as exc:
            pending.error = exc
            pending.wake()
            raise
        now = loop.time()
        pending.acked_at = now
        if self._registry.resolve_from_http(order, now) is not None:
            pending.wake()
            return
        if account is None:
            account = order.trading_account_id
            self._registry.learn_account(waiter, account)
            try:
                await self.ensure_subscribed(account)
            except CadenzaError as exc:
                log.warning("could not subscribe to the order's account: %s", exc)
            if not waiter.done and account not in subscribed_before:
                # The event may have come before the subscription: close the gap once.
                try:
                    await self.look_up(waiter, deadline)
                except CadenzaError as exc:
                    log.warning("gap look-up of %s failed: %s", waiter.order_id, exc)

    async def _after_failed_send(
        self, waiter: Waiter, pending: _Pending, exc: CadenzaError, deadline: float
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self.look_up(waiter, deadline)
        except (OrderNotFoundError, AuthenticationError, PermissionDeniedError) as lookup_exc:
            # A definite answer: it explains more than the failed send did.
            pending.error = lookup_exc
            pending.wake()
            return
        except CadenzaError:
            stream = self._stream
            if stream is None or not stream.connected:
                # Nothing can prove anything: say so now rather than at the deadline.
                pending.error = exc
                pending.wake()
            return
        if waiter.done or loop.time() >= deadline:
            return
        last = waiter.last_known
        if last is not None and last.status == OrderStatus.PENDING_CANCEL:
            return  # the first attempt got through; the event will follow
        try:
            order = await self.send_cancel(waiter.order_id, waiter.account_id, deadline=deadline)
        except OrderNotCancellableError:
            with contextlib.suppress(CadenzaError):
                await self.look_up(waiter, deadline)
            return
        except (TransportError, ServerError):
            return  # the waiter's deadline and final look-up decide
        now = loop.time()
        pending.acked_at = now
        if self._registry.resolve_from_http(order, now) is not None:
            pending.wake()

    @staticmethod
    def _result(waiter: Waiter, started: float) -> CancelResult:
        order = waiter.outcome
        assert order is not None
        assert waiter.source is not None
        resolved_at = waiter.resolved_at if waiter.resolved_at is not None else started
        pending = waiter.handle
        acked_at = pending.acked_at if isinstance(pending, _Pending) else None
        source: Literal["ws", "http", "rest"]
        source = "ws" if waiter.source == "ws" else "http" if waiter.source == "http" else "rest"
        return CancelResult(
            order=order,
            cancelled=order.status == OrderStatus.CANCELLED,
            source=source,
            latency=max(0.0, resolved_at - started),
            acked_after=None if acked_at is None else max(0.0, acked_at - started),
        )


def _for_order(exc: CadenzaError, order_id: str) -> CadenzaError:
    """A copy of ``exc`` (same type, message and attributes) that names ``order_id``."""
    clone = type(exc).__new__(type(exc))
    clone.args = exc.args
    clone.__dict__.update(exc.__dict__)
    clone.order_id = order_id
    return clone


def _proven(waiter: Waiter) -> bool:
    """``waiter.done`` read afresh (an await may have changed it)."""
    return waiter.done
