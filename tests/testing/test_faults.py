"""The fault proxy against real loopback servers and clients: every fault does what it says."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import time

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve

from cadenza_async.testing.faults import FaultProxy

NOTHING_ARRIVES = 0.3  # bounded wait used to show that nothing arrives
PROMPTLY = 5.0  # generous bound for things that must happen


class Server:
    """A loopback TCP server that echoes, or hands each connection to the test."""

    def __init__(self, *, echo: bool) -> None:
        self.echo = echo
        self.peers: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.errors: list[BaseException] = []
        self.errored = asyncio.Event()
        self.finished = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if not self.echo:
                await self.peers.put((reader, writer))
                await asyncio.Event().wait()  # the test drives this connection
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
        except OSError as exc:
            self.errors.append(exc)
            self.errored.set()
        finally:
            self.finished += 1
            writer.transport.abort()
            self._tasks.discard(task)

    async def next_peer(self, timeout: float = PROMPTLY):
        return await asyncio.wait_for(self.peers.get(), timeout)


@pytest.fixture
async def echo_server():
    async with Server(echo=True) as server:
        yield server


@pytest.fixture
async def peer_server():
    async with Server(echo=False) as server:
        yield server


@contextlib.asynccontextmanager
async def client_of(px: FaultProxy):
    reader, writer = await asyncio.open_connection(px.host, px.port)
    try:
        yield reader, writer
    finally:
        writer.transport.abort()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def read_until_eof(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while data := await reader.read(65536):
        chunks.append(data)
    return b"".join(chunks)


async def read_until_error(reader: asyncio.StreamReader) -> tuple[bytes, OSError | None]:
    chunks = []
    try:
        while data := await asyncio.wait_for(reader.read(65536), PROMPTLY):
            chunks.append(data)
    except OSError as exc:
        return b"".join(chunks), exc
    return b"".join(chunks), None


async def test_pass_through_is_byte_exact_for_random_payloads(echo_server):
    async with FaultProxy("127.0.0.1", echo_server.port) as px:
        for size in (1, 1000, 1_000_000):
            payload = os.urandom(size)
            async with client_of(px) as (reader, writer):

                async def send(writer=writer, payload=payload):
                    writer.write(payload)
                    await writer.drain()
                    writer.write_eof()

                _, echoed = await asyncio.wait_for(
                    asyncio.gather(send(), read_until_eof(reader)), PROMPTLY
                )
            assert echoed == payload
        assert px.bytes_upstream == px.bytes_downstream == 1 + 1000 + 1_000_000
        assert px.total_connections == 3


async def test_latency_adds_at_least_the_setting_per_direction_to_a_round_trip(echo_server):
    async with FaultProxy("127.0.0.1", echo_server.port) as px:
        async with client_of(px) as (reader, writer):
            px.latency = 0.2
            started = time.perf_counter()
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            assert time.perf_counter() - started >= 2 * 0.2 - 0.01

            px.latency = 0
            px.downstream.latency = 0.3
            started = time.perf_counter()
            writer.write(b"pong")
            assert await reader.readexactly(4) == b"pong"
            assert time.perf_counter() - started >= 0.3 - 0.01


async def test_latency_keeps_chunk_order(echo_server):
    async with FaultProxy("127.0.0.1", echo_server.port) as px:
        px.latency = 0.05
        async with client_of(px) as (reader, writer):
            sent = [os.urandom(100) for _ in range(50)]
            for chunk in sent:
                writer.write(chunk)
                await writer.drain()
            assert await reader.readexactly(5000) == b"".join(sent)


async def test_slicing_delivers_the_same_bytes_in_many_small_reads(peer_server):
    async with FaultProxy("127.0.0.1", peer_server.port) as px:
        px.downstream.slice_size = 7
        async with client_of(px) as (reader, _writer):
            _, server_writer = await peer_server.next_peer()
            payload = os.urandom(4000)
            server_writer.write(payload)
            received, reads = b"", 0
            while len(received) < len(payload):
                received += await reader.read(65536)
                reads += 1
        assert received == payload
        assert reads > 1


async def test_bandwidth_cap_bounds_bytes_delivered_per_second(peer_server):
    async with FaultProxy("127.0.0.1", peer_server.port) as px:
        px.bandwidth = 50_000
        async with client_of(px) as (reader, _writer):
            _, server_writer = await peer_server.next_peer()
            payload = os.urandom(20_000)
            started = time.perf_counter()
            server_writer.write(payload)
            assert await reader.readexactly(len(payload)) == payload
            elapsed = time.perf_counter() - started
        # The first 20 ms quantum (1,000 bytes) may go at once; the rest is paced.
        assert elapsed >= (20_000 - 1_000) / 50_000 - 0.01


async def test_blackhole_shows_no_data_and_no_eof_while_the_server_writes_and_restore_delivers_it(
    peer_server,
):
    async with FaultProxy("127.0.0.1", peer_server.port) as px:
        async with client_of(px) as (reader, _writer):
            _, server_writer = await peer_server.next_peer()
            server_writer.write(b"hello")
            assert await reader.readexactly(5) == b"hello"

            px.blackhole()
            payload = os.urandom(50_000)
            for i in range(0, len(payload), 10_000):
                server_writer.write(payload[i : i + 10_000])
                await server_writer.drain()  # the server's writes keep succeeding
            server_writer.write_eof()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(reader.read(1), NOTHING_ARRIVES)  # no byte, no EOF
            assert px.connections == 1

            px.restore()
            assert await asyncio.wait_for(read_until_eof(reader), PROMPTLY) == payload


async def test_blackhole_holds_new_connections_and_client_data_until_restore(peer_server):
    async with FaultProxy("127.0.0.1", peer_server.port) as px:
        px.blackhole()
        async with client_of(px) as (_reader, writer):  # the connect itself succeeds
            writer.write(b"early")
            await writer.drain()
            await px.wait_for_connections(1)
            with pytest.raises(asyncio.TimeoutError):
                await peer_server.next_peer(timeout=NOTHING_ARRIVES)

            px.restore()
            server_reader, _ = await peer_server.next_peer()
            assert await asyncio.wait_for(server_reader.readexactly(5), PROMPTLY) == b"early"


async def test_upstream_blackhole_silences_only_client_to_server(peer_server):
    async with FaultProxy("127.0.0.1", peer_server.port) as px:
        async with client_of(px) as (reader, writer):
            server_reader, server_writer = await peer_server.next_peer()
            px.upstream.blackhole()
            writer.write(b"lost?")
            server_writer.write(b"down")
            assert await asyncio.wait_for(reader.readexactly(4), PROMPTLY) == b"down"
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(server_reader.read(1), NOTHING_ARRIVES)
            px.upstream.restore()
            assert await asyncio.wait_for(server_reader.readexactly(5), PROMPTLY) == b"lost?"


async def test_reset_all_gives_both_peers_a_connection_reset(echo_server):
    async with FaultProxy("127.0.0.1", echo_server.port) as px:
        async with client_of(px) as (reader, writer):
            writer.write(b"x")
            assert await reader.readexactly(1) == b"x"
            await px.reset_all()
            assert px.connections == 0
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(1), PROMPTLY)
        await asyncio.wait_for(echo_server.errored.wait(), PROMPTLY)
        assert isinstance(echo_server.errors[0], ConnectionResetError)

        async with client_of(px) as (reader, writer):  # still listening: a client can reconnect
            writer.write(b"again")
            assert await reader.readexactly(5) == b"again"
        assert px.total_connections == 2


async def test_refuse_makes_connect_fail_and_turning_it_off_listens_again(echo_server):
    async with FaultProxy("127.0.0.1", echo_server.port) as px:
        port = px.port
        async with client_of(px) as (reader, writer):
            px.refuse = True
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(px.host, port)
            writer.write(b"live")  # connections already open are not touched
            assert await reader.readexactly(4) == b"live"

            px.refuse = False
            assert px.port == port
            async with client_of(px) as (reader2, writer2):
                writer2.write(b"new")
                assert await reader2.readexactly(3) == b"new"
        assert px.total_connections == 2


async def test_reset_after_cuts_the_stream_after_n_bytes_with_a_reset(peer_server):
    async with FaultProxy("127.0.0.1", peer_server.port) as px:
        async with client_of(px) as (reader, _writer):
            _, server_writer = await peer_server.next_peer()
            fired = px.reset_after(50_000)
            payload = os.urandom(200_000)
            server_writer.write(payload)
            received, error = await read_until_error(reader)
            assert isinstance(error, ConnectionResetError)
            await asyncio.wait_for(fired.wait(), PROMPTLY)
        assert px.bytes_downstream == 50_000
        assert received == payload[: len(received)]
        # Linux delivers bytes queued before an RST; elsewhere some may be lost.
        assert len(received) == 50_000 if sys.platform == "linux" else len(received) <= 50_000


async def test_reset_after_upstream_cuts_client_to_server(peer_server):
    async with FaultProxy("127.0.0.1", peer_server.port) as px:
        async with client_of(px) as (_reader, writer):
            server_reader, _ = await peer_server.next_peer()
            fired = px.reset_after(10, direction="upstream")
            writer.write(b"0123456789abcdef")
            await asyncio.wait_for(fired.wait(), PROMPTLY)
            received, error = await read_until_error(server_reader)
            assert isinstance(error, ConnectionResetError)
        assert px.bytes_upstream == 10
        assert b"0123456789".startswith(received)


async def test_half_close_by_the_server_is_passed_on_and_the_client_can_still_send(peer_server):
    async with FaultProxy("127.0.0.1", peer_server.port) as px:
        async with client_of(px) as (reader, writer):
            server_reader, server_writer = await peer_server.next_peer()
            server_writer.write(b"bye")
            server_writer.write_eof()
            assert await asyncio.wait_for(read_until_eof(reader), PROMPTLY) == b"bye"
            writer.write(b"still here")
            assert await asyncio.wait_for(server_reader.readexactly(10), PROMPTLY) == b"still here"


async def test_target_refusing_the_proxy_resets_the_client():
    async with Server(echo=True) as gone:
        dead_port = gone.port
    async with FaultProxy("127.0.0.1", dead_port) as px, client_of(px) as (reader, _writer):
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), PROMPTLY)


async def test_closing_the_proxy_with_live_connections_leaves_nothing_pending(echo_server):
    clients = []
    async with FaultProxy("127.0.0.1", echo_server.port) as px:
        for _ in range(3):
            reader, writer = await asyncio.open_connection(px.host, px.port)
            writer.write(b"hi")
            assert await reader.readexactly(2) == b"hi"
            clients.append((reader, writer))
        px.blackhole()  # plus one connection held before reaching the target
        clients.append(await asyncio.open_connection(px.host, px.port))
        await px.wait_for_connections(4)
        assert px.connections == 4
    assert px.connections == 0
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("fault-proxy")] == []
    for reader, writer in clients:
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), PROMPTLY)
        writer.transport.abort()
    gc.collect()  # an unclosed transport would raise ResourceWarning here


async def test_refuse_set_before_start_refuses_from_the_first_connect(echo_server):
    px = FaultProxy("127.0.0.1", echo_server.port)
    px.refuse = True
    async with px:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(px.host, px.port)
        px.clear_faults()
        async with client_of(px) as (reader, writer):
            writer.write(b"ok")
            assert await reader.readexactly(2) == b"ok"


async def test_clear_faults_restores_a_plain_link(echo_server):
    async with FaultProxy("127.0.0.1", echo_server.port) as px:
        px.latency = 30
        px.bandwidth = 1
        px.slice_size = 1
        px.blackhole()
        px.clear_faults()
        async with client_of(px) as (reader, writer):
            payload = os.urandom(10_000)
            writer.write(payload)
            assert await asyncio.wait_for(reader.readexactly(len(payload)), PROMPTLY) == payload


async def test_wait_for_connections_times_out_with_timeout_error(echo_server):
    async with FaultProxy("127.0.0.1", echo_server.port) as px:
        with pytest.raises(TimeoutError):
            await px.wait_for_connections(1, timeout=0.05)


@pytest.mark.parametrize(
    ("target", "host"),
    [("10.0.0.1", "127.0.0.1"), ("example.com", "127.0.0.1"), ("127.0.0.1", "0.0.0.0")],
)
def test_non_loopback_addresses_are_refused(target, host):
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(target, 8000, host=host)


def test_url_points_at_the_proxy_keeping_scheme_path_and_query():
    px = FaultProxy("127.0.0.1", 5555, port=6001)
    assert px.url("http://127.0.0.1:5555/api/v3?x=1") == "http://127.0.0.1:6001/api/v3?x=1"
    assert px.url("wss://localhost/connection/websocket") == (
        "wss://127.0.0.1:6001/connection/websocket"
    )
    assert FaultProxy("::1", 5555, host="::1", port=6001).url("ws://[::1]:5555/") == (
        "ws://[::1]:6001/"
    )


def test_settings_reject_out_of_range_values():
    px = FaultProxy("127.0.0.1", 5555)
    with pytest.raises(ValueError):
        px.latency = -1
    with pytest.raises(ValueError):
        px.slice_size = 0
    with pytest.raises(ValueError):
        px.bandwidth = 0
    with pytest.raises(ValueError):
        px.reset_after(-1)


async def test_aiohttp_get_through_a_slow_sliced_proxy_returns_the_body():
    body = os.urandom(100_000)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body)

    app = web.Application()
    app.router.add_get("/data", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with FaultProxy("127.0.0.1", port) as px:
            px.latency = 0.02
            px.slice_size = 1000
            async with aiohttp.ClientSession() as session:
                url = px.url(f"http://127.0.0.1:{port}/data")
                async with session.get(url) as response:
                    assert response.status == 200
                    assert await response.read() == body
            assert px.total_connections == 1
            assert px.bytes_downstream > len(body)
    finally:
        await runner.cleanup()


async def test_websocket_messages_survive_a_sliced_proxy():
    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with ws_serve(echo, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with FaultProxy("127.0.0.1", port) as px:
            px.slice_size = 3
            async with ws_connect(px.url(f"ws://127.0.0.1:{port}/"), compression=None) as ws:
                for size in (1, 200, 70_000):
                    payload = os.urandom(size)
                    await ws.send(payload)
                    assert await asyncio.wait_for(ws.recv(), PROMPTLY) == payload
            assert px.bytes_upstream > 70_000
