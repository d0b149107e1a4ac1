"""What a failure means on the command line: its one-line message and its exit status.

====================================================  ======  ==============================
failure                                               exit    message names
====================================================  ======  ==============================
usage, bad flag or setting (``ConfigurationError``)   2       the flag (``--token``, ...)
bad input (``InvalidOrderIdError``, an order field)   2       the field, the rule
a 404 that is not the API's (``ApiNotFoundError``)    2       ``--api-url``, ``doctor``
the WebSocket cannot be used (``WebSocketUnusable``)  2 / 1   ``--ws-url``; 2 when its URL
                                                              is no WebSocket endpoint
token refused by REST (``AuthenticationError``)       2       the REST API's URL (and, on
                                                              loopback, that a simulator's
                                                              token changes every run)
token refused by the WebSocket (``StreamError`` with  2       the WebSocket's URL
code 3500, 109 or 401, or an ``AuthenticationError``)
``TransportError``                                    1       the REST API's URL
other ``StreamError``                                 1       the WebSocket's URL
any other error                                       1       the error's type
interrupted (Ctrl-C)                                  130
stdout closed by its reader (``| head``)              141
====================================================  ======  ==============================
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from .._validate import is_loopback_host
from ..config import ClientConfig
from ..errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidOrderIdError,
    StreamError,
    TransportError,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "WebSocketUnusable",
    "auth_failure",
    "explain",
    "flag_words",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Centrifugo's "invalid token" disconnect, its "token expired" error, and an HTTP 401
# on the WebSocket handshake: the stream refused the token.
_STREAM_AUTH_CODES = frozenset({3500, 109, 401})

# The SDK's own wording of the same news, not repeated after the endpoint's name.
_ALREADY_SAID = re.compile(r"^the (?:WebSocket|REST API) refused the token:\s*", re.IGNORECASE)

# The SDK's settings as the command line spells them.
_FLAG_WORDS = (
    (re.compile(r"\bpass token="), "pass --token"),
    (re.compile(r"\bpass allow_insecure=True\b"), "pass --allow-insecure"),
    (re.compile(r"\ballow_insecure=True\b"), "--allow-insecure"),
    (re.compile(r"^token\b"), "--token"),
    (re.compile(r"\bapi_url\b"), "--api-url (CADENZA_API_URL)"),
    (re.compile(r"\bws_url\b"), "--ws-url (CADENZA_WS_URL)"),
    (re.compile(r"\bcancel_via\b"), "--via"),
    (re.compile(r"\btrading_account_id\b"), "--account (CADENZA_TRADING_ACCOUNT_ID)"),
)


class WebSocketUnusable(ConfigurationError):
    """The order stream could not connect: ``reason`` (as ``doctor`` says it) and ``fix``.

    ``setting`` is True when the fix is a setting (the URL answers, but is
    no WebSocket endpoint): the command exits 2 then, 1 otherwise.
    """

    def __init__(self, url: str, reason: str, fix: str, *, setting: bool) -> None:
        super().__init__(
            f"the WebSocket at {_shown(url)} cannot be used: {reason}; {fix} "
            "(`cadenza-async doctor` checks every setting)"
        )
        self.setting = setting


def flag_words(message: str) -> str:
    """A settings error reworded with the command line's flags instead of Python keywords."""
    for pattern, replacement in _FLAG_WORDS:
        message = pattern.sub(replacement, message)
    return message


def auth_failure(exc: BaseException) -> str | None:
    """``"ws"`` or ``"rest"`` when ``exc`` says that endpoint refused the token, else None."""
    if isinstance(exc, StreamError):
        if isinstance(exc, AuthenticationError) or exc.code in _STREAM_AUTH_CODES:
            return "ws"
        return None
    if isinstance(exc, AuthenticationError):
        return "rest"
    return None


def _shown(url: str) -> str:
    """The URL without query or fragment (where a token could hide)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _on_loopback(url: str) -> bool:
    host = urlsplit(url).hostname
    return host is not None and is_loopback_host(host)


def _endpoint(kind: str, config: ClientConfig | None) -> str:
    if kind == "ws":
        return "the WebSocket" + (f" at {_shown(config.ws_url)}" if config is not None else "")
    return "the REST API" + (f" at {_shown(config.api_url)}" if config is not None else "")


def explain(exc: BaseException, config: ClientConfig | None) -> tuple[str, int]:
    """The one-line message (without ``error:``) and the exit status for a command's failure."""
    if isinstance(exc, WebSocketUnusable):
        return str(exc), EXIT_USAGE if exc.setting else EXIT_FAILED
    if isinstance(exc, (ConfigurationError, InvalidOrderIdError)):
        return flag_words(str(exc)), EXIT_USAGE
    kind = auth_failure(exc)
    if kind is not None:
        message = exc.message if isinstance(exc, AuthenticationError) else str(exc)
        message = _ALREADY_SAID.sub("", message)
        if isinstance(exc, AuthenticationError) and exc.status is not None:
            message += f" (HTTP {exc.status})"
        if config is not None and _on_loopback(config.api_url if kind == "rest" else config.ws_url):
            message += (
                "; if this is a simulator (cadenza-async sim), its token changes every time it "
                "starts: export the CADENZA_TOKEN it printed again"
            )
        return (
            f"authentication failed: {_endpoint(kind, config)} refused the token: {message}",
            EXIT_USAGE,
        )
    name = type(exc).__name__
    if isinstance(exc, TransportError):
        return f"cannot reach {_endpoint('rest', config)}: {name}: {exc}", EXIT_FAILED
    if isinstance(exc, StreamError):
        return f"{_endpoint('ws', config)}: {name}: {exc}", EXIT_FAILED
    return f"{name}: {exc}", EXIT_FAILED
