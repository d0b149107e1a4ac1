"""`cadenza-async doctor`: each check passing against the simulator, and failing with a reason and a fix."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import email.utils
import ipaddress
import json
import logging
import math
import os
import secrets
import socket
import ssl
import time
from decimal import Decimal

import pytest
import trustme
from aiohttp import web
from cli_support import clear_env, cli_env, fake_api, json_lines, start_cli
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cadenza_async import cli
from cadenza_async.cli import _doctor_explain, _doctor_live, _netprobe
from cadenza_async.cli._doctor_config import (
    environment_of,
    human_duration,
    shown_url,
    token_facts,
)
from cadenza_async.cli._wsprobe import WsProbeError
from cadenza_async.models import TradeOrder
from cadenza_async.testing import CadenzaSimulator
from cadenza_async.testing.faults import FaultProxy

CHECKS = [
    "config.endpoints",
    "config.token",
    "config.account",
    "rest.dns",
    "rest.tcp",
    "rest.tls",
    "ws.dns",
    "ws.tcp",
    "ws.tls",
    "rest.auth",
    "rest.health",
    "ws.connect",
    "ws.subscribe",
    "ws.rpc",
    "ws.wire",
    "rest.latency",
    "clock.skew",
    "live.order",
]
INSTRUMENT = "BINANCE:BTC/USDT"


async def doctor(*args: str, capsys) -> tuple[int, dict[str, dict], str]:
    """Run ``doctor --json ARGS`` in-process: the exit status, the checks by name, stderr."""
    code = await cli.run(["doctor", "--json", *args])
    captured = capsys.readouterr()
    lines = json_lines(captured.out)
    summary = lines[-1]
    assert summary["check"] == "summary"
    assert summary["exit_status"] == code
    checks = {line["check"]: line for line in lines[:-1]}
    return code, checks, captured.err


def statuses(checks: dict[str, dict]) -> dict[str, str]:
    return {name: check["status"] for name, check in checks.items()}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def jwt(claims: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


# ---- everything passes --------------------------------------------------------------------


async def test_every_check_passes_against_the_simulator_in_plain_text(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)

    code = await cli.run(["doctor", "--plain"])

    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert code == 0
    assert [line.split()[1] for line in lines[: len(CHECKS)]] == CHECKS
    by_name = {line.split()[1]: line for line in lines[: len(CHECKS)]}
    assert all(
        by_name[name].startswith("OK ")
        for name in CHECKS
        if "tls" not in name and name != "live.order"
    )
    assert by_name["config.endpoints"].count("simulator/loopback") == 1
    assert by_name["rest.tls"].startswith("SKIP")
    assert "loopback" in by_name["rest.tls"]
    assert "no TLS to check" in by_name["ws.tls"]
    assert "pings every 25 s" in by_name["ws.connect"]
    assert f"tradingAccount:{cadenza_sim.trading_account_id}" in by_name["ws.subscribe"]
    assert "'not found'" in by_name["ws.rpc"]
    assert "median" in by_name["rest.latency"]
    assert "p99" in by_name["rest.latency"]
    assert "--place-test-order" in by_name["live.order"]
    assert "the server speaks the current wire" in by_name["ws.wire"]
    assert lines[-1] == "15 OK, 0 FAIL, 3 SKIP: no check failed"
    assert cadenza_sim.token not in captured.out + captured.err


@pytest.mark.cadenza_sim(ping_interval=7)
async def test_json_prints_one_object_per_check_then_a_summary(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    cadenza_sim.create_order(publish=True)  # the channel's offset moves to 1

    code, checks, _err = await doctor(capsys=capsys)

    assert code == 0
    assert list(checks) == CHECKS
    for check in checks.values():
        assert set(check) == {"check", "status", "message", "fix", "elapsed", "data"}
        assert check["status"] in ("OK", "SKIP")
    assert checks["ws.connect"]["data"]["ping_interval"] == 7
    epoch, offset = cadenza_sim.channel_position()
    assert checks["ws.subscribe"]["data"]["epoch"] == epoch
    assert checks["ws.subscribe"]["data"]["offset"] == offset == 1
    latency = checks["rest.latency"]["data"]
    assert latency["calls"] == 20
    assert 0 < latency["min"] <= latency["median"] <= latency["p99"] <= latency["max"]
    assert checks["rest.tcp"]["elapsed"] > 0
    assert abs(checks["clock.skew"]["data"]["skew"]) < 2


async def test_the_rpc_check_and_the_rest_checks_cancel_nothing(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    orders = cadenza_sim.create_orders(3)

    code, checks, _err = await doctor(capsys=capsys)

    assert code == 0
    rpc_id = checks["ws.rpc"]["data"]["order_id"]
    assert cadenza_sim.cancel_requests == [(rpc_id, "ws")]  # one unknown id, nothing else
    assert cadenza_sim.get_order(rpc_id) is None
    assert not cadenza_sim.cancels_applied
    assert all(cadenza_sim.get_order(o.trade_order_id).status == "OPEN" for o in orders)


# ---- configuration ------------------------------------------------------------------------


async def test_no_token_and_no_account_fail_the_configuration_and_skip_what_needs_them(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)
    monkeypatch.setenv("CADENZA_API_URL", cadenza_sim.api_url)
    monkeypatch.setenv("CADENZA_WS_URL", cadenza_sim.ws_url)

    code, checks, _err = await doctor(capsys=capsys)

    assert code == 1
    assert checks["config.token"]["status"] == "FAIL"
    assert "CADENZA_TOKEN" in checks["config.token"]["fix"]
    assert checks["config.account"]["status"] == "FAIL"
    assert "CADENZA_TRADING_ACCOUNT_ID" in checks["config.account"]["fix"]
    assert checks["rest.tcp"]["status"] == "OK"  # the network checks need no token
    for name in ("rest.auth", "ws.connect", "ws.subscribe", "ws.rpc", "rest.latency"):
        assert checks[name]["status"] == "SKIP", name
        assert "config" in checks[name]["message"] or "rest.auth" in checks[name]["message"]


async def test_a_jwt_shows_its_expiry_without_the_token(capsys, monkeypatch):
    token = jwt({"sub": "someone@example.com", "exp": int(time.time()) + 3 * 3600 + 60})
    async with CadenzaSimulator(token=token) as sim:
        clear_env(monkeypatch)(sim)
        code, checks, err = await doctor(capsys=capsys)

    assert code == 0
    check = checks["config.token"]
    assert check["status"] == "OK"
    assert "expires in 3 h" in check["message"]
    assert check["data"]["jwt"] is True
    assert 3 * 3600 < check["data"]["expires_in"] <= 3 * 3600 + 60
    text = json.dumps(checks) + err
    assert "someone@example.com" not in text
    assert token.split(".")[1][:12] not in text


async def test_an_expired_jwt_fails_the_token_check(capsys, monkeypatch):
    token = jwt({"exp": int(time.time()) - 7200})
    async with CadenzaSimulator(token=token) as sim:  # the simulator does not read it
        clear_env(monkeypatch)(sim)
        code, checks, _err = await doctor(capsys=capsys)

    assert code == 1
    assert checks["config.token"]["status"] == "FAIL"
    assert "expired 2 h ago" in checks["config.token"]["message"]
    assert "fresh token" in checks["config.token"]["fix"]
    assert checks["rest.auth"]["status"] == "OK"


def refuse_dns(monkeypatch) -> list[str]:
    """Every host fails to resolve (nothing leaves the machine); the names asked are returned."""
    asked: list[str] = []

    async def no_such_host(host: str, port: int):
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(_netprobe, "getaddrinfo", no_such_host)
    return asked


async def test_uat_and_production_mixed_fail_the_endpoints_check(capsys, monkeypatch):
    clear_env(monkeypatch)
    asked = refuse_dns(monkeypatch)
    monkeypatch.setenv("CADENZA_TOKEN", "some-token-4f2a")
    monkeypatch.setenv("CADENZA_TRADING_ACCOUNT_ID", "550e8400-e29b-41d4-a716-446655440000")
    monkeypatch.setenv("CADENZA_API_URL", "https://cadenza-api-uat.algo724.com")
    monkeypatch.setenv("CADENZA_WS_URL", "wss://cadenza-ws.algo724.com/connection/websocket")

    code, checks, _err = await doctor(capsys=capsys)

    assert code == 1
    endpoints = checks["config.endpoints"]
    assert endpoints["status"] == "FAIL"
    assert "REST is UAT but the WebSocket is production" in endpoints["message"]
    assert endpoints["data"]["rest_environment"] == "UAT"
    assert asked == ["cadenza-api-uat.algo724.com", "cadenza-ws.algo724.com"]


async def test_a_plaintext_url_to_a_remote_host_fails_with_the_flag_to_use(capsys, monkeypatch):
    clear_env(monkeypatch)
    refuse_dns(monkeypatch)
    monkeypatch.setenv("CADENZA_TOKEN", "some-token-4f2a")
    monkeypatch.setenv("CADENZA_API_URL", "http://api.example.com")

    code, checks, _err = await doctor(capsys=capsys)

    assert code == 1
    endpoints = checks["config.endpoints"]
    assert endpoints["status"] == "FAIL"
    assert "--api-url" in endpoints["message"]
    assert "--allow-insecure" in endpoints["message"]
    assert checks["rest.auth"]["status"] == "SKIP"


def test_endpoints_are_recognised_by_host():
    assert environment_of("https://cadenza-api-uat.algo724.com") == "UAT"
    assert environment_of("wss://cadenza-ws-uat.algo724.com/connection/websocket") == "UAT"
    assert environment_of("https://cadenza-api.algo724.com/") == "production"
    assert environment_of("wss://CADENZA-WS.algo724.com./connection/websocket") == "production"
    assert environment_of("http://127.0.0.1:8080") == "simulator/loopback"
    assert environment_of("ws://[::1]:8080/connection/websocket") == "simulator/loopback"
    assert environment_of("https://cadenza-api-uat.algo724.com.evil.example") == "custom"
    assert shown_url("https://user:pw@host:1/p?token=x#f") == "https://host:1/p"


def test_token_facts_read_only_the_expiry_and_never_fail():
    assert token_facts("opaque-token").jwt is False
    assert token_facts("a.b.c").jwt is False  # not base64 JSON
    assert token_facts(jwt({"sub": "x"})) == token_facts(jwt({"exp": "soon"}))
    assert token_facts(jwt({"exp": 1_900_000_000})).expires_at == 1_900_000_000
    assert token_facts(jwt({"exp": True})).expires_at is None
    assert human_duration(45) == "45 s"
    assert human_duration(-7100) == "118 min"
    assert human_duration(7200) == "2 h"
    assert human_duration(3 * 3600 + 300) == "3 h 5 min"
    assert human_duration(50 * 3600) == "2 d 2 h"


# ---- DNS, TCP -----------------------------------------------------------------------------


async def test_a_host_that_does_not_resolve_fails_dns_and_skips_the_rest(capsys, monkeypatch):
    clear_env(monkeypatch)
    refuse_dns(monkeypatch)
    monkeypatch.setenv("CADENZA_TOKEN", "some-token-4f2a")
    monkeypatch.setenv("CADENZA_TRADING_ACCOUNT_ID", "550e8400-e29b-41d4-a716-446655440000")
    monkeypatch.setenv("CADENZA_API_URL", "https://cadenza-api-uat.algo724.com")
    monkeypatch.setenv("CADENZA_WS_URL", "wss://cadenza-ws-uat.algo724.com/connection/websocket")

    code, checks, _err = await doctor(capsys=capsys)

    assert code == 1
    assert checks["rest.dns"]["status"] == "FAIL"
    assert "does not resolve" in checks["rest.dns"]["message"]
    assert "typo" in checks["rest.dns"]["fix"]
    assert checks["ws.dns"]["status"] == "FAIL"
    skipped = ["rest.tcp", "rest.tls", "ws.tcp", "ws.tls", "rest.auth", "ws.connect"]
    assert all(checks[name]["status"] == "SKIP" for name in skipped)
    assert checks["clock.skew"]["status"] == "SKIP"


async def test_an_unreachable_host_fails_tcp_and_skips_what_needs_it(capsys, monkeypatch):
    clear_env(monkeypatch)
    port = closed_port()
    monkeypatch.setenv("CADENZA_TOKEN", "some-token-4f2a")
    monkeypatch.setenv("CADENZA_TRADING_ACCOUNT_ID", "550e8400-e29b-41d4-a716-446655440000")
    monkeypatch.setenv("CADENZA_API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("CADENZA_WS_URL", f"ws://127.0.0.1:{port}/connection/websocket")

    code, checks, _err = await doctor(capsys=capsys)

    assert code == 1
    assert checks["rest.dns"]["status"] == "OK"
    assert checks["rest.tcp"]["status"] == "FAIL"
    assert f"connection refused by 127.0.0.1:{port}" in checks["rest.tcp"]["message"]
    assert "port" in checks["rest.tcp"]["fix"]
    assert checks["ws.tcp"]["status"] == "FAIL"
    for name in ("rest.tls", "ws.tls", "rest.auth", "ws.connect", "rest.latency", "clock.skew"):
        assert checks[name]["status"] == "SKIP", name
    assert checks["live.order"]["status"] == "SKIP"


async def test_a_silent_host_fails_within_the_timeout(cadenza_sim, capsys, monkeypatch):
    async with FaultProxy("127.0.0.1", cadenza_sim.port) as px:
        px.blackhole()  # TCP is accepted, then nothing ever answers
        env = clear_env(monkeypatch)
        env(cadenza_sim)
        monkeypatch.setenv("CADENZA_API_URL", px.url(cadenza_sim.api_url))
        monkeypatch.setenv("CADENZA_WS_URL", px.url(cadenza_sim.ws_url))
        started = time.monotonic()

        code, checks, _err = await doctor("--timeout", "0.3", capsys=capsys)

        elapsed = time.monotonic() - started
    assert code == 1
    assert checks["rest.tcp"]["status"] == "OK"
    assert checks["rest.auth"]["status"] == "FAIL"
    assert checks["ws.connect"]["status"] == "FAIL"
    assert "within 0.3 s" in checks["ws.connect"]["message"]
    assert checks["clock.skew"]["status"] == "FAIL"
    assert elapsed < 5


# ---- REST auth ----------------------------------------------------------------------------


async def test_a_wrong_token_is_named_401_on_rest_and_refused_by_the_websocket(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim, token="not-the-token-7c1d")

    code, checks, err = await doctor(capsys=capsys)

    assert code == 1
    auth = checks["rest.auth"]
    assert auth["status"] == "FAIL"
    assert auth["message"] == (
        "HTTP 401 Unauthorized: the REST API refused the token (Unauthorized: invalid token)"
    )
    assert "CADENZA_TOKEN" in auth["fix"]
    assert auth["data"]["status"] == 401
    connect = checks["ws.connect"]
    assert connect["status"] == "FAIL"
    assert "3500" in connect["message"]
    assert "CADENZA_TOKEN" in connect["fix"]
    assert checks["ws.subscribe"]["status"] == "SKIP"
    assert checks["rest.latency"]["status"] == "SKIP"
    assert "not-the-token-7c1d" not in json.dumps(checks) + err


async def test_an_account_of_another_token_is_named_403_and_no_access_103(
    cadenza_sim, capsys, monkeypatch
):
    other_token = cadenza_sim.issue_token(accounts=[])
    stranger = cadenza_sim.add_account(token=other_token)
    clear_env(monkeypatch)(cadenza_sim)
    monkeypatch.setenv("CADENZA_TRADING_ACCOUNT_ID", stranger)

    code, checks, _err = await doctor(capsys=capsys)

    assert code == 1
    assert checks["rest.auth"]["message"].startswith("HTTP 403 Forbidden")
    assert stranger in checks["rest.auth"]["message"]
    subscribe = checks["ws.subscribe"]
    assert subscribe["status"] == "FAIL"
    assert subscribe["message"].startswith("no access to this account (Centrifugo error 103")
    assert stranger in subscribe["fix"]
    assert checks["ws.rpc"]["status"] == "FAIL"
    assert "PermissionDeniedError" in checks["ws.rpc"]["message"]


async def test_a_refused_subscribe_103_fails_only_the_subscribe(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    cadenza_sim.refuse_subscribe(cadenza_sim.trading_account_id, code=103)

    code, checks, _err = await doctor(capsys=capsys)

    assert code == 1
    failed = [name for name, status in statuses(checks).items() if status == "FAIL"]
    assert failed == ["ws.subscribe"]
    assert "no access to this account" in checks["ws.subscribe"]["message"]
    assert checks["ws.rpc"]["status"] == "OK"  # the connection is still good


# ---- WebSocket ----------------------------------------------------------------------------


async def test_a_refused_websocket_fails_connect_while_rest_passes(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)
    cadenza_sim.refuse_websocket(503)

    code, checks, _err = await doctor(capsys=capsys)

    assert code == 1
    connect = checks["ws.connect"]
    assert connect["status"] == "FAIL"
    assert "HTTP 503" in connect["message"]
    assert "cancels still go over HTTP" in connect["fix"]
    assert connect["data"]["status"] == 503
    assert checks["ws.subscribe"]["status"] == checks["ws.rpc"]["status"] == "SKIP"
    assert checks["rest.auth"]["status"] == checks["rest.latency"]["status"] == "OK"
    assert cadenza_sim.websocket_refusals == 1


async def test_a_subscribe_without_reply_fails_within_the_timeout_and_skips_the_rpc(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)
    cadenza_sim.delay_subscribe_replies(math.inf)

    code, checks, _err = await doctor("--timeout", "0.3", capsys=capsys)

    assert code == 1
    assert checks["ws.connect"]["status"] == "OK"
    assert checks["ws.subscribe"]["status"] == "FAIL"
    assert checks["ws.subscribe"]["message"] == "subscribe: no reply within 0.3 s"
    assert checks["ws.rpc"]["status"] == "SKIP"
    assert checks["rest.latency"]["status"] == "OK"


def test_websocket_failures_are_named_with_what_to_do():
    explain = _doctor_explain.ws_failure
    reason, fix = explain(WsProbeError("reply", "method not found", code=104), "rpc")
    assert "no cancel RPC" in reason
    assert "--via ws" in fix
    reason, fix = explain(WsProbeError("reply", "token expired", code=109), "connect")
    assert reason.startswith("token expired")
    reason, fix = explain(WsProbeError("handshake", "HTTP 404", status=404), "connect")
    assert "/connection/websocket" in fix
    reason, fix = explain(WsProbeError("handshake", "HTTP 302", status=302), "connect")
    assert "not followed" in reason


# ---- TLS ----------------------------------------------------------------------------------


def self_signed_server_context(tmp_path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


@contextlib.asynccontextmanager
async def https_server(context: ssl.SSLContext):
    async def anything(request: web.Request) -> web.Response:
        return web.Response(text="{}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_a_self_signed_certificate_fails_tls_through_the_fault_proxy(
    tmp_path, capsys, monkeypatch
):
    context = self_signed_server_context(tmp_path)
    async with https_server(context) as port, FaultProxy("127.0.0.1", port) as px:
        clear_env(monkeypatch)
        monkeypatch.setenv("CADENZA_TOKEN", "some-token-4f2a")
        monkeypatch.setenv("CADENZA_TRADING_ACCOUNT_ID", "550e8400-e29b-41d4-a716-446655440000")
        monkeypatch.setenv("CADENZA_API_URL", px.url(f"https://127.0.0.1:{port}"))
        monkeypatch.setenv("CADENZA_WS_URL", px.url(f"wss://127.0.0.1:{port}/connection/websocket"))

        code, checks, _err = await doctor(capsys=capsys)

        assert px.total_connections == 2  # one TLS handshake per host, nothing after
    assert code == 1
    for kind in ("rest", "ws"):
        tls = checks[f"{kind}.tls"]
        assert tls["status"] == "FAIL"
        assert tls["message"] == "certificate verify failed: self-signed certificate"
        assert "SSL_CERT_FILE" in tls["fix"]
        assert checks[f"{kind}.tcp"]["status"] == "OK"
    for name in ("rest.auth", "ws.connect", "rest.latency", "clock.skew"):
        assert checks[name]["status"] == "SKIP", name


@contextlib.asynccontextmanager
async def tls_front(target_port: int, context: ssl.SSLContext):
    """A TLS terminator on loopback in front of ``target_port``; yields its port."""
    handlers: set[asyncio.Task] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def test_over_tls_with_a_trusted_certificate_every_check_passes_and_shows_the_certificate(
    cadenza_sim, tmp_path
):
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with tls_front(cadenza_sim.port, context) as port:
        env = cli_env(
            cadenza_sim,
            CADENZA_API_URL=f"https://127.0.0.1:{port}",
            CADENZA_WS_URL=f"wss://127.0.0.1:{port}/connection/websocket",
            SSL_CERT_FILE=str(ca_file),  # this machine's trust, as the SDK reads it
        )
        proc = await start_cli("doctor", "--json", env=env)
        out, err = await asyncio.wait_for(proc.communicate(), 50)

    checks = {line["check"]: line for line in json_lines(out.decode())}
    assert proc.returncode == 0, out.decode() + err.decode()
    for kind in ("rest", "ws"):
        tls = checks[f"{kind}.tls"]
        assert tls["status"] == "OK"
        assert tls["data"]["tls_version"].startswith("TLSv1.")
        assert "127.0.0.1" in tls["data"]["names"]
        assert "valid until" in tls["message"]
        not_after = datetime.datetime.fromisoformat(tls["data"]["not_after"])
        assert not_after > datetime.datetime.now(datetime.timezone.utc)
        assert tls["data"]["issuer"]
    assert checks["ws.rpc"]["status"] == checks["rest.latency"]["status"] == "OK"


# ---- clock --------------------------------------------------------------------------------


async def test_a_server_clock_an_hour_ahead_fails_the_skew_check(capsys, monkeypatch):
    ahead = email.utils.formatdate(time.time() + 3600, usegmt=True)

    async def dated(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no", headers={"Date": ahead})

    async with fake_api(dated) as url:
        clear_env(monkeypatch)
        monkeypatch.setenv("CADENZA_TOKEN", "some-token-4f2a")
        monkeypatch.setenv("CADENZA_API_URL", url)
        monkeypatch.setenv("CADENZA_WS_URL", f"ws://127.0.0.1:{closed_port()}/connection/websocket")
        code, checks, _err = await doctor(capsys=capsys)

    assert code == 1
    skew = checks["clock.skew"]
    assert skew["status"] == "FAIL"
    assert "behind the server's" in skew["message"]
    assert "NTP" in skew["fix"]
    assert 3590 < skew["data"]["skew"] < 3610


# ---- the live proof -----------------------------------------------------------------------


LIVE = ["--place-test-order", "--instrument", INSTRUMENT, "--quantity", "0.01"]


def filled_at(sim, price: str) -> None:
    sim.create_order(
        instrument_id=INSTRUMENT,
        status="FILLED",
        executed_quantity="1",
        executed_price=price,
        updated_at=int(time.time() * 1000),
    )


@pytest.mark.cadenza_sim(cancel_delay=0.02)
async def test_a_test_order_far_from_the_market_is_placed_cancelled_and_proven(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)
    filled_at(cadenza_sim, "50000")

    code, checks, err = await doctor(*LIVE, "--price", "40000", "--yes", capsys=capsys)

    assert code == 0
    live = checks["live.order"]
    assert live["status"] == "OK"
    data = live["data"]
    order = cadenza_sim.get_order(data["order_id"])
    assert order.status == "CANCELLED"
    assert order.limit_price == "40000"
    assert order.order_side == "BUY"
    assert data["cancelled"] is True
    assert data["source"] == "ws"  # the exchange's event proved it (cancel delay 20 ms)
    assert data["confirm_latency"] >= data["cancel_ack"] > 0
    assert data["last_price"] == "50000"
    assert "confirmed in" in live["message"]
    assert f"placed test order {data['order_id']}" in err


@pytest.mark.parametrize(
    ("side", "price"), [("BUY", "45000"), ("BUY", "60000"), ("SELL", "55000"), ("SELL", "30000")]
)
async def test_a_test_order_near_or_across_the_last_fill_price_is_refused(
    cadenza_sim, capsys, monkeypatch, side, price
):
    clear_env(monkeypatch)(cadenza_sim)
    filled_at(cadenza_sim, "50000")
    before = len(cadenza_sim.orders)

    code, checks, _err = await doctor(
        *LIVE, "--side", side.lower(), "--price", price, "--yes", capsys=capsys
    )

    assert code == 1
    live = checks["live.order"]
    assert live["status"] == "FAIL"
    assert live["message"].startswith("refused, nothing placed")
    assert "50000" in live["message"]
    assert len(cadenza_sim.orders) == before


def test_far_from_the_market_means_20_percent_on_the_passive_side():
    last = Decimal("100")
    assert _doctor_live.price_refusal("BUY", Decimal("80"), last) is None
    assert _doctor_live.price_refusal("BUY", Decimal("80.01"), last) is not None
    assert _doctor_live.price_refusal("BUY", Decimal("150"), last) is not None  # marketable
    assert _doctor_live.price_refusal("SELL", Decimal("120"), last) is None
    assert _doctor_live.price_refusal("SELL", Decimal("119.99"), last) is not None
    assert _doctor_live.price_refusal("SELL", Decimal("50"), last) is not None


def test_the_last_fill_price_is_the_most_recent_fill():
    def order(**fields) -> TradeOrder:
        return TradeOrder(secrets.token_hex(4), "acct", fields.pop("status", "FILLED"), **fields)

    orders = [
        order(executed_quantity="1", executed_price="10", updated_at=1),
        order(executed_quantity="2", executed_cost="60", updated_at=3),  # 30 each
        order(status="OPEN", limit_price="99", executed_quantity="0", updated_at=9),
        order(executed_quantity="1", executed_price="20", updated_at=2),
    ]
    assert _doctor_live.last_fill_price(orders) == Decimal("30")
    assert _doctor_live.last_fill_price(orders[2:3]) is None


async def test_without_a_known_price_the_order_is_placed_and_says_so(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)
    monkeypatch.setattr(_doctor_live, "_stdin_is_terminal", lambda: True)
    questions: list[str] = []

    async def answer_yes(question: str) -> str:
        questions.append(question)
        return "yes\n"

    monkeypatch.setattr(_doctor_live, "ask", answer_yes)

    code, checks, _err = await doctor(*LIVE, "--price", "10", capsys=capsys)

    assert code == 0
    [question] = questions
    assert "could not be checked" in question
    assert "simulator/loopback" in question
    assert checks["live.order"]["data"]["cancelled"] is True


async def test_the_question_is_answered_from_stdin_without_blocking_the_loop(capsys, monkeypatch):
    read_fd, write_fd = os.pipe()
    with open(read_fd, encoding="utf-8") as stdin:
        monkeypatch.setattr("sys.stdin", stdin)
        answer = asyncio.ensure_future(_doctor_live.ask("Place it? [y/N] "))
        await asyncio.sleep(0.05)
        assert not answer.done()  # waiting, and the loop runs meanwhile
        os.write(write_fd, b"yes\n")
        assert await asyncio.wait_for(answer, 5) == "yes\n"
    os.close(write_fd)
    assert capsys.readouterr().err == "Place it? [y/N] "


async def test_declined_at_the_prompt_nothing_is_placed(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    monkeypatch.setattr(_doctor_live, "_stdin_is_terminal", lambda: True)

    async def answer_no(question: str) -> str:
        return "n\n"

    monkeypatch.setattr(_doctor_live, "ask", answer_no)

    code, checks, _err = await doctor(*LIVE, "--price", "10", capsys=capsys)

    assert code == 0
    assert checks["live.order"]["status"] == "SKIP"
    assert "declined" in checks["live.order"]["message"]
    assert cadenza_sim.orders == []


async def test_no_test_order_is_placed_when_a_check_failed(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    cadenza_sim.refuse_websocket(503)

    code, checks, _err = await doctor(*LIVE, "--price", "10", "--yes", capsys=capsys)

    assert code == 1
    assert checks["live.order"]["status"] == "SKIP"
    assert "1 check(s) failed" in checks["live.order"]["message"]
    assert cadenza_sim.orders == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--instrument", INSTRUMENT], "only with --place-test-order"),
        (["--yes"], "only with --place-test-order"),
        (["--place-test-order", "--price", "1", "--yes"], "needs --instrument, --quantity"),
        ([*LIVE, "--price", "1"], "pass --yes"),  # stdin is no terminal here
        ([*LIVE, "--price", "-1", "--yes"], "must be a positive number"),
        ([*LIVE, "--price", "abc", "--yes"], "not a decimal number"),
        ([*LIVE, "--price", "1", "--side", "HOLD", "--yes"], "invalid choice"),
        (["--timeout", "0"], "positive number of seconds"),
    ],
)
def test_flags_that_do_not_fit_exit_2_before_anything_runs(capsys, monkeypatch, args, words):
    clear_env(monkeypatch)
    monkeypatch.setenv("CADENZA_TOKEN", "some-token-4f2a")

    code = cli.main(["doctor", "--plain", *args])

    captured = capsys.readouterr()
    assert code == 2
    assert words in captured.err
    assert captured.out == ""


def test_doctor_is_listed_in_the_help(capsys):
    assert cli.main(["--help"]) == 0
    assert "doctor" in capsys.readouterr().out
    assert cli.main(["doctor", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--place-test-order" in text
    assert "20%" in text


# ---- secrets ------------------------------------------------------------------------------


CANARY = "canary-" + "".join(secrets.choice("GHJKLMNPQRSTVWXYZ") for _ in range(32))


def canary_piece_in(text: str) -> str | None:
    for i in range(len(CANARY) - 7):
        if CANARY[i : i + 8] in text:
            return CANARY[i : i + 8]
    return None


@pytest.mark.parametrize("accepted", [True, False])
async def test_the_token_is_never_printed_nor_logged(capsys, caplog, monkeypatch, accepted):
    caplog.set_level(logging.DEBUG)
    async with CadenzaSimulator(token=CANARY if accepted else None) as sim:
        clear_env(monkeypatch)(sim, token=CANARY)
        code = await cli.run(["doctor", "--json", "-vv"])
        captured = capsys.readouterr()

    assert code == (0 if accepted else 1)
    assert any(r.name.startswith("websockets") for r in caplog.records)  # frames were logged
    for text in (captured.out, captured.err, *(r.getMessage() for r in caplog.records)):
        assert canary_piece_in(text) is None, text[:300]


# ---- the wire's generation ----------------------------------------------------------------


@pytest.mark.parametrize("wire", ["current", "legacy"])
async def test_the_wire_check_names_the_generation_from_the_rpc_and_the_last_event(
    wire, capsys, monkeypatch
):
    async with CadenzaSimulator(wire=wire) as sim:
        clear_env(monkeypatch)(sim)
        sim.create_order(publish=True)  # one event in the channel's history

        code, checks, _err = await doctor(capsys=capsys)

    assert code == 0
    check = checks["ws.wire"]
    assert check["status"] == "OK"
    assert check["data"]["seen"] == {"rpc": wire, "event": wire}
    assert check["data"]["last_event"] == "order"
    assert f"the server speaks the {wire} wire" in check["message"]
    if wire == "legacy":
        assert "CADENZA_WIRE=legacy" in check["message"]  # what RPC submits then need


async def test_a_last_event_that_does_not_decode_fails_the_wire_check_with_field_and_type(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)
    order = cadenza_sim.create_order()
    secret_value = "not-a-time-7f3a"
    cadenza_sim.publish_raw_order_update(
        None, {"data": {"tradeOrderId": order.trade_order_id, "updatedAt": secret_value}}
    )

    code, checks, _err = await doctor(capsys=capsys)

    assert code == 1
    check = checks["ws.wire"]
    assert check["status"] == "FAIL"
    assert "updatedAt" in check["message"]
    assert "RFC3339" in check["message"]
    assert secret_value not in check["message"]  # the field and the type, never the value


async def test_without_any_event_the_rpc_answer_alone_names_the_generation(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)

    code, checks, _err = await doctor(capsys=capsys)

    assert code == 0
    assert checks["ws.wire"]["data"]["seen"] == {"rpc": "current"}
