"""The order stream's parts on their own: StreamTokens (which token each connect and refresh
carries) and RpcCalls (the RPCs waiting for their reply)."""

from __future__ import annotations

import asyncio
import itertools
import logging

import msgspec
import pytest

from cadenza_async._auth import TokenSource
from cadenza_async._stream_rpc import RpcCalls
from cadenza_async._stream_tokens import StreamTokens
from cadenza_async.errors import StreamAuthenticationError, TransportError
from cadenza_async.protocol.tokens import MAX_TOKEN_REFUSALS

LOG = logging.getLogger("tests.stream_parts")


def rotating() -> TokenSource:
    """A provider that hands out tok-1, tok-2, ... one per call."""
    counter = itertools.count(1)
    return TokenSource(lambda: f"tok-{next(counter)}")


# ------------------------------------------------------------------ StreamTokens


async def test_a_connect_carries_the_current_token_and_a_refused_one_is_refreshed():
    tokens = StreamTokens(rotating(), timeout=1.0, log=LOG)
    assert await tokens.for_connect() == "tok-1"
    assert tokens.connection == "tok-1"
    assert tokens.refused("connect", 1, 109) is True  # the first refusal in a row: at once
    assert await tokens.for_connect() == "tok-2"
    assert tokens.refused("connect", 2, 109) is False  # the second waits out the backoff


async def test_a_provider_handing_back_the_refused_token_gives_up():
    tokens = StreamTokens(TokenSource(lambda: "same"), timeout=1.0, log=LOG)
    await tokens.for_connect()
    tokens.refused("connect", 1, 109)
    with pytest.raises(StreamAuthenticationError) as info:
        await tokens.for_connect()
    assert info.value.code == 109


async def test_too_many_refusals_in_a_row_give_up_and_a_connect_starts_the_count_again():
    tokens = StreamTokens(rotating(), timeout=1.0, log=LOG)
    for cid in range(MAX_TOKEN_REFUSALS - 1):
        await tokens.for_connect()
        tokens.refused("connect", cid, 109)
    tokens.connected()  # a connect went through in between
    for cid in range(MAX_TOKEN_REFUSALS):
        await tokens.for_connect()
        tokens.refused("connect", cid, 109)
    with pytest.raises(StreamAuthenticationError, match="refused 3 tokens in a row"):
        await tokens.for_connect()


async def test_a_failing_provider_is_a_stream_authentication_error_without_its_text():
    def provider() -> str:
        raise RuntimeError("secret-in-the-message")

    tokens = StreamTokens(TokenSource(provider), timeout=1.0, log=LOG)
    with pytest.raises(StreamAuthenticationError) as info:
        await tokens.for_connect()
    assert "secret-in-the-message" not in str(info.value)
    assert info.value.__cause__ is None


async def test_a_refresh_that_went_through_moves_the_connection_to_its_token():
    tokens = StreamTokens(rotating(), timeout=1.0, log=LOG)
    await tokens.for_connect()
    fresh = await tokens.for_refresh()
    assert fresh == "tok-2"
    tokens.refresh_sent(7, fresh)
    assert "tok-2" in tokens.secrets()  # in flight: scrubbed from errors already
    tokens.refresh_answered(6)  # another command: nothing changes
    assert tokens.connection == "tok-1"
    tokens.refresh_answered(7)
    assert tokens.connection == "tok-2"


async def test_a_refused_refresh_counts_the_token_it_carried_not_the_connections():
    tokens = StreamTokens(rotating(), timeout=1.0, log=LOG)
    await tokens.for_connect()
    tokens.refresh_sent(7, "tok-2")
    tokens.refused("refresh", 7, 109)
    assert tokens.refusals.stale == "tok-2"


async def test_no_newer_token_or_a_failing_provider_sends_no_refresh(caplog):
    caplog.set_level(logging.INFO, logger=LOG.name)
    same = StreamTokens(TokenSource(lambda: "same"), timeout=1.0, log=LOG)
    await same.for_connect()
    assert await same.for_refresh() is None
    calls = itertools.count()

    def provider() -> str:
        if next(calls):
            raise RuntimeError("down")
        return "tok-1"

    failing = StreamTokens(TokenSource(provider), timeout=1.0, log=LOG)
    await failing.for_connect()
    assert await failing.for_refresh() is None
    assert "keeping the connection until it expires" in caplog.text


# ------------------------------------------------------------------ RpcCalls


async def test_an_rpc_ends_with_its_reply_its_error_or_the_loss_of_the_connection():
    loop = asyncio.get_running_loop()
    rpcs = RpcCalls()
    try:
        answered = rpcs.expect(1, loop.time() + 5, loop)
        failed = rpcs.expect(2, loop.time() + 5, loop)
        lost = rpcs.expect(3, loop.time() + 5, loop)
        rpcs.answered(1, msgspec.Raw(b"{}"))
        rpcs.failed(2, ValueError("refused"))
        rpcs.fail_all(TransportError("lost"))
        assert bytes(await answered) == b"{}"
        with pytest.raises(ValueError, match="refused"):
            await failed
        with pytest.raises(TransportError, match="lost"):
            await lost
        assert rpcs.waiting == {}
    finally:
        rpcs.close()


async def test_an_rpc_without_a_reply_wakes_at_its_deadline_with_none_and_is_forgotten():
    loop = asyncio.get_running_loop()
    rpcs = RpcCalls()
    try:
        waiter = rpcs.expect(1, loop.time() + 0.2, loop)
        assert await asyncio.wait_for(waiter, 2.0) is None
        rpcs.forget(1, waiter)
        assert rpcs.waiting == {}
        rpcs.answered(1, msgspec.Raw(b"{}"))  # a late reply: nobody waits, nothing happens
    finally:
        rpcs.close()
