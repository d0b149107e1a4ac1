"""CentrifugoSocket over real loopback sockets: the open's refusals, the pump, the writes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import WSMsgType, web

from cadenza_async._wsio import BinaryFrame, CentrifugoSocket, Closed, OpenFailed
from cadenza_async.protocol.centrifugo import CentrifugoProtocol, Connected, Event

TOKEN = "tok-" + "k" * 40

Handler = Callable[[web.WebSocketResponse], Awaitable[None]]


@contextlib.asynccontextmanager
async def server(handler: Handler | None = None, *, redirect: bool = False) -> AsyncIterator[str]:
    """A loopback server: ``handler`` speaks on the WebSocket, or (``redirect``) every GET gets a 302."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        if redirect:
            raise web.HTTPFound("http://127.0.0.1:9/elsewhere")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert handler is not None
        await handler(ws)
        return ws

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"ws://127.0.0.1:{port}/connection/websocket"
    finally:
        await runner.cleanup()


async def open_socket(url: str, core: CentrifugoProtocol, timeout: float = 5.0) -> CentrifugoSocket:
    return await CentrifugoSocket.open(
        url,
        core,
        max_size=1 << 20,
        timeout=timeout,
        proxy=None,
        user_agent="cadenza-async test",
        secrets=lambda: (TOKEN,),
    )


async def connect_reply(ws: web.WebSocketResponse, **result: object) -> dict:
    command = json.loads((await ws.receive()).data)
    await ws.send_str(json.dumps({"id": command["id"], "connect": {"client": "c", **result}}))
    return command


async def test_a_redirect_answer_is_refused_and_not_followed():
    async with server(redirect=True) as url:
        with pytest.raises(OpenFailed) as info:
            await open_socket(url, CentrifugoProtocol())
    assert (info.value.kind, info.value.status) == ("status", 302)


async def test_nothing_listening_is_a_transport_failure_with_the_os_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OpenFailed) as info:
        await open_socket(f"ws://127.0.0.1:{port}/", CentrifugoProtocol())
    assert info.value.kind == "transport"
    assert info.value.strerror


async def test_a_handshake_that_never_answers_is_a_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        port = listener.getsockname()[1]
        with pytest.raises(OpenFailed) as info:
            await open_socket(f"ws://127.0.0.1:{port}/", CentrifugoProtocol(), timeout=0.3)
    finally:
        listener.close()
    assert info.value.kind == "timeout"


async def test_the_pump_feeds_frames_to_the_core_answers_pings_and_stops_when_asked():
    pong = asyncio.get_running_loop().create_future()

    async def speak(ws: web.WebSocketResponse) -> None:
        await connect_reply(ws, ping=25, pong=True)
        await ws.send_str("{}")  # a ping: the core queues a pong, the pump writes it
        pong.set_result((await ws.receive()).data)
        await ws.receive()  # until the client closes

    core = CentrifugoProtocol()
    async with server(speak) as url:
        sock = await open_socket(url, core)
        try:
            core.send_connect(TOKEN, 0.0)
            await sock.flush()
            seen: list[Event] = []

            def on_frame(events: list[Event]) -> bool:
                seen.extend(events)
                return core.pings_received > 0

            await asyncio.wait_for(sock.pump(on_frame), 5.0)
            assert isinstance(seen[0], Connected)
            assert await asyncio.wait_for(pong, 5.0) == "{}"
        finally:
            await sock.close(2.0)


async def test_a_close_from_the_server_ends_the_pump_with_its_code_and_reason():
    async def speak(ws: web.WebSocketResponse) -> None:
        await connect_reply(ws)
        await ws.close(code=3001, message=b"going away")

    core = CentrifugoProtocol()
    async with server(speak) as url:
        sock = await open_socket(url, core)
        core.send_connect(TOKEN, 0.0)
        await sock.flush()
        with pytest.raises(Closed) as info:
            await asyncio.wait_for(sock.pump(lambda events: None), 5.0)
        await sock.shut(1.0)
    assert (info.value.code, info.value.reason, info.value.too_big) == (3001, "going away", False)


async def test_a_binary_frame_ends_the_pump():
    async def speak(ws: web.WebSocketResponse) -> None:
        await ws.send_bytes(b"\x00\x01")
        msg = await ws.receive()
        assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)

    async with server(speak) as url:
        sock = await open_socket(url, CentrifugoProtocol())
        with pytest.raises(BinaryFrame):
            await asyncio.wait_for(sock.pump(lambda events: None), 5.0)
        await sock.shut(1.0)


async def test_a_message_over_max_size_closes_with_1009(caplog: pytest.LogCaptureFixture):
    async def speak(ws: web.WebSocketResponse) -> None:
        await ws.send_str("x" * 2048)
        await ws.receive()

    caplog.set_level(logging.DEBUG, logger="websockets.client")
    async with server(speak) as url:
        sock = await CentrifugoSocket.open(
            url,
            CentrifugoProtocol(),
            max_size=1024,
            timeout=5.0,
            proxy=None,
            user_agent="cadenza-async test",
            secrets=lambda: (TOKEN,),
        )
        with pytest.raises(Closed) as info:
            await asyncio.wait_for(sock.pump(lambda events: None), 5.0)
        await sock.shut(1.0)
    assert info.value.too_big


async def test_the_websockets_log_never_shows_the_secrets(caplog: pytest.LogCaptureFixture):
    async def speak(ws: web.WebSocketResponse) -> None:
        await connect_reply(ws)
        await ws.receive()

    caplog.set_level(logging.DEBUG, logger="websockets.client")
    core = CentrifugoProtocol()
    async with server(speak) as url:
        sock = await open_socket(url, core)
        core.send_connect(TOKEN, 0.0)
        await sock.flush()
        await asyncio.wait_for(sock.pump(lambda events: True), 5.0)
        await sock.close(2.0)
    assert caplog.records  # the frames were logged at debug level...
    assert all(TOKEN[:12] not in record.getMessage() for record in caplog.records)  # ...scrubbed


async def test_frames_left_by_a_cut_write_go_to_on_cut_and_the_cancellation_goes_on():
    received: list[str] = []

    async def speak(ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            received.append(msg.data)

    async with server(speak) as url:
        sock = await open_socket(url, CentrifugoProtocol())
        left: list[list[str]] = []
        started = asyncio.Event()
        real_send = sock._ws.send

        async def slow_send(message: str) -> None:
            await real_send(message)
            started.set()
            await asyncio.sleep(3600)  # as if the socket never drained

        sock._ws.send = slow_send  # type: ignore[method-assign]
        task = asyncio.create_task(
            sock.send_frames(["a", "b", "c"], on_cut=lambda s, rest: left.append(list(rest)))
        )
        await asyncio.wait_for(started.wait(), 5.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await sock.close(2.0)
    assert left == [["b", "c"]]
