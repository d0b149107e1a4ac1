"""The fault proxy relays TLS untouched: the client verifies the server's own certificate."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import ssl
import sys
import warnings

import aiohttp
import pytest
import trustme
from aiohttp import web
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve

from cadenza_async.testing.faults import FaultProxy

BODY = os.urandom(200_000)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def server_cert(ca):
    return ca.issue_cert("127.0.0.1", "localhost")


@pytest.fixture
def server_ssl(server_cert):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    return context


@pytest.fixture
def client_ssl(ca):
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@contextlib.asynccontextmanager
async def https_server(server_ssl: ssl.SSLContext):
    async def data(request: web.Request) -> web.Response:
        return web.Response(body=BODY)

    app = web.Application()
    app.router.add_get("/data", data)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_https_get_through_a_sliced_slow_proxy_sees_the_servers_own_certificate(
    server_ssl, client_ssl, server_cert
):
    async with https_server(server_ssl) as port, FaultProxy("127.0.0.1", port) as px:
        px.latency = 0.02
        px.slice_size = 512  # TLS records cut across many TCP segments
        async with aiohttp.ClientSession() as session:
            url = px.url(f"https://127.0.0.1:{port}/data")
            async with session.get(url, ssl=client_ssl) as response:
                assert response.status == 200
                assert response.connection is not None  # read the certificate before the body
                tls = response.connection.transport.get_extra_info("ssl_object")
                seen = tls.getpeercert(binary_form=True)
                assert await response.read() == BODY
        expected = ssl.PEM_cert_to_DER_cert(server_cert.cert_chain_pems[0].bytes().decode())
        assert seen == expected
        assert px.bytes_downstream > len(BODY)  # records, not plaintext, went through


async def test_client_trusting_another_ca_fails_closed_through_the_proxy(server_ssl):
    stranger = ssl.create_default_context()
    trustme.CA().configure_trust(stranger)
    async with https_server(server_ssl) as port, FaultProxy("127.0.0.1", port) as px:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(px.url(f"https://127.0.0.1:{port}/data"), ssl=stranger)
        assert px.total_connections == 1


async def test_reset_mid_tls_record_fails_the_https_download(server_ssl, client_ssl):
    with _unclosed_tls_on_310():
        async with https_server(server_ssl) as port, FaultProxy("127.0.0.1", port) as px:
            async with aiohttp.ClientSession() as session:
                url = px.url(f"https://127.0.0.1:{port}/data")
                async with session.get(url, ssl=client_ssl) as response:
                    assert await response.read() == BODY
                # Handshake is done on the pooled connection; cut the next reply halfway.
                fired = px.reset_after(len(BODY) // 2)
                with pytest.raises(aiohttp.ClientError):
                    async with session.get(url, ssl=client_ssl) as response:
                        await response.read()
                await asyncio.wait_for(fired.wait(), 5.0)
        gc.collect()


@contextlib.contextmanager
def _unclosed_tls_on_310():
    """Python 3.10 only: ignore the ResourceWarning of an SSL transport reset mid-record.

    Its sslproto leaves the client's transport unclosed when the connection is
    reset mid-record (the rewrite in 3.11 closes it); the transport is the test's
    own aiohttp client's, nothing of the proxy under test.
    """
    if sys.version_info >= (3, 11):
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield


async def test_wss_messages_pass_through_a_sliced_proxy(server_ssl, client_ssl):
    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with ws_serve(echo, "127.0.0.1", 0, ssl=server_ssl, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with FaultProxy("127.0.0.1", port) as px:
            px.slice_size = 5
            url = px.url(f"wss://127.0.0.1:{port}/")
            async with ws_connect(url, ssl=client_ssl, compression=None) as ws:
                for size in (1, 300, 20_000):
                    payload = os.urandom(size)
                    await ws.send(payload)
                    assert await asyncio.wait_for(ws.recv(), 5.0) == payload
