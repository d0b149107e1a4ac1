"""``cadenza-async doctor``: whether this machine, token and endpoints can cancel and prove a cancel, and how fast.

The checks run in this order, each printed as soon as it is known (see
:mod:`~cadenza_async.cli._doctor_report`); a check whose prerequisite
failed is a SKIP naming it:

================  ===================================================================
check             what it shows
================  ===================================================================
config.endpoints  which environment (UAT, production, simulator/loopback, custom)
config.token      a token is there; a JWT's expiry (unverified; the token is never shown)
config.account    the trading account the WebSocket checks subscribe to
rest.dns          the REST host resolves (timed)
rest.tcp          a TCP connection to it opens (timed)
rest.tls          the verified TLS handshake: certificate subject, issuer, expiry
                  (SKIP for ``http://`` to loopback: the simulator)
ws.dns, ws.tcp,   the same for the WebSocket host
ws.tls
rest.auth         ``list_orders(limit=1)`` on the account: 401 and 403 named as such
rest.health       ``GET /api/v3/health``: the API's own status (healthy, degraded,
                  unhealthy), its version and each dependency's check
ws.connect        the Centrifugo connect with the token; the server's ping interval
ws.subscribe      ``tradingAccount:{id}`` subscribed (103: no access to this account);
                  the channel's recovery position (epoch, offset)
ws.rpc            ``command.trade_order.cancel`` on a random order id answers "not
                  found": cancels can go over the WebSocket; nothing is cancelled
ws.wire           which generation of the wire the server speaks (the RPC answer,
                  the channel's last event replayed), and that the event decodes
rest.latency      median and p99 of 20 read-only REST calls
clock.skew        this machine's clock against the server's ``Date`` header
live.order        only with ``--place-test-order``: one LIMIT order far from the
                  market placed, ``cancel_and_confirm``-ed, latencies and proof shown
================  ===================================================================

Exit status: 0 when no check failed (a SKIP is no failure), 1 when one
did, 2 for a usage error (flags that do not go together, a live order that
cannot be confirmed).

What a failure means is in :mod:`~cadenza_async.cli._doctor_explain`; the
live order, and the 20% rule that guards it, in
:mod:`~cadenza_async.cli._doctor_live`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

import msgspec

from .._validate import check_account_id, check_url, is_loopback_host
from .._version import __version__
from ..client import CadenzaClient
from ..config import DEFAULT_API_URL, DEFAULT_WS_URL, ClientConfig, Timeouts
from ..errors import (
    CadenzaError,
    ConfigurationError,
    OrderNotFoundError,
    PermissionDeniedError,
    error_for_rpc,
)
from ..protocol.centrifugo import Subscribed
from ..transports import RPC_CANCEL
from ._doctor_config import environment_of, human_duration, shown_url, token_facts
from ._doctor_explain import error_data, rest_failure, ws_error_data, ws_failure
from ._doctor_live import LiveOrder, live_order_request, positive_decimal, prove_live
from ._doctor_report import CheckReport
from ._doctor_wire import check_wire
from ._errors import flag_words
from ._netprobe import (
    Certificate,
    Endpoint,
    Link,
    ProbeFailure,
    resolve,
    server_clock,
    tls_context,
)
from ._outcomes import ms, percentile
from ._session import Context
from ._wsprobe import CentrifugoProbe, WsProbeError, decode_rpc_answer

__all__ = ["LATENCY_CALLS", "MAX_CLOCK_SKEW", "add_doctor_parser", "cmd_doctor"]

#: The read-only REST calls timed for the median and p99.
LATENCY_CALLS: Final = 20
#: Seconds of clock skew beyond which ``clock.skew`` fails.
MAX_CLOCK_SKEW: Final = 2.0
_CERT_SOON: Final = 14 * 86400

_EPILOG = (
    "Endpoints and credentials come from CADENZA_API_URL, CADENZA_WS_URL, CADENZA_TOKEN and "
    "CADENZA_TRADING_ACCOUNT_ID (flags win). Exit status: 0 no check failed (SKIP is no "
    "failure), 1 a check failed, 2 usage error, 130 interrupted."
)


# ---- flags ----------------------------------------------------------------------------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def add_doctor_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """The ``doctor`` verb and its flags (``parents``: verbosity, connection, output)."""
    doctor = commands.add_parser(
        "doctor",
        parents=list(parents),
        help="check that this machine, token and endpoints can cancel and prove a cancel",
        description="Check the configuration, DNS, TCP and TLS to both hosts, the token on "
        "REST and the WebSocket, the account's channel, the cancel RPC, round trips and the "
        "clock: one line per check (OK, FAIL or SKIP, and what to do). Nothing is placed or "
        "cancelled unless --place-test-order is given.",
        epilog=_EPILOG,
    )
    doctor.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=10.0,
        help="deadline of each network step, seconds (default 10)",
    )
    live = doctor.add_argument_group(
        "live proof (places one real order far from the market, then cancels it)"
    )
    live.add_argument(
        "--place-test-order",
        action="store_true",
        help="place one LIMIT order and cancel_and_confirm it (asks first, unless --yes)",
    )
    live.add_argument("--instrument", help="instrument of the test order, e.g. BINANCE:BTC/USDT")
    live.add_argument("--price", type=positive_decimal, help="limit price of the test order")
    live.add_argument("--quantity", type=positive_decimal, help="quantity of the test order")
    live.add_argument(
        "--side",
        type=str.upper,
        choices=("BUY", "SELL"),
        help="side of the test order (default BUY); the price must be at least 20%% "
        "below (BUY) or above (SELL) the last fill price when one is known",
    )
    live.add_argument("--yes", action="store_true", help="place the test order without asking")
    doctor.set_defaults(handler=cmd_doctor)
    return doctor


# ---- the checks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    """The settings as given; ``config`` is None when the endpoints or the token cannot be used."""

    api_url: str
    ws_url: str
    token: str | None
    account: str | None
    config: ClientConfig | None


def _utc(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds")


async def cmd_doctor(ctx: Context) -> int:
    """Run every check in order, then the summary; the exit status (0: none failed)."""
    live = live_order_request(ctx.args)
    return await _Doctor(ctx, live).run()


class _Doctor:
    """One run of the checks: what the settings are, and the report they go to."""

    def __init__(self, ctx: Context, live: LiveOrder | None) -> None:
        self._ctx = ctx
        self._args = ctx.args
        self._out = ctx.out
        self._live = live
        self._timeout: float = ctx.args.timeout
        self._report = CheckReport(ctx.out)
        self._tls = tls_context()
        # what the WebSocket checks saw, for ws.wire
        self._subscription: Subscribed | None = None
        self._rpc_answer: msgspec.Raw | None = None

    async def run(self) -> int:
        settings = self._configuration()
        self._ctx.config = settings.config
        rest_up = await self._reach("rest", "REST", settings.api_url)
        ws_up = await self._reach("ws", "WebSocket", settings.ws_url)
        client = None if settings.config is None else CadenzaClient(config=settings.config)
        try:
            await self._rest_auth(client, settings, rest_up)
            await self._rest_health(client, settings, rest_up)
            await self._websocket(settings, ws_up)
            await self._rest_latency(client, settings)
            await self._clock(settings, rest_up)
            await self._live_order(client, settings)
        finally:
            if client is not None:
                await client.aclose()
        return self._report.finish()

    # -- 1. configuration ---------------------------------------------------------------

    def _configuration(self) -> _Settings:
        args, env = self._args, os.environ
        api_url = args.api_url or env.get("CADENZA_API_URL") or DEFAULT_API_URL
        ws_url = args.ws_url or env.get("CADENZA_WS_URL") or DEFAULT_WS_URL
        token = args.token or env.get("CADENZA_TOKEN") or None
        account_text = args.account or env.get("CADENZA_TRADING_ACCOUNT_ID") or None
        if args.token:
            self._out.warn(
                "--token is visible to other users in the process list; "
                "prefer the CADENZA_TOKEN environment variable"
            )
        urls_ok = self._endpoints(api_url, ws_url)
        self._token(token)
        account = self._account(account_text)
        wire = env.get("CADENZA_WIRE") or "current"
        if wire not in ("current", "legacy"):
            self._out.warn("CADENZA_WIRE must be 'current' or 'legacy'; using 'current'")
            wire = "current"
        config = None
        if urls_ok and token is not None:
            timeout = self._timeout
            config = ClientConfig(
                wire="legacy" if wire == "legacy" else "current",
                token=token,
                api_url=api_url,
                ws_url=ws_url,
                trading_account_id=account,
                allow_insecure=bool(args.allow_insecure),
                timeouts=Timeouts(
                    connect=timeout, request=timeout, confirm=max(timeout, Timeouts().confirm)
                ),
            )
        return _Settings(api_url, ws_url, token, account, config)

    def _endpoints(self, api_url: str, ws_url: str) -> bool:
        report = self._report
        problems = []
        for url, secure, plain, what in (
            (api_url, "https", "http", "api_url"),
            (ws_url, "wss", "ws", "ws_url"),
        ):
            try:
                check_url(
                    url,
                    secure=secure,
                    insecure=plain,
                    allow_insecure=bool(self._args.allow_insecure),
                    what=what,
                )
            except ConfigurationError as exc:
                problems.append(flag_words(str(exc)))
        if problems:
            report.fail(
                "config.endpoints",
                "; ".join(problems),
                "set CADENZA_API_URL to an https:// URL and CADENZA_WS_URL to a "
                "wss://.../connection/websocket URL (or --api-url, --ws-url)",
            )
            return False
        rest_env, ws_env = environment_of(api_url), environment_of(ws_url)
        shown = f"REST {shown_url(api_url)}, WebSocket {shown_url(ws_url)}"
        data = {
            "api_url": shown_url(api_url),
            "ws_url": shown_url(ws_url),
            "rest_environment": rest_env,
            "ws_environment": ws_env,
        }
        named = ("UAT", "production")
        if rest_env != ws_env and rest_env in named and ws_env in named:
            report.fail(
                "config.endpoints",
                f"REST is {rest_env} but the WebSocket is {ws_env} ({shown})",
                "point both at the same environment: a token is good in one of them",
                data=data,
            )
            return False
        label = rest_env if rest_env == ws_env else f"REST {rest_env}, WebSocket {ws_env}"
        report.ok("config.endpoints", f"{label}: {shown}", data=data)
        return True

    def _token(self, token: str | None) -> None:
        report = self._report
        if token is None:
            report.fail(
                "config.token",
                "no token",
                "set CADENZA_TOKEN (or pass --token: a flag shows in the process list)",
                data={"present": False},
            )
            return
        facts = token_facts(token)
        data: dict[str, Any] = {"present": True, "jwt": facts.jwt, "expires_at": None}
        if not facts.jwt:
            report.ok(
                "config.token", "present (not a JWT: its expiry is the server's to tell)", data=data
            )
            return
        if facts.expires_at is None:
            report.ok("config.token", "present, a JWT without an expiry claim", data=data)
            return
        left = facts.seconds_left(time.time())
        assert left is not None
        data["expires_at"] = _iso(facts.expires_at)
        data["expires_in"] = round(left, 3)
        when = _utc(facts.expires_at)
        if left <= 0:
            report.fail(
                "config.token",
                f"a JWT that expired {human_duration(left)} ago ({when})",
                "get a fresh token into CADENZA_TOKEN",
                data=data,
            )
            return
        report.ok(
            "config.token",
            f"present, a JWT that expires in {human_duration(left)} ({when}; signature not checked)",
            data=data,
        )

    def _account(self, text: str | None) -> str | None:
        report = self._report
        if text is None:
            report.fail(
                "config.account",
                "no trading account",
                "set CADENZA_TRADING_ACCOUNT_ID (or pass --account): the REST and WebSocket "
                "checks use it",
            )
            return None
        try:
            check_account_id(text)
        except ValueError as exc:
            report.fail(
                "config.account",
                f"unusable trading account id: {exc}",
                "set CADENZA_TRADING_ACCOUNT_ID to the account's id as the API shows it",
            )
            return None
        report.ok("config.account", f"trading account {text}", data={"trading_account_id": text})
        return text

    # -- 2. DNS, TCP and TLS ------------------------------------------------------------

    async def _reach(self, kind: str, what: str, url: str) -> bool:
        """``{kind}.dns``, ``.tcp`` and ``.tls``; True when the host can be talked to."""
        dns, tcp, tls = f"{kind}.dns", f"{kind}.tcp", f"{kind}.tls"
        try:
            endpoint = Endpoint.from_url(url)
        except ValueError:
            for name in (dns, tcp, tls):
                self._report.skip(name, f"the {what} URL names no usable host (config.endpoints)")
            return False
        addresses = await self._check_dns(dns, endpoint, then=(tcp, tls))
        if addresses is None:
            return False
        opened = await self._open_link(tcp, endpoint, addresses, then=tls)
        if opened is None:
            return False
        link, address = opened
        try:
            self._report_connected(tcp, endpoint, address, link)
            if not endpoint.tls:
                return self._plaintext(tls, endpoint)
            try:
                cert, elapsed = await link.start_tls(endpoint, self._tls, self._timeout)
            except ProbeFailure as exc:
                self._report.fail(tls, exc.reason, exc.fix)
                return False
        finally:
            await link.close()
        self._report_certificate(tls, cert, elapsed)
        return True

    async def _check_dns(
        self, dns: str, endpoint: Endpoint, then: tuple[str, ...]
    ) -> list[str] | None:
        """Reports ``dns``; the host's addresses, or None (and the ``then`` checks skipped)."""
        report = self._report
        try:
            resolved = await resolve(endpoint, self._timeout)
        except ProbeFailure as exc:
            report.fail(dns, exc.reason, exc.fix, data={"host": endpoint.host})
            for name in then:
                report.skip(name, f"{endpoint.host} did not resolve ({dns})")
            return None
        addresses = list(resolved.addresses)
        if not addresses:
            report.fail(dns, f"{endpoint.host} resolved to no address", "check the DNS records")
            for name in then:
                report.skip(name, f"{endpoint.host} has no address ({dns})")
            return None
        if resolved.literal:
            found = f"{endpoint.host} is an address: nothing to resolve"
        else:
            shown = ", ".join(addresses[:4]) + (" ..." if len(addresses) > 4 else "")
            found = f"{endpoint.host} -> {shown} in {ms(resolved.elapsed)}"
        report.ok(
            dns,
            found,
            elapsed=resolved.elapsed,
            data={"host": endpoint.host, "addresses": addresses},
        )
        return addresses

    async def _open_link(
        self, tcp: str, endpoint: Endpoint, addresses: list[str], then: str
    ) -> tuple[Link, str] | None:
        """A TCP connection to the first address that accepts one, and that address.

        None when none does: ``tcp`` fails with the last address's failure
        and ``then`` is skipped. The caller closes the link.
        """
        failure: ProbeFailure | None = None
        for address in addresses:
            try:
                return await Link.open(endpoint, address, self._timeout), address
            except ProbeFailure as exc:
                failure = exc
        assert failure is not None
        self._report.fail(tcp, failure.reason, failure.fix, data={"port": endpoint.port})
        self._report.skip(then, f"no TCP connection ({tcp})")
        return None

    def _report_connected(self, tcp: str, endpoint: Endpoint, address: str, link: Link) -> None:
        shown_address = f"[{address}]" if ":" in address else address
        self._report.ok(
            tcp,
            f"connected to {shown_address}:{endpoint.port} in {ms(link.tcp_elapsed)}",
            elapsed=link.tcp_elapsed,
            data={"address": address, "port": endpoint.port},
        )

    def _report_certificate(self, tls: str, cert: Certificate, elapsed: float) -> None:
        left = cert.not_after - time.time()
        soon = "; it expires soon" if left < _CERT_SOON else ""
        self._report.ok(
            tls,
            f"{cert.tls_version or 'TLS'} in {ms(elapsed)}; certificate {cert.subject} "
            f"issued by {cert.issuer}, valid until {_utc(cert.not_after)} "
            f"(in {human_duration(left)}){soon}",
            elapsed=elapsed,
            data={
                "tls_version": cert.tls_version,
                "subject": cert.subject,
                "issuer": cert.issuer,
                "not_after": _iso(cert.not_after),
                "expires_in": round(left),
                "names": list(cert.names),
            },
        )

    def _plaintext(self, name: str, endpoint: Endpoint) -> bool:
        scheme = endpoint.url.split(":", 1)[0].lower()
        secure = "wss" if scheme == "ws" else "https"
        if is_loopback_host(endpoint.host):
            self._report.skip(
                name,
                f"{scheme}:// to a loopback address (the simulator): no TLS to check; "
                f"real endpoints use {secure}://",
            )
        else:
            self._report.fail(
                name,
                f"{scheme}:// to {endpoint.host}: no TLS, the token crosses the network in clear",
                f"use {secure}://",
            )
        return True

    # -- 3. REST auth -------------------------------------------------------------------

    async def _rest_auth(
        self, client: CadenzaClient | None, settings: _Settings, rest_up: bool
    ) -> None:
        report, name = self._report, "rest.auth"
        if client is None:
            report.skip(name, "needs a token and usable endpoints (config.*)")
            return
        if not rest_up:
            report.skip(name, "the REST host cannot be reached (rest.dns, rest.tcp, rest.tls)")
            return
        account = settings.account
        scope = f"account {account}" if account else "the token's orders (no account given)"
        started = time.perf_counter()
        try:
            page = await client.list_orders(trading_account_id=account, limit=1)
        except CadenzaError as exc:
            reason, fix = rest_failure(exc, settings.api_url, settings.account)
            report.fail(name, reason, fix, data=error_data(exc))
            return
        elapsed = time.perf_counter() - started
        report.ok(
            name,
            f"token accepted: list_orders(limit=1) on {scope} answered in {ms(elapsed)}",
            elapsed=elapsed,
            data={"orders_seen": len(page.orders)},
        )

    async def _rest_health(
        self, client: CadenzaClient | None, settings: _Settings, rest_up: bool
    ) -> None:
        report, name = self._report, "rest.health"
        if client is None or not rest_up:
            report.skip(name, "needs usable endpoints and a reachable REST host")
            return
        started = time.perf_counter()
        try:
            health = await client.health(timeout=self._timeout)
        except CadenzaError as exc:
            reason, fix = rest_failure(exc, settings.api_url, settings.account)
            report.fail(name, f"GET /api/v3/health: {reason}", fix, data=error_data(exc))
            return
        elapsed = time.perf_counter() - started
        failing = sorted(k for k, check in health.checks.items() if check.status != "healthy")
        data = {
            "status": health.status,
            "version": health.version,
            "http_status": health.http_status,
            "checks": {k: check.status for k, check in health.checks.items()},
        }
        seen = f"the API says {health.status} (version {health.version}, HTTP {health.http_status})"
        if failing:
            seen += f"; not healthy: {', '.join(failing)}"
        if health.status == "unhealthy" or health.http_status >= 500:
            report.fail(
                name, seen, "the API reports itself down: retry later", data=data, elapsed=elapsed
            )
            return
        report.ok(name, seen, elapsed=elapsed, data=data)

    # -- 4. WebSocket: connect, subscribe, and the cancel RPC ---------------------------

    async def _websocket(self, settings: _Settings, ws_up: bool) -> None:
        report = self._report
        names = ("ws.connect", "ws.subscribe", "ws.rpc", "ws.wire")
        config = settings.config
        if config is None or settings.token is None:
            for name in names:
                report.skip(name, "needs a token and usable endpoints (config.*)")
            return
        if not ws_up:
            for name in names:
                report.skip(name, "the WebSocket host cannot be reached (ws.dns, ws.tcp, ws.tls)")
            return
        async with CentrifugoProbe(
            settings.ws_url,
            settings.token,
            timeout=self._timeout,
            max_size=config.max_message_size,
        ) as probe:
            if not await self._ws_connect(probe):
                for name in names[1:]:
                    report.skip(name, "not connected (ws.connect)")
                return
            account = settings.account
            if account is None:
                for name in names[1:]:
                    report.skip(name, "no trading account (config.account)")
                return
            if await self._ws_subscribe(probe, account):
                await self._ws_rpc(probe, account)
                await self._ws_wire(probe, config)
            else:
                report.skip("ws.rpc", "the connection is no longer usable (ws.subscribe)")
                report.skip("ws.wire", "the connection is no longer usable (ws.subscribe)")

    async def _ws_wire(self, probe: CentrifugoProbe, config: ClientConfig) -> None:
        """``ws.wire``: the generation the RPC answer and the channel's last event show."""
        last_event = None
        if self._subscription is not None:
            try:
                last_event = await probe.last_publication(self._subscription)
            except WsProbeError as exc:
                self._out.note(f"ws.wire: the channel's last publication was not replayed ({exc})")
        check_wire(
            self._report,
            rpc_answer=self._rpc_answer,
            last_event=last_event,
            written=config.wire,
        )

    async def _ws_connect(self, probe: CentrifugoProbe) -> bool:
        report, name = self._report, "ws.connect"
        try:
            handshake = await probe.open()
            connected, reply = await probe.connect(__version__)
        except WsProbeError as exc:
            reason, fix = ws_failure(exc, "connect")
            report.fail(name, reason, fix, data=ws_error_data(exc))
            return False
        elapsed = handshake + reply
        if connected.ping > 0:
            pings = f"the server pings every {connected.ping:g} s"
        else:
            pings = "the server sends no pings"
        expiry = (
            f"; the connection's token expires in {human_duration(connected.ttl)}"
            if connected.expires
            else ""
        )
        report.ok(
            name,
            f"connected in {ms(elapsed)} (handshake {ms(handshake)}, connect reply "
            f"{ms(reply)}); {pings}{expiry}",
            elapsed=elapsed,
            data={
                "handshake": handshake,
                "connect_reply": reply,
                "ping_interval": connected.ping,
                "pong": connected.pong,
                "expires": connected.expires,
                "ttl": connected.ttl if connected.expires else None,
                "server_version": connected.version,
            },
        )
        return True

    async def _ws_subscribe(self, probe: CentrifugoProbe, account: str) -> bool:
        """``ws.subscribe``; False when the connection is no longer usable."""
        report, name = self._report, "ws.subscribe"
        channel = f"tradingAccount:{account}"
        try:
            sub, elapsed = await probe.subscribe(channel)
            self._subscription = sub
        except WsProbeError as exc:
            reason, fix = ws_failure(exc, "subscribe", account=account)
            report.fail(name, reason, fix, data={"channel": channel, **ws_error_data(exc)})
            return exc.kind == "reply"
        data = {
            "channel": channel,
            "epoch": sub.epoch,
            "offset": sub.offset,
            "positioned": sub.positioned,
            "recoverable": sub.recoverable,
        }
        if sub.positioned or sub.recoverable or sub.epoch:
            position = f"recovery position epoch {sub.epoch!r}, offset {sub.offset}"
        else:
            position = (
                "the channel reports no position: after a reconnect, missed updates are "
                "reconciled by REST"
            )
        report.ok(
            name,
            f"{channel} subscribed in {ms(elapsed)}; {position}",
            elapsed=elapsed,
            data=data,
        )
        return True

    async def _ws_rpc(self, probe: CentrifugoProbe, account: str) -> None:
        report, name = self._report, "ws.rpc"
        order_id = str(uuid.uuid4())
        payload = (
            b'{"tradingAccountId":"'
            + account.encode()
            + b'","tradeOrderId":"'
            + order_id.encode()
            + b'"}'
        )
        data: dict[str, Any] = {"method": RPC_CANCEL, "order_id": order_id}
        try:
            raw, elapsed = await probe.rpc(RPC_CANCEL, payload)
            self._rpc_answer = raw
            answer = decode_rpc_answer(raw)
        except WsProbeError as exc:
            reason, fix = ws_failure(exc, "rpc", account=account)
            report.fail(name, reason, fix, data={**data, **ws_error_data(exc)})
            return
        data["elapsed"] = elapsed
        if answer.error is None:
            report.fail(
                name,
                f"{RPC_CANCEL} answered with an order for a random id ({order_id})",
                "unexpected: the RPC should answer 'not found'; look at that order",
                elapsed=elapsed,
                data=data,
            )
            return
        err = answer.error
        error = error_for_rpc(err.code, err.message, status=err.status, temporary=err.temporary)
        data["error"] = {"code": err.code, "status": err.status, "message": err.message}
        if isinstance(error, OrderNotFoundError):
            report.ok(
                name,
                f"{RPC_CANCEL} on a random order id answered 'not found' in {ms(elapsed)}: "
                "cancels can go over the WebSocket (--via ws)",
                elapsed=elapsed,
                data=data,
            )
            return
        if isinstance(error, PermissionDeniedError):
            fix = f"the token may not act on trading account {account}: check the account"
        else:
            fix = "cancels over HTTP (the default) are unaffected; do not use --via ws"
        report.fail(
            name,
            f"{RPC_CANCEL} answered {type(error).__name__}: {err.message or err.code}",
            fix,
            elapsed=elapsed,
            data=data,
        )

    # -- 5. round trips and the clock ---------------------------------------------------

    async def _rest_latency(self, client: CadenzaClient | None, settings: _Settings) -> None:
        report, name = self._report, "rest.latency"
        if client is None or not self._report.passed("rest.auth"):
            report.skip(name, "needs REST auth (rest.auth)")
            return
        samples: list[float] = []
        for n in range(LATENCY_CALLS):
            started = time.perf_counter()
            try:
                await client.list_orders(trading_account_id=settings.account, limit=1)
            except CadenzaError as exc:
                reason, fix = rest_failure(exc, settings.api_url, settings.account)
                report.fail(name, f"call {n + 1} of {LATENCY_CALLS}: {reason}", fix)
                return
            samples.append(time.perf_counter() - started)
        ordered = sorted(samples)
        median = statistics.median(ordered)
        p99 = percentile(ordered, 0.99)
        report.ok(
            name,
            f"median {ms(median)}, p99 {ms(p99)} over {LATENCY_CALLS} read-only calls "
            f"(list_orders, limit=1)",
            data={
                "calls": LATENCY_CALLS,
                "median": median,
                "p99": p99,
                "min": ordered[0],
                "max": ordered[-1],
            },
        )

    async def _clock(self, settings: _Settings, rest_up: bool) -> None:
        report, name = self._report, "clock.skew"
        if not rest_up:
            report.skip(name, "the REST host cannot be reached (rest.dns, rest.tcp, rest.tls)")
            return
        url = settings.api_url.rstrip("/") + "/"
        try:
            clock = await server_clock(url, self._timeout, self._tls)
        except ProbeFailure as exc:
            report.fail(name, exc.reason, exc.fix)
            return
        if clock is None:
            report.skip(name, "the server's answer has no Date header: nothing to compare with")
            return
        skew, margin = clock.skew, clock.uncertainty
        data = {"skew": skew, "uncertainty": margin, "server_date": clock.date}
        if abs(skew) <= margin:
            seen = f"in step with the server (within ±{margin:.1f} s, from its Date header)"
        else:
            side = "behind" if skew > 0 else "ahead of"
            seen = (
                f"this machine's clock is {abs(skew):.1f} s {side} the server's "
                f"(±{margin:.1f} s, from its Date header)"
            )
        if abs(skew) - margin > MAX_CLOCK_SKEW:
            report.fail(
                name,
                seen,
                "synchronise the clock (NTP: timedatectl set-ntp true, or chrony): token "
                "expiry and latency figures depend on it",
                data=data,
            )
            return
        report.ok(name, seen, data=data)

    # -- 6. the live proof --------------------------------------------------------------

    async def _live_order(self, client: CadenzaClient | None, settings: _Settings) -> None:
        report, name = self._report, "live.order"
        live = self._live
        if live is None:
            report.skip(
                name,
                "not asked: nothing placed",
                "to prove a real cancel: --place-test-order --instrument X --price P "
                "--quantity Q (one LIMIT order far from the market, then cancelled)",
            )
            return
        failed = report.count("FAIL")
        if failed:
            report.skip(name, f"not placed: {failed} check(s) failed above")
            return
        if client is None or settings.account is None:  # a FAIL above says why
            report.skip(name, "not placed: no client or no account")
            return
        await prove_live(
            report,
            self._out,
            client,
            settings.account,
            live,
            environment=environment_of(settings.api_url),
            confirmed=bool(self._args.yes),
        )
