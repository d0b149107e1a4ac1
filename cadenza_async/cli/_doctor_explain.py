"""What a failed REST or WebSocket check means: the reason to print, and what to do about it.

Each function returns ``(reason, fix)``. A refused token is named as such
(HTTP 401, Centrifugo close 3500, errors 101 and 109), a refused account
too (HTTP 403, Centrifugo 103 "no access to this account"), and a server
that offers no cancel RPC (104) is told apart from one that is down.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from ..errors import (
    ApiError,
    AuthenticationError,
    CadenzaError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
)
from ._doctor_config import environment_of
from ._outcomes import error_text
from ._wsprobe import WsProbeError

__all__ = ["error_data", "rest_failure", "ws_error_data", "ws_failure"]

# The SDK's own wording of a refused token, not repeated after "the REST API refused the token".
_ALREADY_SAID: Final = re.compile(r"^the REST API refused the token:\s*", re.IGNORECASE)


def error_data(exc: CadenzaError) -> dict[str, Any]:
    """The error's type, and its HTTP status and errno when the API answered, for ``--json``."""
    data: dict[str, Any] = {"error": type(exc).__name__}
    if isinstance(exc, ApiError):
        data.update(status=exc.status, errno=exc.errno)
    return data


def rest_failure(exc: CadenzaError, api_url: str, account: str | None) -> tuple[str, str]:
    """The reason and the fix for a failed read-only REST call on ``account``."""
    env = environment_of(api_url)
    if isinstance(exc, AuthenticationError):
        return (
            f"HTTP 401 Unauthorized: the REST API refused the token "
            f"({_ALREADY_SAID.sub('', exc.message)})",
            f"the token is wrong, expired or for another environment (these endpoints are "
            f"{env}): get a fresh token into CADENZA_TOKEN",
        )
    if isinstance(exc, PermissionDeniedError):
        return (
            f"HTTP 403 Forbidden: the token may not list the orders of account "
            f"{account} ({exc.message})",
            "check CADENZA_TRADING_ACCOUNT_ID: the account must belong to this token",
        )
    if isinstance(exc, RateLimitError):
        return (f"HTTP 429: rate limited ({exc.message})", "wait a minute, then run again")
    if isinstance(exc, ServerError):
        return (
            f"HTTP {exc.status}: the server failed ({exc.message})",
            "the API has trouble: try again later",
        )
    if isinstance(exc, ApiError):
        status = f"HTTP {exc.status}" if exc.status else type(exc).__name__
        return (
            f"{status}: {exc.message}",
            "check CADENZA_API_URL: it should be the API's base URL",
        )
    if isinstance(exc, TransportError):
        return (f"no answer: {exc}", "see rest.tcp and rest.tls")
    return (error_text(exc), "run with -v to see the SDK's log")


def ws_error_data(exc: WsProbeError) -> dict[str, Any]:
    """How the WebSocket step failed, for ``--json``."""
    return {"failure": exc.kind, "code": exc.code, "status": exc.status}


_WS_TOKEN_FIX: Final = (
    "the token is wrong, expired or for another environment: get a fresh token into CADENZA_TOKEN"
)


def ws_failure(exc: WsProbeError, step: str, account: str | None = None) -> tuple[str, str]:
    """The reason and the fix for a failed WebSocket step."""
    explain = _WS_FAILURES.get(exc.kind, _ws_protocol_failure)
    return explain(exc, step, account)


def _ws_handshake_failure(exc: WsProbeError, step: str, account: str | None) -> tuple[str, str]:
    """The HTTP upgrade was answered with something other than 101."""
    message, status = exc.message, exc.status
    if status == 401:
        return (f"the WebSocket refused the token: {message}", _WS_TOKEN_FIX)
    if status == 403:
        return (
            f"the WebSocket refused the connection: {message}",
            "the token, or this machine's address, is not allowed",
        )
    if status == 404:
        return (
            f"no WebSocket endpoint there: {message}",
            "check CADENZA_WS_URL: it ends in /connection/websocket",
        )
    if status is not None and 300 <= status < 400:
        return (
            f"{message}: a redirect, not followed (the token would go elsewhere)",
            "put the final URL in CADENZA_WS_URL",
        )
    if status is not None and status >= 500:
        return (
            f"the WebSocket service refused the connection: {message}",
            "the WebSocket is down or overloaded: cancels still go over HTTP and REST "
            "proves them, but slower; try again later",
        )
    return (f"the WebSocket handshake failed: {message}", "check CADENZA_WS_URL")


def _ws_transport_failure(exc: WsProbeError, step: str, account: str | None) -> tuple[str, str]:
    """The connection broke below the WebSocket."""
    return (f"{exc.message}", "see ws.tcp and ws.tls")


def _ws_timeout_failure(exc: WsProbeError, step: str, account: str | None) -> tuple[str, str]:
    """The server did not answer ``step`` in time."""
    return (
        f"{step}: {exc.message}",
        "the server is slow or a proxy holds the connection: try a longer --timeout",
    )


def _ws_closed_failure(exc: WsProbeError, step: str, account: str | None) -> tuple[str, str]:
    """The server closed the connection during ``step``; 3500 is a refused token."""
    message = exc.message
    if exc.code == 3500:  # Centrifugo's "invalid token"
        return (
            f"the server closed the connection on {step} (code 3500: {message})",
            _WS_TOKEN_FIX,
        )
    code = f" {exc.code}" if exc.code is not None else ""
    return (
        f"the server closed the connection on {step} (code{code}: {message})",
        "run the doctor again; if it persists, the WebSocket service has trouble",
    )


def _ws_reply_failure(exc: WsProbeError, step: str, account: str | None) -> tuple[str, str]:
    """The server answered ``step`` with a Centrifugo error."""
    message, errno = exc.message, exc.code
    if errno == 109:
        return (f"token expired (Centrifugo error 109: {message})", _WS_TOKEN_FIX)
    if errno == 101:
        return (f"unauthorized (Centrifugo error 101: {message})", _WS_TOKEN_FIX)
    if errno == 103:
        return (
            f"no access to this account (Centrifugo error 103: {message})",
            f"the token may not see trading account {account}: check "
            "CADENZA_TRADING_ACCOUNT_ID, or use a token of that account",
        )
    if errno == 102:
        return (
            f"unknown channel (Centrifugo error 102: {message})",
            "check CADENZA_TRADING_ACCOUNT_ID: no such account channel",
        )
    if errno == 104 and step == "rpc":
        return (
            f"the server offers no cancel RPC (Centrifugo error 104: {message})",
            "cancels over HTTP (the default) are unaffected; do not use --via ws",
        )
    temporary = ", temporary" if exc.temporary else ""
    return (
        f"{step} refused (Centrifugo error {errno}{temporary}: {message})",
        "run the doctor again; if it persists, ask the API's operators",
    )


def _ws_protocol_failure(exc: WsProbeError, step: str, account: str | None) -> tuple[str, str]:
    """Anything else: the server spoke something the probe does not understand."""
    return (f"protocol error on {step}: {exc.message}", "run with -v and report it")


# How each kind of WsProbeError is explained; a kind not listed is a protocol error.
_WS_FAILURES: Final[dict[str, Callable[[WsProbeError, str, str | None], tuple[str, str]]]] = {
    "handshake": _ws_handshake_failure,
    "transport": _ws_transport_failure,
    "timeout": _ws_timeout_failure,
    "closed": _ws_closed_failure,
    "reply": _ws_reply_failure,
}
