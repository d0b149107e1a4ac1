"""CadenzaClient's lifecycle against the simulator: ready on entry, nothing left behind on close.

``async with`` returns only once the stream is connected and the default
account subscribed; ``aclose`` stops every task the client started, fails
callers still waiting, and leaves no warnings; a closed client refuses every
call; a client that cannot connect raises a typed error and leaks nothing.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import warnings

import pytest
from support import client_for, has_update_reader, other_tasks

from cadenza_async import (
    CadenzaClient,
    ClientClosedError,
    PermissionDeniedError,
    StreamError,
    Timeouts,
    TransportError,
)

STEP = 5.0
OTHER_ACCOUNT = "6f1e0000-0000-4000-8000-000000000000"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- entry


async def test_entering_returns_connected_with_the_default_account_subscribed(cadenza_sim):
    order = cadenza_sim.create_order()
    async with client_for(cadenza_sim) as client:
        assert cadenza_sim.connections == 1
        assert cadenza_sim.connect_count == 1
        # Published right after entry: only a subscription made before entry
        # returned can receive it (a first subscribe recovers nothing).
        cadenza_sim.set_status(order.trade_order_id, "CANCELLED")
        await cadenza_sim.wait_for(lambda: client._registry.early_count == 1, timeout=STEP)

        result = await client.cancel_and_confirm(order.trade_order_id, timeout=STEP)

    assert (result.cancelled, result.source) == (True, "ws")
    assert cadenza_sim.rest_requests == []


async def test_entering_without_a_default_account_connects_and_subscribes_nothing(cadenza_sim):
    async with client_for(cadenza_sim, trading_account_id=None) as client:
        assert cadenza_sim.connections == 1
        order = cadenza_sim.create_order()
        cadenza_sim.set_status(order.trade_order_id, "CANCELLED")
        # Not subscribed: the event cannot reach the client.
        with pytest.raises(TimeoutError):
            await cadenza_sim.wait_for(lambda: client._registry.early_count, timeout=0.2)


# --------------------------------------------------------------------------- close


@pytest.mark.cadenza_sim(cancel_delay=0.02)
async def test_close_leaves_no_task_and_no_warning_behind(cadenza_sim):
    before = other_tasks()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with client_for(cadenza_sim) as client:
            orders = cadenza_sim.create_orders(4)
            await client.cancel_and_confirm(orders[0].trade_order_id, timeout=STEP)
            handle = client.cancel_nowait(orders[1].trade_order_id, timeout=STEP)
            await client.cancel_many([o.trade_order_id for o in orders[2:]], timeout=STEP)
            updates = client.order_updates()

            async def read_to_the_end() -> None:
                # (the background cancel's event may still come to it: any number of updates)
                async for _ in updates:
                    pass

            reader = asyncio.ensure_future(read_to_the_end())
            await cadenza_sim.wait_for(lambda: has_update_reader(client), timeout=STEP)
            assert other_tasks() - before  # the client runs tasks while open
        assert (await handle).cancelled
        await asyncio.wait_for(reader, STEP)  # close ends the reader
        gc.collect()

    assert other_tasks() - before == set()
    assert [str(w.message) for w in caught] == []


@pytest.mark.cadenza_sim(cancel_delay=1000)
async def test_caller_waiting_at_close_gets_client_closed_error_at_once(cadenza_sim):
    client = client_for(cadenza_sim)
    await client.__aenter__()
    order = cadenza_sim.create_order()
    task = asyncio.ensure_future(client.cancel_and_confirm(order.trade_order_id, timeout=30))
    await cadenza_sim.wait_for(
        lambda: cadenza_sim.get_order(order.trade_order_id).status == "PENDING_CANCEL",
        timeout=STEP,
    )

    await client.aclose()

    # Not a ConfirmationTimeout 30 s later: the client said why at once.
    with pytest.raises(ClientClosedError):
        await asyncio.wait_for(task, 1.0)


async def test_every_call_after_close_raises_client_closed_error(cadenza_sim):
    order_id = cadenza_sim.create_order().trade_order_id
    async with client_for(cadenza_sim) as client:
        pass
    await client.aclose()  # closing twice is harmless

    with pytest.raises(ClientClosedError):
        await client.cancel_and_confirm(order_id)
    with pytest.raises(ClientClosedError):
        client.cancel_nowait(order_id)
    with pytest.raises(ClientClosedError):
        await client.cancel_many([order_id])
    with pytest.raises(ClientClosedError):
        await client.cancel(order_id)
    with pytest.raises(ClientClosedError):
        await client.get_order(order_id)
    with pytest.raises(ClientClosedError):
        await client.order_updates().__anext__()
    with pytest.raises(ClientClosedError):
        await client.subscribe_account(cadenza_sim.trading_account_id)
    with pytest.raises(ClientClosedError):
        async with client:
            pass
    assert cadenza_sim.cancel_requests == []
    assert cadenza_sim.rest_requests == []


# --------------------------------------------------------------------------- failing to start


async def test_unreachable_server_fails_cancels_by_their_deadline_and_leaks_nothing():
    port = free_port()
    before = other_tasks()
    client = CadenzaClient(
        token="t",
        api_url=f"http://127.0.0.1:{port}",
        ws_url=f"ws://127.0.0.1:{port}/connection/websocket",
        timeouts=Timeouts(connect=0.3),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop = asyncio.get_running_loop()
        async with client:  # an unreachable stream does not stop the client
            started = loop.time()
            with pytest.raises(TransportError) as info:
                await client.cancel_and_confirm("00000000-0000-4000-8000-0000000000a1", timeout=1.0)
            # Refused: provably never sent; tried again while the deadline allowed, then
            # said so (not a timeout, which would say "may have been sent").
            assert loop.time() - started < 1.0
            assert info.value.maybe_sent is False
        gc.collect()

    assert other_tasks() - before == set()
    assert [str(w.message) for w in caught] == []
    with pytest.raises(ClientClosedError):
        await client.cancel_and_confirm("00000000-0000-4000-8000-0000000000a1")


async def test_refused_token_raises_stream_error_without_retrying(cadenza_sim):
    before = other_tasks()
    with pytest.raises(StreamError):
        async with client_for(cadenza_sim, token="not-a-valid-token"):
            pytest.fail("entered with a refused token")

    assert cadenza_sim.connect_count == 1
    assert cadenza_sim.connections == 0
    assert other_tasks() - before == set()


async def test_default_account_the_token_cannot_see_raises_permission_denied(cadenza_sim):
    before = other_tasks()
    with pytest.raises(PermissionDeniedError):
        async with client_for(cadenza_sim, trading_account_id=OTHER_ACCOUNT):
            pytest.fail("entered without the default account's channel")

    await cadenza_sim.wait_for(lambda: cadenza_sim.connections == 0, timeout=STEP)
    assert other_tasks() - before == set()
