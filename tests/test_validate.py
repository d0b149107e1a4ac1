"""Input checks that run before any I/O: ids and URLs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cadenza_async._validate import (
    MAX_ID_LENGTH,
    check_account_id,
    check_order_id,
    check_url,
    is_loopback_host,
    valid_ids,
)
from cadenza_async.errors import ConfigurationError, InvalidOrderIdError


@pytest.mark.parametrize(
    "good", ["770e8400-e29b-41d4-a716-446655440002", "abc", "A.b_c:d~e@f+g=h", "x" * MAX_ID_LENGTH]
)
def test_usable_ids_are_returned_unchanged(good):
    assert check_order_id(good) == good
    assert check_account_id(good) == good


@pytest.mark.parametrize(
    "bad",
    ["", None, 1, 1.5, b"abc", ["a"], "x" * (MAX_ID_LENGTH + 1), "x" * 10_000, "../x", "a/b",
     "a\\b", "a\r\nb", "a b", " a", "a\t", "a\x00", "a\x7f", "a?b", "a#b", "a%20b", "é", "a\u2028b"],
)  # fmt: skip
def test_unusable_ids_raise_invalid_order_id_error(bad):
    with pytest.raises(InvalidOrderIdError):
        check_order_id(bad)
    with pytest.raises(ValueError):
        check_account_id(bad)


@given(st.text())
def test_any_accepted_id_is_safe_in_a_url_path_and_header(value):
    try:
        check_order_id(value)
    except ValueError:
        return
    assert value
    assert value.isascii()
    assert not any(c in value for c in " /?#%\r\n\t\\")
    assert all(c.isprintable() for c in value)


def test_id_error_message_is_truncated():
    with pytest.raises(ValueError) as info:
        check_order_id("/" * 10_000)
    assert len(str(info.value)) < 300


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


def _each_valid(values: list[object]) -> bool:
    for value in values:
        if type(value) is not str:
            return False
        try:
            check_order_id(value)
        except InvalidOrderIdError:
            return False
    return bool(values)


class _Str(str):
    pass


@pytest.mark.parametrize(
    "values",
    [
        ["a", "b"],
        ["a", "a"],
        ["x" * MAX_ID_LENGTH] * 3,
        [],
        ["a", ""],
        ["a\nb"],  # the separator inside one id
        ["a", "b\n"],
        ["\n"],
        ["x" * (MAX_ID_LENGTH + 1)],
        ["a b"],
        ["a/b", "c"],
        ["é"],
        ["a", 1],
        [_Str("a")],
        [None],
    ],
)
def test_valid_ids_agrees_with_checking_each_id(values):
    """The one-pass check of a bulk says yes exactly when every id passes on its own."""
    assert valid_ids(values) is _each_valid(values)


@given(st.lists(st.text(alphabet="ab/\n é-", max_size=6), max_size=5))
def test_valid_ids_agrees_with_checking_each_id_on_any_list(values):
    assert valid_ids(values) is _each_valid(values)
