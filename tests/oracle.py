"""The tests' own truth about orders: which statuses are final, and what a status proves.

Written out here from the API's specification (spec/cadenza-api.md, "Order status"),
independently of the package's constants (``cadenza_async.models.TERMINAL_STATUSES``,
``protocol.placement.verdict_of``): a test that asked the package what is final would
confirm a wrong definition instead of catching it. Test oracles import from here.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Final

#: No later event can change an order in one of these statuses.
FINAL: Final = frozenset({"CANCELLED", "FILLED", "REJECTED", "EXPIRED", "REVOKED", "REPLACED"})

#: Every status the live API names that is not final (an unknown one is not final either).
NOT_FINAL: Final = frozenset(
    {
        "OPEN",
        "PENDING",
        "CREATED",
        "SUBMITTED",
        "ACCEPTED",
        "PARTIALLY_FILLED",
        "PENDING_CANCEL",
        "PENDING_REPLACE",
        "UNKNOWN",
    }
)

#: A submit whose order shows one of these was accepted: the exchange holds (or held) it.
HELD: Final = frozenset({"ACCEPTED", "OPEN", "PARTIALLY_FILLED", "FILLED", "REPLACED"})
#: Final without having been held: refused, unless the order traded first.
DROPPED: Final = frozenset({"CANCELLED", "EXPIRED", "REVOKED"})


def is_final(status: str) -> bool:
    """True when ``status`` is one no later event can change."""
    return status in FINAL


def submit_verdict(status: str, executed_quantity: str | None = None) -> bool | None:
    """What an order's status proves about its submit: accepted, refused, or nothing yet.

    ACCEPTED, OPEN, PARTIALLY_FILLED, FILLED, REPLACED: accepted. REJECTED: refused.
    CANCELLED, EXPIRED, REVOKED: refused, unless some quantity was executed (then it was
    accepted and traded before it ended). Anything else (SUBMITTED, PENDING, ...): None.
    """
    if status in HELD:
        return True
    if status == "REJECTED":
        return False
    if status in DROPPED:
        try:
            return executed_quantity is not None and Decimal(executed_quantity) > 0
        except InvalidOperation:
            return False
    return None
