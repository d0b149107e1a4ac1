"""Input checks that run before any I/O: ids, numbers, enums, booleans, whole orders, URLs."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cadenza_async import NewOrder, Unlisted
from cadenza_async._validate import (
    MAX_CLIENT_ID_LENGTH,
    check_account_id,
    check_bool,
    check_client_order_id,
    check_count,
    check_decimal,
    check_enum,
    check_order,
    check_order_id,
    check_orders,
    check_timeout,
    check_url,
    is_loopback_host,
    valid_ids,
)
from cadenza_async.errors import ConfigurationError, InvalidOrderIdError

ID = "770e8400-e29b-41d4-a716-446655440002"
ORDER = {
    "instrument_id": "BINANCE:BTC/USDT",
    "order_side": "BUY",
    "order_type": "LIMIT",
    "quantity": "0.01",
    "limit_price": "50000",
}

# ---- ids ------------------------------------------------------------------------------


def test_a_uuid_is_an_order_id_and_an_account_id():
    assert check_order_id(ID) == ID
    assert check_account_id(ID) == ID


def test_an_upper_case_uuid_is_taken_in_lower_case():
    assert check_order_id(ID.upper()) == ID
    assert check_account_id(ID.upper()) == ID


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        (ID + ",", "',' at position 37, after the UUID's 36 characters"),
        (ID[:-1], "is 35 characters long; a UUID has 36"),
        ("not-an-id", "'n' at position 1, not a hexadecimal digit"),
        ("12345", "is 5 characters long"),
        (ID.replace("-", "", 1), "at position 9 where a UUID has '-'"),
        (" " + ID, "' ' at position 1"),
        ("770e8400-e29b-41d4-a716-44665544000\u00e9", "'\u00e9' at position 36"),
        ("{" + ID + "}", "'{' at position 1"),
    ],
)
def test_a_refused_id_names_the_bad_character_and_its_position(bad, named):
    with pytest.raises(InvalidOrderIdError) as info:
        check_order_id(bad)
    assert named in str(info.value)
    assert "order id" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", ["", None, 1, 1.5, b"abc", ["a"], "x" * 10_000, "a\r\nb"])
def test_unusable_ids_raise_invalid_order_id_error(bad):
    with pytest.raises(InvalidOrderIdError):
        check_order_id(bad)
    with pytest.raises(InvalidOrderIdError, match="trading account id"):
        check_account_id(bad)


@given(st.text())
def test_any_accepted_id_is_a_lower_case_uuid(value):
    try:
        checked = check_order_id(value)
    except ValueError:
        return
    assert len(checked) == 36
    assert set(checked) <= set("0123456789abcdef-")


def test_id_error_message_is_truncated():
    with pytest.raises(ValueError) as info:
        check_order_id("/" * 10_000)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("good", ["cli-1", "A.b_c:d~e@f+g=h", "x" * MAX_CLIENT_ID_LENGTH, ID])
def test_a_client_order_id_is_free_url_safe_text(good):
    assert check_client_order_id(good) == good


@pytest.mark.parametrize(
    ("bad", "named"),
    [("a b", "' ' at position 2"), ("a/b", "'/' at position 2"), ("", "empty"), (1, "str")],
)
def test_a_refused_client_order_id_names_the_character(bad, named):
    with pytest.raises(InvalidOrderIdError, match="client_order_id") as info:
        check_client_order_id(bad)
    assert named in str(info.value)


class _Str(str):
    pass


def _each_unchanged(values: list[object]) -> bool:
    for value in values:
        if type(value) is not str:
            return False
        try:
            if check_order_id(value) != value:
                return False
        except InvalidOrderIdError:
            return False
    return bool(values)


@pytest.mark.parametrize(
    "values",
    [
        [ID, ID.replace("7", "8")],
        [ID, ID],
        [],
        [ID, ""],
        [ID + "\n" + ID],  # the separator inside one id
        [ID, ID + "\n"],
        ["\n"],
        [ID.upper()],
        [ID, 1],
        [_Str(ID)],
        [None],
    ],
)
def test_valid_ids_agrees_with_checking_each_id(values):
    """The one-pass check of a bulk says yes exactly when every id passes unchanged."""
    assert valid_ids(values) is _each_unchanged(values)


@given(st.lists(st.sampled_from([ID, ID.upper(), ID[:-1], ID + "\n", "", "x"]), max_size=5))
def test_valid_ids_agrees_with_checking_each_id_on_any_list(values):
    assert valid_ids(values) is _each_unchanged(values)


# ---- numbers, booleans, timeouts -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("0.01", "0.01"),
        ("50000", "50000"),
        ("1.50", "1.50"),
        (Decimal("0.01"), "0.01"),
        (Decimal("1E+2"), "100"),
        (Decimal("1E-7"), "0.0000001"),
        (3, "3"),
    ],
)
def test_an_exact_positive_number_is_sent_as_plain_text(value, sent):
    assert check_decimal(value, "quantity") == sent


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("-1", "without a sign"),
        ("+1", "without a sign"),
        ("0", "must be > 0"),
        ("0.000", "must be > 0"),
        ("-0.001", "without a sign"),
        ("NaN", "finite"),
        ("nan", "finite"),
        ("Infinity", "finite"),
        ("-inf", "finite"),
        ("abc", "plain decimal"),
        (" 1", "no spaces"),
        ("1 ", "no spaces"),
        ("1,5", "','"),
        ("1_000", "'_'"),
        ("1e5", "exponent"),
        ("1E-4", "exponent"),
        (".5", "both sides"),
        ("5.", "both sides"),
        ("", "empty"),
        ("\u0661", "plain decimal"),  # an Arabic-Indic digit one
        ("1" * 65, "at most 64"),
        (Decimal("NaN"), "finite"),
        (Decimal("sNaN"), "finite"),
        (Decimal("Infinity"), "finite"),
        (Decimal("-1"), "must be > 0"),
        (Decimal("-0"), "must be > 0"),
        (Decimal(0), "must be > 0"),
        (-1, "must be > 0"),
        (0, "must be > 0"),
    ],
)
def test_a_bad_number_is_a_value_error_naming_the_field_and_the_rule(value, rule):
    with pytest.raises(ValueError) as info:
        check_decimal(value, "limit_price")
    assert str(info.value).startswith("limit_price")
    assert rule in str(info.value)


@pytest.mark.parametrize(("value", "rule"), [(0.01, "not exact"), (True, "bool"), ([1], "list")])
def test_a_float_or_another_type_is_a_type_error_saying_what_to_pass(value, rule):
    with pytest.raises(TypeError) as info:
        check_decimal(value, "quantity")
    assert str(info.value).startswith("quantity must be a str or Decimal")
    assert rule in str(info.value)


@given(st.text(max_size=12))
def test_any_accepted_number_text_is_what_the_api_takes(text):
    try:
        sent = check_decimal(text, "quantity")
    except ValueError:
        return
    assert sent == text
    assert set(text) <= set("0123456789.")
    assert Decimal(text) > 0


@given(st.decimals(allow_nan=True, allow_infinity=True))
def test_any_accepted_decimal_is_sent_exactly(value):
    try:
        sent = check_decimal(value, "quantity")
    except ValueError:
        return
    assert Decimal(sent) == value
    assert "E" not in sent.upper()


def test_booleans_must_be_booleans():
    assert check_bool(True, "place_if_filled") is True
    assert check_bool(False, "place_if_filled") is False
    for bad in ("false", "true", 0, 1, None):
        with pytest.raises(TypeError, match="place_if_filled must be True or False"):
            check_bool(bad, "place_if_filled")


def test_a_timeout_is_a_finite_number_of_seconds_above_zero():
    assert check_timeout(None) is None
    assert check_timeout(5) == 5.0
    assert check_timeout(0.5) == 0.5
    for bad in ("5", True, Decimal("5"), [5]):
        with pytest.raises(TypeError, match=r"^timeout must be a number of seconds"):
            check_timeout(bad)
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^timeout must be a finite number of seconds > 0"):
            check_timeout(bad)


def test_a_count_is_an_int_at_least_its_minimum():
    assert check_count(3, "concurrency") == 3
    assert check_count(0, "offset", minimum=0) == 0
    for bad, error in ((0, ValueError), (True, TypeError), ("4", TypeError), (1.0, TypeError)):
        with pytest.raises(error, match=r"^concurrency must be an int >= 1"):
            check_count(bad, "concurrency")


# ---- enums and whole orders ------------------------------------------------------------


def test_enum_values_are_the_listed_ones():
    assert check_enum("BUY", "order_side") == "BUY"
    assert check_enum("STOP_LOSS_LIMIT", "order_type") == "STOP_LOSS_LIMIT"
    assert check_enum("GTC", "time_in_force") == "GTC"


@pytest.mark.parametrize(
    ("field", "value", "hint"),
    [
        ("order_side", "buy", "did you mean 'BUY'?"),
        ("order_side", "HOLD", "Unlisted('HOLD')"),
        ("order_type", "UNKNOWN", "Unlisted('UNKNOWN')"),
        ("time_in_force", "gtc ", "did you mean 'GTC'?"),
        ("order_type", "", "is not one of MARKET, LIMIT"),
    ],
)
def test_an_unlisted_enum_value_is_refused_with_a_hint(field, value, hint):
    with pytest.raises(ValueError) as info:
        check_enum(value, field)
    assert str(info.value).startswith(field)
    assert hint in str(info.value)


def test_an_unlisted_value_passes_wrapped_and_is_sent_as_a_plain_str():
    sent = check_enum(Unlisted("PEGGED"), "order_type")
    assert sent == "PEGGED"
    assert type(sent) is str
    with pytest.raises(ValueError, match="upper-case letters"):
        check_enum(Unlisted("pegged now"), "order_type")


def test_an_order_is_checked_whole_and_comes_back_as_sent():
    order = check_order(
        **{**ORDER, "quantity": Decimal("1E-2"), "trading_account_id": ID.upper()},
        time_in_force="GTC",
        client_order_id="q-1",
    )
    assert order == NewOrder(
        instrument_id="BINANCE:BTC/USDT",
        order_side="BUY",
        order_type="LIMIT",
        quantity="0.01",
        limit_price="50000",
        time_in_force="GTC",
        client_order_id="q-1",
        trading_account_id=ID,
    )


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"limit_price": None}, ValueError, "limit_price is required for a LIMIT order"),
        (
            {"order_type": "STOP_LIMIT", "limit_price": None},
            ValueError,
            "limit_price is required for a STOP_LIMIT order",
        ),
        ({"order_type": "MARKET"}, ValueError, "limit_price must be None for a MARKET order"),
        ({"instrument_id": ""}, ValueError, "instrument_id must not be empty"),
        ({"instrument_id": "BTC USDT"}, ValueError, "instrument_id 'BTC USDT'"),
        ({"instrument_id": None}, TypeError, "instrument_id must be a str"),
        ({"stop_price": "-5"}, ValueError, "stop_price '-5'"),
        ({"trading_account_id": "acct-1"}, InvalidOrderIdError, "trading account id"),
        ({"client_order_id": "a b"}, InvalidOrderIdError, "client_order_id"),
    ],
)
def test_a_bad_order_names_its_field(change, error, message):
    with pytest.raises(error) as info:
        check_order(**{**ORDER, **change})
    assert message in str(info.value)


def test_order_rules_do_not_apply_to_an_unlisted_type():
    order = check_order(**{**ORDER, "order_type": Unlisted("PEGGED"), "limit_price": None})
    assert order.order_type == "PEGGED"


def test_a_bulk_of_orders_is_all_or_nothing_naming_the_index():
    good = [ORDER, NewOrder(**ORDER)]
    assert [o.quantity for o in check_orders(good)] == ["0.01", "0.01"]
    for items, message in (
        ([ORDER, ORDER, {**ORDER, "quantity": "abc"}], "order 2: quantity 'abc'"),
        ([ORDER, {**ORDER, "extra": 1}], "order 1: unknown fields ['extra']"),
        ([{"instrument_id": "X:A/B"}], "order 0: missing fields"),
        ([ORDER, 5], "order 1: a NewOrder or a mapping"),
    ):
        with pytest.raises((TypeError, ValueError)) as info:
            check_orders(items)
        assert str(info.value).startswith(message)
    for single in (ORDER, NewOrder(**ORDER), "orders"):
        with pytest.raises(TypeError, match="not one order"):
            check_orders(single)


# ---- endpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("api.localhost", False),  # a DNS name, not loopback by itself
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("example.com", False),
        ("localhost.example.com", False),
        ("0.0.0.0", False),
    ],
)
def test_loopback_detection(host, expected):
    assert is_loopback_host(host) is expected


def test_check_url_accepts_secure_schemes_and_strips_the_trailing_slash():
    assert (
        check_url("https://a.example/", secure="https", insecure="http", allow_insecure=False, what="u")
        == "https://a.example"
    )  # fmt: skip


@pytest.mark.parametrize(
    "url",
    ["http://a.example", "ws://a.example", "ftp://a.example", "https://", "a.example", "//a"],
)
def test_check_url_refuses_insecure_or_malformed_urls(url):
    secure, insecure = ("wss", "ws") if url.startswith("ws") else ("https", "http")
    with pytest.raises(ConfigurationError):
        check_url(url, secure=secure, insecure=insecure, allow_insecure=False, what="u")


def test_check_url_allows_insecure_remote_when_asked():
    url = check_url("ws://a.example/c", secure="wss", insecure="ws", allow_insecure=True, what="u")
    assert url == "ws://a.example/c"
