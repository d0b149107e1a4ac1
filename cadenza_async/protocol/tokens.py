"""Token refusals on the WebSocket: which token the next connect asks for, and when to give up.

Rule of this file: no sockets, no clocks, no tasks. The stream tells
:class:`TokenRefusals` what the server said about a token and asks it,
before and after each fetch from the token provider, whether to go on:

=====================================  ==============================================
the server                             what happens next
=====================================  ==============================================
refused the token (connect error 109   the next connect refreshes keyed on it (at once
or a refresh answered with an error)   the first time in a row); counts toward
                                       :data:`MAX_TOKEN_REFUSALS`
expired the connection (close 3005)    the next connect refreshes keyed on it, with
                                       backoff; does not count (that token worked)
accepted a connect                     the count starts again from zero
=====================================  ==============================================

and the stream gives up (:class:`GiveUp`, a ``StreamAuthenticationError`` for
the caller) when, before a fetch, :data:`MAX_TOKEN_REFUSALS` tokens in a row
were refused, or when, after it, the provider handed back the very token the
server refused (not after 3005: the next connect is left to tell, and its 109
then counts). A provider that keeps returning tokens the server refuses so
ends in an error after a bounded number of connects, never a loop.
"""

from __future__ import annotations

from typing import Final, NamedTuple

__all__ = ["MAX_TOKEN_REFUSALS", "GiveUp", "TokenRefusals"]

MAX_TOKEN_REFUSALS: Final = 3
"""The stream fails when this many tokens in a row were refused (error 109 or a failed refresh).

"In a row": without a successful connect in between. Each refusal costs one
provider call and at most one connect.
"""


class GiveUp(NamedTuple):
    """Stop for good: the token provider has nothing the server takes. ``code``: the refusal's."""

    message: str
    code: int


class TokenRefusals:
    """What the server said about the stream's tokens since its last successful connect.

    ``stale`` is the token the next fetch refreshes keyed on (``None``: ask
    for the current token); see the module docstring for the rules.
    """

    __slots__ = ("_code", "_counts", "_refusals", "_stale", "max_refusals")

    def __init__(self, max_refusals: int = MAX_TOKEN_REFUSALS) -> None:
        self.max_refusals = max_refusals
        self._stale: str | None = None
        self._code = 0
        self._counts = False
        self._refusals = 0

    def __repr__(self) -> str:
        return f"<TokenRefusals refusals={self._refusals} stale={self._stale is not None}>"

    @property
    def stale(self) -> str | None:
        """The token the server refused or expired, until a fetch replaced it; else ``None``."""
        return self._stale

    @property
    def refusals(self) -> int:
        """Tokens refused in a row (connect error 109, failed refreshes) since the last connect."""
        return self._refusals

    def refused(self, token: str, code: int) -> bool:
        """The server refused ``token`` (error ``code``); True for the first refusal in a row.

        The first refusal in a row is worth reconnecting at once (the token
        had probably just expired); later ones wait out the backoff.
        """
        self._note(token, code, counts=True)
        self._refusals += 1
        return self._refusals <= 1

    def expired(self, token: str, code: int) -> None:
        """The server ended a connection that ran on ``token`` because it expired (close 3005)."""
        self._note(token, code, counts=False)

    def connected(self) -> None:
        """A connect succeeded: refusals no longer count as "in a row"."""
        self._refusals = 0

    def before_fetch(self) -> GiveUp | None:
        """Before asking the provider: a :class:`GiveUp` once too many tokens were refused."""
        if self._stale is not None and self._refusals >= self.max_refusals:
            return GiveUp(
                f"the WebSocket refused {self._refusals} tokens in a row from the token provider",
                self._code,
            )
        return None

    def after_fetch(self, token: str) -> GiveUp | None:
        """The provider handed out ``token``: a :class:`GiveUp` if it is the one just refused.

        Otherwise ``token`` is the one to connect with and ``stale`` is cleared.
        """
        if token == self._stale and self._counts:
            return GiveUp(
                f"the WebSocket refused the token ({self._code}) and the token provider "
                "has no other",
                self._code,
            )
        self._stale = None
        return None

    def _note(self, token: str, code: int, *, counts: bool) -> None:
        self._stale = token
        self._code = code
        self._counts = counts
