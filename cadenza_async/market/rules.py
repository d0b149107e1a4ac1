"""An instrument's order rules: exact rounding to its steps, and the check of an order against them.

Arithmetic is exact: :class:`~decimal.Decimal` in a local context wide
enough for any quantity or price the API can carry (no float ever, no
rounding by the context). Rounding is always explicit: ``"down"`` (towards
zero), ``"up"`` (away from zero) or ``"nearest"`` (half to even, as
``Decimal.quantize`` does by default).

:func:`check_order` raises :class:`InstrumentRuleError` (a ``ValueError``
and a :class:`~cadenza_async.errors.CadenzaError`) for the first rule an
order breaks, naming the rule and the nearest valid values; it never
changes what was asked. The rules, in the order they are checked:

=================  =====================================================================
rule               broken when (a rule whose limit the instrument does not state is skipped)
=================  =====================================================================
``status``         the instrument is INACTIVE, DISABLED or DELISTED
``order_type``     the order type is not in ``orderTypes``
``time_in_force``  the time in force is not in ``timeInForceOptions``
``lot_size``       the quantity is not a whole number of lots
``min_quantity``   the quantity is below ``minQuantity``
``max_quantity``   the quantity is above ``maxQuantity`` (0: no maximum)
``pip_size``       the limit or stop price is not a whole number of pips
``min_notional``   quantity x limit price is below ``minNotional``
``max_notional``   quantity x limit price is above ``maxNotional``
=================  =====================================================================
"""

from __future__ import annotations

import decimal
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal
from typing import TYPE_CHECKING, Final

from ..errors import CadenzaError

if TYPE_CHECKING:
    from .models import Instrument

__all__ = ["ROUNDINGS", "InstrumentRuleError", "check_order", "round_to_step"]

#: The rounding directions the helpers take, and the decimal module's names for them.
ROUNDINGS: Final = {"down": ROUND_DOWN, "up": ROUND_UP, "nearest": ROUND_HALF_EVEN}
#: Statuses in which an instrument takes no order.
CLOSED_STATUSES: Final = frozenset({"INACTIVE", "DISABLED", "DELISTED"})

_EXACT: Final = decimal.Context(
    prec=200, rounding=ROUND_HALF_EVEN, Emax=999_999, Emin=-999_999, traps=[decimal.Inexact]
)


class InstrumentRuleError(CadenzaError, ValueError):
    """An order that breaks an instrument rule; nothing was sent.

    ``rule`` names the rule (see :mod:`cadenza_async.market.rules`),
    ``field`` the order field at fault, ``value`` what was asked, and
    ``nearest`` the nearest valid values (below and/or above; empty when
    no value of that field can pass, e.g. an order type).
    """

    def __init__(
        self,
        message: str,
        *,
        rule: str,
        instrument_id: str,
        field: str,
        value: object,
        nearest: tuple[Decimal, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.rule = rule
        self.instrument_id = instrument_id
        self.field = field
        self.value = value
        self.nearest = nearest


def _exact(value: Decimal | str | int, name: str) -> Decimal:
    if isinstance(value, float):
        raise TypeError(f"{name} must be a str or Decimal, not float (floats are not exact)")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except decimal.InvalidOperation:
        raise ValueError(f"{name} {value!r} is not a decimal number") from None
    if not number.is_finite():
        raise ValueError(f"{name} {value!r} is not a finite number")
    return number


def round_to_step(value: Decimal | str, step: Decimal | None, rounding: str, name: str) -> Decimal:
    """``value`` as a whole number of ``step``, rounded as asked; exact.

    ``rounding`` is ``"down"``, ``"up"`` or ``"nearest"``. A missing or zero
    step leaves the value as it is. Raises ``ValueError`` for an unknown
    rounding or a value that is not a finite decimal, ``TypeError`` for a float.
    """
    mode = ROUNDINGS.get(rounding)
    if mode is None:
        raise ValueError(f"rounding must be one of {sorted(ROUNDINGS)}, not {rounding!r}")
    number = _exact(value, name)
    if step is None or step == 0:
        return number
    step = abs(step)
    ctx = _EXACT.copy()
    lots, rest = ctx.divmod(number, step)  # lots truncated towards zero; rest exact
    if rest:
        away = mode == ROUND_UP
        if mode == ROUND_HALF_EVEN:
            twice = ctx.multiply(abs(rest), 2)
            away = twice > step or (twice == step and lots % 2 == 1)
        if away:
            lots += 1 if number > 0 else -1
    # on the step's exponent: 1.50 on a 0.01 step, 3 lots of 0.5 is 1.5
    return ctx.quantize(ctx.multiply(lots, step), step)


def _on_step(value: Decimal, step: Decimal | None) -> bool:
    if step is None or step == 0:
        return True
    ctx = _EXACT.copy()
    ctx.traps[decimal.Inexact] = False
    return ctx.remainder(value, abs(step)) == 0


def _neighbours(value: Decimal, step: Decimal) -> tuple[Decimal, ...]:
    below = round_to_step(value, step, "down", "value")
    above = round_to_step(value, step, "up", "value")
    return tuple(v for v in (below, above) if v > 0)


def _positive(value: str | None) -> Decimal | None:
    """An instrument limit that is stated and not zero."""
    if value is None:
        return None
    number = Decimal(value)
    return number if number > 0 else None


def _raise(
    inst: Instrument, rule: str, field: str, value: object, text: str, *near: Decimal
) -> None:
    shown = ", ".join(str(v) for v in near)
    raise InstrumentRuleError(
        f"{inst.instrument_id}: {field} {value} breaks {rule}: {text}"
        + (f" (nearest valid: {shown})" if shown else ""),
        rule=rule,
        instrument_id=inst.instrument_id,
        field=field,
        value=value,
        nearest=tuple(near),
    )


def _check_enums(inst: Instrument, order_type: str, time_in_force: str | None) -> None:
    if inst.status in CLOSED_STATUSES:
        _raise(inst, "status", "instrument", inst.status, "the instrument takes no orders")
    types = inst.allowed_order_types
    if types and order_type not in types:
        _raise(inst, "order_type", "order_type", order_type, f"allowed: {sorted(types)}")
    tifs = inst.allowed_time_in_force
    if time_in_force is not None and tifs and time_in_force not in tifs:
        _raise(inst, "time_in_force", "time_in_force", time_in_force, f"allowed: {sorted(tifs)}")


def _check_quantity(inst: Instrument, qty: Decimal) -> None:
    lot = _positive(inst.lot_size)
    if qty <= 0:
        _raise(
            inst,
            "min_quantity",
            "quantity",
            qty,
            "must be positive",
            *(() if lot is None else (lot,)),
        )
    if lot is not None and not _on_step(qty, lot):
        _raise(
            inst,
            "lot_size",
            "quantity",
            qty,
            f"not a multiple of {inst.lot_size}",
            *_neighbours(qty, lot),
        )
    low = _positive(inst.min_quantity)
    if low is not None and qty < low:
        nearest = low if lot is None else round_to_step(low, lot, "up", "quantity")
        _raise(inst, "min_quantity", "quantity", qty, f"below {inst.min_quantity}", nearest)
    high = _positive(inst.max_quantity)
    if high is not None and qty > high:
        nearest = high if lot is None else round_to_step(high, lot, "down", "quantity")
        _raise(inst, "max_quantity", "quantity", qty, f"above {inst.max_quantity}", nearest)


def _check_notional(inst: Instrument, qty: Decimal, price: Decimal) -> None:
    ctx = _EXACT.copy()
    notional = ctx.multiply(qty, price)
    lot = _positive(inst.lot_size)
    low = _positive(inst.min_notional)
    if low is not None and notional < low:
        ctx.traps[decimal.Inexact] = False
        need = ctx.divide(low, price)
        nearest = need if lot is None else round_to_step(need, lot, "up", "quantity")
        _raise(
            inst,
            "min_notional",
            "quantity",
            qty,
            f"notional {notional} below {inst.min_notional}",
            nearest,
        )
    high = _positive(inst.max_notional)
    if high is not None and notional > high:
        ctx.traps[decimal.Inexact] = False
        most = ctx.divide(high, price)
        nearest = most if lot is None else round_to_step(most, lot, "down", "quantity")
        _raise(
            inst,
            "max_notional",
            "quantity",
            qty,
            f"notional {notional} above {inst.max_notional}",
            nearest,
        )


def check_order(
    inst: Instrument,
    *,
    order_type: str,
    quantity: Decimal | str,
    limit_price: Decimal | str | None = None,
    stop_price: Decimal | str | None = None,
    time_in_force: str | None = None,
) -> None:
    """Raise :class:`InstrumentRuleError` for the first rule the order breaks (see the table)."""
    _check_enums(inst, order_type, time_in_force)
    qty = _exact(quantity, "quantity")
    _check_quantity(inst, qty)
    pip = _positive(inst.pip_size)
    price: Decimal | None = None
    for name, given in (("limit_price", limit_price), ("stop_price", stop_price)):
        if given is None:
            continue
        value = _exact(given, name)
        if value <= 0:
            _raise(
                inst, "pip_size", name, value, "must be positive", *(() if pip is None else (pip,))
            )
        if pip is not None and not _on_step(value, pip):
            _raise(
                inst,
                "pip_size",
                name,
                value,
                f"not a multiple of {inst.pip_size}",
                *_neighbours(value, pip),
            )
        if name == "limit_price":
            price = value
    if price is not None:
        _check_notional(inst, qty, price)
