"""HttpApi: every REST call of the SDK, from the bearer header to a typed model or error.

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

A call is layered the way httpx layers sending: ``_send_once`` sends one
request (paced by the rate gate, with the current token, within the
deadline, the body read up to the cap) and translates aiohttp's exceptions;
an attempt ends at the request timeout or the call's deadline, if sooner,
through one :class:`~cadenza_async._alarm.Cutoffs` timer for every request
in flight (aiohttp's own timeout bounds only the connect phase);
``_reauthorize`` applies the 401 rule
(:class:`~cadenza_async._auth.RefreshRule`) to a 401 answer; ``_call`` retries on
top of that, as :func:`~cadenza_async._retry.retry_verdict` decides from
the :class:`~cadenza_async.config.RetryPolicy` and the time left. Retries
on 5xx and transport errors apply to idempotent calls only (cancel,
look-ups), never to submit. aiohttp exceptions never leave this module and are
never chained, not even as ``__context__``: their reprs can hold the ``Authorization``
header. Error messages built from server text are scrubbed of the tokens in use
(:mod:`cadenza_async._redact`): a server that echoes the ``Authorization`` header
does not put the token into an exception.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from decimal import Decimal
from typing import Final, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec
from aiohttp.typedefs import LooseHeaders
from multidict import CIMultiDict
from yarl import URL

from ._alarm import Cutoffs
from ._auth import RefreshRule, TokenSource
from ._ratelimit import RateGate
from ._redact import redact
from ._retry import retry_verdict
from ._version import __version__
from .config import ClientConfig, RetryPolicy
from .errors import (
    ApiError,
    ApiNotFoundError,
    AuthenticationError,
    CadenzaError,
    ClientClosedError,
    InvalidRequestError,
    OrderNotCancellableError,
    OrderNotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    ServerError,
    TransportError,
    UnexpectedResponseError,
    is_not_cancellable,
)
from .models import (
    Envelope,
    Pagination,
    TradeOrder,
    decode_envelope,
    decode_order,
    decode_order_list,
)

__all__ = ["CANCEL_PATH", "LIST_PATH", "SUBMIT_PATH", "HttpApi", "OrderPage"]

log = logging.getLogger("cadenza_async.http")

CANCEL_PATH: Final = "/api/v3/tradeOrder/cancel"
LIST_PATH: Final = "/api/v3/tradeOrder/list"
SUBMIT_PATH: Final = "/api/v3/tradeOrder/submit"

_USER_AGENT: Final = "cadenza-async/" + __version__
_JSON: Final = "application/json"
_MAX_MESSAGE: Final = 300


class OrderPage(msgspec.Struct, frozen=True):
    """One page of ``list_orders``: the orders and the server's paging information."""

    orders: list[TradeOrder]
    pagination: Pagination | None = None


class _CancelBody(msgspec.Struct, rename="camel"):
    """``CancelTradeOrderRequest``: both fields required by the current API."""

    trade_order_id: str
    trading_account_id: str


class _SubmitBody(msgspec.Struct, rename="camel", omit_defaults=True):
    trading_account_id: str
    instrument_id: str
    order_side: str
    order_type: str
    quantity: str
    limit_price: str | None = None
    stop_price: str | None = None
    time_in_force: str | None = None
    client_order_id: str | None = None
    quote_id: str | None = None


_encode: Final = msgspec.json.Encoder().encode
_DECODE_ERRORS: Final = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)
_TIMEOUT_ERRORS: Final = (asyncio.TimeoutError, TimeoutError)
_NOT_RETRIED_TRANSPORT: Final = (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError)
#: Failures before the request left: connection refused, DNS, TLS handshake.
_NOT_SENT: Final = (
    aiohttp.ClientConnectorError,
    aiohttp.ClientSSLError,
    aiohttp.ConnectionTimeoutError,  # no connection in time: nothing was written
)


#: getaddrinfo's "no such name" (a DNS name that does not exist, as opposed to a resolver
#: that did not answer in time).
_NO_SUCH_NAME: Final = frozenset(
    code
    for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
    if code
)


def _lasting(exc: BaseException) -> bool:
    """True for a failure that waiting cannot fix: a TLS certificate refused, a DNS name unknown."""
    if isinstance(exc, _NOT_RETRIED_TRANSPORT):
        return True
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return exc.os_error.errno in _NO_SUCH_NAME
    return False


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    ``None`` when the header is absent or unreadable; never negative.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _budget(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (event-loop time), or ``None`` without one."""
    return None if deadline is None else deadline - asyncio.get_running_loop().time()


def _token_budget(deadline: float | None) -> float | None:
    """The time a token fetch has: until ``deadline``; raises when it has passed (nothing sent)."""
    budget = _budget(deadline)
    if budget is not None and budget <= 0:
        raise TransportError(
            "the deadline passed before a token could be fetched", maybe_sent=False
        )
    return budget


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


class _Answer:
    """What the server answered one attempt: status, the capped body, the token it was sent with."""

    __slots__ = ("raw", "resp", "status", "token")

    def __init__(self, status: int, raw: bytes, resp: aiohttp.ClientResponse, token: str) -> None:
        self.status = status
        self.raw = raw
        self.resp = resp
        self.token = token


class _Failure:
    """An attempt without an answer: the translated error and what is known about it.

    ``repeatable``: not a failure that repeats itself (TLS); ``maybe_sent``:
    the request may have reached the server; ``too_late``: the deadline
    passed before the attempt could start (nothing was sent).
    """

    __slots__ = ("error", "maybe_sent", "repeatable", "too_late")

    def __init__(
        self,
        error: TransportError | ClientClosedError,
        *,
        repeatable: bool = False,
        maybe_sent: bool = False,
        too_late: bool = False,
    ) -> None:
        self.error = error
        self.repeatable = repeatable
        self.maybe_sent = maybe_sent
        self.too_late = too_late


_Outcome = _Answer | _Failure


_T = TypeVar("_T")
#: A request does not start after a rate-limit wait with less time than this
#: (seconds) left to its deadline: it is "not sent", a RateLimitError.
_MIN_SEND_WINDOW: Final = 0.005
#: An attempt's connect phase ends this long (seconds) before its deadline's cutoff;
#: an attempt does not start with less than _MIN_ATTEMPT left (nothing is sent).
_CONNECT_MARGIN: Final = 0.002
_MIN_ATTEMPT: Final = _CONNECT_MARGIN + 0.001


def _is_envelope(raw: bytes) -> bool:
    """True for a JSON object with the envelope's own fields (``success`` or ``errno``)."""
    try:
        document = msgspec.json.decode(raw)
    except (*_DECODE_ERRORS, UnicodeDecodeError):
        return False
    return isinstance(document, dict) and ("success" in document or "errno" in document)


def _same(envelope: Envelope) -> Envelope:
    return envelope


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


def _fmt_decimal(value: str | Decimal | int | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        raise TypeError("pass quantities and prices as str or Decimal, not float")
    return str(value)


class _ProxiedRequest(aiohttp.ClientRequest):
    """A request whose proxy headers never carry the bearer token.

    aiohttp builds a proxy's headers from the session's default headers,
    where the ``Authorization`` header lives (see ``HttpApi._call``), and
    sends that header on to the proxy as ``Proxy-Authorization``: the token
    would reach the proxy even through an ``https://`` tunnel. Credentials
    for the proxy itself go in the proxy URL.
    """

    def update_proxy(
        self,
        proxy: URL | None,
        proxy_auth: aiohttp.BasicAuth | None,
        proxy_headers: LooseHeaders | None,
    ) -> None:
        if proxy_headers is not None:
            proxy_headers = CIMultiDict(proxy_headers)
            proxy_headers.popall("Authorization", None)
        super().update_proxy(proxy, proxy_auth, proxy_headers)


class HttpApi:
    """The REST transport of one client. Create it outside a loop; it opens on first use.

    Methods raise the errors of the module table; after :meth:`aclose` they
    raise :class:`ClientClosedError`.
    """

    __slots__ = (
        "_auth_header",
        "_base",
        "_cancel_url",
        "_closed",
        "_connect_span",
        "_connect_timeouts",
        "_cuts",
        "_gate",
        "_loop",
        "_max_body",
        "_proxy",
        "_request_span",
        "_retry",
        "_session",
        "_session_timeout",
        "_submit_url",
        "_tokens",
        "_unpaced",
        "trace_configs",
    )

    def __init__(self, config: ClientConfig, tokens: TokenSource, gate: RateGate) -> None:
        self._base = config.api_url
        self._tokens = tokens
        self._gate = gate
        self._retry = config.retry
        self._max_body = config.max_response_size
        self._proxy = config.proxy_for(config.api_url)
        # The request timeout (or the call's deadline, if sooner) ends an attempt
        # through one shared cutoff timer, not aiohttp's timer per request: the
        # session's timeout bounds only the connect phase.
        self._request_span = float(config.timeouts.request)
        self._session_timeout = aiohttp.ClientTimeout(total=None, connect=config.timeouts.connect)
        self._connect_span = float(config.timeouts.connect)
        # per-request timeouts whose connect phase ends before the deadline (see _limits)
        self._connect_timeouts: dict[int, aiohttp.ClientTimeout] = {}
        self._cuts = Cutoffs()
        # Without a rate limit, a paced call only waits out 429 pauses.
        self._unpaced = gate.rate is None
        self._cancel_url = URL(self._base + CANCEL_PATH, encoded=True)
        self._submit_url = URL(self._base + SUBMIT_PATH, encoded=True)
        self._session: aiohttp.ClientSession | None = None
        # The session's event loop, kept when it opens: on Python 3.11 every
        # asyncio.get_running_loop() makes a getpid() system call.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        # The token in the session's default Authorization header (set when it changes).
        self._auth_header: str | None = None
        # aiohttp request hooks (cadenza_async.observability adds its own before the
        # session opens); none by default: a request then runs no hook at all.
        self.trace_configs: list[aiohttp.TraceConfig] = []

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._session else "idle")
        return f"<HttpApi {self._base} {state}>"

    @property
    def closed(self) -> bool:
        return self._closed

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
            decode=self._order_from,
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
            orders = self._orders_from(envelope)
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

    async def submit_order(
        self,
        *,
        trading_account_id: str,
        instrument_id: str,
        order_side: str,
        order_type: str,
        quantity: str | Decimal,
        limit_price: str | Decimal | None = None,
        stop_price: str | Decimal | None = None,
        time_in_force: str | None = None,
        client_order_id: str | None = None,
        deadline: float | None = None,
        quote_id: str | None = None,
    ) -> TradeOrder:
        """Place a new order; the order as created.

        Not retried on transport errors, 5xx or 429: a
        :class:`TransportError` means the order may or may not exist (a retry
        is safe only with the same ``client_order_id``, the API's idempotency
        key: :mod:`cadenza_async.placing` does that). ``deadline`` bounds the
        call as for :meth:`cancel_order`.
        """
        body = _encode(
            _SubmitBody(
                trading_account_id=trading_account_id,
                instrument_id=instrument_id,
                order_side=order_side,
                order_type=order_type,
                quantity=str(_fmt_decimal(quantity)),
                limit_price=_fmt_decimal(limit_price),
                stop_price=_fmt_decimal(stop_price),
                time_in_force=time_in_force,
                client_order_id=client_order_id,
                quote_id=quote_id,
            )
        )
        return await self._call(
            "POST",
            self._submit_url,
            body,
            idempotent=False,
            paced=False,
            deadline=deadline,
            decode=self._order_from,
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
        session = self._session
        if session is None:
            session = self._open_session()
        elif self._closed:
            raise ClientClosedError("the client is closed")
        url = URL(f"{self._base}{path}", encoded=True)
        outcome = await self._send_once(session, "GET", url, None, False, deadline)
        if isinstance(outcome, _Failure):
            raise outcome.error from None
        if outcome.status in ok:
            return outcome.status, outcome.raw
        raise self._error_for_status(outcome.status, outcome.raw, outcome.resp)

    async def aclose(self) -> None:
        """Close the session and its connections. Safe to call twice."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
        self._cuts.close()

    # -- internals --------------------------------------------------------------------

    def _open_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("the client is closed")
        # The headers every request sends are session defaults, Authorization
        # included (see _call): aiohttp then has no per-request headers to merge.
        # Identity encoding, no inflating (see the module docstring); no proxy from
        # the environment (trust_env=False), only the configured one.
        session = aiohttp.ClientSession(
            timeout=self._session_timeout,
            connector=aiohttp.TCPConnector(limit=256, enable_cleanup_closed=False),
            headers={
                "User-Agent": _USER_AGENT,
                "Accept": "application/json",
                "Accept-Encoding": "identity",
            },
            auto_decompress=False,
            raise_for_status=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            proxy=self._proxy,
            request_class=aiohttp.ClientRequest if self._proxy is None else _ProxiedRequest,
            trace_configs=self.trace_configs or None,
        )
        self._loop = asyncio.get_running_loop()
        self._session = session
        self._auth_header = None
        return session

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
            session = self._session
            if session is None:
                session = self._open_session()
            elif self._closed:
                raise ClientClosedError("the client is closed")
            outcome = await self._send_once(session, method, url, body, paced, deadline)
            if type(outcome) is _Answer and 200 <= outcome.status < 300:
                return decode(self._success_envelope(outcome.raw, outcome.status, outcome.resp))
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
        self, session: aiohttp.ClientSession, call: _CallState, outcome: _Outcome
    ) -> Envelope:
        """The retry layer, from an attempt's ``outcome`` that was not a 2xx answer."""
        while True:
            if not isinstance(outcome, _Failure) and outcome.status == 401:
                outcome = await self._reauthorize(session, call, outcome)
            elif call.auth is not None:
                call.auth.answered()
            if isinstance(outcome, _Failure):
                await self._retry_failure(call, outcome)
            elif 200 <= outcome.status < 300:
                return self._success_envelope(outcome.raw, outcome.status, outcome.resp)
            else:
                await self._retry_answer(call, outcome)
            outcome = await self._send_once(
                session, call.method, call.url, call.body, call.paced, call.deadline
            )

    async def _retry_failure(self, call: _CallState, failure: _Failure) -> None:
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
            time_left=_budget(call.deadline),
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

    async def _retry_answer(self, call: _CallState, answer: _Answer) -> None:
        """An error answer (not 2xx, not a 401 the auth layer took): raise it, or retry.

        A 429 pauses every caller (the gate) whatever happens next; the
        retry then waits in the gate, not here.
        """
        status = answer.status
        retry_after: float | None = None
        error: ApiError
        if status == 429:
            retry_after = parse_retry_after(answer.resp.headers.get("Retry-After"))
            error = self._rate_limit_error(answer, retry_after)
        else:
            if status == 504:
                call.maybe_sent = True  # a gateway timeout may have passed the request on
            error = self._error_for_status(status, answer.raw, answer.resp)
            if status >= 500:
                error.maybe_sent = call.maybe_sent  # so may an earlier attempt
        policy = self._retry
        verdict = retry_verdict(
            status,
            repeatable=call.idempotent,
            next_delay=call.next_delay(policy),
            time_left=_budget(call.deadline),
            retry_after=retry_after,
            max_retry_after=policy.max_retry_after,
        )
        if status == 429:
            self._gate.pause_for(verdict.pause)
        if not verdict.retry:
            raise error
        call.retried = error
        if status == 429:  # the next attempt waits out the pause in the gate
            log.debug("%s %s: 429, pausing %.3fs", call.method, call.url.path, verdict.pause)
            return
        path = call.url.path
        log.debug("%s %s: %d; retrying in %.3fs", call.method, path, status, verdict.wait)
        await asyncio.sleep(verdict.wait)

    def _rate_limit_error(self, answer: _Answer, retry_after: float | None) -> ApiError:
        error = self._api_error(RateLimitError, answer.status, answer.raw, answer.resp)
        if isinstance(error, RateLimitError):
            error.retry_after = retry_after
        return error

    async def _reauthorize(
        self, session: aiohttp.ClientSession, call: _CallState, refused: _Answer
    ) -> _Outcome:
        """The auth layer, after a 401 (:class:`~cadenza_async._auth.RefreshRule`).

        A refused token worth refreshing is refreshed (within the deadline)
        and the request sent again with the fresh one; a final 401 raises
        :class:`AuthenticationError`. The first answer that is not a 401 is
        returned as it came. (Entered only on a 401: the usual answer costs
        no coroutine of this layer.)
        """
        tokens = self._tokens
        outcome: _Outcome = refused
        while isinstance(outcome, _Answer) and outcome.status == 401:
            rule = call.auth
            if rule is None:
                rule = call.auth = RefreshRule()
            token = outcome.token
            if not rule.should_refresh(token, tokens.refreshable):
                raise self._token_refused(outcome)
            fresh = await tokens.refresh(token, timeout=_token_budget(call.deadline))
            if not rule.retry_with(fresh, token):
                raise self._token_refused(outcome)
            log.debug("%s %s: 401, retrying with a fresh token", call.method, call.url.path)
            outcome = await self._send_once(
                session, call.method, call.url, call.body, call.paced, call.deadline
            )
        assert call.auth is not None
        call.auth.answered()
        return outcome

    def _token_refused(self, answer: _Answer) -> ApiError:
        error = self._api_error(AuthenticationError, answer.status, answer.raw, answer.resp)
        error.message = "the REST API refused the token: " + error.message
        return error

    async def _send_once(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        body: bytes | None,
        paced: bool,
        deadline: float | None,
    ) -> _Outcome:
        """One request: paced, with the current token, within the deadline; never raises aiohttp's.

        The answer (status, capped body) or a :class:`_Failure` (the
        translated error, and whether the request may have reached the
        server). Raises what the rate gate raises, :class:`ResponseTooLargeError`,
        and :class:`AuthenticationError` from the token provider.
        """
        pacing = self._pacing(paced, deadline)
        if pacing is not None:
            await pacing
        token = self._tokens.current
        if token is None or token is not self._auth_header:
            token = await self._bearer(session, deadline)
        # A request needs time to connect before its deadline (see _limits),
        # and after a rate-limit wait a moment more to be worth sending.
        limits = self._limits(deadline, _MIN_ATTEMPT if pacing is None else _MIN_SEND_WINDOW)
        if limits is None:
            if pacing is not None:
                # The wait fitted the budget but ended at (or within moments of)
                # the deadline: the rate limit used the time up, not the request,
                # which could not be answered (nor likely even read) in time.
                raise RateLimitError(
                    "rate limited until the call's deadline: not sent", status=None
                )
            late = TransportError(
                "the deadline passed before the request could be sent", maybe_sent=False
            )
            return _Failure(late, too_late=True)
        cut, timeout = limits
        try:
            resp = await session.request(
                method,
                url,
                data=None if body is None else aiohttp.BytesPayload(body, content_type=_JSON),
                allow_redirects=False,
                timeout=timeout,
            )
            try:
                # (the usual reply, a declared length within the cap, is read
                # here: no coroutine of the capped reader's own)
                if self._declared_fits(resp):
                    raw = await resp.read()  # the parser stops at Content-Length
                else:
                    raw = await self._read_capped(resp)
            finally:
                resp.release()
        except asyncio.CancelledError:
            if not self._cuts.let_go(cut):
                raise  # a cancel from elsewhere: it goes on
            # The attempt's deadline came (the request may have been sent).
            timed_out = self._transport_error(asyncio.TimeoutError(), method, url, token)
            return _Failure(timed_out, repeatable=True, maybe_sent=True)
        except (aiohttp.ClientError, *_TIMEOUT_ERRORS, OSError) as exc:
            error = self._transport_error(exc, method, url, token)
            if isinstance(error, TransportError):
                error.lasting = _lasting(exc)
            return _Failure(
                error,
                repeatable=not isinstance(exc, _NOT_RETRIED_TRANSPORT),
                maybe_sent=not isinstance(exc, _NOT_SENT),
            )
        finally:
            self._cuts.let_go(cut)
        return _Answer(resp.status, raw, resp, token)

    def _pacing(self, paced: bool, deadline: float | None) -> Awaitable[None] | None:
        """The wait for the rate gate (paced calls) or out of a 429 pause; ``None``: go now.

        The gate waits no longer than the deadline allows: a pause that
        outlasts it raises :class:`RateLimitError` now (nothing was sent).
        A plain function, so that the usual case (no limit, no pause) costs
        no coroutine.
        """
        gate = self._gate
        if paced and not self._unpaced:
            return gate.acquire(_budget(deadline))
        if gate.paused_until > 0.0:
            return gate.wait_unpaused(_budget(deadline))
        return None

    async def _bearer(self, session: aiohttp.ClientSession, deadline: float | None) -> str:
        """The token to send, set as the session's ``Authorization`` header if it changed.

        The first token is fetched within the call's deadline, as a fresh one is
        after a 401: a provider that does not answer in time raises
        :class:`AuthenticationError` (nothing was sent).
        """
        tokens = self._tokens
        token = tokens.current
        if token is None:
            token = await tokens.get(timeout=_token_budget(deadline))
        if token is not self._auth_header:
            # aiohttp copies the default headers when the request starts, before
            # its first await: requests already sent keep the token they had.
            session.headers["Authorization"] = "Bearer " + token
            self._auth_header = token
        return token

    def _declared_fits(self, resp: aiohttp.ClientResponse) -> bool:
        """Whether the reply declares a length within ``max_response_size`` (the usual reply).

        Raises :class:`ResponseTooLargeError`, after dropping the connection,
        for a compressed body or a ``Content-Length`` over the cap (nothing is
        read). False: no length declared, :meth:`_read_capped` reads it.
        """
        limit = self._max_body
        encoding = resp.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            resp.close()
            raise self._too_large(
                resp,
                f"HTTP {resp.status} with a {encoding[:20]!r}-encoded body refused"
                " (the client asks for identity and inflates nothing)",
            )
        declared = resp.content_length
        if declared is None:
            return False
        if declared > limit:
            resp.close()
            raise self._too_large(
                resp,
                f"HTTP {resp.status} with a body of {declared} bytes refused unread"
                f" (max_response_size is {limit})",
            )
        return True

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        """A body without a declared length: at most ``max_response_size`` bytes.

        Raises :class:`ResponseTooLargeError`, after dropping the connection,
        once the body passes the cap (reading stops there). aiohttp errors
        pass through to :meth:`_send_once`, which translates them.
        """
        limit = self._max_body
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > limit:
                resp.close()
                raise self._too_large(
                    resp,
                    f"HTTP {resp.status} with a body over max_response_size ({limit} bytes);"
                    " reading stopped there",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self, resp: aiohttp.ClientResponse, message: str) -> ResponseTooLargeError:
        error = ResponseTooLargeError(
            self._scrub(message), status=resp.status, request_id=self._request_id(None, resp)
        )
        error.limit = self._max_body
        return error

    def _limits(
        self, deadline: float | None, window: float
    ) -> tuple[int, aiohttp.ClientTimeout] | None:
        """This attempt's limits: its cutoff, and aiohttp's timeouts for it.

        The cutoff ends the attempt at the request timeout or the deadline, if
        sooner: it cancels the task making the request, and :meth:`_send_once`
        turns that into a timeout (see :class:`~cadenza_async._alarm.Cutoffs`).
        A cutoff can only say that a request *may* have been sent; one still
        connecting at the deadline was not, and aiohttp's own connect timeout,
        ending :data:`_CONNECT_MARGIN` before the deadline, says so
        (``ConnectionTimeoutError``: not sent). aiohttp arms no timer for a
        pooled connection, the usual case. ``None`` when no more than
        ``window`` seconds are left before the deadline: nothing is sent then.
        """
        loop = self._loop
        assert loop is not None  # (the session is open)
        now = loop.time()
        until = now + self._request_span
        timeout = self._session_timeout
        if deadline is not None:
            left = deadline - now
            if left <= window:
                return None
            if deadline < until:
                until = deadline
            if left - _CONNECT_MARGIN < self._connect_span:
                key = max(1, int((left - _CONNECT_MARGIN) * 1000))  # whole milliseconds
                timeout = self._connect_timeouts.get(key) or self._connect_timeout(key)
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("an HTTP request must run in a task")
        return self._cuts.arm(until, task), timeout

    def _connect_timeout(self, ms: int) -> aiohttp.ClientTimeout:
        """aiohttp's timeouts with a connect phase of ``ms`` milliseconds (kept, at most 512)."""
        if len(self._connect_timeouts) >= 512:
            self._connect_timeouts.clear()
        # (ceil_threshold: aiohttp would round a longer one up to a whole second)
        timeout = aiohttp.ClientTimeout(total=None, connect=ms / 1000, ceil_threshold=math.inf)
        self._connect_timeouts[ms] = timeout
        return timeout

    def _transport_error(
        self, exc: BaseException, method: str, url: URL, token: str
    ) -> TransportError | ClientClosedError:
        if self._closed:
            return ClientClosedError("the client was closed during the request")
        if isinstance(exc, _TIMEOUT_ERRORS):
            detail = (
                f"timed out ({type(exc).__name__}; connect {self._session_timeout.connect:g}s, "
                f"request {self._request_span:g}s)"
            )
        elif isinstance(exc, (aiohttp.ClientConnectionError, OSError)):
            # Connection-phase errors name the host and the OS error, never headers.
            detail = f"{type(exc).__name__}: {exc}"
        else:
            detail = type(exc).__name__
        # Belt and braces: a token never leaves in a message, not even a piece of it.
        message = _clip(redact(f"{method} {url.path}: {detail}", (token, self._tokens.current)))
        return TransportError(message)

    def _scrub(self, text: str) -> str:
        """Server text fit for an exception: the tokens in use masked (fragments too), clipped."""
        return _clip(redact(text, (self._auth_header, self._tokens.current)))

    def _success_envelope(self, raw: bytes, status: int, resp: aiohttp.ClientResponse) -> Envelope:
        try:
            envelope = decode_envelope(raw)
        except _DECODE_ERRORS:
            raise UnexpectedResponseError(
                f"HTTP {status} with a body that is not the API envelope",
                status=status,
                request_id=self._request_id(None, resp),
            ) from None
        if envelope.success:
            return envelope
        message = envelope.error or "the server answered success=false"
        request_id = self._request_id(envelope, resp)
        cls: type[ApiError]
        if is_not_cancellable(envelope.errno, message):
            cls = OrderNotCancellableError
        else:
            cls = UnexpectedResponseError
        raise cls(
            self._scrub(message), status=status, errno=envelope.errno or None, request_id=request_id
        )

    def _request_id(self, envelope: Envelope | None, resp: aiohttp.ClientResponse) -> str | None:
        if envelope is not None and envelope.details is not None and envelope.details.request_id:
            return self._scrub(envelope.details.request_id)
        header = resp.headers.get("X-Request-Id")
        return None if header is None else self._scrub(header)

    def _api_error(
        self, cls: type[ApiError], status: int, raw: bytes, resp: aiohttp.ClientResponse
    ) -> ApiError:
        envelope: Envelope | None
        try:
            envelope = decode_envelope(raw)
        except _DECODE_ERRORS:
            envelope = None
        if envelope is not None and envelope.error:
            message = envelope.error
        else:
            message = f"HTTP {status} {resp.reason or ''}".rstrip()
        errno = envelope.errno if envelope is not None and envelope.errno else None
        return cls(
            self._scrub(message),
            status=status,
            errno=errno,
            request_id=self._request_id(envelope, resp),
        )

    def _error_for_status(self, status: int, raw: bytes, resp: aiohttp.ClientResponse) -> ApiError:
        if status == 400:
            error = self._api_error(InvalidRequestError, status, raw, resp)
            if is_not_cancellable(error.errno, error.message):
                return OrderNotCancellableError(
                    error.message, status=status, errno=error.errno, request_id=error.request_id
                )
            return error
        if status == 403:
            return self._api_error(PermissionDeniedError, status, raw, resp)
        if status == 404:
            if not _is_envelope(raw):
                return self._not_the_api(resp)
            return self._api_error(OrderNotFoundError, status, raw, resp)
        if status >= 500:
            return self._api_error(ServerError, status, raw, resp)
        error = self._api_error(UnexpectedResponseError, status, raw, resp)
        if 300 <= status < 400:
            location = resp.headers.get("Location")
            error.message = self._scrub(
                f"HTTP {status} redirect"
                + (f" to {location}" if location else "")
                + " not followed"
            )
        return error

    def _not_the_api(self, resp: aiohttp.ClientResponse) -> ApiError:
        """A 404 that is not the API's (no envelope): the base URL is wrong."""
        return ApiNotFoundError(
            self._scrub(
                f"HTTP 404 from {resp.url.with_query(None)} is not the API's answer (no "
                f"envelope): there is no Cadenza API under api_url {self._base}, which is the "
                "API's base URL alone (e.g. https://cadenza-api-uat.algo724.com, without "
                "/api/v3); `cadenza-async doctor` checks the settings"
            ),
            status=404,
            request_id=resp.headers.get("X-Request-Id"),
        )

    @staticmethod
    def _order_from(envelope: Envelope) -> TradeOrder:
        try:
            return decode_order(envelope.data)
        except _DECODE_ERRORS as exc:
            raise UnexpectedResponseError(
                f"the answer's data is not a trade order: {_clip(str(exc))}",
                status=200,
                request_id=envelope.details.request_id if envelope.details else None,
            ) from None

    @staticmethod
    def _orders_from(envelope: Envelope) -> list[TradeOrder]:
        try:
            return decode_order_list(envelope.data)
        except _DECODE_ERRORS as exc:
            raise UnexpectedResponseError(
                f"the answer's data is not a list of trade orders: {_clip(str(exc))}",
                status=200,
                request_id=envelope.details.request_id if envelope.details else None,
            ) from None

    @classmethod
    def _page_from(cls, envelope: Envelope) -> OrderPage:
        return OrderPage(cls._orders_from(envelope), envelope.pagination)
