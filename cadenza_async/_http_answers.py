"""Answers: an HTTP answer read as the SDK's result or its error (the envelope, the status table).

Every REST answer passes here once the request is over (see
:mod:`cadenza_async.http` for the table of which status raises what). Every
message built from server text (an error envelope, a request id, a
``Location``) is scrubbed of the tokens in use and clipped, so a server that
echoes the ``Authorization`` header does not put the token into an exception.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Final

import aiohttp
import msgspec

from .errors import (
    ApiError,
    ApiNotFoundError,
    AuthenticationError,
    InvalidRequestError,
    OrderNotCancellableError,
    OrderNotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    ServerError,
    UnexpectedResponseError,
    is_not_cancellable,
)
from .models import Envelope, TradeOrder, decode_envelope, decode_order, decode_order_list

__all__ = [
    "DECODE_ERRORS",
    "Answers",
    "clip",
    "order_from",
    "orders_from",
    "parse_retry_after",
]

DECODE_ERRORS: Final = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)
_MAX_MESSAGE: Final = 300


def clip(text: str) -> str:
    """``text`` cut to the length an error message may have."""
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    ``None`` when the header is absent or unreadable; never negative.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _is_envelope(raw: bytes) -> bool:
    """True for a JSON object with the envelope's own fields (``success`` or ``errno``)."""
    try:
        document = msgspec.json.decode(raw)
    except (*DECODE_ERRORS, UnicodeDecodeError):
        return False
    return isinstance(document, dict) and ("success" in document or "errno" in document)


class Answers:
    """The errors and envelopes of HTTP answers, their server text passed through ``scrub``."""

    __slots__ = ("_base", "_scrub")

    def __init__(self, scrub: Callable[[str], str], base: str = "") -> None:
        self._scrub = scrub
        self._base = base

    def success_envelope(self, raw: bytes, status: int, resp: aiohttp.ClientResponse) -> Envelope:
        try:
            envelope = decode_envelope(raw)
        except DECODE_ERRORS:
            raise UnexpectedResponseError(
                f"HTTP {status} with a body that is not the API envelope",
                status=status,
                request_id=self.request_id(None, resp),
            ) from None
        if envelope.success:
            return envelope
        message = envelope.error or "the server answered success=false"
        request_id = self.request_id(envelope, resp)
        cls: type[ApiError]
        if is_not_cancellable(envelope.errno, message):
            cls = OrderNotCancellableError
        else:
            cls = UnexpectedResponseError
        raise cls(
            self._scrub(message), status=status, errno=envelope.errno or None, request_id=request_id
        )

    def request_id(self, envelope: Envelope | None, resp: aiohttp.ClientResponse) -> str | None:
        if envelope is not None and envelope.details is not None and envelope.details.request_id:
            return self._scrub(envelope.details.request_id)
        header = resp.headers.get("X-Request-Id")
        return None if header is None else self._scrub(header)

    def api_error(
        self, cls: type[ApiError], status: int, raw: bytes, resp: aiohttp.ClientResponse
    ) -> ApiError:
        envelope: Envelope | None
        try:
            envelope = decode_envelope(raw)
        except DECODE_ERRORS:
            envelope = None
        if envelope is not None and envelope.error:
            message = envelope.error
        else:
            message = f"HTTP {status} {resp.reason or ''}".rstrip()
        errno = envelope.errno if envelope is not None and envelope.errno else None
        return cls(
            self._scrub(message),
            status=status,
            errno=errno,
            request_id=self.request_id(envelope, resp),
        )

    def error_for_status(self, status: int, raw: bytes, resp: aiohttp.ClientResponse) -> ApiError:
        if status == 400:
            error = self.api_error(InvalidRequestError, status, raw, resp)
            if is_not_cancellable(error.errno, error.message):
                return OrderNotCancellableError(
                    error.message, status=status, errno=error.errno, request_id=error.request_id
                )
            return error
        if status == 403:
            return self.api_error(PermissionDeniedError, status, raw, resp)
        if status == 404:
            if not _is_envelope(raw):
                return self.not_the_api(resp)
            return self.api_error(OrderNotFoundError, status, raw, resp)
        if status >= 500:
            return self.api_error(ServerError, status, raw, resp)
        error = self.api_error(UnexpectedResponseError, status, raw, resp)
        if 300 <= status < 400:
            location = resp.headers.get("Location")
            error.message = self._scrub(
                f"HTTP {status} redirect"
                + (f" to {location}" if location else "")
                + " not followed"
            )
        return error

    def not_the_api(self, resp: aiohttp.ClientResponse) -> ApiError:
        """A 404 that is not the API's (no envelope): the base URL is wrong."""
        return ApiNotFoundError(
            self._scrub(
                f"HTTP 404 from {resp.url.with_query(None)} is not the API's answer (no "
                f"envelope): there is no Cadenza API under api_url {self._base}, which is the "
                "API's base URL alone (e.g. https://cadenza-api-uat.algo724.com, without "
                "/api/v3); `cadenza-async doctor` checks the settings"
            ),
            status=404,
            request_id=resp.headers.get("X-Request-Id"),
        )

    def rate_limit_error(
        self, status: int, raw: bytes, resp: aiohttp.ClientResponse, retry_after: float | None
    ) -> ApiError:
        error = self.api_error(RateLimitError, status, raw, resp)
        if isinstance(error, RateLimitError):
            error.retry_after = retry_after
        return error

    def token_refused(self, status: int, raw: bytes, resp: aiohttp.ClientResponse) -> ApiError:
        error = self.api_error(AuthenticationError, status, raw, resp)
        error.message = "the REST API refused the token: " + error.message
        return error

    def too_large(
        self, resp: aiohttp.ClientResponse, message: str, limit: int
    ) -> ResponseTooLargeError:
        error = ResponseTooLargeError(
            self._scrub(message), status=resp.status, request_id=self.request_id(None, resp)
        )
        error.limit = limit
        return error


def order_from(envelope: Envelope) -> TradeOrder:
    """The trade order a success envelope's data holds; raises :class:`UnexpectedResponseError`."""
    try:
        return decode_order(envelope.data)
    except DECODE_ERRORS as exc:
        raise _not_data(envelope, "a trade order", exc) from None


def orders_from(envelope: Envelope) -> list[TradeOrder]:
    """The trade orders a success envelope's data holds; raises :class:`UnexpectedResponseError`."""
    try:
        return decode_order_list(envelope.data)
    except DECODE_ERRORS as exc:
        raise _not_data(envelope, "a list of trade orders", exc) from None


def _not_data(envelope: Envelope, what: str, exc: Exception) -> UnexpectedResponseError:
    return UnexpectedResponseError(
        f"the answer's data is not {what}: {clip(str(exc))}",
        status=200,
        request_id=envelope.details.request_id if envelope.details else None,
    )
