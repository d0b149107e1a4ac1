"""Rules of the proof engine (cancels and submits alike), pinned through what a caller sees.

Each test names one behaviour the engine's rewrite must keep; most run against the
simulator over loopback, the pure rules are checked as tables.
"""

from __future__ import annotations

import pytest

from cadenza_async.cancels import final_slice


@pytest.mark.parametrize(
    ("timeout", "reserved"),
    [(0.2, 0.1), (0.5, 0.25), (1.0, 0.25), (2.0, 0.5), (4.0, 1.0), (10.0, 1.0)],
)
def test_the_final_look_up_gets_a_quarter_of_the_timeout_between_its_floor_and_a_second(
    timeout: float, reserved: float
) -> None:
    """A quarter of the timeout, at least 0.25 s (half of a timeout under 0.5 s), at most 1 s."""
    assert final_slice(timeout) == pytest.approx(reserved)
