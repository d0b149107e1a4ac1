"""sdk_otel: ``sdk_http`` instrumented with OpenTelemetry (the SDK's providers, nothing exporting).

What the ``otel`` extra costs when it is on: every cancel records its
histograms and a span with its events (recorded, then dropped: no
exporter). Without the extra installed it is skipped.
"""

from __future__ import annotations

from typing import Any

from cadenza_async import CadenzaClient

from . import Target
from .sdk_http import SdkClient


class OtelClient(SdkClient):
    name = "sdk_otel"

    def client(self, target: Target) -> CadenzaClient:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider

        from cadenza_async.observability import instrument

        self._providers: tuple[Any, Any] = (
            MeterProvider(metric_readers=[InMemoryMetricReader()]),
            TracerProvider(),
        )
        client = super().client(target)
        instrument(client, meter_provider=self._providers[0], tracer_provider=self._providers[1])
        return client

    async def aclose(self) -> None:
        await super().aclose()
        for provider in self._providers:
            provider.shutdown()


def make() -> OtelClient:
    return OtelClient()
