"""Telemetry: one client's OpenTelemetry instruments and the hooks that feed them.

Installed by :func:`cadenza_async.observability.instrument`; imports
OpenTelemetry (the ``otel`` extra). Every hook is put on one client when it
is instrumented, so an uninstrumented client runs none of this module:

=====================================  ===========  ============================================
instrument                             kind         attributes
=====================================  ===========  ============================================
``http.client.request.duration``       histogram s  ``http.request.method``, ``server.address``,
(semantic conventions; each attempt)                ``server.port``, ``url.template`` (the path:
                                                    no ids are in this API's paths),
                                                    ``http.response.status_code``, ``error.type``
``rpc.client.call.duration``           histogram s  ``rpc.system`` (``centrifugo``),
(semantic conventions)                              ``rpc.method``, ``error.type``
``cadenza.cancel.reply.duration``      histogram s  ``cadenza.proof.source`` (``ws``, ``http``,
``cadenza.cancel.proof.duration``                   ``rest``), ``cadenza.order.status``
``cadenza.submit.reply.duration``      histogram s  the same, and ``cadenza.submit.accepted``
``cadenza.submit.proof.duration``
``cadenza.calls.failed``               counter      ``cadenza.operation`` (``cancel``,
                                                    ``submit``), ``error.type``
``cadenza.stream.reconnects``          counter      (observed from the stream)
``cadenza.stream.degraded.duration``   counter s    seconds spent with REST proving (stream down)
``cadenza.stream.bad_events``          counter      (observed)
``cadenza.rest.polls``                 counter      REST requests made to prove (observed)
``cadenza.ratelimit.wait.duration``    histogram s  ``cadenza.wait.kind`` (``pace``: the
                                                    client's rate limit; ``pause``: a 429)
``cadenza.book.resyncs``               counter      ``cadenza.resync.reason`` (live books)
``cadenza.portfolio.reloads``          counter      ``cadenza.reload.reason`` (live portfolios)
=====================================  ===========  ============================================

Spans: ``cadenza.cancel_and_confirm``, ``cadenza.submit_and_confirm`` and
``cadenza.execute_quote`` (kind CLIENT) around each call, with the events
``sent`` (each request of the cancel or submit going out), ``acknowledged``
(its reply, with its status) and ``proven`` (``cadenza.proof.source``), and
the call's error recorded when it raises.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import aiohttp
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._version import __version__
from ..models import CancelResult, SubmitResult

if TYPE_CHECKING:
    from ..client import CadenzaClient

__all__ = ["Telemetry"]

T = TypeVar("T")

#: The REST paths whose requests are the cancel or the submit itself (span events).
_SENDS: Final = frozenset({"/api/v3/tradeOrder/cancel", "/api/v3/tradeOrder/submit"})
_RPC_SENDS: Final = frozenset({"command.trade_order.cancel", "command.trade_order.submit"})
#: The span of the call running in this context (its requests add their events to it).
_CALL_SPAN: contextvars.ContextVar[Any] = contextvars.ContextVar("cadenza_call_span", default=None)
_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def _error_type(exc: BaseException) -> str:
    return type(exc).__name__


class _RateGateMeter:
    """The client's rate gate, with the time each caller waited in it measured.

    Forwards everything else to the gate; only a wait that actually slept
    is recorded.
    """

    def __init__(self, gate: Any, histogram: Any) -> None:
        self._gate = gate
        self._histogram = histogram

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gate, name)

    async def acquire(self, budget: float | None = None) -> None:
        started = time.perf_counter()
        try:
            await self._gate.acquire(budget)
        finally:
            self._waited(started, "pace")

    async def wait_unpaused(self, budget: float | None = None) -> None:
        started = time.perf_counter()
        try:
            await self._gate.wait_unpaused(budget)
        finally:
            self._waited(started, "pause")

    def _waited(self, started: float, kind: str) -> None:
        waited = time.perf_counter() - started
        if waited > 0.0005:  # (a gate that let the caller through at once is no wait)
            self._histogram.record(waited, {"cadenza.wait.kind": kind})


class Telemetry:
    """The instruments of one instrumented client, and the hooks feeding them (module docstring)."""

    def __init__(self, client: CadenzaClient, meter: Any, tracer: Any) -> None:
        self.client = client
        self.tracer = tracer
        seconds = {"unit": "s"}
        self.http_duration = meter.create_histogram(
            "http.client.request.duration",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=_BUCKETS,
            **seconds,
        )
        self.rpc_duration = meter.create_histogram(
            "rpc.client.call.duration",
            description="Duration of WebSocket RPCs (Centrifugo).",
            explicit_bucket_boundaries_advisory=_BUCKETS,
            **seconds,
        )
        self.durations = {
            (op, phase): meter.create_histogram(
                f"cadenza.{op}.{phase}.duration",
                description=f"Seconds from a {op} call to its {'reply' if phase == 'reply' else 'proof'}.",
                explicit_bucket_boundaries_advisory=_BUCKETS,
                **seconds,
            )
            for op in ("cancel", "submit")
            for phase in ("reply", "proof")
        }
        self.failed = meter.create_counter(
            "cadenza.calls.failed", description="Cancel and submit calls that raised."
        )
        self.rate_wait = meter.create_histogram(
            "cadenza.ratelimit.wait.duration",
            description="Seconds a request waited for the rate limit or a 429 pause.",
            explicit_bucket_boundaries_advisory=_BUCKETS,
            **seconds,
        )
        self._degraded_total = 0.0
        self._degraded_since: float | None = None
        self._retired_resyncs: dict[str, int] = {}
        self._retired_reloads: dict[str, int] = {}
        for name, description, callback in (
            ("cadenza.stream.reconnects", "WebSocket reconnects.", self._reconnects),
            ("cadenza.stream.bad_events", "Order events that did not decode.", self._bad),
            ("cadenza.rest.polls", "REST requests made to prove an outcome.", self._polls),
            ("cadenza.book.resyncs", "Live order book resyncs, by reason.", self._resyncs),
            ("cadenza.portfolio.reloads", "Live portfolio reloads, by reason.", self._reloads),
        ):
            meter.create_observable_counter(name, callbacks=[callback], description=description)
        meter.create_observable_counter(
            "cadenza.stream.degraded.duration",
            callbacks=[self._degraded],
            unit="s",
            description="Seconds spent proving by REST while the stream was down.",
        )

    # ------------------------------------------------------------------ installing

    @classmethod
    def install(
        cls, client: CadenzaClient, *, meter_provider: Any = None, tracer_provider: Any = None
    ) -> Telemetry:
        if getattr(client, "_telemetry", None) is not None:
            raise RuntimeError("this client is instrumented already")
        http = client._http
        if http._session is not None:
            raise RuntimeError("instrument the client before its first REST request")
        meter = metrics.get_meter("cadenza_async", __version__, meter_provider=meter_provider)
        tracer = trace.get_tracer("cadenza_async", __version__, tracer_provider=tracer_provider)
        self = cls(client, meter, tracer)
        client._telemetry = self  # type: ignore[attr-defined]
        http.trace_configs.append(self._trace_config())
        self._wrap_calls(client)
        self._wrap_stream(client)
        self._wrap_gates(client)
        self._wrap_views(client)
        return self

    def _trace_config(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()
        config.on_request_start.append(self._request_start)
        config.on_request_end.append(self._request_end)
        config.on_request_exception.append(self._request_failed)
        return config

    def _wrap_calls(self, client: CadenzaClient) -> None:
        """The public calls, as instance attributes over the class's methods."""
        for name, op, span in (
            ("cancel_and_confirm", "cancel", "cadenza.cancel_and_confirm"),
            ("submit_and_confirm", "submit", "cadenza.submit_and_confirm"),
            ("execute_quote", "submit", "cadenza.execute_quote"),
        ):
            setattr(client, name, self._spanned(getattr(client, name), op, span))
        for name, op in (("cancel_many", "cancel"), ("submit_many", "submit")):
            setattr(client, name, self._bulk(getattr(client, name), op))

    def _wrap_stream(self, client: CadenzaClient) -> None:
        stream = client._stream
        rpc = stream.rpc

        @functools.wraps(rpc)
        async def measured_rpc(method: str, data: bytes, timeout: float) -> Any:
            attributes = {"rpc.system": "centrifugo", "rpc.method": method}
            span = _CALL_SPAN.get() if method in _RPC_SENDS else None
            if span is not None:
                span.add_event("sent", {"rpc.method": method})
            started = time.perf_counter()
            try:
                reply = await rpc(method, data, timeout)
            except BaseException as exc:
                attributes["error.type"] = _error_type(exc)
                raise
            finally:
                self.rpc_duration.record(time.perf_counter() - started, attributes)
            if span is not None:
                span.add_event("acknowledged", {"rpc.method": method})
            return reply

        stream.rpc = measured_rpc  # type: ignore[method-assign]
        on_state = stream._on_state

        def state(value: str) -> None:
            if on_state is not None:
                on_state(value)
            self._note_degraded(client._canceller.degraded)

        stream._on_state = state

    def _wrap_gates(self, client: CadenzaClient) -> None:
        sender = client._http._sender
        sender.gate = _RateGateMeter(sender.gate, self.rate_wait)  # type: ignore[assignment]
        for holder in (client._canceller._rpc_cancel, client._placer._rpc_submit):
            if holder is not None and hasattr(holder, "_gate"):
                holder._gate = _RateGateMeter(holder._gate, self.rate_wait)

    def _wrap_views(self, client: CadenzaClient) -> None:
        """Counts of views that leave are kept (the counters never go back)."""
        for views, retired in (
            (client._market.views, self._retired_resyncs),
            (client._account.views, self._retired_reloads),
        ):
            release = views.release

            def keep_counts(view: Any, release: Any = release, retired: Any = retired) -> None:
                if view.refs == 1:
                    counts = getattr(getattr(view, "sync", None), "resyncs", None)
                    if counts is None:
                        counts = getattr(getattr(view, "sync", None), "reloads", {})
                    for reason, n in counts.items():
                        retired[reason] = retired.get(reason, 0) + n
                release(view)

            views.release = keep_counts  # type: ignore[method-assign]

    # ------------------------------------------------------------------ calls

    def _spanned(
        self, call: Callable[..., Awaitable[T]], op: str, name: str
    ) -> Callable[..., Awaitable[T]]:
        tracer = self.tracer

        @functools.wraps(call)
        async def spanned(*args: Any, **kwargs: Any) -> T:
            with tracer.start_as_current_span(
                name, kind=SpanKind.CLIENT, record_exception=False, set_status_on_exception=False
            ) as span:
                token = _CALL_SPAN.set(span)
                try:
                    result = await call(*args, **kwargs)
                except Exception as exc:  # (a cancelled call is no failure of the API's)
                    self._failed(op, exc, span)
                    raise
                finally:
                    _CALL_SPAN.reset(token)
                attributes = self._record(op, result)
                span.add_event("proven", attributes)
                span.set_attributes(attributes)
                return result

        return spanned

    def _bulk(
        self, call: Callable[..., Awaitable[list[Any]]], op: str
    ) -> Callable[..., Awaitable[list[Any]]]:
        @functools.wraps(call)
        async def measured(*args: Any, **kwargs: Any) -> list[Any]:
            outcomes = await call(*args, **kwargs)
            for outcome in outcomes:
                if isinstance(outcome, (CancelResult, SubmitResult)):
                    self._record(op, outcome)
                elif isinstance(outcome, BaseException):
                    self.failed.add(
                        1, {"cadenza.operation": op, "error.type": _error_type(outcome)}
                    )
            return outcomes

        return measured

    def _record(self, op: str, result: Any) -> dict[str, Any]:
        """A proven result's durations; the attributes that describe it."""
        if not isinstance(result, (CancelResult, SubmitResult)):
            return {}
        attributes: dict[str, Any] = {
            "cadenza.proof.source": result.source,
            "cadenza.order.status": result.status,
        }
        if isinstance(result, SubmitResult):
            attributes["cadenza.submit.accepted"] = result.accepted
        self.durations[(op, "proof")].record(result.latency, attributes)
        if result.acked_after is not None:
            self.durations[(op, "reply")].record(result.acked_after, attributes)
        return attributes

    def _failed(self, op: str, exc: BaseException, span: Any) -> None:
        kind = _error_type(exc)
        self.failed.add(1, {"cadenza.operation": op, "error.type": kind})
        span.set_attribute("error.type", kind)
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, kind))

    # ------------------------------------------------------------------ HTTP requests

    async def _request_start(
        self, _session: Any, ctx: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        ctx.started = time.perf_counter()
        span = _CALL_SPAN.get()
        ctx.span = span if params.url.path in _SENDS else None
        if ctx.span is not None:
            ctx.span.add_event("sent", {"http.request.method": params.method})

    def _http_attributes(self, ctx: Any, method: str, url: Any) -> dict[str, Any]:
        return {
            "http.request.method": method,
            "server.address": url.host or "",
            "server.port": url.port or 0,
            "url.template": url.path,
        }

    async def _request_end(
        self, _session: Any, ctx: Any, params: aiohttp.TraceRequestEndParams
    ) -> None:
        attributes = self._http_attributes(ctx, params.method, params.url)
        status = params.response.status
        attributes["http.response.status_code"] = status
        if status >= 400:
            attributes["error.type"] = str(status)
        self.http_duration.record(time.perf_counter() - ctx.started, attributes)
        if ctx.span is not None:
            ctx.span.add_event("acknowledged", {"http.response.status_code": status})

    async def _request_failed(
        self, _session: Any, ctx: Any, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        attributes = self._http_attributes(ctx, params.method, params.url)
        attributes["error.type"] = _error_type(params.exception)
        self.http_duration.record(time.perf_counter() - ctx.started, attributes)

    # ------------------------------------------------------------------ observed counters

    def _note_degraded(self, degraded: bool) -> None:
        now = time.monotonic()
        since = self._degraded_since
        if degraded and since is None:
            self._degraded_since = now
        elif not degraded and since is not None:
            self._degraded_total += now - since
            self._degraded_since = None

    def _degraded(self, _options: CallbackOptions) -> Iterable[Observation]:
        since = self._degraded_since
        extra = 0.0 if since is None else time.monotonic() - since
        yield Observation(self._degraded_total + extra)

    def _reconnects(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self.client._stream.reconnects)

    def _bad(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self.client._stream.bad_events)

    def _polls(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self.client._canceller.rest_polls + self.client._placer.rest_polls)

    def _resyncs(self, _options: CallbackOptions) -> Iterable[Observation]:
        counts = dict(self._retired_resyncs)
        for view in list(self.client._market.views._views.values()):
            sync = getattr(view, "sync", None)
            for reason, n in getattr(sync, "resyncs", {}).items():
                counts[reason] = counts.get(reason, 0) + n
        for reason, n in counts.items():
            yield Observation(n, {"cadenza.resync.reason": reason})

    def _reloads(self, _options: CallbackOptions) -> Iterable[Observation]:
        counts = dict(self._retired_reloads)
        for view in list(self.client._account.views._views.values()):
            for reason, n in view.sync.reloads.items():  # type: ignore[attr-defined]
                counts[reason] = counts.get(reason, 0) + n
        for reason, n in counts.items():
            yield Observation(n, {"cadenza.reload.reason": reason})
