"""Input checks that run before any I/O: ids, numbers, enums, booleans, whole orders, URLs.

Every public entry point (the async client, the blocking client, the command
line) calls these before it opens any connection, so bad input never
reaches the server. They are pure functions: no I/O, no clock. Each error
names the field and the rule it broke:

==================  ==============================================================
what                rule
==================  ==============================================================
order id,           a UUID in canonical text (``8-4-4-4-12`` hex digits and dashes),
trading account id  either case; returned in lower case, as the API writes it.
                    :class:`~cadenza_async.errors.InvalidOrderIdError` (a ValueError)
                    names the first bad character and its position.
client order id     free text the API echoes back: 1 to 128 printable ASCII
                    characters without whitespace or URL-special ones.
quantity, prices    ``str``, :class:`~decimal.Decimal` or ``int`` (never ``bool``; a
                    ``float`` is a TypeError: it is not exact). A string is a plain
                    decimal literal, ASCII digits with an optional fraction
                    (``"0.01"``, ``"50000"``): no sign, spaces, commas or exponent.
                    Finite, and > 0. Sent as plain text (``Decimal("1E+2")``
                    is sent as ``"100"``).
order_side,         one of the values the API lists (:data:`ORDER_SIDES`,
order_type,         :data:`ORDER_TYPES`, :data:`TIME_IN_FORCE`), upper case. A value
time_in_force       the SDK does not list yet goes through wrapped:
                    ``Unlisted("NEW_VALUE")``.
prices by type      an order type with LIMIT in its name needs ``limit_price``; a
                    MARKET order must not carry one.
timeout             None, or an int or float > 0 and finite (not ``bool``, not str).
booleans            ``True`` or ``False`` only (``"false"`` is refused).
==================  ==============================================================
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

from .errors import ConfigurationError, InvalidOrderIdError
from .models import NewOrder

__all__ = [
    "ORDER_SIDES",
    "ORDER_TYPES",
    "TIME_IN_FORCE",
    "Unlisted",
    "check_account_id",
    "check_bool",
    "check_client_order_id",
    "check_count",
    "check_decimal",
    "check_enum",
    "check_order",
    "check_order_id",
    "check_orders",
    "check_proxy_url",
    "check_timeout",
    "check_url",
    "is_loopback_host",
    "is_uuid",
    "valid_ids",
]

# ---- ids ----------------------------------------------------------------------------------

UUID_LENGTH: Final = 36
_DASHES: Final = frozenset({8, 13, 18, 23})
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_EXAMPLE_ID: Final = "770e8400-e29b-41d4-a716-446655440002"
# The one check a valid id costs (every cancel pays it): canonical, lower case.
_ONE_ID: Final = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_VALID_ID: Final = re.compile(_ONE_ID).fullmatch
_VALID_ID_ANY_CASE: Final = re.compile(_ONE_ID, re.IGNORECASE).fullmatch
# Many ids joined by newlines (not an id character): one match checks a whole bulk.
_VALID_LINES: Final = re.compile(rf"(?:{_ONE_ID}\n)*{_ONE_ID}").fullmatch

#: A client order id: the API's free-text idempotency key (printable, URL-safe ASCII).
MAX_CLIENT_ID_LENGTH: Final = 128
_CLIENT_ID_CHAR: Final = r"[A-Za-z0-9._:~@+=-]"
_VALID_CLIENT_ID: Final = re.compile(rf"{_CLIENT_ID_CHAR}{{1,{MAX_CLIENT_ID_LENGTH}}}").fullmatch
_CLIENT_ID_CHARS: Final = re.compile(_CLIENT_ID_CHAR)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _uuid_problem(value: str) -> str:
    """What keeps ``value`` (a str) from being a UUID: the first bad character and where."""
    for index, char in enumerate(value):
        position = index + 1
        if index >= UUID_LENGTH:
            return f"has {char!r} at position {position}, after the UUID's {UUID_LENGTH} characters"
        if index in _DASHES:
            if char != "-":
                return f"has {char!r} at position {position} where a UUID has '-'"
        elif char not in _HEX:
            return f"has {char!r} at position {position}, not a hexadecimal digit"
    return f"is {len(value)} characters long; a UUID has {UUID_LENGTH}"


def _check_uuid(value: object, what: str) -> str:
    if type(value) is str and _VALID_ID(value) is not None:
        return value
    if not isinstance(value, str):
        raise InvalidOrderIdError(f"{what} must be a str (a UUID), not {type(value).__name__}")
    if not value:
        raise InvalidOrderIdError(f"{what} must not be empty: it is a UUID such as {_EXAMPLE_ID}")
    if _VALID_ID_ANY_CASE(value) is not None:
        return str(value).lower()
    raise InvalidOrderIdError(
        f"{what} {_shown(value)} {_uuid_problem(value)} ({what}s are UUIDs such as {_EXAMPLE_ID})"
    )


def is_uuid(value: str) -> bool:
    """True when ``value`` is a UUID in canonical text (either case)."""
    return _VALID_ID_ANY_CASE(value) is not None


def check_order_id(value: object) -> str:
    """The order id to send: ``value`` in lower case if it is a UUID.

    Raises :class:`~cadenza_async.errors.InvalidOrderIdError` (a ValueError)
    naming the first character that is not where a UUID has it.
    """
    return _check_uuid(value, "order id")


def check_account_id(value: object) -> str:
    """The trading account id to send (a UUID, in lower case); raises ``InvalidOrderIdError``."""
    return _check_uuid(value, "trading account id")


def check_client_order_id(value: object) -> str:
    """``value`` if it is a usable ``clientOrderId``; raises ``InvalidOrderIdError``."""
    if type(value) is str and _VALID_CLIENT_ID(value) is not None:
        return value
    what = "client_order_id"
    if not isinstance(value, str):
        raise InvalidOrderIdError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidOrderIdError(f"{what} must not be empty")
    if len(value) > MAX_CLIENT_ID_LENGTH:
        raise InvalidOrderIdError(
            f"{what} is {len(value)} characters long; at most {MAX_CLIENT_ID_LENGTH}"
        )
    index = next(i for i, c in enumerate(value) if _CLIENT_ID_CHARS.fullmatch(c) is None)
    raise InvalidOrderIdError(
        f"{what} {_shown(value)} has {value[index]!r} at position {index + 1}: letters, digits "
        "and . _ : ~ @ + = - only (no whitespace, '/', '?', '#', '%' or non-ASCII)"
    )


def valid_ids(values: list[Any]) -> bool:
    """True when every item is a ``str`` that :func:`check_order_id` returns unchanged.

    One pass in C for a whole bulk; False says only that some item is not
    (an invalid id, or one in upper case: check each then, for the precise
    error or the lower-case id).
    """
    if not values or set(map(type, values)) != {str}:
        return False
    joined = "\n".join(values)
    # (an id holding the separator itself would split in two: the count catches it)
    return joined.count("\n") == len(values) - 1 and _VALID_LINES(joined) is not None


# ---- numbers, booleans, timeouts ------------------------------------------------------------

#: The longest decimal text sent (a number longer than this is a mistake, not a price).
MAX_DECIMAL_LENGTH: Final = 64
# The API's own pattern for decimal strings, without its optional sign (every number
# the SDK sends must be > 0), and with ASCII digits only.
_PLAIN_DECIMAL: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?").fullmatch
_PASS_AS: Final = "pass a str such as '0.01' or a Decimal"


def _decimal_text_problem(text: str) -> str:
    """Why ``text`` is not a plain decimal literal (the rule it breaks)."""
    if not text:
        return "must not be empty"
    if text != text.strip():
        return "must have no spaces around it"
    lowered = text.lower().lstrip("+-")
    if lowered in ("nan", "snan", "inf", "infinity"):
        return "must be a finite number"
    if text[0] in "+-":
        return "must be a number > 0 written without a sign"
    if "," in text or "_" in text or " " in text:
        return "must be written without ',', '_' or spaces ('.' is the decimal point)"
    mantissa, _, exponent = lowered.partition("e")
    if exponent and _PLAIN_DECIMAL(mantissa) and exponent.lstrip("+-").isdigit():
        return "must be written without an exponent (e.g. '0.0001', not '1e-4')"
    if text.startswith(".") or text.endswith("."):
        return "must have digits on both sides of '.' (e.g. '0.5')"
    return "must be a plain decimal number such as '0.01' (ASCII digits and one '.')"


def check_decimal(value: object, field: str) -> str:
    """The exact decimal text to send for ``field``, a number > 0.

    Raises ``TypeError`` for a float (not exact), a bool or any other type,
    and ``ValueError`` for a value that is not finite, not > 0 or not a plain
    decimal literal; both name ``field`` and the rule.
    """
    if isinstance(value, str):
        if not _PLAIN_DECIMAL(value):
            raise ValueError(f"{field} {_shown(value)} {_decimal_text_problem(value)}")
        text = value
    elif isinstance(value, bool):
        raise TypeError(f"{field} must be a str or Decimal, not bool ({_PASS_AS})")
    elif isinstance(value, float):
        raise TypeError(
            f"{field} must be a str or Decimal, not float ({value!r}): a float is not exact; "
            f"{_PASS_AS}"
        )
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{field} {value} must be a finite number")
        text = format(value, "f")  # plain digits: no exponent
    else:
        raise TypeError(f"{field} must be a str or Decimal, not {type(value).__name__}")
    if len(text) > MAX_DECIMAL_LENGTH:
        raise ValueError(f"{field} has {len(text)} characters; at most {MAX_DECIMAL_LENGTH}")
    if text.startswith("-") or not Decimal(text) > 0:
        raise ValueError(f"{field} {_shown(text)} must be > 0")
    return text


def check_bool(value: object, field: str) -> bool:
    """``value`` if it is ``True`` or ``False``; ``TypeError`` naming ``field`` otherwise."""
    if value is True or value is False:
        return value
    raise TypeError(f"{field} must be True or False, not {type(value).__name__} {value!r}")


def check_timeout(value: object, field: str = "timeout") -> float | None:
    """``value`` as seconds (None stays None: the default applies).

    Raises ``TypeError`` unless it is an int or float (bool and str are
    refused) and ``ValueError`` unless it is finite and > 0; both name ``field``.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{field} must be a number of seconds (int or float), not {type(value).__name__}"
        )
    seconds = float(value)
    if not math.isfinite(seconds) or not seconds > 0:
        raise ValueError(f"{field} must be a finite number of seconds > 0, not {value!r}")
    return seconds


def check_count(value: object, field: str, minimum: int = 1) -> int:
    """``value`` if it is an int >= ``minimum`` (not bool); ``TypeError``/``ValueError`` naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int >= {minimum}, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{field} must be an int >= {minimum}, not {value}")
    return value


# ---- enums and whole orders --------------------------------------------------------------

#: The values the API lists (the official models' ``OrderSide``, ``OrderType``,
#: ``TimeInForce``), less their ``UNKNOWN`` placeholder, which is not sent.
ORDER_SIDES: Final = ("BUY", "SELL")
ORDER_TYPES: Final = (
    "MARKET",
    "LIMIT",
    "LIMIT_MAKER",
    "STOP",
    "STOP_LIMIT",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
    "TRAILING_STOP",
    "QUOTED",
)
TIME_IN_FORCE: Final = (
    "GTC",
    "IOC",
    "FOK",
    "GTD",
    "DAY",
    "GTX",
    "OPG",
    "CLS",
    "GFA",
    "GFS",
    "GTM",
    "MOO",
    "MOC",
    "EXT",
)
_ENUMS: Final[Mapping[str, tuple[str, ...]]] = {
    "order_side": ORDER_SIDES,
    "order_type": ORDER_TYPES,
    "time_in_force": TIME_IN_FORCE,
}
_ENUM_TOKEN: Final = re.compile(r"[A-Z][A-Z0-9_]{0,63}").fullmatch


class Unlisted(str):
    """An enum value the SDK does not list yet, sent as given: ``order_type=Unlisted("PEGGED")``.

    For ``order_side``, ``order_type`` and ``time_in_force`` when the API has
    gained a value this version of the SDK does not know. It is still
    checked for shape (upper-case letters, digits and ``_``), and the rules
    that depend on a known value (a LIMIT order needs a price) do not apply.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Unlisted({str(self)!r})"


def check_enum(value: object, field: str) -> str:
    """``value`` (a plain str) if ``field`` lists it, or if it is :class:`Unlisted` and well formed."""
    allowed = _ENUMS[field]
    if isinstance(value, Unlisted):
        text = str(value)
        if _ENUM_TOKEN(text) is None:
            raise ValueError(
                f"{field} Unlisted({text!r}) must be upper-case letters, digits and '_'"
            )
        return text
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str, not {type(value).__name__}")
    if value in allowed:
        return str(value)
    hint = ""
    if value.strip().upper() in allowed:
        hint = f" (did you mean {value.strip().upper()!r}?)"
    elif _ENUM_TOKEN(value) is not None:
        hint = f"; a value the SDK does not list yet goes as Unlisted({value!r})"
    raise ValueError(f"{field} {_shown(value)} is not one of {', '.join(allowed)}{hint}")


def check_instrument_id(value: object) -> str:
    """``value`` if it is a plausible instrument id (``VENUE:BASE/QUOTE``, printable, no spaces)."""
    if not isinstance(value, str):
        raise TypeError(f"instrument_id must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError("instrument_id must not be empty (it is VENUE:BASE/QUOTE)")
    if len(value) > 128 or not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError(
            f"instrument_id {_shown(value)} must be at most 128 printable ASCII characters "
            "without spaces (VENUE:BASE/QUOTE)"
        )
    return value


def _needs_limit_price(order_type: str) -> bool:
    return "LIMIT" in order_type


def check_order(
    *,
    instrument_id: object,
    order_side: object,
    order_type: object,
    quantity: object,
    limit_price: object = None,
    stop_price: object = None,
    time_in_force: object = None,
    client_order_id: object = None,
    trading_account_id: object = None,
    quote_id: object = None,
) -> NewOrder:
    """The new order, checked as a whole, with its fields as they are sent.

    Raises ``TypeError`` or ``ValueError`` naming the field and its rule (see
    the module's table), :class:`~cadenza_async.errors.InvalidOrderIdError`
    for a malformed ``client_order_id`` or account id.
    """
    kind = check_enum(order_type, "order_type")
    order = NewOrder(
        instrument_id=check_instrument_id(instrument_id),
        order_side=check_enum(order_side, "order_side"),
        order_type=kind,
        quantity=check_decimal(quantity, "quantity"),
        limit_price=None if limit_price is None else check_decimal(limit_price, "limit_price"),
        stop_price=None if stop_price is None else check_decimal(stop_price, "stop_price"),
        time_in_force=None if time_in_force is None else check_enum(time_in_force, "time_in_force"),
        client_order_id=None if client_order_id is None else check_client_order_id(client_order_id),
        trading_account_id=None
        if trading_account_id is None
        else check_account_id(trading_account_id),
        quote_id=None if quote_id is None else _check_uuid(quote_id, "quote_id"),
    )
    if not isinstance(order_type, Unlisted):
        if kind == "MARKET" and limit_price is not None:
            raise ValueError(
                "limit_price must be None for a MARKET order (it fills at the market's price)"
            )
        if _needs_limit_price(kind) and limit_price is None:
            raise ValueError(f"limit_price is required for a {kind} order")
    return order


_ORDER_FIELDS: Final = frozenset(NewOrder.__struct_fields__)
_REQUIRED_ORDER_FIELDS: Final = frozenset({"instrument_id", "order_side", "order_type", "quantity"})


def check_orders(items: object) -> list[NewOrder]:
    """Every order of a bulk submit, checked: all or nothing.

    Each item is a :class:`NewOrder` or a mapping of its fields. Raises
    ``TypeError``/``ValueError`` (or ``InvalidOrderIdError``) for the first
    bad one, its message starting with ``order {index}:``.
    """
    if isinstance(items, (str, bytes, Mapping, NewOrder)) or not isinstance(items, Iterable):
        raise TypeError("orders must be an iterable of NewOrder or mappings, not one order")
    checked = []
    for index, item in enumerate(items):
        if isinstance(item, NewOrder):
            fields: Mapping[str, Any] = msgspec.structs.asdict(item)
        elif isinstance(item, Mapping):
            fields = item
        else:
            raise TypeError(
                f"order {index}: a NewOrder or a mapping of its fields, not {type(item).__name__}"
            )
        unknown = set(fields) - _ORDER_FIELDS
        if unknown:
            raise TypeError(f"order {index}: unknown fields {sorted(unknown)}")
        missing = _REQUIRED_ORDER_FIELDS - set(fields)
        if missing:
            raise TypeError(f"order {index}: missing fields {sorted(missing)}")
        try:
            checked.append(check_order(**fields))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"order {index}: {exc}") from None
    return checked


# ---- endpoints ----------------------------------------------------------------------------


def is_loopback_host(host: str) -> bool:
    """True for exactly ``localhost`` and literal loopback addresses (127.0.0.0/8, ::1).

    Names under ``.localhost`` are not loopback here: a DNS answer (or a
    resolver that does not special-case them) would decide where a
    plaintext token goes. ``localhost.`` (with the root dot) is refused too.
    """
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_proxy_url(url: object) -> str:
    """Return ``url`` if it is a usable proxy URL (``http://`` or ``https://`` with a host).

    Raises :class:`ConfigurationError`.
    """
    if not isinstance(url, str) or not url:
        raise ConfigurationError("proxy must be a non-empty URL string or None")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError("proxy must be an http:// or https:// URL with a host")
    return url


def check_url(url: str, *, secure: str, insecure: str, allow_insecure: bool, what: str) -> str:
    """Return ``url`` without a trailing slash if its scheme is acceptable.

    ``insecure`` schemes (``http``/``ws``) are accepted for loopback hosts, or
    anywhere when ``allow_insecure`` is set. Raises :class:`ConfigurationError`.
    """
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"{what} must be a non-empty URL string")
    parts = urlsplit(url)
    if parts.scheme not in (secure, insecure) or not parts.hostname:
        raise ConfigurationError(f"{what} must be a {secure}:// URL, got {url!r}")
    if parts.username or parts.password:
        raise ConfigurationError(f"{what} must not carry credentials")
    if parts.scheme == insecure and not allow_insecure and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"{what} {url!r} is {insecure}:// to a non-loopback host; "
            f"use {secure}:// or pass allow_insecure=True"
        )
    return url.rstrip("/")
