"""cadenza-async: an async-first SDK for the Cadenza trading API.

``await client.cancel_and_confirm(order_id)`` returns when the exchange has
actually processed the cancellation, not when the HTTP call returned.
"""

from __future__ import annotations

from ._default import aclose_default_client, cancel_and_confirm, default_client
from ._validate import Unlisted
from ._version import __version__
from .blocking import BlockingCadenzaClient, BlockingCancelHandle
from .cancels import CancelHandle
from .client import CadenzaClient, ClientStats
from .config import ClientConfig, RetryPolicy, Timeouts
from .errors import (
    ApiError,
    ApiNotFoundError,
    AuthenticationError,
    BlockingInEventLoopError,
    CadenzaError,
    ClientClosedError,
    ConfigurationError,
    ConfirmationTimeout,
    InvalidOrderIdError,
    InvalidRequestError,
    OrderNotCancellableError,
    OrderNotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    ServerError,
    StreamAuthenticationError,
    StreamError,
    StreamRpcError,
    TransportError,
    UnexpectedResponseError,
)
from .http import OrderPage
from .models import (
    TERMINAL_STATUSES,
    CancelResult,
    NewOrder,
    OrderStatus,
    ReplaceResult,
    SubmitResult,
    TradeOrder,
    is_terminal,
)
from .placing import SubmitConfirmationTimeout

__all__ = [
    "TERMINAL_STATUSES",
    "ApiError",
    "ApiNotFoundError",
    "AuthenticationError",
    "BlockingCadenzaClient",
    "BlockingCancelHandle",
    "BlockingInEventLoopError",
    "CadenzaClient",
    "CadenzaError",
    "CancelHandle",
    "CancelResult",
    "ClientClosedError",
    "ClientConfig",
    "ClientStats",
    "ConfigurationError",
    "ConfirmationTimeout",
    "InvalidOrderIdError",
    "InvalidRequestError",
    "NewOrder",
    "OrderNotCancellableError",
    "OrderNotFoundError",
    "OrderPage",
    "OrderStatus",
    "PermissionDeniedError",
    "RateLimitError",
    "ReplaceResult",
    "ResponseTooLargeError",
    "RetryPolicy",
    "ServerError",
    "StreamAuthenticationError",
    "StreamError",
    "StreamRpcError",
    "SubmitConfirmationTimeout",
    "SubmitResult",
    "Timeouts",
    "TradeOrder",
    "TransportError",
    "UnexpectedResponseError",
    "Unlisted",
    "__version__",
    "aclose_default_client",
    "cancel_and_confirm",
    "default_client",
    "is_terminal",
]
