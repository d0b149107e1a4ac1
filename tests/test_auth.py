"""TokenSource (string and callable providers, single-flight refresh, failures); the 401 rule."""

from __future__ import annotations

import asyncio

import pytest

from cadenza_async._auth import MAX_REFRESHES, RefreshRule, TokenSource
from cadenza_async.errors import AuthenticationError


async def test_string_token_is_returned_and_refresh_keeps_it():
    tokens = TokenSource("fixed")
    assert tokens.current == "fixed"
    assert not tokens.refreshable
    assert await tokens.get() == "fixed"
    assert await tokens.refresh("fixed") == "fixed"
    assert tokens.refresh_count == 0


async def test_sync_provider_is_called_on_first_use_and_on_refresh():
    calls = []

    def provider():
        calls.append(1)
        return f"t{len(calls)}"

    tokens = TokenSource(provider)
    assert tokens.current is None
    assert calls == []
    assert await tokens.get() == "t1"
    assert await tokens.get() == "t1"
    assert await tokens.refresh("t1") == "t2"
    assert (len(calls), tokens.refresh_count) == (2, 1)


async def test_async_provider_is_awaited():
    async def provider():
        await asyncio.sleep(0)
        return "async-token"

    assert await TokenSource(provider).get() == "async-token"


async def test_concurrent_refreshes_of_the_same_stale_token_share_one_call():
    calls = []
    gate = asyncio.Event()

    async def provider():
        calls.append(1)
        if len(calls) > 1:
            await gate.wait()
        return f"t{len(calls)}"

    tokens = TokenSource(provider)
    stale = await tokens.get()
    refreshes = [asyncio.ensure_future(tokens.refresh(stale)) for _ in range(20)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(*refreshes), timeout=5)

    assert set(results) == {"t2"}
    assert len(calls) == 2


async def test_refresh_with_an_already_replaced_token_does_not_call_the_provider():
    calls = []

    def provider():
        calls.append(1)
        return f"t{len(calls)}"

    tokens = TokenSource(provider)
    await tokens.get()
    await tokens.refresh("t1")
    assert await tokens.refresh("t1") == "t2"  # someone already replaced t1
    assert len(calls) == 2


@pytest.mark.parametrize("result", ["", None, 42])
async def test_provider_returning_no_token_raises_authentication_error(result):
    tokens = TokenSource(lambda: result)
    with pytest.raises(AuthenticationError):
        await tokens.get()


async def test_failing_provider_raises_authentication_error_without_its_message():
    def provider():
        raise RuntimeError("password=hunter2")

    with pytest.raises(AuthenticationError) as info:
        await TokenSource(provider).get()

    assert "hunter2" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    assert "RuntimeError" in str(info.value)


async def test_cancelled_provider_propagates_cancellation():
    started = asyncio.Event()

    async def provider():
        started.set()
        await asyncio.Event().wait()
        return "never"

    task = asyncio.ensure_future(TokenSource(provider).get())
    await asyncio.wait_for(started.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_repr_hides_the_token():
    assert "secret" not in repr(TokenSource("secret"))


async def test_async_provider_that_does_not_answer_in_time_raises_and_is_cancelled():
    calls = []
    cancelled = asyncio.Event()

    async def provider():
        calls.append(1)
        if len(calls) == 1:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return "late-but-fine"

    tokens = TokenSource(provider)
    with pytest.raises(AuthenticationError) as info:
        await tokens.get(timeout=0.05)
    assert "did not answer" in str(info.value)
    assert cancelled.is_set()
    assert tokens.current is None
    # The lock was released: the next caller asks the provider again.
    assert await tokens.get(timeout=5) == "late-but-fine"


async def test_timeout_covers_waiting_behind_another_callers_refresh():
    calls = []
    hanging = asyncio.Event()

    async def provider():
        calls.append(1)
        if len(calls) > 1:
            hanging.set()
            await asyncio.Event().wait()
        return "t1"

    tokens = TokenSource(provider)
    await tokens.get()
    hung = asyncio.ensure_future(tokens.refresh("t1"))  # no timeout: holds the lock
    try:
        await asyncio.wait_for(hanging.wait(), 5)
        with pytest.raises(AuthenticationError):
            await tokens.refresh("t1", timeout=0.05)
        assert len(calls) == 2  # it waited for the lock, it did not call the provider
    finally:
        hung.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hung


async def test_providers_own_timeout_error_is_reported_by_name():
    def provider():
        raise TimeoutError("vault slow, key=hunter2")

    with pytest.raises(AuthenticationError) as info:
        await TokenSource(provider).get(timeout=5)
    assert "TimeoutError" in str(info.value)
    assert "did not answer" not in str(info.value)
    assert "hunter2" not in str(info.value)


async def test_failed_refresh_keeps_the_token_and_the_next_refresh_asks_again():
    calls = []

    def provider():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("blip")
        return f"t{len(calls)}"

    tokens = TokenSource(provider)
    await tokens.get()
    with pytest.raises(AuthenticationError):
        await tokens.refresh("t1")
    assert tokens.current == "t1"
    assert await tokens.refresh("t1") == "t3"
    assert len(calls) == 3


async def test_provider_with_nothing_newer_hands_back_the_stale_token():
    tokens = TokenSource(lambda: "same")
    assert await tokens.get() == "same"
    assert await tokens.refresh("same") == "same"  # the caller decides what that means


# ------------------------------------------------------------------ the 401 rule of one call


def test_refresh_rule_refreshes_a_refused_token_once():
    rule = RefreshRule()
    assert rule.should_refresh("t1", refreshable=True) is True
    assert rule.retry_with("t2", "t1") is True
    rule.answered()  # t2 got another answer (a 503, say)
    assert rule.should_refresh("t1", refreshable=True) is False  # t1 again: already refused


def test_refresh_rule_a_fresh_token_refused_at_once_is_final():
    rule = RefreshRule()
    assert rule.should_refresh("t1", refreshable=True)
    assert rule.retry_with("t2", "t1")
    assert rule.should_refresh("t2", refreshable=True) is False  # its first answer was a 401


def test_refresh_rule_a_fresh_token_refused_after_other_answers_is_refreshed_again():
    rule = RefreshRule()
    assert rule.should_refresh("t1", refreshable=True)
    assert rule.retry_with("t2", "t1")
    rule.answered()
    assert rule.should_refresh("t2", refreshable=True) is True


def test_refresh_rule_at_most_max_refreshes_per_call():
    rule = RefreshRule()
    for n in range(MAX_REFRESHES):
        assert rule.should_refresh(f"t{n}", refreshable=True)
        assert rule.retry_with(f"t{n + 1}", f"t{n}")
        rule.answered()
    assert rule.should_refresh(f"t{MAX_REFRESHES}", refreshable=True) is False


def test_refresh_rule_a_plain_string_token_is_never_refreshed():
    assert RefreshRule().should_refresh("t1", refreshable=False) is False


@pytest.mark.parametrize("fresh", ["t1", "t0"])
def test_refresh_rule_a_provider_handing_back_a_refused_token_ends_the_call(fresh):
    rule = RefreshRule()
    assert rule.should_refresh("t0", refreshable=True)
    assert rule.retry_with("t1", "t0")
    rule.answered()
    assert rule.should_refresh("t1", refreshable=True)
    assert rule.retry_with(fresh, "t1") is False
