"""The token goes only to the configured hosts: no WebSocket redirect, no proxy unless configured.

Every server here listens on 127.0.0.1: a redirecting server on one port
pointing at a recording WebSocket server on another, a recording proxy (a
plain asyncio server that notes each request head and refuses it), and a
Centrifugo stand-in whose refusals quote the token back.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support import ACCOUNT_ID, client_for, until
from websockets.asyncio.client import connect

from cadenza_async import (
    CadenzaClient,
    CadenzaError,
    ConfigurationError,
    RetryPolicy,
    StreamError,
    Timeouts,
    TransportError,
)
from cadenza_async._auth import TokenSource
from cadenza_async._ratelimit import RateGate
from cadenza_async.config import ClientConfig
from cadenza_async.http import HttpApi
from cadenza_async.stream import OrderStream, _NoRedirectConnect
from cadenza_async.testing import CadenzaSimulator

CANARY = "canary-" + "".join(secrets.choice("GHJKMNPQRSTVWXYZ") for _ in range(32))
WS_PATH = "/connection/websocket"
PROXY_VARIABLES = ["http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy"]


def fragments(secret: str, size: int = 8) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def assert_no_fragment(secret: str, *texts: str) -> None:
    for text in texts:
        for piece in fragments(secret):
            assert piece not in text, f"{piece!r} of the token in {text[:200]!r}"


def texts_of(error: BaseException) -> list[str]:
    return [str(error), repr(error), repr(error.args), repr(vars(error))]


# ------------------------------------------------------------------ loopback servers


class RecordingWebSocketServer:
    """A WebSocket endpoint that records every handshake and every frame it receives."""

    def __init__(self) -> None:
        self.handshakes = 0
        self.ended = 0  # connections read to their end
        self.frames: list[str] = []
        app = web.Application()
        app.router.add_get(WS_PATH, self._handler)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def ws_url(self) -> str:
        return str(self.server.make_url(WS_PATH)).replace("http://", "ws://")

    async def _handler(self, request: web.Request) -> web.StreamResponse:
        self.handshakes += 1
        try:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for message in ws:
                self.frames.append(str(message.data))
            return ws
        finally:
            self.ended += 1


class Redirector:
    """Answers every request with ``status`` and ``Location: target``."""

    def __init__(self, status: int, target: str) -> None:
        self.hits = 0
        self.status = status
        self.target = target
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handler)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def ws_url(self) -> str:
        return str(self.server.make_url(WS_PATH)).replace("http://", "ws://")

    async def _handler(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        return web.Response(status=self.status, headers={"Location": self.target})


class RecordingProxy:
    """Notes the head of every request it receives (CONNECT or absolute-form) and refuses it."""

    def __init__(self) -> None:
        self.heads: list[str] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            self.heads.append(head.decode("latin-1"))
            writer.write(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def recorder() -> AsyncIterator[RecordingWebSocketServer]:
    server = RecordingWebSocketServer()
    await server.server.start_server()
    try:
        yield server
    finally:
        await server.server.close()


@pytest.fixture
async def proxy() -> AsyncIterator[RecordingProxy]:
    server = RecordingProxy()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def make_stream(
    ws_url: str, token: str = CANARY, failures: list[StreamError] | None = None, **options: Any
) -> OrderStream:
    failures = [] if failures is None else failures
    config = ClientConfig(
        token=token,
        api_url="http://127.0.0.1:9",
        ws_url=ws_url,
        timeouts=Timeouts(connect=options.pop("connect", 0.5)),
        **options,
    )
    return OrderStream(
        config,
        TokenSource(config.token),
        on_publication=lambda channel, data, offset: None,
        on_gap=lambda channel: None,
        on_failure=failures.append,
        min_reconnect_delay=0.01,
        max_reconnect_delay=0.05,
    )


# ------------------------------------------------------------------ redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_websocket_redirect_is_not_followed_and_the_token_never_reaches_its_target(
    recorder: RecordingWebSocketServer, status: int
):
    redirector = Redirector(status, recorder.ws_url)
    await redirector.server.start_server()
    stream = make_stream(redirector.ws_url)
    try:
        with pytest.raises(TransportError) as info:
            await stream.start()
    finally:
        await stream.aclose()
        await redirector.server.close()

    assert redirector.hits >= 1  # the client did reach the redirecting server
    assert "redirects are not followed" in str(info.value)
    assert f"HTTP {status}" in str(info.value)
    assert recorder.handshakes == 0
    assert recorder.frames == []


async def test_even_a_followed_redirect_is_dropped_before_the_token_is_sent(
    recorder: RecordingWebSocketServer, monkeypatch: pytest.MonkeyPatch
):
    # As if a websockets release ignored the override and followed the redirect:
    # the final-URI check still stops the connect frame.
    monkeypatch.setattr(_NoRedirectConnect, "process_redirect", connect.process_redirect)
    redirector = Redirector(302, recorder.ws_url)
    await redirector.server.start_server()
    stream = make_stream(redirector.ws_url)
    try:
        with pytest.raises(TransportError) as info:
            await stream.start()
    finally:
        await stream.aclose()
        await redirector.server.close()
    # the recorder read whatever was sent, each connection to its end
    await until(lambda: recorder.ended == recorder.handshakes)

    assert recorder.handshakes >= 1  # websockets did follow it here
    assert "another URI" in str(info.value)
    assert recorder.frames == []
    assert_no_fragment(CANARY, *recorder.frames)


async def test_a_client_whose_ws_url_redirects_still_cancels_over_http(
    recorder: RecordingWebSocketServer,
):
    async with CadenzaSimulator(token=CANARY) as sim:
        redirector = Redirector(307, recorder.ws_url)
        await redirector.server.start_server()
        client = CadenzaClient(
            token=CANARY,
            api_url=sim.api_url,
            ws_url=redirector.ws_url,
            timeouts=Timeouts(connect=0.5, request=2.0, confirm=3.0),
        )
        try:
            order = await client.cancel(sim.create_order().trade_order_id)
            assert order.trade_order_id
        finally:
            await client.aclose()
            await redirector.server.close()
    assert recorder.frames == []


# ------------------------------------------------------------------ proxies


def set_proxy_environment(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, url)
        monkeypatch.setenv(name.upper(), url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)


@pytest.mark.parametrize("cancel_via", ["http", "ws"])
async def test_proxy_environment_variables_are_ignored_by_both_transports(
    proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch, cancel_via: str
):
    set_proxy_environment(monkeypatch, proxy.url)
    async with CadenzaSimulator(token=CANARY, cancel_delay=0.01) as sim:
        async with client_for(
            sim,
            token=CANARY,
            cancel_via=cancel_via,
            timeouts=Timeouts(connect=2.0, request=2.0, confirm=5.0),
        ) as client:
            result = await client.cancel_and_confirm(sim.create_order().trade_order_id)
            assert result.cancelled
            assert client.stats().stream_connected
    assert proxy.heads == []


async def test_a_configured_proxy_is_not_used_for_loopback_hosts(proxy: RecordingProxy):
    async with CadenzaSimulator(token=CANARY, cancel_delay=0.01) as sim:
        async with client_for(
            sim,
            token=CANARY,
            proxy=proxy.url,
            timeouts=Timeouts(connect=2.0, request=2.0, confirm=5.0),
        ) as client:
            result = await client.cancel_and_confirm(sim.create_order().trade_order_id)
            assert result.cancelled
    assert proxy.heads == []


async def test_a_configured_proxy_carries_both_transports_to_remote_hosts_without_the_token(
    proxy: RecordingProxy,
):
    # Nothing leaves loopback: the proxy refuses every CONNECT, and the
    # client resolves no remote name (the proxy would). aiohttp on its own
    # would send the session's Authorization header to the proxy as
    # Proxy-Authorization; only the proxy URL's own credentials may go there.
    proxy_url = proxy.url.replace("http://", "http://user:pw@")
    config = ClientConfig(
        token=CANARY,
        api_url="https://cadenza-api.test",
        ws_url="wss://cadenza-ws.test/connection/websocket",
        proxy=proxy_url,
        retry=RetryPolicy(attempts=1),
        timeouts=Timeouts(connect=0.5, request=1.0),
    )
    http = HttpApi(config, TokenSource(config.token), RateGate(None))
    try:
        with pytest.raises(TransportError):
            await http.cancel_order("770e8400-e29b-41d4-a716-446655440002", ACCOUNT_ID)
    finally:
        await http.aclose()
    stream = make_stream(config.ws_url, proxy=proxy_url)
    try:
        with pytest.raises(TransportError):
            await stream.start()
    finally:
        await stream.aclose()

    first_lines = {head.split("\r\n", 1)[0] for head in proxy.heads}
    assert "CONNECT cadenza-api.test:443 HTTP/1.1" in first_lines
    assert "CONNECT cadenza-ws.test:443 HTTP/1.1" in first_lines
    assert_no_fragment(CANARY, *proxy.heads)  # CONNECT carries no token
    for head in proxy.heads:
        assert "Proxy-Authorization: Basic dXNlcjpwdw==" in head  # user:pw
        assert "Bearer" not in head


def test_proxy_setting_is_validated_and_skipped_for_loopback():
    with pytest.raises(ConfigurationError):
        ClientConfig(token="t", proxy="socks5://127.0.0.1:1080")
    with pytest.raises(ConfigurationError):
        ClientConfig(token="t", proxy="http://")
    config = ClientConfig(token="t", proxy="http://proxy.example:3128")
    assert "proxy.example" not in repr(config)
    assert config.proxy_for("wss://cadenza-ws.example/x") == "http://proxy.example:3128"
    assert config.proxy_for("ws://127.0.0.1:8000/x") is None
    assert config.proxy_for("http://localhost:8000") is None
    assert config.proxy_for("http://[::1]:8000") is None
    assert config.proxy_for("http://api.localhost:8000") == "http://proxy.example:3128"
    assert ClientConfig(token="t").proxy_for("wss://cadenza-ws.example/x") is None


# ------------------------------------------------------------------ Centrifugo texts


class EchoingCentrifugo:
    """Answers the connect command by quoting the token back: refusal, close reason or push."""

    def __init__(self, how: str) -> None:
        self.how = how
        app = web.Application()
        app.router.add_get(WS_PATH, self._handler)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def ws_url(self) -> str:
        return str(self.server.make_url(WS_PATH)).replace("http://", "ws://")

    async def _handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            command = msgspec.json.decode(str(message.data).split("\n")[0])
            token = command["connect"]["token"]
            ident = command["id"]
            if self.how == "refuse":
                reply = {"id": ident, "error": {"code": 101, "message": f"bad token {token}"}}
                await ws.send_str(msgspec.json.encode(reply).decode())
            elif self.how == "refuse-other":
                reply = {"id": ident, "error": {"code": 107, "message": f"Bearer {token} denied"}}
                await ws.send_str(msgspec.json.encode(reply).decode())
            else:
                connected = {"id": ident, "connect": {"client": "c1", "version": "6"}}
                await ws.send_str(msgspec.json.encode(connected).decode())
                if self.how == "close":
                    await ws.close(code=3500, message=f"invalid token {token[:30]}".encode())
                else:
                    push = {"push": {"disconnect": {"code": 3501, "reason": f"token {token}"}}}
                    await ws.send_str(msgspec.json.encode(push).decode())
            break
        if not ws.closed:  # hold the connection until the client leaves (it read the answer)
            with contextlib.suppress(asyncio.TimeoutError):
                await ws.receive(timeout=5.0)
        return ws


@pytest.mark.parametrize("how", ["refuse", "refuse-other", "close", "push"])
async def test_centrifugo_texts_that_quote_the_token_are_scrubbed(how: str):
    server = EchoingCentrifugo(how)
    await server.server.start_server()
    failures: list[StreamError] = []
    stream = make_stream(server.ws_url, failures=failures, connect=2.0)

    async def start_and_wait_for_the_failure() -> None:
        await stream.start()  # a refused connect raises here
        await until(lambda: failures)  # a close or a push comes after the connect succeeded
        raise failures[0]

    try:
        with pytest.raises(CadenzaError) as info:
            await start_and_wait_for_the_failure()
    finally:
        await stream.aclose()
        await server.server.close()
    error = info.value
    chain: list[BaseException] = [error]
    if error.__cause__ is not None:
        chain.append(error.__cause__)
    for link in chain:
        assert_no_fragment(CANARY, *texts_of(link))
