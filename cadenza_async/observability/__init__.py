"""OpenTelemetry metrics and spans for a client: ``instrument(client)``, with the ``otel`` extra.

::

    pip install 'cadenza-async[otel]'

    from cadenza_async.observability import instrument
    client = CadenzaClient.from_env()
    instrument(client)            # the global meter and tracer providers, or pass your own
    async with client: ...

Nothing is measured unless :func:`instrument` is called: the client's hot
paths carry no hook of their own. ``instrument`` installs the hooks on one
client (before its first REST request): aiohttp's request hooks, and
wrappers around its public calls, its WebSocket RPC and its rate gate. The
instruments and their attributes are listed in ``docs/guides/observability.md``;
attributes are low-cardinality only (never an order id, an account id or a token).
"""

from __future__ import annotations

from typing import Any

__all__ = ["instrument"]


def instrument(client: Any, *, meter_provider: Any = None, tracer_provider: Any = None) -> Any:
    """Measure ``client`` (a ``CadenzaClient`` or ``BlockingCadenzaClient``) from now on.

    ``meter_provider``/``tracer_provider``: OpenTelemetry providers (None:
    the global ones). Returns the :class:`~cadenza_async.observability._otel.Telemetry`
    installed. Raises ``ImportError`` naming the extra when OpenTelemetry is
    not installed, ``RuntimeError`` when the client already made a REST
    request or is already instrumented.
    """
    try:
        from ._otel import Telemetry
    except ImportError as exc:  # pragma: no cover - depends on what is installed
        raise ImportError(
            "cadenza_async.observability needs OpenTelemetry: pip install 'cadenza-async[otel]'"
        ) from exc
    inner = getattr(client, "_client", client)  # (a BlockingCadenzaClient's async client)
    return Telemetry.install(inner, meter_provider=meter_provider, tracer_provider=tracer_provider)
