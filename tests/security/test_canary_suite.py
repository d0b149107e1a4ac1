"""Row 30 across a whole client life: no token ever shows up in logs, reprs, errors or chains.

One test runs a full cycle against the simulator, with every logger (root,
``cadenza_async.*``, ``aiohttp.*``, ``websockets.*``) at DEBUG: connect,
subscribe, ``cancel_and_confirm`` over HTTP and over the WebSocket RPC, a
token expiry (REST 401 and close 3005) refreshed through a callable provider,
a reconnect (3001), a terminal close (3500) that fails the stream for good,
and a provider that fails while quoting its secret. Every token the provider
handed out is a canary: no piece of one (any run of 8 or more of its
characters, not only the whole token: a logger that truncates a frame still
leaks a prefix) may appear in any log record (message, args, formatted
traceback), nor in ``repr``/``str`` of any object or exception seen (with its
whole ``__cause__``/``__context__`` chain). A second test proves the check
can fail: with redaction switched off, websockets' truncated frame log is
caught, though it does not hold the whole token.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from support import client_for

from cadenza_async import (
    AuthenticationError,
    CadenzaError,
    RetryPolicy,
    StreamError,
    Timeouts,
)
from cadenza_async import _redact as redact_module
from cadenza_async.testing import CadenzaSimulator

# No hex digits after the prefix: a run of the canary cannot match an order id by chance.
CANARY = "canary-" + "".join(secrets.choice("GHJKLMNPQRSTVWXYZ") for _ in range(32))
FRAGMENT = 8
LOGGERS = [
    None,
    "cadenza_async",
    "cadenza_async.client",
    "cadenza_async.cancels",
    "cadenza_async.http",
    "cadenza_async.stream",
    "aiohttp",
    "aiohttp.client",
    "aiohttp.access",
    "aiohttp.server",
    "aiohttp.web",
    "aiohttp.websocket",
    "aiohttp.internal",
    "websockets",
    "websockets.client",
    "websockets.server",
    "asyncio",
]
STEP = 5.0


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [exc]
    while stack:
        link = stack.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        stack += [link.__cause__, link.__context__]


def texts_of(obj: object) -> list[str]:
    texts = [repr(obj), str(obj)]
    if isinstance(obj, BaseException):
        for link in chain(obj):
            texts += [repr(link), str(link), repr(link.args), repr(vars(link))]
    return texts


def leaked_pieces(text: str, secrets_seen: set[str]) -> list[str]:
    """Every FRAGMENT-long run of a secret that appears in ``text``."""
    return [
        secret[i : i + FRAGMENT]
        for secret in secrets_seen
        for i in range(len(secret) - FRAGMENT + 1)
        if secret[i : i + FRAGMENT] in text
    ]


def leaks_in_records(records: list[logging.LogRecord], secrets_seen: set[str]) -> list[str]:
    leaks = []
    for record in records:
        texts = [record.getMessage(), repr(record.args), record.name]
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
        for text in texts:
            if leaked_pieces(text, secrets_seen):
                leaks.append(f"log {record.name}: {text[:200]}")
    return leaks


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


async def test_no_token_appears_in_any_log_repr_or_error_over_a_full_client_life(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    seen: list[Any] = []
    handed_out: list[str] = []
    async with CadenzaSimulator(token=CANARY, cancel_delay=0.02) as sim:
        tokens = [CANARY]
        fail_provider = False

        def provider() -> str:
            if fail_provider:
                raise RuntimeError(f"vault refused, last token was {tokens[-1]}")
            handed_out.append(tokens[-1])
            return tokens[-1]

        options: dict[str, Any] = {
            "token": provider,
            "timeouts": Timeouts(connect=2.0, request=2.0, confirm=STEP),
            "retry": RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02),
        }
        http_client = client_for(sim, **options)
        ws_client = client_for(sim, cancel_via="ws", **options)
        seen += [http_client, ws_client, http_client.config, sim]
        async with http_client, ws_client:
            # connect + subscribe happened in __aenter__; cancel both ways
            for client in (http_client, ws_client):
                result = await client.cancel_and_confirm(sim.create_order().trade_order_id)
                assert result.cancelled
                seen += [result, result.order]
                seen.append(client.cancel_nowait(sim.create_order().trade_order_id))
                await client.drain()

            # token expiry: REST answers 401, the live sockets are closed with 3005
            tokens.append(sim.issue_token())  # every token handed out is a canary too
            sim.expire_token(CANARY)
            for client in (http_client, ws_client):
                result = await client.cancel_and_confirm(sim.create_order().trade_order_id)
                assert result.cancelled
                seen.append(result)
            assert tokens[-1] in handed_out  # the provider was asked again

            # a reconnect (3001), then cancels still confirm
            await sim.disconnect_all(3001, "shutdown")
            for client in (http_client, ws_client):
                result = await client.cancel_and_confirm(sim.create_order().trade_order_id)
                seen.append(result)

            # the provider fails, quoting its secret: a typed error, nothing quoted
            fail_provider = True
            sim.expire_token(tokens[-1])
            with pytest.raises(CadenzaError) as auth_failure:
                await http_client.cancel(sim.create_order().trade_order_id)
            assert isinstance(auth_failure.value, AuthenticationError)
            seen.append(auth_failure.value)

            # a terminal close code: the stream fails for good, cancels fail at once
            await sim.disconnect_all(3500, "invalid token")
            with pytest.raises(CadenzaError) as terminal:
                await ws_client.cancel_and_confirm(sim.create_order().trade_order_id, timeout=STEP)
            seen.append(terminal.value)
            assert isinstance(terminal.value, (StreamError, AuthenticationError))
            seen += [http_client._tokens, http_client._stream, ws_client._stream]

    secrets_seen = {CANARY, *handed_out, *tokens}
    assert len(debug_logs.records) > 20, "DEBUG capture is not on: the test would prove nothing"
    leaks = leaks_in_records(debug_logs.records, secrets_seen)
    for obj in seen:
        for text in texts_of(obj):
            if leaked_pieces(text, secrets_seen):
                leaks.append(f"{type(obj).__name__}: {text[:200]}")
    assert not leaks, "\n".join(leaks[:10])


async def test_the_canary_check_catches_a_truncated_token_when_redaction_is_off(
    debug_logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redaction off in the websockets logger: its frame log shows the connect
    # frame cut short, a prefix of the token and not the whole of it.
    monkeypatch.setattr(redact_module, "redact", lambda text, secrets=(): text)
    async with CadenzaSimulator(token=CANARY) as sim:
        async with client_for(
            sim, token=CANARY, timeouts=Timeouts(connect=2.0, request=2.0, confirm=STEP)
        ):
            pass
    frame_logs = [r for r in debug_logs.records if r.name.startswith("websockets")]
    assert any('"connect"' in r.getMessage() for r in frame_logs)
    assert not any(CANARY in r.getMessage() for r in frame_logs)  # a whole-token check passes
    assert leaks_in_records(frame_logs, {CANARY})  # the fragment check does not
