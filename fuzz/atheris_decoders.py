"""Coverage-guided fuzzing of the frame and payload decoders with atheris (optional, not in make test).

    pip install -e '.[fuzz]'        # atheris
    python fuzz/atheris_decoders.py -atheris_runs=200000      # or -max_total_time=300

Each input goes to ``CentrifugoProtocol.receive_frame`` (which must never raise
and may end its events with one ``ProtocolViolation``), ``decode_envelope`` and
``decode_order_event`` (``msgspec.DecodeError`` is their documented rejection).
Anything else is a crash that atheris reports with the input that caused it.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    import msgspec

    from cadenza_async.models import decode_envelope, decode_order_event
    from cadenza_async.protocol.centrifugo import (
        CentrifugoProtocol,
        ProtocolViolation,
    )

CHANNEL = "tradingAccount:550e8400-e29b-41d4-a716-446655440000"


def _subscribed() -> CentrifugoProtocol:
    proto = CentrifugoProtocol()
    proto.send_connect("fuzz-token", 0.0)
    proto.data_to_send()
    proto.receive_frame('{"id":1,"connect":{"client":"c","ping":25,"pong":true}}', 0.0)
    proto.send_subscribe(CHANNEL, 0.0)
    proto.data_to_send()
    proto.receive_frame(
        '{"id":2,"subscribe":{"recoverable":true,"positioned":true,"epoch":"e","offset":2}}', 0.0
    )
    return proto


def one_input(data: bytes) -> None:
    events = _subscribed().receive_frame(data, 1.0)
    bad = [i for i, e in enumerate(events) if isinstance(e, ProtocolViolation)]
    if bad not in ([], [len(events) - 1]):
        raise AssertionError("ProtocolViolation is not the last event")
    for decode in (decode_envelope, decode_order_event):
        with contextlib.suppress(msgspec.DecodeError):
            decode(data)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
