"""HttpSender: one HTTP request of the SDK, on its one pooled aiohttp session.

Everything between "send this" and "this came back": the session (opened
lazily inside the running loop, keep-alive, no cookies, no proxy from the
environment, only the configured one, whose headers never carry the bearer
token), pacing by the client's :class:`~cadenza_async._ratelimit.RateGate`,
the current bearer token as the session's default header, the attempt cut at
the request timeout or the call's deadline (one
:class:`~cadenza_async._alarm.Cutoffs` timer for every request in flight;
aiohttp's own timeout bounds only the connect phase), and the body read up to
``max_response_size`` (a compressed body refused, not inflated). aiohttp's
exceptions stop here, translated and never chained: a :class:`Failure` says
what is known (whether the request may have reached the server, whether
trying again can help); an answer is an :class:`Answer`, read by
:class:`~cadenza_async._http_answers.Answers`. What to do next (the 401
rule, retries) is :class:`~cadenza_async.http.HttpApi`'s.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Awaitable
from typing import Final

import aiohttp
from aiohttp.typedefs import LooseHeaders
from multidict import CIMultiDict
from yarl import URL

from ._alarm import Cutoffs
from ._auth import TokenSource
from ._http_answers import Answers, clip
from ._ratelimit import RateGate
from ._redact import redact
from ._version import __version__
from .config import ClientConfig
from .errors import ClientClosedError, RateLimitError, TransportError

__all__ = ["Answer", "Failure", "HttpSender", "Outcome", "budget", "token_budget"]

_USER_AGENT: Final = "cadenza-async/" + __version__
_JSON: Final = "application/json"
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


#: A request does not start after a rate-limit wait with less time than this
#: (seconds) left to its deadline: it is "not sent", a RateLimitError.
_MIN_SEND_WINDOW: Final = 0.005
#: An attempt's connect phase ends this long (seconds) before its deadline's cutoff;
#: an attempt does not start with less than _MIN_ATTEMPT left (nothing is sent).
_CONNECT_MARGIN: Final = 0.002
_MIN_ATTEMPT: Final = _CONNECT_MARGIN + 0.001


class Answer:
    """What the server answered one attempt: status, the capped body, the token it was sent with."""

    __slots__ = ("raw", "resp", "status", "token")

    def __init__(self, status: int, raw: bytes, resp: aiohttp.ClientResponse, token: str) -> None:
        self.status = status
        self.raw = raw
        self.resp = resp
        self.token = token


class Failure:
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


Outcome = Answer | Failure


def budget(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (event-loop time), or ``None`` without one."""
    return None if deadline is None else deadline - asyncio.get_running_loop().time()


def token_budget(deadline: float | None) -> float | None:
    """The time a token fetch has: until ``deadline``; raises when it has passed (nothing sent)."""
    left = budget(deadline)
    if left is not None and left <= 0:
        raise TransportError(
            "the deadline passed before a token could be fetched", maybe_sent=False
        )
    return left


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


class HttpSender:
    """The requests of one client: create it outside a loop, it opens on first use; see the module docstring."""

    __slots__ = (
        "_auth_header",
        "_closed",
        "_connect_span",
        "_connect_timeouts",
        "_loop",
        "_max_body",
        "_proxy",
        "_request_span",
        "_session_timeout",
        "_unpaced",
        "answers",
        "cuts",
        "gate",
        "session",
        "tokens",
        "trace_configs",
    )

    def __init__(self, config: ClientConfig, tokens: TokenSource, gate: RateGate) -> None:
        self.tokens = tokens
        self.gate = gate
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
        self.cuts = Cutoffs()
        # Without a rate limit, a paced call only waits out 429 pauses.
        self._unpaced = gate.rate is None
        self.session: aiohttp.ClientSession | None = None
        # The session's event loop, kept when it opens: on Python 3.11 every
        # asyncio.get_running_loop() makes a getpid() system call.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        # The token in the session's default Authorization header (set when it changes).
        self._auth_header: str | None = None
        self.answers = Answers(self.scrub, config.api_url)
        # aiohttp request hooks (cadenza_async.observability adds its own before the
        # session opens); none by default: a request then runs no hook at all.
        self.trace_configs: list[aiohttp.TraceConfig] = []

    @property
    def closed(self) -> bool:
        return self._closed

    def open_session(self) -> aiohttp.ClientSession:
        """The session, opened now if it is not; raises :class:`ClientClosedError` once closed."""
        session = self.session
        if session is None:
            return self._open_session()
        if self._closed:
            raise ClientClosedError("the client is closed")
        return session

    async def aclose(self) -> None:
        """Close the session and its connections. Safe to call twice."""
        self._closed = True
        session, self.session = self.session, None
        if session is not None and not session.closed:
            await session.close()
        self.cuts.close()

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
        self.session = session
        self._auth_header = None
        return session

    async def send_once(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        body: bytes | None,
        paced: bool,
        deadline: float | None,
    ) -> Outcome:
        """One request: paced, with the current token, within the deadline; never raises aiohttp's.

        The answer (status, capped body) or a :class:`Failure` (the
        translated error, and whether the request may have reached the
        server). Raises what the rate gate raises, :class:`ResponseTooLargeError`,
        and :class:`AuthenticationError` from the token provider.
        """
        pacing = self._pacing(paced, deadline)
        if pacing is not None:
            await pacing
        token = self.tokens.current
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
            return Failure(late, too_late=True)
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
            if not self.cuts.let_go(cut):
                raise  # a cancel from elsewhere: it goes on
            # The attempt's deadline came (the request may have been sent).
            timed_out = self._transport_error(asyncio.TimeoutError(), method, url, token)
            return Failure(timed_out, repeatable=True, maybe_sent=True)
        except (aiohttp.ClientError, *_TIMEOUT_ERRORS, OSError) as exc:
            error = self._transport_error(exc, method, url, token)
            if isinstance(error, TransportError):
                error.lasting = _lasting(exc)
            return Failure(
                error,
                repeatable=not isinstance(exc, _NOT_RETRIED_TRANSPORT),
                maybe_sent=not isinstance(exc, _NOT_SENT),
            )
        finally:
            self.cuts.let_go(cut)
        return Answer(resp.status, raw, resp, token)

    def _pacing(self, paced: bool, deadline: float | None) -> Awaitable[None] | None:
        """The wait for the rate gate (paced calls) or out of a 429 pause; ``None``: go now.

        The gate waits no longer than the deadline allows: a pause that
        outlasts it raises :class:`RateLimitError` now (nothing was sent).
        A plain function, so that the usual case (no limit, no pause) costs
        no coroutine.
        """
        gate = self.gate
        if paced and not self._unpaced:
            return gate.acquire(budget(deadline))
        if gate.paused_until > 0.0:
            return gate.wait_unpaused(budget(deadline))
        return None

    async def _bearer(self, session: aiohttp.ClientSession, deadline: float | None) -> str:
        """The token to send, set as the session's ``Authorization`` header if it changed.

        The first token is fetched within the call's deadline, as a fresh one is
        after a 401: a provider that does not answer in time raises
        :class:`AuthenticationError` (nothing was sent).
        """
        tokens = self.tokens
        token = tokens.current
        if token is None:
            token = await tokens.get(timeout=token_budget(deadline))
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
            raise self.answers.too_large(
                resp,
                f"HTTP {resp.status} with a {encoding[:20]!r}-encoded body refused"
                " (the client asks for identity and inflates nothing)",
                limit,
            )
        declared = resp.content_length
        if declared is None:
            return False
        if declared > limit:
            resp.close()
            raise self.answers.too_large(
                resp,
                f"HTTP {resp.status} with a body of {declared} bytes refused unread"
                f" (max_response_size is {limit})",
                limit,
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
                raise self.answers.too_large(
                    resp,
                    f"HTTP {resp.status} with a body over max_response_size ({limit} bytes);"
                    " reading stopped there",
                    limit,
                )
            chunks.append(chunk)
        return b"".join(chunks)

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
        return self.cuts.arm(until, task), timeout

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
        message = clip(redact(f"{method} {url.path}: {detail}", (token, self.tokens.current)))
        return TransportError(message)

    def scrub(self, text: str) -> str:
        """Server text fit for an exception: the tokens in use masked (fragments too), clipped."""
        return clip(redact(text, (self._auth_header, self.tokens.current)))
