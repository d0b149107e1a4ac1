"""HttpApi: every REST call of the SDK (the endpoints), with the 401 rule and the retries over them.

One aiohttp session per client (connection pooling, keep-alive), opened
lazily inside the running event loop. Redirects are never followed. Bodies
are encoded and decoded with msgspec. Every non-success answer becomes a
:mod:`cadenza_async.errors` exception:

======================================  ========================================
answer                                  raised (after retries, where they apply)
======================================  ========================================
400 "cannot cancel" (errno -111001,     :class:`OrderNotCancellableError`
"already filled/cancelled")
other 400                               :class:`InvalidRequestError`
401 (after one token refresh + retry)   :class:`AuthenticationError`
403                                     :class:`PermissionDeniedError`
404 with the API's envelope             :class:`OrderNotFoundError`
404 without it (not the API: api_url)   :class:`ApiNotFoundError` (a ConfigurationError)
429 (pauses every caller for            :class:`RateLimitError` (``retry_after``)
``Retry-After``, then retried; a
submit is never retried)
5xx (retried, full-jitter backoff)      :class:`ServerError`
3xx, other statuses, a body that is     :class:`UnexpectedResponseError`
not the envelope, ``success: false``
a body over ``max_response_size``, or   :class:`ResponseTooLargeError`
a compressed one (identity is asked)    (an UnexpectedResponseError)
refused, reset, DNS, TLS, timeout       :class:`TransportError`
======================================  ========================================

Replies are bounded: a ``Content-Length`` over ``max_response_size`` is
refused before the body is read, a body without one is read in chunks and
refused as soon as it passes the cap, and the connection is dropped either
way. The client asks for ``Accept-Encoding: identity`` and refuses a
compressed body instead of inflating it: API replies are small JSON, and
not inflating at all leaves no decompression bomb to bound. Proxies are
used only when ``ClientConfig.proxy`` is set (never for a loopback API);
proxy environment variables are ignored.

A call is layered the way httpx layers sending: one request
(:meth:`~cadenza_async._http_send.HttpSender.send_once`: paced by the rate
gate, with the current token, cut at the request timeout or the call's
deadline, the body read up to the cap, aiohttp's exceptions translated) ->
``_reauthorize``, the 401 rule (:class:`~cadenza_async._auth.RefreshRule`)
for a 401 answer -> ``_call``/``_retrying``, the retries
:func:`~cadenza_async._retry.retry_verdict` decides from the
:class:`~cadenza_async.config.RetryPolicy` and the time left. Retries on 5xx
and transport errors apply to idempotent calls only (cancel, look-ups), never
to submit. An answer is read by :class:`~cadenza_async._http_answers.Answers`
(the envelope, this table), every message built from server text scrubbed of
the tokens in use. aiohttp exceptions never leave the HTTP modules and are
never chained, not even as ``__context__``: their reprs can hold the
``Authorization`` header.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Final, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec
from yarl import URL

from ._alarm import Cutoffs
from ._auth import RefreshRule, TokenSource
from ._http_answers import order_from, orders_from
from ._http_answers import parse_retry_after as parse_retry_after  # (its old import path)
from ._http_send import Answer, Failure, HttpSender, Outcome, budget, token_budget
from ._ratelimit import RateGate
from ._retry import retry_verdict
from .config import ClientConfig, RetryPolicy
from .errors import (
    ApiError,
    CadenzaError,
    ClientClosedError,
    OrderNotFoundError,
)
from .models import (
    Envelope,
    NewOrder,
    Pagination,
    TradeOrder,
)

__all__ = ["CANCEL_PATH", "LIST_PATH", "SUBMIT_PATH", "HttpApi", "OrderPage"]

log = logging.getLogger("cadenza_async.http")

CANCEL_PATH: Final = "/api/v3/tradeOrder/cancel"
LIST_PATH: Final = "/api/v3/tradeOrder/list"
SUBMIT_PATH: Final = "/api/v3/tradeOrder/submit"


class OrderPage(msgspec.Struct, frozen=True):
    """One page of ``list_orders``: the orders and the server's paging information."""

    orders: list[TradeOrder]
    pagination: Pagination | None = None


class _CancelBody(msgspec.Struct, rename="camel"):
    """``CancelTradeOrderRequest``: both fields required by the current API."""

    trade_order_id: str
    trading_account_id: str


_encode: Final = msgspec.json.Encoder().encode


class _CallState:
    """One logical request across its attempts: what is sent, and what its attempts learned.

    ``maybe_sent``: an attempt may have reached the server; ``retried``:
    the error of the last attempt that was retried; ``auth``: the 401 rule,
    from the first 401 on.
    """

    __slots__ = (
        "auth",
        "body",
        "deadline",
        "delays",
        "idempotent",
        "maybe_sent",
        "method",
        "paced",
        "retried",
        "url",
    )

    def __init__(
        self,
        method: str,
        url: URL,
        body: bytes | None,
        idempotent: bool,
        paced: bool,
        deadline: float | None,
    ) -> None:
        self.method = method
        self.url = url
        self.body = body
        self.idempotent = idempotent
        self.paced = paced
        self.deadline = deadline
        self.maybe_sent = False
        self.retried: CadenzaError | None = None
        self.auth: RefreshRule | None = None
        self.delays: Iterator[float] | None = None

    def next_delay(self, policy: RetryPolicy) -> Callable[[], float | None]:
        """A draw of the policy's next backoff for this call (``None``: attempts spent)."""

        def draw() -> float | None:
            if self.delays is None:
                self.delays = policy.delays()
            return next(self.delays, None)

        return draw


_T = TypeVar("_T")


def _same(envelope: Envelope) -> Envelope:
    return envelope


class HttpApi:
    """The REST transport of one client. Create it outside a loop; it opens on first use.

    Methods raise the errors of the module table; after :meth:`aclose` they
    raise :class:`ClientClosedError`.
    """

    __slots__ = ("_answers", "_base", "_cancel_url", "_retry", "_sender", "_submit_url")

    def __init__(self, config: ClientConfig, tokens: TokenSource, gate: RateGate) -> None:
        self._base = config.api_url
        self._retry = config.retry
        self._sender = HttpSender(config, tokens, gate)
        self._answers = self._sender.answers
        self._cancel_url = URL(self._base + CANCEL_PATH, encoded=True)
        self._submit_url = URL(self._base + SUBMIT_PATH, encoded=True)

    def __repr__(self) -> str:
        sender = self._sender
        state = "closed" if sender.closed else ("open" if sender.session else "idle")
        return f"<HttpApi {self._base} {state}>"

    @property
    def closed(self) -> bool:
        return self._sender.closed

    # The sender's parts, by the names the HTTP layer has always had.
    @property
    def _session(self) -> aiohttp.ClientSession | None:
        return self._sender.session

    @property
    def _gate(self) -> RateGate:
        return self._sender.gate

    @property
    def _tokens(self) -> TokenSource:
        return self._sender.tokens

    @property
    def _cuts(self) -> Cutoffs:
        return self._sender.cuts

    # -- public calls -----------------------------------------------------------------

    def cancel_order(
        self,
        order_id: str,
        trading_account_id: str,
        *,
        deadline: float | None = None,
    ) -> Awaitable[TradeOrder]:
        """Ask the exchange to cancel an order; await it for the order as the server shows it now.

        The status may still be non-terminal (e.g. PENDING_CANCEL): the
        exchange processes the cancel later. Retried on 5xx and transport
        errors (a cancel is idempotent). ``deadline`` (event-loop time) bounds
        the whole call, retries included: past it, :class:`TransportError`.
        Errors name ``order_id``. (A plain function: the awaitable is
        :meth:`_call`'s coroutine, with no layer of this method's own.)
        """
        return self._call(
            "POST",
            self._cancel_url,
            _encode(_CancelBody(order_id, trading_account_id)),
            idempotent=True,
            paced=True,
            deadline=deadline,
            decode=order_from,
            order_id=order_id,
        )

    async def get_order(
        self,
        order_id: str,
        trading_account_id: str | None = None,
        *,
        deadline: float | None = None,
    ) -> TradeOrder:
        """The current state of one order. Raises :class:`OrderNotFoundError` when absent.

        ``deadline`` bounds the call as for :meth:`cancel_order`.
        """
        query = "tradeOrderId=" + quote(order_id, safe="")
        if trading_account_id is not None:
            query += "&tradingAccountId=" + quote(trading_account_id, safe="")
        url = URL(f"{self._base}{LIST_PATH}?{query}", encoded=True)
        envelope = await self._get(url, deadline, _same, order_id)
        try:
            orders = orders_from(envelope)
        except CadenzaError as exc:
            exc.order_id = order_id
            raise
        for order in orders:
            if order.trade_order_id == order_id:
                return order
        error = OrderNotFoundError(
            f"order {order_id} not found",
            status=200,
            request_id=envelope.details.request_id if envelope.details else None,
        )
        error.order_id = order_id
        raise error

    async def list_orders(
        self,
        *,
        trading_account_id: str | None = None,
        order_status: str | None = None,
        instrument_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        cursor: str | None = None,
        start_time: int | None = None,
        ascending: bool | None = None,
        deadline: float | None = None,
    ) -> OrderPage:
        """One page of orders matching the filters, with the server's pagination.

        ``start_time`` (Unix ms) keeps orders created since then; ``ascending``
        False asks for the newest first. ``deadline`` bounds the call as for
        :meth:`cancel_order`.
        """
        params: list[tuple[str, str]] = []
        for key, value in (
            ("tradingAccountId", trading_account_id),
            ("orderStatus", order_status),
            ("instrumentId", instrument_id),
            ("limit", limit),
            ("offset", offset),
            ("cursor", cursor),
            ("startTime", start_time),
            ("ascending", None if ascending is None else str(ascending).lower()),
        ):
            if value is not None:
                params.append((key, quote(str(value), safe="")))
        query = "&".join(f"{k}={v}" for k, v in params)
        url = URL(f"{self._base}{LIST_PATH}" + (f"?{query}" if query else ""), encoded=True)
        return await self._get(url, deadline, self._page_from)

    async def submit_order(self, order: NewOrder, *, deadline: float | None = None) -> TradeOrder:
        """Place ``order`` (checked, its ``trading_account_id`` set); the order as created.

        Not retried on transport errors, 5xx or 429: a
        :class:`TransportError` means the order may or may not exist (a retry
        is safe only with the same ``client_order_id``, the API's idempotency
        key: :mod:`cadenza_async.placing` does that). ``deadline`` bounds the
        call as for :meth:`cancel_order`.
        """
        if order.trading_account_id is None:
            raise ValueError("a submit needs the order's trading account")
        return await self._call(
            "POST",
            self._submit_url,
            _encode(order),
            idempotent=False,
            paced=False,
            deadline=deadline,
            decode=order_from,
        )

    async def get_envelope(
        self,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        *,
        deadline: float | None = None,
    ) -> Envelope:
        """GET ``path`` (under the API URL) with query ``params``: the success envelope.

        ``params`` may repeat a key (the API's array parameters). A look-up:
        idempotent, retried like :meth:`get_order`, errors translated the same
        way; ``deadline`` bounds the call. The caller decodes ``data``.
        """
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
        url = URL(f"{self._base}{path}" + (f"?{query}" if query else ""), encoded=True)
        return await self._get(url, deadline, _same)

    async def post_envelope(
        self, path: str, body: bytes, *, idempotent: bool, deadline: float | None = None
    ) -> Envelope:
        """POST ``body`` (JSON) to ``path`` (under the API URL): the success envelope.

        Paced by the rate gate; retried like a cancel only when ``idempotent``
        (the body carries the API's idempotency key); errors translated as
        everywhere. ``deadline`` bounds the call. The caller decodes ``data``.
        """
        url = URL(f"{self._base}{path}", encoded=True)
        return await self._call(
            "POST", url, body, idempotent=idempotent, paced=True, deadline=deadline, decode=_same
        )

    async def get_unenveloped(
        self, path: str, *, ok: tuple[int, ...] = (200,), deadline: float | None = None
    ) -> tuple[int, bytes]:
        """GET ``path`` once (a probe: no retry): ``(status, body)`` when the status is in ``ok``.

        For the answers that are not the envelope (``GET /api/v3/health``,
        which answers 503 with its body when unhealthy). Raises the
        translated error for any other status, :class:`TransportError`
        when no answer came.
        """
        sender = self._sender
        session = sender.open_session()
        url = URL(f"{self._base}{path}", encoded=True)
        outcome = await sender.send_once(session, "GET", url, None, False, deadline)
        if isinstance(outcome, Failure):
            raise outcome.error from None
        if outcome.status in ok:
            return outcome.status, outcome.raw
        raise self._answers.error_for_status(outcome.status, outcome.raw, outcome.resp)

    @property
    def trace_configs(self) -> list[aiohttp.TraceConfig]:
        """aiohttp request hooks, read when the session opens (none by default)."""
        return self._sender.trace_configs

    async def aclose(self) -> None:
        """Close the session and its connections. Safe to call twice."""
        await self._sender.aclose()

    # -- internals --------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        url: URL,
        body: bytes | None,
        *,
        idempotent: bool,
        paced: bool,
        deadline: float | None = None,
        decode: Callable[[Envelope], _T],
        order_id: str | None = None,
    ) -> _T:
        """Send one logical request (with its retries); ``decode`` of the success envelope.

        The retry layer (:meth:`_retrying`), on top of :meth:`_reauthorize`
        (the 401 rule, for a 401 answer) on top of :meth:`_send_once` (one
        request). With a ``deadline`` no attempt starts or sleeps past it, and
        an attempt still running at it is cut there (:meth:`_limits`). Errors name
        ``order_id`` when given. The usual call (the first answer a 2xx) builds
        no retry state.
        """
        try:
            sender = self._sender
            session = sender.open_session()
            outcome = await sender.send_once(session, method, url, body, paced, deadline)
            if type(outcome) is Answer and 200 <= outcome.status < 300:
                return decode(
                    self._answers.success_envelope(outcome.raw, outcome.status, outcome.resp)
                )
            call = _CallState(method, url, body, idempotent, paced, deadline)
            return decode(await self._retrying(session, call, outcome))
        except CadenzaError as exc:
            if order_id is not None:
                exc.order_id = order_id
            raise

    def _get(
        self,
        url: URL,
        deadline: float | None,
        decode: Callable[[Envelope], _T],
        order_id: str | None = None,
    ) -> Awaitable[_T]:
        """A look-up (idempotent, not paced): :meth:`_call`'s coroutine."""
        return self._call(
            "GET",
            url,
            None,
            idempotent=True,
            paced=False,
            deadline=deadline,
            decode=decode,
            order_id=order_id,
        )

    async def _retrying(
        self, session: aiohttp.ClientSession, call: _CallState, outcome: Outcome
    ) -> Envelope:
        """The retry layer, from an attempt's ``outcome`` that was not a 2xx answer."""
        while True:
            if not isinstance(outcome, Failure) and outcome.status == 401:
                outcome = await self._reauthorize(session, call, outcome)
            elif call.auth is not None:
                call.auth.answered()
            if isinstance(outcome, Failure):
                await self._retry_failure(call, outcome)
            elif 200 <= outcome.status < 300:
                return self._answers.success_envelope(outcome.raw, outcome.status, outcome.resp)
            else:
                await self._retry_answer(call, outcome)
            outcome = await self._sender.send_once(
                session, call.method, call.url, call.body, call.paced, call.deadline
            )

    async def _retry_failure(self, call: _CallState, failure: Failure) -> None:
        """No answer: raise it, or sleep the backoff before the next attempt."""
        error = failure.error
        if failure.too_late:
            # The deadline passed before another attempt could start: the answer
            # that used the time up tells more than "no time left".
            raise (call.retried or error) from None
        call.maybe_sent = call.maybe_sent or failure.maybe_sent
        if isinstance(error, ClientClosedError):
            raise error from None
        # Any attempt that may have reached the server taints the whole call.
        error.maybe_sent = call.maybe_sent
        verdict = retry_verdict(
            None,
            repeatable=call.idempotent and failure.repeatable,
            next_delay=call.next_delay(self._retry),
            time_left=budget(call.deadline),
        )
        # Raised outside any except block: the aiohttp exception is not kept
        # as __context__ (its repr can hold the bearer token). On Python 3.10
        # a stale handled exception can still be attached (a CancelledError or
        # OSError under aiohttp's timer), so the context is also suppressed.
        if not verdict.retry:
            raise error from None
        log.debug("%s %s: %s; retrying in %.3fs", call.method, call.url.path, error, verdict.wait)
        call.retried = error
        await asyncio.sleep(verdict.wait)

    async def _retry_answer(self, call: _CallState, answer: Answer) -> None:
        """An error answer (not 2xx, not a 401 the auth layer took): raise it, or retry.

        A 429 pauses every caller (the gate) whatever happens next; the
        retry then waits in the gate, not here.
        """
        status = answer.status
        retry_after: float | None = None
        error: ApiError
        if status == 429:
            retry_after = parse_retry_after(answer.resp.headers.get("Retry-After"))
            error = self._answers.rate_limit_error(
                answer.status, answer.raw, answer.resp, retry_after
            )
        else:
            if status == 504:
                call.maybe_sent = True  # a gateway timeout may have passed the request on
            error = self._answers.error_for_status(status, answer.raw, answer.resp)
            if status >= 500:
                error.maybe_sent = call.maybe_sent  # so may an earlier attempt
        policy = self._retry
        verdict = retry_verdict(
            status,
            repeatable=call.idempotent,
            next_delay=call.next_delay(policy),
            time_left=budget(call.deadline),
            retry_after=retry_after,
            max_retry_after=policy.max_retry_after,
        )
        if status == 429:
            self._sender.gate.pause_for(verdict.pause)
        if not verdict.retry:
            raise error
        call.retried = error
        if status == 429:  # the next attempt waits out the pause in the gate
            log.debug("%s %s: 429, pausing %.3fs", call.method, call.url.path, verdict.pause)
            return
        path = call.url.path
        log.debug("%s %s: %d; retrying in %.3fs", call.method, path, status, verdict.wait)
        await asyncio.sleep(verdict.wait)

    async def _reauthorize(
        self, session: aiohttp.ClientSession, call: _CallState, refused: Answer
    ) -> Outcome:
        """The auth layer, after a 401 (:class:`~cadenza_async._auth.RefreshRule`).

        A refused token worth refreshing is refreshed (within the deadline)
        and the request sent again with the fresh one; a final 401 raises
        :class:`AuthenticationError`. The first answer that is not a 401 is
        returned as it came. (Entered only on a 401: the usual answer costs
        no coroutine of this layer.)
        """
        tokens = self._sender.tokens
        outcome: Outcome = refused
        while isinstance(outcome, Answer) and outcome.status == 401:
            rule = call.auth
            if rule is None:
                rule = call.auth = RefreshRule()
            token = outcome.token
            if not rule.should_refresh(token, tokens.refreshable):
                raise self._answers.token_refused(outcome.status, outcome.raw, outcome.resp)
            fresh = await tokens.refresh(token, timeout=token_budget(call.deadline))
            if not rule.retry_with(fresh, token):
                raise self._answers.token_refused(outcome.status, outcome.raw, outcome.resp)
            log.debug("%s %s: 401, retrying with a fresh token", call.method, call.url.path)
            outcome = await self._sender.send_once(
                session, call.method, call.url, call.body, call.paced, call.deadline
            )
        assert call.auth is not None
        call.auth.answered()
        return outcome

    @staticmethod
    def _page_from(envelope: Envelope) -> OrderPage:
        return OrderPage(orders_from(envelope), envelope.pagination)
