"""Reliability matrix rows 10-12, 29 and 30: fail closed, send nothing unsafe, leak no secret."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl

import pytest
import trustme
from aiohttp import web
from rel_support import STEP, client_on

from cadenza_async import CadenzaClient
from cadenza_async.config import RetryPolicy, Timeouts
from cadenza_async.errors import (
    CadenzaError,
    ConfigurationError,
    TransportError,
    UnexpectedResponseError,
)
from cadenza_async.testing import CadenzaSimulator

CANARY = "canary-" + secrets.token_hex(16)


class Recorder:
    """An aiohttp app that records every request (path, Authorization) and answers ``status``."""

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self._status = status
        self._headers = headers

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.path, request.headers.get("Authorization")))
        return web.Response(status=self._status, headers=self._headers, body=b"{}")

    @contextlib.asynccontextmanager
    async def serve(self, ssl_context: ssl.SSLContext | None = None):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
            yield runner.addresses[0][1]
        finally:
            await runner.cleanup()


# --------------------------------------------------------------------------- row 10


def _server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@pytest.mark.parametrize("kind", ["unknown-ca", "wrong-host"])
async def test_row10_bad_tls_certificate_fails_closed_with_a_typed_error_and_no_token_sent(kind):
    ca = trustme.CA()  # trusted by nobody: the client uses the system trust store
    cert = ca.issue_cert("127.0.0.1") if kind == "unknown-ca" else ca.issue_cert("other.example")
    server = Recorder()
    async with server.serve(_server_context(cert)) as port:
        settings = {
            "token": CANARY,
            "api_url": f"https://127.0.0.1:{port}",
            "ws_url": f"wss://127.0.0.1:{port}/connection/websocket",
            "timeouts": Timeouts(connect=1.0, request=1.0, confirm=2.0),
            "retry": RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01),
        }
        # The stream (wss) at start: refused, so the client enters without it
        # (degraded); the cancel still goes out over https and fails typed, at
        # once: a TLS failure provably never sent anything.
        async with CadenzaClient(**settings) as entered:
            assert not entered.stats().stream_connected
            with pytest.raises(TransportError) as stream_error:
                await asyncio.wait_for(
                    entered.cancel_and_confirm("00000000-0000-4000-8000-000000000001"), STEP
                )
            assert stream_error.value.maybe_sent is False
        # The REST cancel (https) on its own.
        client = CadenzaClient(**settings)
        try:
            with pytest.raises(TransportError) as rest_error:
                await asyncio.wait_for(client.cancel("00000000-0000-4000-8000-000000000001"), STEP)
        finally:
            await client.aclose()

    assert server.seen == []  # no request got past the handshake: the token never left
    for error in (stream_error.value, rest_error.value):
        assert isinstance(error, CadenzaError)
        assert CANARY not in repr(error)
        assert CANARY not in str(error)


# --------------------------------------------------------------------------- row 11


@pytest.mark.parametrize(
    ("api_url", "ws_url"),
    [
        ("http://api.example.com", "wss://ws.example.com/connection/websocket"),
        ("https://api.example.com", "ws://ws.example.com/connection/websocket"),
        ("http://10.1.2.3:8080", "ws://10.1.2.3:8000/connection/websocket"),
    ],
    ids=["http-api", "ws-stream", "private-ip"],
)
async def test_row11_insecure_url_to_a_remote_host_raises_before_any_socket(
    api_url, ws_url, monkeypatch
):
    loop = asyncio.get_running_loop()
    opened: list[str] = []

    async def no_connection(*args, **kwargs):
        opened.append("create_connection")
        raise AssertionError("a socket was opened")

    async def no_lookup(*args, **kwargs):
        opened.append("getaddrinfo")
        raise AssertionError("a name was resolved")

    monkeypatch.setattr(loop, "create_connection", no_connection)
    monkeypatch.setattr(loop, "getaddrinfo", no_lookup)

    with pytest.raises(ConfigurationError):
        async with CadenzaClient(token=CANARY, api_url=api_url, ws_url=ws_url) as client:
            await client.cancel_and_confirm("00000000-0000-4000-8000-000000000001")

    assert opened == []
    # Allowed only when asked for explicitly (constructing opens nothing either).
    allowed = CadenzaClient(token=CANARY, api_url=api_url, ws_url=ws_url, allow_insecure=True)
    await allowed.aclose()
    assert opened == []


# --------------------------------------------------------------------------- row 12


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_row12_redirected_cancel_is_not_followed_and_the_second_host_sees_nothing(
    cadenza_sim, status
):
    second = Recorder()
    async with second.serve() as second_port:
        target = f"http://127.0.0.1:{second_port}/api/v3/tradeOrder/cancel"
        first = Recorder(status=status, headers={"Location": target})
        async with first.serve() as first_port:
            async with client_on(cadenza_sim, api_url=f"http://127.0.0.1:{first_port}") as client:
                order = cadenza_sim.create_order()
                with pytest.raises(UnexpectedResponseError) as info:
                    await asyncio.wait_for(client.cancel_and_confirm(order.trade_order_id), STEP)

    assert info.value.status == status
    assert second.seen == []
    assert [path for path, _auth in first.seen] == ["/api/v3/tradeOrder/cancel"]
    assert cadenza_sim.get_order(order.trade_order_id).status == "OPEN"  # nothing invented


# --------------------------------------------------------------------------- row 29


BAD_IDS = ["", " ", "x" * 129, "../x", "a/../../b", "id\r\nX-Evil: 1", "id\n", None, 42, b"id"]


@pytest.mark.parametrize("bad", BAD_IDS, ids=[repr(b)[:12] for b in BAD_IDS])
@pytest.mark.parametrize("via", ["http", "ws"])
@pytest.mark.cadenza_sim(cancel_delay=0.05)
async def test_row29_bad_ids_raise_value_error_on_every_path_and_the_server_sees_nothing(
    cadenza_sim, bad, via
):
    async with client_on(cadenza_sim, cancel_via=via) as client:
        for call in (
            lambda: client.cancel(bad),
            lambda: client.cancel_and_confirm(bad),
            lambda: client.get_order(bad),
        ):
            with pytest.raises(ValueError):
                await call()
        with pytest.raises(ValueError):
            client.cancel_nowait(bad)
        (outcome,) = await client.cancel_many([bad])
        assert isinstance(outcome, ValueError)

    assert cadenza_sim.cancel_requests == []
    assert cadenza_sim.rest_requests == []


# --------------------------------------------------------------------------- row 30


DEBUG_LOGGERS = [
    None,
    "cadenza_async",
    "websockets",
    "websockets.client",
    "aiohttp",
    "aiohttp.client",
    "aiohttp.internal",
    "asyncio",
]


async def test_row30_canary_token_appears_nowhere_at_debug_across_a_full_cycle(caplog):
    for name in DEBUG_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    errors: list[BaseException] = []
    async with CadenzaSimulator(token=CANARY, cancel_delay=0.02, ping_interval=0.1) as sim:
        for via in ("http", "ws"):
            async with client_on(sim, cancel_via=via) as client:
                order = sim.create_order()
                result = await client.cancel_and_confirm(
                    order.trade_order_id, trading_account_id=sim.trading_account_id
                )
                assert result.cancelled
                await sim.wait_for(lambda: sim.pongs_received >= 1)
                try:
                    await client.cancel_and_confirm("00000000-0000-4000-8000-00000000dead")
                except CadenzaError as exc:
                    errors.append(exc)
                texts = [repr(client), str(client), repr(client.config), repr(client._stream)]
                assert all(CANARY not in text for text in texts)
        # Expired on the server: close 3005, REST 401, and a fixed token cannot refresh.
        async with client_on(sim, cancel_via="http") as client:
            sim.expire_token(CANARY)
            try:
                await client.cancel_and_confirm(sim.create_order().trade_order_id, timeout=1.0)
            except CadenzaError as exc:
                errors.append(exc)

    assert len(errors) == 3
    for error in errors:
        link: BaseException | None = error
        while link is not None:
            for text in (repr(link), str(link), repr(link.args), repr(vars(link))):
                assert CANARY not in text, f"canary in {type(link).__name__}: {text[:200]}"
            link = link.__cause__ or link.__context__
    names = {record.name for record in caplog.records}
    assert "websockets.client" in names, "websockets' DEBUG log was not captured"
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + repr(record.exc_info)
        assert CANARY not in text, f"canary in log {record.name}: {text[:200]}"
