"""StreamTokens: the token each connection of the order stream carries, and each refresh.

Tokens come from the client's shared
:class:`~cadenza_async._auth.TokenSource`, always refreshed keyed on the
token the server refused or the connection uses, so a token the HTTP side
already refreshed is reused without calling the provider again:

* connect result with ``expires``/``ttl``: a ``refresh`` command is sent
  ``min(10 s, ttl / 2)`` before the ttl runs out, and each refresh reply's
  ttl schedules the next one. If the provider fails then, or hands back the
  connection's own token, the connection is kept until the server expires
  it (close 3005), which asks the provider again (below).
* connect answered with error 109, a ``refresh`` answered with an error
  (a temporary one: the token is not refused, the stream just reconnects),
  close 3005: the provider is asked for a fresh token (keyed on the refused
  one) and the stream reconnects, at once the first time, with backoff after.
  After 3005 a provider with no other token gets its token tried once more
  (the connect then answers 109 if it really expired).
* the stream fails for good (``StreamAuthenticationError`` whose ``code``
  is the refusal's) when the provider hands back the very token the server
  just refused with 109 or a refresh error, when the provider fails, returns
  no token or does not answer within ``timeout`` (an async provider; the
  refresh before the ttl then keeps the connection as above), and after
  :data:`~cadenza_async.protocol.tokens.MAX_TOKEN_REFUSALS` tokens in a row
  were refused without a connect succeeding in between: a provider that
  keeps returning tokens the server refuses ends in an error after a bounded
  number of connects, never a loop. (A close with 3500, invalid token, is
  the stream's: it never reconnects.)

What the server's answers mean is decided by the sans-I/O
:class:`~cadenza_async.protocol.tokens.TokenRefusals`; this asks the
provider and remembers which token each connection and refresh carried.
"""

from __future__ import annotations

import logging

from ._auth import TokenSource
from .errors import AuthenticationError, StreamAuthenticationError
from .protocol.tokens import TokenRefusals

__all__ = ["StreamTokens"]


class StreamTokens:
    """The tokens of one stream's connections; see the module docstring.

    ``connection`` is the token the current connection authenticated with
    (its connect, then each refresh that went through).
    """

    __slots__ = ("_log", "_refresh_cmd", "_source", "_timeout", "connection", "refusals")

    def __init__(self, source: TokenSource, *, timeout: float, log: logging.Logger) -> None:
        self._source = source
        self._timeout = timeout
        self._log = log
        self.connection = ""
        # The refresh command in flight: its id and the token it carries.
        self._refresh_cmd: tuple[int, str] | None = None
        self.refusals = TokenRefusals()

    def secrets(self) -> tuple[str | None, ...]:
        """Every token the stream holds, sent or was refused: scrubbed from its errors and logs."""
        cmd = self._refresh_cmd
        return (
            self._source.current,
            self.connection,
            self.refusals.stale,
            cmd[1] if cmd else None,
        )

    async def for_connect(self) -> str:
        """The token the next connect carries (a fresh one if the server refused the last).

        Raises :class:`StreamAuthenticationError` when the provider fails or
        does not answer in time, when it hands back the token the server
        refused, or after too many refusals in a row.
        """
        refusals = self.refusals
        give_up = refusals.before_fetch()
        if give_up is None:
            token = await self._fetch(refusals.stale)
            give_up = refusals.after_fetch(token)
            if give_up is None:
                self.connection = token
                self._refresh_cmd = None
                return token
        raise StreamAuthenticationError(give_up.message, code=give_up.code)

    async def _fetch(self, stale: str | None) -> str:
        """The provider's token, fresh (keyed on ``stale``) when one was refused."""
        try:
            if stale is None:
                return await self._source.get(timeout=self._timeout)
            return await self._source.refresh(stale, timeout=self._timeout)
        except AuthenticationError as exc:
            raise StreamAuthenticationError(f"no token for the WebSocket: {exc.message}") from None

    async def for_refresh(self) -> str | None:
        """A fresher token for the open connection, or ``None`` (nothing to send; logged).

        Keyed on the connection's token: a token the HTTP side already
        fetched is used without calling the provider. When the provider fails
        or hands back the same token, the connection runs until the server
        expires it (close 3005) and the reconnect asks the provider again.
        """
        stale = self.connection
        try:
            token = await self._source.refresh(stale, timeout=self._timeout)
        except AuthenticationError as exc:
            self._log.warning(
                "stream: token refresh failed (%s); keeping the connection until it expires",
                exc.message,
            )
            return None
        if token == stale:
            self._log.info(
                "stream: the token provider has no newer token; "
                "keeping the connection until it expires"
            )
            return None
        return token

    def refresh_sent(self, command_id: int, token: str) -> None:
        """The refresh command ``command_id`` carrying ``token`` was queued."""
        self._refresh_cmd = (command_id, token)

    def refresh_answered(self, command_id: int) -> None:
        """A refresh went through: the connection runs on its token from now on."""
        cmd = self._refresh_cmd
        if cmd is not None and cmd[0] == command_id:
            self.connection = cmd[1]
            self._refresh_cmd = None

    def refused(self, method: str, command_id: int, code: int) -> bool:
        """The server refused a token (error ``code`` to a connect or refresh); True the first time in a row.

        The token refused is the one the refresh ``command_id`` carried, else
        the connection's.
        """
        token = self.connection
        cmd = self._refresh_cmd
        if method == "refresh" and cmd is not None and cmd[0] == command_id:
            self._refresh_cmd = None
            token = cmd[1]
        return self.refusals.refused(token, code)

    def expired(self, code: int) -> None:
        """The server ended the connection because its token expired (close 3005)."""
        self.refusals.expired(self.connection, code)

    def connected(self) -> None:
        """A connect succeeded: earlier refusals no longer count as "in a row"."""
        self.refusals.connected()
