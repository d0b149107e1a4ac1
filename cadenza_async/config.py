"""Client settings: ClientConfig, Timeouts, RetryPolicy, and reading them from the environment.

==============================  ==========================================  =========
setting                         meaning                                     default
==============================  ==========================================  =========
``token``                       str, or a sync/async callable returning     required
                                a fresh access token (called again after
                                a 401 or a WebSocket "token expired")
``api_url``                     REST base URL                               UAT
``ws_url``                      Centrifugo WebSocket URL                    UAT
``trading_account_id``          account subscribed at start                 None
``timeouts.connect``            TCP/TLS/WebSocket connect, seconds          10
``timeouts.request``            one HTTP request, seconds                   10
``timeouts.confirm``            ``*_and_confirm`` default, seconds          10
``retry.attempts``              tries of an idempotent request              3
``retry.base_delay``            first backoff cap, seconds                  0.05
``retry.max_delay``             backoff cap, seconds                        2
``cancel_via``                  ``"http"`` or ``"ws"``                      http
``submit_via``                  ``"http"`` or ``"ws"`` (the submit RPC)     http
``wire``                        what is written: ``"current"`` (the         current
                                official models: the RPC submit nested
                                under ``tradeOrder``) or ``"legacy"``
                                (flat); both are always read
``allow_insecure``              allow http:// and ws:// to remote hosts     False
``drain_timeout``               close waits this long for background work   10
``max_rate``                    cancels per second, all paths (None: off)   None
``order_updates_buffer``        ``order_updates()`` queue bound             10000
``channel_idle_release``        an account's channel is released after      300
                                this many seconds without a pending
                                cancel (None: kept for good)
``ping_grace``                  added to the server's ping interval before  10
                                a silent WebSocket is dropped, seconds
``reconnect_min_delay``         WebSocket reconnect backoff floor, seconds  0.1
``reconnect_max_delay``         WebSocket reconnect backoff cap, seconds    20
``max_message_size``            largest WebSocket message accepted, bytes   1048576
                                (larger: close 1009, reconnect, recover)
``max_response_size``           largest HTTP reply body accepted, bytes     4194304
                                (larger, or compressed:
                                ``ResponseTooLargeError``)
``proxy``                       ``http://`` or ``https://`` proxy URL for   None
                                both transports; never used for loopback
                                hosts. Proxy environment variables
                                (``HTTPS_PROXY``...) are ignored
==============================  ==========================================  =========

Environment (``ClientConfig.from_env``): ``CADENZA_TOKEN``, ``CADENZA_API_URL``,
``CADENZA_WS_URL``, ``CADENZA_TRADING_ACCOUNT_ID``, ``CADENZA_WIRE``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from ._validate import check_account_id, check_proxy_url, check_url, is_loopback_host
from .errors import ConfigurationError

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_WS_URL",
    "ClientConfig",
    "RetryPolicy",
    "Timeouts",
    "TokenProvider",
]

DEFAULT_API_URL = "https://cadenza-api-uat.algo724.com"
DEFAULT_WS_URL = "wss://cadenza-ws-uat.algo724.com/connection/websocket"

TokenProvider = str | Callable[[], str] | Callable[[], Awaitable[str]]


def _is_number(value: object) -> bool:
    """True for a finite int or float (bool excluded)."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value == value
        and value not in (float("inf"), float("-inf"))
    )


@dataclass(frozen=True)
class Timeouts:
    """Deadlines, in seconds."""

    connect: float = 10.0
    request: float = 10.0
    confirm: float = 10.0

    def __post_init__(self) -> None:
        for name in ("connect", "request", "confirm"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ConfigurationError(f"Timeouts.{name} must be a positive number")


@dataclass(frozen=True)
class RetryPolicy:
    """How an idempotent request is retried on transport errors and 5xx.

    Delays use full jitter: ``uniform(0, min(max_delay, base_delay * 2**n))``.
    ``max_retry_after`` caps how long a 429's ``Retry-After`` is honoured
    before :class:`~cadenza_async.errors.RateLimitError` is raised instead.
    """

    attempts: int = 3
    base_delay: float = 0.05
    max_delay: float = 2.0
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ConfigurationError("RetryPolicy.attempts must be an int >= 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ConfigurationError("RetryPolicy delays must not be negative")

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The sleep before each retry: ``attempts - 1`` full-jitter delays."""
        uniform = (rng or random).uniform
        for n in range(self.attempts - 1):
            yield uniform(0.0, min(self.max_delay, self.base_delay * (2**n)))


_S = TypeVar("_S", "Timeouts", "RetryPolicy")


def _settings(kind: type[_S], value: object, name: str) -> _S:
    """``value`` as a ``kind``: one already, or a mapping of its fields (``{"confirm": 1}``)."""
    if isinstance(value, kind):
        return value
    if isinstance(value, Mapping):
        try:
            return kind(**value)
        except TypeError as exc:
            raise ConfigurationError(f"{name}: {exc}") from None
    raise ConfigurationError(
        f"{name} must be a {kind.__name__} or a mapping of its fields, not {type(value).__name__}"
    )


@dataclass(frozen=True)
class ClientConfig:
    """Everything a :class:`~cadenza_async.CadenzaClient` needs; see the module table.

    Raises :class:`~cadenza_async.errors.ConfigurationError` on unsafe or
    malformed settings. The token is never shown by ``repr``.
    """

    token: TokenProvider = field(repr=False)
    api_url: str = DEFAULT_API_URL
    ws_url: str = DEFAULT_WS_URL
    trading_account_id: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    cancel_via: Literal["http", "ws"] = "http"
    submit_via: Literal["http", "ws"] = "http"
    wire: Literal["current", "legacy"] = "current"
    allow_insecure: bool = False
    drain_timeout: float = 10.0
    max_rate: float | None = None
    order_updates_buffer: int = 10_000
    channel_idle_release: float | None = 300.0
    ping_grace: float = 10.0
    reconnect_min_delay: float = 0.1
    reconnect_max_delay: float = 20.0
    max_message_size: int = 2**20
    max_response_size: int = 4 * 2**20
    proxy: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "timeouts", _settings(Timeouts, self.timeouts, "timeouts"))
        object.__setattr__(self, "retry", _settings(RetryPolicy, self.retry, "retry"))
        self._check_token()
        self._check_endpoints()
        self._check_choices()
        self._check_numbers()

    def _check_token(self) -> None:
        if isinstance(self.token, str):
            if not self.token:
                raise ConfigurationError("token must not be empty")
        elif not callable(self.token):
            raise ConfigurationError("token must be a str or a callable returning one")

    def _check_endpoints(self) -> None:
        """The URLs (normalized in place), the default account and the proxy."""
        for name, secure, insecure in (("api_url", "https", "http"), ("ws_url", "wss", "ws")):
            url = check_url(
                getattr(self, name),
                secure=secure,
                insecure=insecure,
                allow_insecure=self.allow_insecure,
                what=name,
            )
            object.__setattr__(self, name, url)
        if self.trading_account_id is not None:
            try:
                account = check_account_id(self.trading_account_id)
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from None
            object.__setattr__(self, "trading_account_id", account)  # (lower case)
        if self.proxy is not None:
            check_proxy_url(self.proxy)

    def _check_choices(self) -> None:
        if self.cancel_via not in ("http", "ws"):
            raise ConfigurationError("cancel_via must be 'http' or 'ws'")
        if self.submit_via not in ("http", "ws"):
            raise ConfigurationError("submit_via must be 'http' or 'ws'")
        if self.wire not in ("current", "legacy"):
            raise ConfigurationError("wire must be 'current' or 'legacy'")

    def _check_numbers(self) -> None:
        self._check_limits()
        self._check_delays()

    def _check_limits(self) -> None:
        for name in ("max_message_size", "max_response_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1024:
                raise ConfigurationError(f"{name} must be an int >= 1024 (bytes)")
        if self.drain_timeout < 0:
            raise ConfigurationError("drain_timeout must not be negative")
        if self.max_rate is not None and self.max_rate <= 0:
            raise ConfigurationError("max_rate must be positive or None")
        if self.order_updates_buffer < 1:
            raise ConfigurationError("order_updates_buffer must be >= 1")
        idle = self.channel_idle_release
        if idle is not None and (
            not isinstance(idle, (int, float)) or isinstance(idle, bool) or not idle > 0
        ):
            raise ConfigurationError(
                "channel_idle_release must be a positive number of seconds, "
                "or None (or math.inf) to keep channels for good"
            )

    def _check_delays(self) -> None:
        for name in ("ping_grace", "reconnect_min_delay"):
            value = getattr(self, name)
            if not _is_number(value) or value <= 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds")
        if (
            not _is_number(self.reconnect_max_delay)
            or self.reconnect_max_delay < self.reconnect_min_delay
        ):
            raise ConfigurationError("reconnect_max_delay must be >= reconnect_min_delay")

    def proxy_for(self, url: str) -> str | None:
        """The proxy to reach ``url`` through: ``proxy``, or None for a loopback host."""
        if self.proxy is None:
            return None
        host = urlsplit(url).hostname
        return None if host is None or is_loopback_host(host) else self.proxy

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ClientConfig:
        """Build a config from ``CADENZA_*`` variables; keyword overrides win.

        Raises :class:`ConfigurationError` when no token is given.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for key, name in (
            ("token", "CADENZA_TOKEN"),
            ("api_url", "CADENZA_API_URL"),
            ("ws_url", "CADENZA_WS_URL"),
            ("trading_account_id", "CADENZA_TRADING_ACCOUNT_ID"),
            ("wire", "CADENZA_WIRE"),
        ):
            value = env.get(name)
            if value:
                values[key] = value
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "token" not in values:
            raise ConfigurationError("no token: set CADENZA_TOKEN or pass token=")
        return cls(**values)

    def with_changes(self, **changes: Any) -> ClientConfig:
        """A copy with some settings changed (validated again)."""
        return replace(self, **changes)
