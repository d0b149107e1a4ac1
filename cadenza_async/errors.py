"""The exception hierarchy: every error the SDK raises on purpose.

::

    CadenzaError
      ConfigurationError            bad settings (also a ValueError)
        ApiNotFoundError            an HTTP 404 that is not the API's: api_url is wrong (also an ApiError)
      InvalidOrderIdError           an order/account id refused before any I/O (also a ValueError)
      ApiError                      .status .errno .message .request_id
        InvalidRequestError         400
        OrderNotCancellableError    400 "Cannot cancel" (already filled/cancelled)
        AuthenticationError         401
        PermissionDeniedError       403
        OrderNotFoundError          404
        RateLimitError              429 (.retry_after)
        ServerError                 5xx
        UnexpectedResponseError     any other status, or a body that is not the envelope
          ResponseTooLargeError     a reply body over ``max_response_size`` (or compressed)
      TransportError                connection refused/reset, HTTP timeout, TLS failure
      ConfirmationTimeout           .order_id .last_known (TradeOrder | None)
      StreamError                   WebSocket protocol violation, terminal close: closed for good
        StreamAuthenticationError   the WebSocket refused the token (also an AuthenticationError)
    ApiError
      StreamRpcError                a Centrifugo error reply to a subscribe or RPC (.errno, .temporary)
      ClientClosedError             call after aclose()
      BlockingInEventLoopError      a BlockingCadenzaClient call from a running event loop
                                    (also a RuntimeError)

Third-party exceptions (aiohttp, websockets, ssl) are translated at the I/O
boundary (``http.py``, ``stream.py``) and never chained raw: their reprs can
carry request headers, bearer token included. Messages of :class:`ApiError`
and :class:`StreamError` (server text, mostly) are passed through
:func:`~cadenza_async._redact.redact_in_scope` when built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._redact import redact_in_scope

if TYPE_CHECKING:
    from .models import TradeOrder

__all__ = [
    "ApiError",
    "ApiNotFoundError",
    "AuthenticationError",
    "BlockingInEventLoopError",
    "CadenzaError",
    "ClientClosedError",
    "ConfigurationError",
    "ConfirmationTimeout",
    "InvalidOrderIdError",
    "InvalidRequestError",
    "OrderNotCancellableError",
    "OrderNotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseTooLargeError",
    "ServerError",
    "StreamAuthenticationError",
    "StreamError",
    "StreamRpcError",
    "TransportError",
    "UnexpectedResponseError",
    "error_for_rpc",
    "is_not_cancellable",
]


class CadenzaError(Exception):
    """Base class of every error raised by cadenza_async.

    ``order_id`` names the order an error is about when the SDK knows it
    (bulk results rely on it); ``None`` otherwise.
    """

    order_id: str | None = None
    #: True when the failed request may still have reached the server (see
    #: :class:`TransportError`; a 504 too): a cancel must then be proven, not assumed lost.
    maybe_sent: bool = False


class ConfigurationError(CadenzaError, ValueError):
    """A setting is missing or unsafe (for example ``http://`` to a remote host)."""


class InvalidOrderIdError(CadenzaError, ValueError):
    """An order or account id that cannot be sent: empty, not a str, too long, unsafe characters."""


class ApiError(CadenzaError):
    """The API answered with an error.

    ``status`` is the HTTP status (``None`` for a WebSocket RPC error), ``errno``
    the envelope's error number, ``message`` the server's text and
    ``request_id`` the server's request id when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        errno: int | None = None,
        request_id: str | None = None,
    ) -> None:
        message = redact_in_scope(message)
        super().__init__(message)
        self.message = message
        self.status = status
        self.errno = errno
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.errno:
            parts.append(f"errno={self.errno}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " ".join(parts) if len(parts) == 1 else f"{parts[0]} ({', '.join(parts[1:])})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, status={self.status!r}, "
            f"errno={self.errno!r}, request_id={self.request_id!r})"
        )


class InvalidRequestError(ApiError):
    """400: the request was malformed (for example a missing order id)."""


class OrderNotCancellableError(ApiError):
    """400 "cannot cancel": the order is already filled, cancelled or otherwise final."""


class AuthenticationError(ApiError):
    """401: the token is invalid or expired, and a fresh one did not help."""


class PermissionDeniedError(ApiError):
    """403: the token may not act on this order or account."""


class OrderNotFoundError(ApiError):
    """404: no such order (or not visible to this token)."""


class RateLimitError(ApiError):
    """429: too many requests; ``retry_after`` is the server's advice in seconds."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 429,
        errno: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, errno=errno, request_id=request_id)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx: the server failed; retried per the retry policy before this is raised."""


class UnexpectedResponseError(ApiError):
    """The server answered with a status or body this SDK does not understand."""


class ResponseTooLargeError(UnexpectedResponseError):
    """A reply body over ``ClientConfig.max_response_size``, or a compressed one.

    Refused before it is read whole (the connection is dropped): memory per
    reply stays bounded whatever the server sends. ``limit`` is the cap in bytes.
    """

    limit: int | None = None


class TransportError(CadenzaError):
    """The request failed on the way: refused, reset, timed out, TLS.

    ``maybe_sent`` is False when the request provably never reached the
    server (connection refused, DNS or TLS failure, a deadline that passed
    before sending) and True when it may have (a timeout or a connection
    lost after the request went out). ``lasting`` is True when waiting
    cannot help, a fault of the set-up: a DNS name that does not exist, a
    TLS certificate refused. A cancel or a submit retries the others while
    its deadline allows, and fails at once on a lasting one.
    """

    def __init__(self, message: str, *, maybe_sent: bool = True, lasting: bool = False) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent
        self.lasting = lasting


class ConfirmationTimeout(CadenzaError):
    """No terminal state was proven before the deadline.

    ``last_known`` is the freshest state the SDK saw (from the HTTP reply, an
    event or the final REST look-up), or ``None``. The SDK never invents a
    final state: the order may still be live on the exchange.
    """

    def __init__(self, order_id: str, last_known: TradeOrder | None, timeout: float) -> None:
        status = last_known.status if last_known is not None else "unknown"
        super().__init__(
            f"order {order_id}: no terminal state within {timeout:g}s (last known status: {status})"
        )
        self.order_id: str | None = order_id
        self.last_known = last_known
        self.timeout = timeout


class StreamError(CadenzaError):
    """The WebSocket stream failed for good: refused token, protocol violation, terminal close.

    ``code`` is the close or error code when there is one.
    """

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(redact_in_scope(message))
        self.code = code


class StreamAuthenticationError(AuthenticationError, StreamError):
    """The WebSocket refused the token (connect refused, close 3500, refreshes refused).

    Both an :class:`AuthenticationError` (catch it with the REST one) and a
    :class:`StreamError` (the stream stopped for good); ``code`` and
    ``errno`` hold the Centrifugo code.
    """

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message, errno=code)
        self.code = code


class StreamRpcError(ApiError):
    """A Centrifugo error reply to a subscribe or an RPC; ``errno`` is the Centrifugo code.

    ``temporary`` is True when retrying later may succeed.
    """

    def __init__(self, message: str, *, errno: int, temporary: bool = False) -> None:
        super().__init__(message, errno=errno)
        self.temporary = temporary


class ClientClosedError(CadenzaError):
    """The client was closed; a closed client cannot be reopened."""


class ApiNotFoundError(UnexpectedResponseError, ConfigurationError):
    """HTTP 404 with a body that is not the API's envelope: no Cadenza API at ``api_url``.

    The API answers an unknown order with its envelope (an
    :class:`OrderNotFoundError`); a bare 404 comes from a server or a path
    that is not the API, most often an ``api_url`` with a path
    (``.../api/v3``): it is the base URL alone. Both an
    :class:`ApiError` (``status`` 404) and a :class:`ConfigurationError`.
    ``cadenza-async doctor`` checks the settings.
    """


class BlockingInEventLoopError(CadenzaError, RuntimeError):
    """A :class:`~cadenza_async.BlockingCadenzaClient` method was called from a running event loop.

    It would block that loop (every task on it stalls) for the whole call:
    in ``async`` code, and in a Jupyter cell (which runs on an event loop),
    use :class:`~cadenza_async.CadenzaClient` with ``await`` instead.
    """


# --------------------------------------------------------------------------- tables

#: errno the API gives for "order cannot be cancelled" (already filled/cancelled).
ERRNO_NOT_CANCELLABLE: Final = -111001
_NOT_CANCELLABLE_TEXT: Final = (
    "cannot cancel",
    "cannot be cancel",
    "can not be cancel",
    "not cancellable",
    "not cancelable",
    "already filled",
    "already cancel",
)


def is_not_cancellable(errno: int | None, message: str) -> bool:
    """True when an error answer means "already final, cannot cancel" (errno or text)."""
    if errno == ERRNO_NOT_CANCELLABLE:
        return True
    text = message.lower()
    return any(marker in text for marker in _NOT_CANCELLABLE_TEXT)


_STATUS_ERRORS: Final[dict[int, type[ApiError]]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: OrderNotFoundError,
    429: RateLimitError,
}


def _kind_by_status(status: int, code: int, text: str) -> type[ApiError]:
    """The error class of an RPC error that carries the HTTP status of the same error."""
    if status == 400:
        return OrderNotCancellableError if is_not_cancellable(code, text) else InvalidRequestError
    if status >= 500:
        return ServerError
    return _STATUS_ERRORS.get(status, UnexpectedResponseError)


def _kind_by_code(code: int, text: str, temporary: bool) -> type[ApiError]:
    """The error class of an RPC error without a status: by its code, then its text."""
    lowered = text.lower()
    if code in (404, 102) or "not found" in lowered:
        return OrderNotFoundError
    if code in (403, 103) or "permission" in lowered or "forbidden" in lowered:
        return PermissionDeniedError
    if is_not_cancellable(code, text) or "cannot" in lowered or code == 409:
        return OrderNotCancellableError
    if temporary or code in (100, 500, 502, 503, 504):
        return ServerError
    return InvalidRequestError


def error_for_rpc(code: int, message: str, *, status: int = 0, temporary: bool = False) -> ApiError:
    """The error of the same meaning as an RPC error reply (one table for both transports).

    The reply's HTTP ``status`` decides when the server sends one (as the
    REST error table); otherwise its code, then its text:

    ==========================================  ============================
    code / text                                 error
    ==========================================  ============================
    404, 102, "not found"                       :class:`OrderNotFoundError`
    403, 103, "permission", "forbidden"         :class:`PermissionDeniedError`
    -111001, 409, "cannot cancel", "cannot"...  :class:`OrderNotCancellableError`
    temporary, 100, 500, 502, 503, 504          :class:`ServerError`
    anything else                               :class:`InvalidRequestError`
    ==========================================  ============================
    """
    text = message or "rpc error"
    kind = _kind_by_status(status, code, text) if status else _kind_by_code(code, text, temporary)
    return kind(text, status=status or None, errno=code)
