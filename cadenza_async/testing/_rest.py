"""The REST endpoints (cancel, list, submit): bearer auth, the API's envelopes, and the REST faults.

Every call is recorded in ``requests`` when it arrives, then goes through, in
order: the endpoint's delay (:class:`~cadenza_async.testing._delays.DelaySwitch`,
one per endpoint), an outage answer, the next queued fault (5xx or 429), auth,
and the handler. A cancel that reached the engine may have its answer held
by the cancel reply delay; the cancel desk counts it as in flight from the
moment its body was read until it is answered or its client has gone away.
A submit that reached the engine may have its answer held or lost (the
submit desk's faults). A request held by a delay when the simulator stops is
answered 503 at once.
"""

from __future__ import annotations

import asyncio
import http
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from aiohttp import web

from ..models import TradeOrder
from ._account import SimAccounts
from ._cancels import CancelDesk, CancelTicket
from ._delays import DelaySwitch, checked_delay
from ._engine import (
    ERRNO_FORBIDDEN,
    ERRNO_INVALID_REQUEST,
    ERRNO_RATE_LIMITED,
    ERRNO_SERVER_ERROR,
    ERRNO_UNAUTHORIZED,
    ApiFailure,
    Engine,
    TokenInfo,
    is_valid_id,
)
from ._forms import WireForm
from ._submits import SubmitDesk

__all__ = ["ENDPOINTS", "MAX_LIST_LIMIT", "RestApi"]

#: The endpoint names faults take, and their paths.
ENDPOINTS: Final = {
    "cancel": "/api/v3/tradeOrder/cancel",
    "list": "/api/v3/tradeOrder/list",
    "submit": "/api/v3/tradeOrder/submit",
    "market": "/api/v3/market/",  # every market data GET (the simulator's market)
    "account": "/api/v3/tradingAccount/",  # portfolios and trading accounts
    "quote": "/api/v3/quote/rfq",
    "health": "/api/v3/health",
}
MAX_LIST_LIMIT: Final = 1000
# How often a held cancel checks whether its client is still there.
_GONE_POLL: Final = 0.02

_encode = msgspec.json.Encoder().encode
_OK_TAIL = b',"success":true,"errno":0,"error":null}'
_REASONS = {
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


def _error_body(errno: int, message: str) -> bytes:
    return _encode({"data": None, "success": False, "errno": errno, "error": message})


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def _failure(failure: ApiFailure) -> web.Response:
    return _json(_error_body(failure.errno, failure.message), failure.status)


def _error_status(status: int) -> web.Response:
    """The error envelope of an injected ``status`` (4xx or 5xx)."""
    if status >= 500:
        return _json(_error_body(ERRNO_SERVER_ERROR, _REASONS.get(status, "Server error")), status)
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    return _json(_error_body(-(100000 + status), reason), status)


def endpoint_names(endpoints: str | Iterable[str] | None) -> tuple[str, ...]:
    """The endpoint names meant (None: all). Raises ValueError for an unknown name."""
    if endpoints is None:
        return tuple(ENDPOINTS)
    names = (endpoints,) if isinstance(endpoints, str) else tuple(endpoints)
    for name in names:
        if name not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {name!r}: one of {', '.join(ENDPOINTS)}")
    return names


def _query_integer(query: Any, name: str, default: int, low: int, high: int) -> int:
    """The query's ``name`` as an integer in [low, high], ``default`` when absent; ApiFailure 400."""
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiFailure(
            400, ERRNO_INVALID_REQUEST, f"Invalid request: {name} must be an integer"
        ) from None
    if not low <= value <= high:
        raise ApiFailure(400, ERRNO_INVALID_REQUEST, f"Invalid request: {name} out of range")
    return value


@dataclass(frozen=True)
class _ListFilter:
    """What a listing keeps: the token's orders, narrowed by the query's filters (None: any)."""

    accounts: set[str]
    account: str | None
    statuses: set[str] | None
    instrument: str | None
    start_time: int  # 0: no lower bound

    def admits(self, order: TradeOrder) -> bool:
        return (
            order.trading_account_id in self.accounts
            and (self.account is None or order.trading_account_id == self.account)
            and (self.statuses is None or order.status in self.statuses)
            and (self.instrument is None or order.instrument_id == self.instrument)
            and (not self.start_time or (order.created_at or 0) >= self.start_time)
        )


def _page_body(matches: list[TradeOrder], offset: int, limit: int, form: WireForm) -> bytes:
    """The list envelope: the page of ``matches`` at ``offset`` and its pagination."""
    page = matches[offset : offset + limit]
    total = len(matches)
    pagination = _encode(
        {
            "offset": offset,
            "limit": limit,
            "total": total,
            "hasNext": offset + len(page) < total,
        }
    )
    return b'{"data":' + form.rest_orders(page) + b',"pagination":' + pagination + _OK_TAIL


class _Fault:
    """One queued fault: a 5xx (``value`` is the status) or a 429 (``value`` is Retry-After)."""

    __slots__ = ("endpoint", "kind", "value")

    def __init__(self, kind: str, value: float, endpoint: str | None) -> None:
        self.kind = kind
        self.value = value
        self.endpoint = endpoint


class RestApi:
    """The REST handlers and their faults; see the module docstring for the order of things."""

    def __init__(self, engine: Engine, cancels: CancelDesk, submits: SubmitDesk) -> None:
        self._engine = engine
        self._cancels = cancels
        self._submits = submits
        self.requests: list[tuple[str, str, Any]] = []
        self.delays = {name: DelaySwitch() for name in ENDPOINTS}
        self.outage_answers = 0
        self.stopping = False
        self._faults: deque[_Fault] = deque()
        self._outages: dict[str, tuple[float, int]] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(ENDPOINTS["cancel"], self._cancel)
        app.router.add_get(ENDPOINTS["list"], self._list)
        app.router.add_post(ENDPOINTS["submit"], self._submit)

    def add_market_routes(
        self, app: web.Application, routes: Mapping[str, Callable[[Any], bytes]]
    ) -> None:
        """GET ``path`` answers ``handler(query)`` as the envelope's data (endpoint ``"market"``)."""
        for path, handler in routes.items():
            app.router.add_get(path, self._market_endpoint(handler))

    def add_account_routes(self, app: web.Application, accounts: SimAccounts) -> None:
        """Portfolios, trading accounts, the RFQ dealer and health (see ``_account``)."""
        app.router.add_get(
            "/api/v3/tradingAccount/portfolio/list",
            self._account_endpoint(accounts.rest_portfolios, "account"),
        )
        app.router.add_get(
            "/api/v3/tradingAccount/list", self._account_endpoint(accounts.rest_accounts, "account")
        )
        app.router.add_post(
            ENDPOINTS["quote"],
            self._account_endpoint(
                lambda _info, body: _encode(accounts.request_quote(body)), "quote"
            ),
        )

        async def health(request: web.Request) -> web.Response:
            await self._read(request)
            if await self._hold(self.delays["health"], request, None) and self.stopping:
                return _error_status(503)
            status, body = accounts.health()  # no token needed: a probe's endpoint
            return _json(body, status)

        app.router.add_get(ENDPOINTS["health"], health)

    def _account_endpoint(
        self, handler: Callable[[TokenInfo, Any], bytes], endpoint: str
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def answer(request: web.Request) -> web.Response:
            body = await self._read(request)
            info, early = await self._admit(request, endpoint)
            if early is not None:
                return early
            assert info is not None
            try:
                data = handler(info, request.query if body is None else body)
            except ApiFailure as failure:
                return _failure(failure)
            return _json(b'{"data":' + data + _OK_TAIL)

        return answer

    def _market_endpoint(
        self, handler: Callable[[Any], bytes]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def answer(request: web.Request) -> web.Response:
            await self._read(request)
            _info, early = await self._admit(request, "market")
            if early is not None:
                return early
            try:
                return _json(b'{"data":' + handler(request.query) + _OK_TAIL)
            except ApiFailure as failure:
                return _failure(failure)

        return answer

    # ---- faults ---------------------------------------------------------------------

    def queue_faults(self, kind: str, value: float, n: int, endpoint: str | None) -> None:
        """Answer the next ``n`` calls (of ``endpoint``, None: any) with a 5xx or a 429."""
        if endpoint is not None:
            endpoint_names(endpoint)
        self._faults.extend(_Fault(kind, value, endpoint) for _ in range(n))

    def delay(self, seconds: float, endpoint: str | None) -> None:
        seconds = checked_delay(seconds)
        for name in endpoint_names(endpoint):
            self.delays[name].set(seconds)

    def outage(self, seconds: float, status: int, endpoints: Iterable[str] | None) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"an outage answers a 4xx or 5xx status, not {status!r}")
        until = time.monotonic() + checked_delay(seconds)
        for name in endpoint_names(endpoints):
            self._outages[name] = (until, status)

    def stop(self) -> None:
        """Answer every held request now (503 for those not yet past their delay)."""
        self.stopping = True
        for switch in self.delays.values():
            switch.release_all()

    def _take_fault(self, endpoint: str) -> _Fault | None:
        for index, fault in enumerate(self._faults):
            if fault.endpoint is None or fault.endpoint == endpoint:
                del self._faults[index]
                return fault
        return None

    async def _hold(
        self, switch: DelaySwitch, request: web.Request, ticket: CancelTicket | None
    ) -> bool:
        """Wait out ``switch``'s delay; True when it held the request at all.

        A cancel's ticket ends as soon as its client has gone away; the wait
        itself goes on (the exchange still gets the request, as a real one would).
        """
        if not switch.active or self.stopping:
            return False
        released: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def release() -> None:
            if not released.done():
                released.set_result(None)

        held = switch.hold(release)
        try:
            while not released.done():
                watching = ticket is not None and not ticket.ended
                await asyncio.wait([released], timeout=_GONE_POLL if watching else None)
                if watching and request.transport is None:
                    assert ticket is not None
                    ticket.end()
        finally:
            held.cancel()
        return True

    # ---- the common part of every call -------------------------------------------------

    async def _read(self, request: web.Request) -> Any:
        """Record the call; return the decoded JSON body (the raw bytes when not JSON)."""
        if request.method != "POST":
            self.requests.append((request.method, request.path, dict(request.query)))
            return None
        raw = await request.read()
        body: Any
        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            body = raw
        self.requests.append((request.method, request.path, body))
        return body

    async def _admit(
        self, request: web.Request, endpoint: str, ticket: CancelTicket | None = None
    ) -> tuple[TokenInfo | None, web.Response | None]:
        """Apply the REST faults and auth. Returns (token, early answer)."""
        if await self._hold(self.delays[endpoint], request, ticket) and self.stopping:
            return None, _error_status(503)
        outage = self._outages.get(endpoint)
        if outage is not None:
            until, status = outage
            if time.monotonic() < until:
                self.outage_answers += 1
                return None, _error_status(status)
            del self._outages[endpoint]
        fault = self._take_fault(endpoint)
        if fault is not None:
            if fault.kind == "rate":
                headers = {"Retry-After": f"{fault.value:g}"}
                return None, _json(
                    _error_body(ERRNO_RATE_LIMITED, "Too many requests"), 429, headers
                )
            status = int(fault.value)
            return None, _json(
                _error_body(ERRNO_SERVER_ERROR, _REASONS.get(status, "Server error")), status
            )
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, _json(
                _error_body(ERRNO_UNAUTHORIZED, "Unauthorized: missing bearer token"), 401
            )
        info = self._engine.token_info(token.strip())
        if info is None:
            return None, _json(_error_body(ERRNO_UNAUTHORIZED, "Unauthorized: invalid token"), 401)
        if info.expired():
            return None, _json(_error_body(ERRNO_UNAUTHORIZED, "Unauthorized: token expired"), 401)
        return info, None

    # ---- handlers -----------------------------------------------------------------------

    async def _cancel(self, request: web.Request) -> web.Response:
        body = await self._read(request)
        order_id = body.get("tradeOrderId") if isinstance(body, dict) else None
        ticket = self._cancels.open(order_id)
        try:
            info, early = await self._admit(request, "cancel", ticket)
            if early is not None:
                return early
            assert info is not None
            if not isinstance(body, dict):
                self._cancels.log(None, "http")
                return _json(
                    _error_body(
                        ERRNO_INVALID_REQUEST, "Invalid request: body must be a JSON object"
                    ),
                    400,
                )
            self._cancels.log(order_id, "http")
            form = self._engine.form
            try:
                order = self._engine.cancel(info, order_id, form.cancel_account(body))
            except ApiFailure as failure:
                answer = _failure(failure)
            else:
                answer = _json(b'{"data":' + form.rest_order(order) + _OK_TAIL)
            # Applied already: only the answer waits (delay_cancel_reply).
            await self._hold(self._cancels.reply_delay, request, ticket)
            return answer
        finally:
            ticket.end()

    async def _submit(self, request: web.Request) -> web.Response:
        self._submits.begin()
        try:
            return await self._submit_in_flight(request)
        finally:
            self._submits.end()

    async def _submit_in_flight(self, request: web.Request) -> web.Response:
        body = await self._read(request)
        info, early = await self._admit(request, "submit")
        if early is not None:
            return early
        assert info is not None
        if not isinstance(body, dict):
            return _json(
                _error_body(ERRNO_INVALID_REQUEST, "Invalid request: body must be a JSON object"),
                400,
            )
        self._submits.log(body.get("clientOrderId"), "http")
        try:
            order = self._engine.submit(info, body)
        except ApiFailure as failure:
            return _failure(failure)
        answer = _json(b'{"data":' + self._engine.form.rest_order(order) + _OK_TAIL)
        lost, status = self._submits.take_lost_reply()
        if lost:
            if status is not None:
                return _error_status(status)
            transport = request.transport
            if transport is not None:
                transport.close()  # applied, and the client hears nothing: a reset
            return answer
        # Applied already: only the answer waits (delay_submit_reply).
        await self._hold(self._submits.reply_delay, request, None)
        return answer

    async def _list(self, request: web.Request) -> web.Response:
        await self._read(request)
        info, early = await self._admit(request, "list")
        if early is not None:
            return early
        assert info is not None
        try:
            return self._list_page(info, request.query)
        except ApiFailure as failure:
            return _failure(failure)

    def _list_page(self, info: TokenInfo, query: Any) -> web.Response:
        """One page of the orders ``info`` may see that the query selects; ApiFailure (400, 403)."""
        limit = _query_integer(query, "limit", 50, 1, MAX_LIST_LIMIT)
        offset = _query_integer(query, "offset", 0, 0, 10**9)
        start_time = _query_integer(query, "startTime", 0, 0, 2**62)
        account = query.get("tradingAccountId")
        candidates = self._candidates(info, query.get("tradeOrderId"), account)
        statuses = query.get("orderStatus")
        selected = _ListFilter(
            accounts=info.accounts,
            account=account,
            statuses=set(statuses.split(",")) if statuses else None,
            instrument=query.get("instrumentId"),
            start_time=start_time,
        )
        matches = [order for order in candidates if selected.admits(order)]
        if query.get("ascending", "").lower() == "false":
            matches.reverse()
        return _json(_page_body(matches, offset, limit, self._engine.form))

    def _candidates(
        self, info: TokenInfo, order_id: str | None, account: str | None
    ) -> Iterable[TradeOrder]:
        """The orders to filter: the one ``order_id``, the account's, or all of them.

        Raises ApiFailure: 400 for a malformed id, 403 for an account or an
        order that ``info`` has no access to.
        """
        if order_id is not None and not is_valid_id(order_id):
            raise ApiFailure(400, ERRNO_INVALID_REQUEST, "Invalid request: malformed tradeOrderId")
        if account is not None:
            if not is_valid_id(account):
                raise ApiFailure(
                    400, ERRNO_INVALID_REQUEST, "Invalid request: malformed tradingAccountId"
                )
            if account not in info.accounts:
                raise ApiFailure(
                    403, ERRNO_FORBIDDEN, "Forbidden: no access to this trading account"
                )
        if order_id is not None:
            found = self._engine.get(order_id)
            if found is not None and found.trading_account_id not in info.accounts:
                raise ApiFailure(403, ERRNO_FORBIDDEN, "Forbidden: no access to this order")
            return [found] if found is not None else []
        if account is not None:
            return self._engine.orders_of(account)
        return self._engine.orders.values()
