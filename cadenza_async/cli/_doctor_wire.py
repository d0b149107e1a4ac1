"""The doctor's ``ws.wire`` check: which generation of the API's wire the server speaks, and whether it decodes.

Two frames say it: the answer to the ``ws.rpc`` round trip (the current
models answer ``{"data": null, "error": {...}}``, the legacy form
``{"error": {...}}`` alone) and, when the account's channel keeps history,
its last publication, replayed (``{"data": ...}`` with RFC 3339 times is the
current form; ``{"metadata", "data"}`` with integer times the legacy one).
The publication is decoded as the SDK decodes every event: if it does not
decode, the check fails with the field and the type the decoder saw (never a
value), since every cancel on that server would then be proven by REST at its
deadline instead of by the event.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..models import (
    AccountEvent,
    WireGeneration,
    decode_channel_event,
    wire_of_event,
    wire_of_rpc_result,
)
from ._doctor_report import CheckReport

__all__ = ["check_wire"]

_NAME = "ws.wire"


def check_wire(
    report: CheckReport,
    *,
    rpc_answer: msgspec.Raw | None,
    last_event: msgspec.Raw | None,
    written: WireGeneration,
) -> None:
    """Report ``ws.wire`` from the frames the WebSocket checks saw (either may be None)."""
    data: dict[str, Any] = {"written": written}
    seen: dict[str, WireGeneration] = {}
    if rpc_answer is not None:
        generation = wire_of_rpc_result(rpc_answer)
        if generation is not None:
            seen["rpc"] = generation
    if last_event is not None:
        try:
            event = decode_channel_event(last_event)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            report.fail(
                _NAME,
                f"the channel's last publication does not decode: {exc}",
                "order events in this shape would be dropped (counted in stats().bad_events) "
                "and every cancel proven by REST instead: report the shape above",
                data={**data, "decode_error": str(exc)},
            )
            return
        data["last_event"] = "account event" if isinstance(event, AccountEvent) else "order"
        generation = wire_of_event(last_event)
        if generation is not None:
            seen["event"] = generation
    data["seen"] = seen
    if not seen:
        report.skip(
            _NAME,
            "no frame showed the wire's generation (no RPC answer, no publication in the "
            "channel's history): both are read",
            data=data,
        )
        return
    generations = set(seen.values())
    where = ", ".join(f"{what}: {generation}" for what, generation in sorted(seen.items()))
    if len(generations) > 1:
        report.ok(
            _NAME, f"the server mixes the wire's generations ({where}): both are read", data=data
        )
        return
    (generation,) = generations
    note = ""
    if generation != written:
        note = (
            f"; submits over the WebSocket (submit_via='ws') need wire={generation!r} "
            f"(CADENZA_WIRE={generation})"
        )
    report.ok(
        _NAME,
        f"the server speaks the {generation} wire ({where}); the SDK reads both and writes "
        f"the {written} form{note}",
        data=data,
    )
