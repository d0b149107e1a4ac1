"""TokenSource: the one place that knows the access token and how to get a fresh one.

Also the REST side's rule for a refused token (:class:`RefreshRule`, pure).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

from .config import TokenProvider
from .errors import AuthenticationError

__all__ = ["MAX_REFRESHES", "RefreshRule", "TokenSource"]

#: Fresh tokens one REST call may ask for after 401s, each for a different refused token.
MAX_REFRESHES = 3


class TokenSource:
    """Hands out the current token and refreshes it once per expiry, however many ask.

    A plain string token cannot be refreshed: :meth:`refresh` returns it
    unchanged and the caller's retry fails with the server's auth error. A
    callable provider (sync or async) is called at first use and again on
    each :meth:`refresh`; concurrent refreshes of the same stale token share
    one call. A provider that raises, or returns something that is not a
    non-empty str, gives :class:`AuthenticationError` (its cause is dropped:
    it may hold secrets); so does an async provider that does not answer
    within the ``timeout`` given to :meth:`get` or :meth:`refresh` (the
    timeout covers waiting for another caller's refresh too; a sync
    provider that blocks cannot be interrupted).

    Every user of the token (HTTP and the stream) refreshes keyed on the
    token the server refused, so one expiry costs one provider call and a
    token someone else already fetched is reused.
    """

    __slots__ = ("_current", "_lock", "_provider", "refresh_count")

    def __init__(self, provider: TokenProvider) -> None:
        self._provider = provider
        self._current: str | None = provider if isinstance(provider, str) else None
        self._lock: asyncio.Lock | None = None
        self.refresh_count = 0

    def __repr__(self) -> str:
        return "<TokenSource token=***>"

    @property
    def refreshable(self) -> bool:
        """True when a fresh token can be fetched (the provider is a callable)."""
        return not isinstance(self._provider, str)

    @property
    def current(self) -> str | None:
        """The token in use, or ``None`` before the first :meth:`get`."""
        return self._current

    async def get(self, *, timeout: float | None = None) -> str:
        """The current token, fetching it from the provider on first use.

        Raises :class:`AuthenticationError` if the provider fails, returns no
        token or takes longer than ``timeout`` seconds.
        """
        current = self._current
        if current is not None:
            return current
        return await self._fetch_within(None, timeout)

    async def refresh(self, stale: str | None, *, timeout: float | None = None) -> str:
        """A token other than ``stale`` if the provider gives one.

        If another caller already replaced ``stale``, that token is returned
        without calling the provider again. The provider may hand back
        ``stale`` itself (it has nothing newer): the caller decides what
        that means. Raises as :meth:`get`.
        """
        if not self.refreshable:
            return await self.get()
        return await self._fetch_within(stale, timeout)

    async def _fetch_within(self, stale: str | None, timeout: float | None) -> str:
        if timeout is None:
            return await self._fetch(stale)
        try:
            return await asyncio.wait_for(self._fetch(stale), timeout)
        except asyncio.TimeoutError:
            pass
        raise AuthenticationError(f"the token provider did not answer within {timeout:g}s")

    async def _fetch(self, stale: str | None) -> str:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            current = self._current
            if current is not None and current != stale:
                return current
            provider = self._provider
            if isinstance(provider, str):  # pragma: no cover - guarded by callers
                return provider
            failed: str | None = None
            try:
                value = _call(provider)
                token = await value if inspect.isawaitable(value) else value
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The provider's own TimeoutError ends here too, reported by
                # name: only _fetch_within's wait_for means "did not answer".
                failed = type(exc).__name__
            if failed is not None:
                # Raised outside the except block so the provider's exception
                # (which may quote the secret) is not kept even as __context__.
                raise AuthenticationError(f"the token provider failed: {failed}")
            if not isinstance(token, str) or not token:
                raise AuthenticationError("the token provider returned no token")
            if current is not None:
                self.refresh_count += 1
            self._current = token
            return token


class RefreshRule:
    """The 401 rule of one REST call: when a refused token is worth a fresh one. Pure.

    A token refused is refreshed once. A fresh token refused at once (its
    first answer is a 401) is final: the server does not take the
    provider's tokens. One refused after other answers (a long call:
    resets, retries, pauses) may have expired meanwhile and is refreshed
    again, at most :data:`MAX_REFRESHES` times per call. A provider that
    hands back a token already refused ends it too.
    """

    __slots__ = ("_fresh_untried", "_refused", "max_refreshes")

    def __init__(self, max_refreshes: int = MAX_REFRESHES) -> None:
        self.max_refreshes = max_refreshes
        self._refused: list[str] = []
        self._fresh_untried = False

    def answered(self) -> None:
        """The server answered something other than 401, or did not answer: no verdict on the token."""
        self._fresh_untried = False

    def should_refresh(self, token: str, refreshable: bool) -> bool:
        """``token`` was refused (401): True when a fresh one is worth asking for.

        ``refreshable``: the token comes from a provider that can be asked
        again. False means the 401 is final.
        """
        refused = self._refused
        if (
            self._fresh_untried
            or token in refused
            or len(refused) >= self.max_refreshes
            or not refreshable
        ):
            return False
        refused.append(token)
        return True

    def retry_with(self, fresh: str, refused: str) -> bool:
        """The provider handed out ``fresh`` for ``refused``: True when worth sending with it."""
        self._fresh_untried = True
        return fresh != refused and fresh not in self._refused


def _call(provider: Callable[[], str] | Callable[[], Awaitable[str]]) -> str | Awaitable[str]:
    return provider()
