"""Input checks that run before any I/O: order ids, account ids, endpoint URLs."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final
from urllib.parse import urlsplit

from .errors import ConfigurationError, InvalidOrderIdError

__all__ = [
    "check_account_id",
    "check_order_id",
    "check_proxy_url",
    "check_url",
    "is_loopback_host",
]

MAX_ID_LENGTH: Final = 128
# Printable ASCII minus space and the characters that change a URL's meaning.
_ID_CHAR: Final = r"[A-Za-z0-9._:~@+=-]"
_ID_RE: Final = re.compile(_ID_CHAR + "+")
# The same rule with the length bound: the one check a valid id costs (every cancel pays it).
_ONE_ID: Final = rf"{_ID_CHAR}{{1,{MAX_ID_LENGTH}}}"
_VALID_ID: Final = re.compile(_ONE_ID).fullmatch
# Many ids joined by newlines (not an id character): one match checks a whole bulk.
_VALID_LINES: Final = re.compile(rf"(?:{_ONE_ID}\n)*{_ONE_ID}").fullmatch


def _check_id(value: object, what: str) -> str:
    if type(value) is str and _VALID_ID(value) is not None:
        return value
    # Invalid (or a str subclass): say precisely what is wrong.
    if not isinstance(value, str):
        raise InvalidOrderIdError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidOrderIdError(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidOrderIdError(
            f"{what} is {len(value)} characters long; at most {MAX_ID_LENGTH}"
        )
    if _ID_RE.fullmatch(value) is None:
        raise InvalidOrderIdError(
            f"{what} {value[:40]!r} holds a character that is not allowed "
            "(whitespace, control characters, '/', '?', '#', '%' and non-ASCII are refused)"
        )
    return value


def valid_ids(values: list[Any]) -> bool:
    """True when every item is a ``str`` (not a subclass) that :func:`check_order_id` accepts.

    One pass in C for a whole bulk; False says only that some item is not
    (check each then, for the precise error).
    """
    if not values or set(map(type, values)) != {str}:
        return False
    joined = "\n".join(values)
    # (an id holding the separator itself would split in two: the count catches it)
    return joined.count("\n") == len(values) - 1 and _VALID_LINES(joined) is not None


def check_order_id(value: object) -> str:
    """Return ``value`` if it is a usable order id; raise ``InvalidOrderIdError`` (a ValueError)."""
    return _check_id(value, "order id")


def check_account_id(value: object) -> str:
    """Return ``value`` if it is a usable account id; raise ``InvalidOrderIdError`` (a ValueError)."""
    return _check_id(value, "trading account id")


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
