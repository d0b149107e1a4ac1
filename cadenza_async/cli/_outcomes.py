"""The outcome of each cancel as the command line shows it: JSON lines, one-line verdicts, the summary.

An outcome is a :class:`CancelResult` (confirmed), a :class:`TradeOrder`
(the server's reply, ``--no-confirm``), or a :class:`CadenzaError`. One error
is an outcome, not a failure: :class:`OrderNotCancellableError`, the server
saying the order is already final.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..errors import CadenzaError, ConfigurationError, OrderNotCancellableError
from ..models import CancelResult, OrderStatus, TradeOrder
from ._errors import auth_failure
from ._output import Output, clean_line

__all__ = [
    "Outcome",
    "Tally",
    "describe",
    "error_text",
    "is_failure",
    "ms",
    "outcome_id",
    "outcome_json",
    "percentile",
    "show_tally",
]

Outcome = CancelResult | TradeOrder | CadenzaError


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def is_failure(outcome: Outcome) -> bool:
    """True for an error; an order already final (the cancel refused) is an outcome."""
    return isinstance(outcome, CadenzaError) and not isinstance(outcome, OrderNotCancellableError)


def outcome_id(outcome: Outcome) -> str:
    if isinstance(outcome, CancelResult):
        return outcome.order_id
    if isinstance(outcome, TradeOrder):
        return outcome.trade_order_id
    return outcome.order_id or "?"


def outcome_json(order_id: str, outcome: Outcome) -> dict[str, Any]:
    """The JSON line for one order's outcome."""
    if isinstance(outcome, CancelResult):
        return {
            "order_id": order_id,
            "ok": True,
            "cancelled": outcome.cancelled,
            "status": outcome.status,
            "confirmed": True,
            "source": outcome.source,
            "latency": round(outcome.latency, 6),
            "acked_after": None if outcome.acked_after is None else round(outcome.acked_after, 6),
            "order": msgspec.to_builtins(outcome.order),
        }
    if isinstance(outcome, TradeOrder):
        return {
            "order_id": order_id,
            "ok": True,
            "cancelled": outcome.status == OrderStatus.CANCELLED,
            "status": outcome.status,
            "confirmed": False,
            "order": msgspec.to_builtins(outcome),
        }
    if isinstance(outcome, OrderNotCancellableError):
        return {
            "order_id": order_id,
            "ok": True,
            "cancelled": None,
            "status": None,
            "confirmed": False,
            "already_final": True,
            "message": str(outcome),
        }
    return {
        "order_id": order_id,
        "ok": False,
        "error": type(outcome).__name__,
        "message": str(outcome),
    }


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def percentile(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[round(q * (len(sorted_values) - 1))]


@dataclass
class Tally:
    """Counts outcomes of many cancels for the summary table; each order counts once."""

    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    cancelled: int = 0
    already_final: int = 0
    not_cancelled: Counter[str] = field(default_factory=Counter)
    unconfirmed: Counter[str] = field(default_factory=Counter)
    errors: dict[str, CadenzaError] = field(default_factory=dict)
    sources: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    no_outcome: int = 0  # interrupted before these orders had an outcome

    def add(self, order_id: str, outcome: Outcome) -> None:
        if isinstance(outcome, CancelResult):
            self.sources[outcome.source] += 1
            self.latencies.append(outcome.latency)
            if outcome.cancelled:
                self.cancelled += 1
            else:
                self.not_cancelled[outcome.status or "-"] += 1
        elif isinstance(outcome, TradeOrder):
            self.unconfirmed[outcome.status or "-"] += 1
        elif isinstance(outcome, OrderNotCancellableError):
            self.already_final += 1
        else:
            self.errors[order_id] = outcome

    @property
    def total(self) -> int:
        """Orders with an outcome."""
        return (
            self.cancelled
            + self.already_final
            + sum(self.not_cancelled.values())
            + sum(self.unconfirmed.values())
            + len(self.errors)
        )

    @property
    def auth_error(self) -> CadenzaError | None:
        """The first error that says the token was refused, if any."""
        return next((e for e in self.errors.values() if auth_failure(e) is not None), None)

    @property
    def settings_error(self) -> CadenzaError | None:
        """The first error that says a setting is wrong (e.g. ``--api-url``), if any."""
        return next((e for e in self.errors.values() if isinstance(e, ConfigurationError)), None)

    @property
    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else time.perf_counter()
        return end - self.started

    def rows(self) -> list[tuple[str, str]]:
        rows = [("orders", f"{self.total + self.no_outcome:,}")]
        if self.cancelled or self.latencies:
            rows.append(("cancelled (confirmed)", f"{self.cancelled:,}"))
        for status, n in sorted(self.not_cancelled.items()):
            rows.append((f"not cancelled: {clean_line(status)}", f"{n:,}"))
        for status, n in sorted(self.unconfirmed.items()):
            rows.append((f"cancel sent, reply {clean_line(status)} (not confirmed)", f"{n:,}"))
        if self.already_final:
            rows.append(("already final (cancel refused)", f"{self.already_final:,}"))
        errors = Counter(type(exc).__name__ for exc in self.errors.values())
        for name, n in sorted(errors.items()):
            rows.append((f"failed: {name}", f"{n:,}"))
        if self.no_outcome:
            rows.append(("no outcome (interrupted)", f"{self.no_outcome:,}"))
        if self.sources:
            shown = ", ".join(f"{src} {n:,}" for src, n in self.sources.most_common())
            rows.append(("confirmed by", shown))
        if self.latencies:
            ordered = sorted(self.latencies)
            rows.append(
                (
                    "latency p50 / p99 / max",
                    f"{ms(percentile(ordered, 0.5))} / {ms(percentile(ordered, 0.99))}"
                    f" / {ms(ordered[-1])}",
                )
            )
        elapsed = self.elapsed
        rows.append(("elapsed", f"{elapsed:.2f} s"))
        if elapsed > 0 and self.total:
            rows.append(("throughput", f"{self.total / elapsed:,.0f} orders/s"))
        return rows


def show_tally(out: Output, tally: Tally, order: Sequence[str], max_errors: int = 20) -> None:
    """The summary table, then the failed ids (each once, in input order)."""
    out.table("Summary", ("", "value"), tally.rows())
    if not tally.errors:
        return
    failed = [oid for oid in dict.fromkeys(order) if oid in tally.errors]
    listed = set(failed)
    failed += [oid for oid in tally.errors if oid not in listed]
    rows = [(oid, error_text(tally.errors[oid])) for oid in failed[:max_errors]]
    if len(failed) > max_errors:
        rows.append(("...", f"{len(failed) - max_errors} more"))
    out.table("Failed", ("order id", "error"), rows)


#: How much earlier than the command (by the server's clock) an order must have
#: become final to be called "already" final: room for the two clocks' skew.
ALREADY_FINAL_MARGIN_MS = 1_000


def _already_final(outcome: CancelResult, started_ms: int | None) -> bool:
    """True when the order was final before the command started (its last update says so)."""
    updated = outcome.order.updated_at
    return (
        started_ms is not None
        and isinstance(updated, int)
        and updated < started_ms - ALREADY_FINAL_MARGIN_MS
    )


def describe(order_id: str, outcome: Outcome, *, started_ms: int | None = None) -> str:
    """One line for one order's outcome (server text cleaned of control characters).

    ``started_ms`` (Unix ms) is when the command started: an order whose last
    update is older (by more than :data:`ALREADY_FINAL_MARGIN_MS`) was
    already final, and is said to be ("already cancelled").
    """
    order_id = clean_line(order_id)
    if isinstance(outcome, CancelResult) and _already_final(outcome, started_ms):
        status = clean_line(outcome.status)
        return (
            f"{order_id}  {status}  already {status.lower().replace('_', ' ')} before this "
            f"command: nothing to cancel (looked up by {outcome.source} "
            f"after {ms(outcome.latency)})"
        )
    if isinstance(outcome, CancelResult):
        verdict = "cancelled" if outcome.cancelled else "NOT cancelled"
        acked = f", HTTP/RPC reply after {ms(outcome.acked_after)}" if outcome.acked_after else ""
        return (
            f"{order_id}  {clean_line(outcome.status)}  {verdict}: confirmed by {outcome.source} "
            f"after {ms(outcome.latency)}{acked}"
        )
    if isinstance(outcome, TradeOrder):
        return (
            f"{order_id}  {clean_line(outcome.status or '-')}  "
            "(the server's reply to the cancel; not confirmed: --no-confirm)"
        )
    if isinstance(outcome, OrderNotCancellableError):
        return (
            f"{order_id}  already final: the server refused the cancel "
            f"({clean_line(outcome.message)}); without --no-confirm the final state is looked up"
        )
    return f"{order_id}  failed: {clean_line(error_text(outcome))}"
