"""Redaction: the one place that takes tokens and credentials out of text the SDK shows.

Every message built from text the SDK does not control (a REST error
envelope, a Centrifugo refusal or close reason, a third-party log line)
passes through :func:`redact` before it reaches an exception, a log record
or a terminal. It removes:

==========================================  =====================================
what                                        becomes
==========================================  =====================================
each given secret (a token), whole          ``***``
any run of 8 or more characters that is     ``***`` (a server or a logger that
part of a given secret                      truncates still leaks a prefix)
``"token":"..."`` (plain or JSON-escaped)   ``"token":"***"``
``Authorization:``, ``Proxy-Authorization:``  the header name, then ``***``
``Cookie:``, ``Set-Cookie:`` header values
``Bearer <credential>``                     ``Bearer ***``
``?token=`` / ``&access_token=`` queries    ``token=***``
==========================================  =====================================

Secrets shorter than 4 characters are ignored (they would scrub ordinary
words); secrets of 4 to 7 characters are replaced only whole.

:func:`redact_in_scope` adds the secrets of the current asyncio context:
the stream's reader task declares its tokens once with :func:`scope_secrets`
and every error it builds from server text (errors.py calls this) is scrubbed
of them, without threading the token through each call.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from functools import lru_cache
from typing import Any, Final

__all__ = ["FRAGMENT", "RedactingLogger", "redact", "redact_in_scope", "scope_secrets"]

#: The shortest run of a secret's characters that counts as a leak of it.
FRAGMENT: Final = 8
_MIN_SECRET: Final = 4
_MASK: Final = "***"

_PATTERNS: Final = (
    (re.compile(r'("token"\s*:\s*")[^"]*("?)'), r"\1***\2"),
    (re.compile(r"(\\\"token\\\"\s*:\s*\\\")[^\\]*"), r"\1***"),
    (
        re.compile(
            r"((?:Proxy-Authorization|Authorization|Cookie|Set-Cookie)\s*[:=]\s*)[^\r\n'\"]*",
            re.IGNORECASE,
        ),
        r"\1***",
    ),
    (re.compile(r"(\bBearer\s+)[^\s'\",;]+", re.IGNORECASE), r"\1***"),
    (re.compile(r"([?&](?:token|access_token)=)[^&\s'\"]*", re.IGNORECASE), r"\1***"),
)

SecretSource = Callable[[], Iterable["str | None"]]

_scope: ContextVar[SecretSource | None] = ContextVar("cadenza_async_secrets", default=None)


@lru_cache(maxsize=32)
def _fragments(secret: str) -> frozenset[str]:
    """Every FRAGMENT-long run of ``secret``'s characters."""
    return frozenset(secret[i : i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1))


def _without_fragments(text: str, secret: str) -> str:
    """``text`` with every run of FRAGMENT or more characters of ``secret`` masked."""
    grams = _fragments(secret)
    last_start = len(text) - FRAGMENT
    out: list[str] = []
    kept = 0
    i = 0
    while i <= last_start:
        if text[i : i + FRAGMENT] not in grams:
            i += 1
            continue
        end = i
        while end + 1 <= last_start and text[end + 1 : end + 1 + FRAGMENT] in grams:
            end += 1
        out.append(text[kept:i])
        out.append(_MASK)
        kept = i = end + FRAGMENT
    if not out:
        return text
    out.append(text[kept:])
    return "".join(out)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with ``secrets`` (and fragments of them) and credential patterns masked."""
    for secret in secrets:
        if not secret or len(secret) < _MIN_SECRET:
            continue
        if len(secret) < FRAGMENT:
            text = text.replace(secret, _MASK)
        else:
            text = _without_fragments(text, secret)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def redact_in_scope(text: str, secrets: Iterable[str | None] = ()) -> str:
    """:func:`redact` with ``secrets`` plus the secrets declared for the current context."""
    source = _scope.get()
    if source is not None:
        secrets = (*secrets, *source())
    return redact(text, secrets)


def scope_secrets(source: SecretSource) -> None:
    """Declare ``source()`` as the secrets of the current context and of tasks it starts.

    Call it only from a task the SDK owns (it stays set for the rest of that task).
    """
    _scope.set(source)


class RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger for third-party code (the websockets client log) whose records are redacted.

    Each record is formatted here and passed through :func:`redact` with
    ``secrets()`` (read at every record, so a refreshed token is covered)
    before ``logger`` sees it; tracebacks and stack information are dropped,
    since their frames can hold secrets.
    """

    def __init__(self, logger: logging.Logger, secrets: SecretSource) -> None:
        super().__init__(logger, {})
        self._secrets = secrets

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = str(msg)
        kwargs.pop("exc_info", None)
        kwargs.pop("stack_info", None)
        self.logger.log(level, redact(text, self._secrets()), **kwargs)
