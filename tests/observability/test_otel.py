"""With the otel extra and in-memory readers: one confirmed cancel gives the documented metrics and span."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cadenza_async import CadenzaClient
from cadenza_async.observability import instrument
from cadenza_async.testing import CadenzaSimulator

BTC = "BINANCE:BTC/USDT"


class Readers:
    def __init__(self) -> None:
        self.metrics = InMemoryMetricReader()
        self.spans = InMemorySpanExporter()
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))

    def points(self) -> dict[str, list]:
        data = self.metrics.get_metrics_data()
        found: dict[str, list] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found

    def shutdown(self) -> None:
        self.meter_provider.shutdown()
        self.tracer_provider.shutdown()


def client_on(sim: CadenzaSimulator, **options) -> CadenzaClient:
    return CadenzaClient(
        token=sim.token,
        api_url=sim.api_url,
        ws_url=sim.ws_url,
        trading_account_id=sim.trading_account_id,
        **options,
    )


@pytest.mark.parametrize("via", ["http", "ws"])
async def test_one_confirmed_cancel_gives_the_documented_metrics_and_span(via):
    readers = Readers()
    try:
        async with CadenzaSimulator(cancel_delay=0.02) as sim:
            client = client_on(sim, cancel_via=via)
            instrument(
                client,
                meter_provider=readers.meter_provider,
                tracer_provider=readers.tracer_provider,
            )
            async with client:
                order = sim.create_order()
                result = await client.cancel_and_confirm(order.trade_order_id, timeout=5.0)
            points = readers.points()
            (span,) = readers.spans.get_finished_spans()
    finally:
        readers.shutdown()
    assert result.cancelled
    (proof,) = points["cadenza.cancel.proof.duration"]
    assert proof.count == 1
    assert proof.sum == pytest.approx(result.latency)
    assert dict(proof.attributes) == {
        "cadenza.proof.source": result.source,
        "cadenza.order.status": "CANCELLED",
    }
    (reply,) = points["cadenza.cancel.reply.duration"]
    assert reply.count == 1
    if via == "http":
        (http,) = points["http.client.request.duration"]
        assert http.attributes["http.request.method"] == "POST"
        assert http.attributes["url.template"] == "/api/v3/tradeOrder/cancel"
        assert http.attributes["http.response.status_code"] == 200
        assert http.attributes["server.address"] == "127.0.0.1"
    else:
        (rpc,) = points["rpc.client.call.duration"]
        assert dict(rpc.attributes) == {
            "rpc.system": "centrifugo",
            "rpc.method": "command.trade_order.cancel",
        }
    assert span.name == "cadenza.cancel_and_confirm"
    assert [event.name for event in span.events] == ["sent", "acknowledged", "proven"]
    assert span.events[-1].attributes["cadenza.proof.source"] == result.source
    # low-cardinality only: no order or account id anywhere
    for value in [
        *span.attributes.values(),
        *(a for e in span.events for a in e.attributes.values()),
    ]:
        assert order.trade_order_id not in str(value)
        assert sim.trading_account_id not in str(value)
    for name in (
        "cadenza.stream.reconnects",
        "cadenza.stream.bad_events",
        "cadenza.rest.polls",
        "cadenza.stream.degraded.duration",
    ):
        assert name in points


async def test_a_failed_submit_is_counted_and_its_span_says_so():
    readers = Readers()
    try:
        async with CadenzaSimulator() as sim:
            client = client_on(sim)
            instrument(
                client,
                meter_provider=readers.meter_provider,
                tracer_provider=readers.tracer_provider,
            )
            async with client:
                sim.rest_outage(30.0, status=400, endpoints=["submit"])
                with pytest.raises(Exception) as caught:
                    await client.submit_and_confirm(
                        instrument_id=BTC, order_side="BUY", order_type="MARKET", quantity="1"
                    )
            points = readers.points()
            (span,) = readers.spans.get_finished_spans()
    finally:
        readers.shutdown()
    (failed,) = points["cadenza.calls.failed"]
    assert dict(failed.attributes) == {
        "cadenza.operation": "submit",
        "error.type": type(caught.value).__name__,
    }
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == type(caught.value).__name__


async def test_degraded_time_resyncs_and_rate_limit_waits_are_measured():
    readers = Readers()
    try:
        async with CadenzaSimulator() as sim:
            client = client_on(sim, reconnect_min_delay=0.01, reconnect_max_delay=0.05)
            instrument(
                client,
                meter_provider=readers.meter_provider,
                tracer_provider=readers.tracer_provider,
            )
            async with client:
                sim.refuse_websocket(503)
                await sim.wait_for(lambda: client.stats().degraded)
                await asyncio.sleep(0.2)  # (the duration under test: some time degraded)
                sim.accept_websocket()
                await sim.wait_for(lambda: not client.stats().degraded)
                async with client.order_book(BTC) as book:
                    await book.wait_ready(5.0)
                    sim.market.send_delta(BTC)
                    sim.market.step(1, BTC)
                    await sim.wait_for(lambda: book.resyncs.get("delta") == 1 and book.usable)
                sim.rate_limit_next_rest(1, retry_after=0.1, endpoint="cancel")
                order = sim.create_order()
                await client.cancel_and_confirm(order.trade_order_id, timeout=5.0)
            points = readers.points()
    finally:
        readers.shutdown()
    (degraded,) = points["cadenza.stream.degraded.duration"]
    assert degraded.value >= 0.2
    (reconnects,) = points["cadenza.stream.reconnects"]
    assert reconnects.value >= 1
    (resyncs,) = points["cadenza.book.resyncs"]
    assert resyncs.value == 1
    assert dict(resyncs.attributes) == {"cadenza.resync.reason": "delta"}
    (pause,) = points["cadenza.ratelimit.wait.duration"]
    assert dict(pause.attributes) == {"cadenza.wait.kind": "pause"}
    assert pause.sum >= 0.05


async def test_instrumenting_twice_or_after_the_first_request_is_refused():
    async with CadenzaSimulator() as sim:
        client = client_on(sim)
        instrument(client)
        with pytest.raises(RuntimeError, match="already"):
            instrument(client)
        async with client_on(sim) as used:
            await used.get_portfolio()
            with pytest.raises(RuntimeError, match="before its first REST request"):
                instrument(used)
        await client.aclose()


async def test_an_uninstrumented_client_runs_no_hook():
    async with CadenzaSimulator() as sim:
        async with client_on(sim) as client:
            assert client._http.trace_configs == []
            assert "cancel_and_confirm" not in vars(client)
            assert client._http._session is None or client._http._session.trace_configs == []
