"""Reachability of one endpoint below HTTP: DNS, TCP and TLS (with the certificate), and the server's clock.

Each probe is bounded by its ``timeout`` and returns what it saw, or raises
:class:`ProbeFailure` whose ``reason`` says what happened and ``fix`` what
to do about it; socket, ``ssl`` and aiohttp exceptions stop here. TLS is
verified as the SDK's transports verify it (``ssl.create_default_context()``:
the system's CAs, or ``SSL_CERT_FILE``, and the host name): a certificate
the SDK would refuse fails here too. Nothing here sends the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

__all__ = [
    "Certificate",
    "Endpoint",
    "Link",
    "ProbeFailure",
    "Resolved",
    "ServerClock",
    "getaddrinfo",
    "resolve",
    "server_clock",
    "tls_context",
]

_DEFAULT_PORTS: Final = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_CLOSE_WAIT: Final = 1.0

# OpenSSL's verification codes the doctor explains (X509_V_ERR_*).
_NOT_YET_VALID: Final = 9
_EXPIRED: Final = 10
_SELF_SIGNED: Final = frozenset({18, 19})
_UNKNOWN_ISSUER: Final = frozenset({2, 20, 21})
_HOSTNAME_MISMATCH: Final = 62


class ProbeFailure(Exception):
    """A probe failed: ``reason`` (what happened) and ``fix`` (what to do)."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


@dataclass(frozen=True)
class Endpoint:
    """Where a URL leads: host, port, and whether the connection is TLS."""

    url: str
    host: str
    port: int
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        """Raises ValueError for a URL without a host or with a bad port."""
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        scheme = parts.scheme.lower()
        port = parts.port or _DEFAULT_PORTS.get(scheme, 443)
        return cls(url, parts.hostname, port, scheme in ("https", "wss"))

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def tls_context() -> ssl.SSLContext:
    """The verification the SDK's transports use: system CAs (or ``SSL_CERT_FILE``), host name checked."""
    return ssl.create_default_context()


# ---- DNS ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """The addresses a host name resolved to, how long it took, and whether it was a literal address."""

    addresses: tuple[str, ...]
    elapsed: float
    literal: bool


def _is_literal(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


async def getaddrinfo(host: str, port: int) -> list[tuple[Any, ...]]:
    """The event loop's resolver (the system's, as the SDK's transports use it)."""
    loop = asyncio.get_running_loop()
    return await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)


async def resolve(endpoint: Endpoint, timeout: float) -> Resolved:
    """Resolve the endpoint's host; raises ProbeFailure when it does not resolve in time."""
    started = time.perf_counter()
    try:
        infos = await asyncio.wait_for(getaddrinfo(endpoint.host, endpoint.port), timeout)
    except asyncio.TimeoutError:
        raise ProbeFailure(
            f"{endpoint.host} did not resolve within {timeout:g} s",
            "check the machine's DNS servers (/etc/resolv.conf) and that they answer",
        ) from None
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise ProbeFailure(
                f"{endpoint.host}: temporary DNS failure ({exc.strerror})",
                "the DNS server did not answer: check the network and try again",
            ) from None
        raise ProbeFailure(
            f"{endpoint.host} does not resolve ({exc.strerror})",
            "check the host name in the URL for a typo, and the machine's DNS settings",
        ) from None
    except OSError as exc:
        raise ProbeFailure(
            f"{endpoint.host} cannot be resolved ({exc.strerror or type(exc).__name__})",
            "check the machine's DNS settings",
        ) from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    return Resolved(addresses, time.perf_counter() - started, _is_literal(endpoint.host))


# ---- TCP and TLS ----------------------------------------------------------------------


class _Quiet(asyncio.Protocol):
    """A protocol that ignores data and notes when the connection is gone."""

    def __init__(self) -> None:
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


@dataclass(frozen=True)
class Certificate:
    """The server certificate as the verified handshake saw it."""

    subject: str
    issuer: str
    not_after: float  # Unix seconds
    names: tuple[str, ...]
    tls_version: str | None


def _name(rdns: Any) -> str:
    """An X.509 name from ``getpeercert()`` as ``CN=..., O=...``."""
    short = {"commonName": "CN", "organizationName": "O", "countryName": "C"}
    parts = []
    for rdn in rdns or ():
        for pair in rdn:
            key, value = str(pair[0]), str(pair[1])
            parts.append(f"{short.get(key, key)}={value}")
    return ", ".join(parts)


def _certificate(tls: ssl.SSLObject | ssl.SSLSocket) -> Certificate:
    cert: dict[str, Any] = dict(tls.getpeercert() or {})
    not_after = cert.get("notAfter")
    names = tuple(str(pair[1]) for pair in cert.get("subjectAltName", ()))
    return Certificate(
        subject=_name(cert.get("subject")),
        issuer=_name(cert.get("issuer")),
        not_after=ssl.cert_time_to_seconds(str(not_after)) if not_after else 0.0,
        names=names,
        tls_version=tls.version(),
    )


def _verify_failure(exc: ssl.SSLCertVerificationError, host: str) -> ProbeFailure:
    code = exc.verify_code
    message = exc.verify_message or exc.reason or "verification failed"
    reason = f"certificate verify failed: {message}"
    if code in _SELF_SIGNED:
        fix = (
            "the server presents a self-signed certificate: a wrong host, or a proxy "
            "intercepting TLS; check the URL, or trust its CA with SSL_CERT_FILE"
        )
    elif code in _UNKNOWN_ISSUER:
        fix = (
            "the certificate's issuer is not among this machine's trusted CAs: update the CA "
            "bundle (ca-certificates), or trust a proxy's CA with SSL_CERT_FILE"
        )
    elif code in (_EXPIRED, _NOT_YET_VALID):
        fix = "check this machine's clock (NTP); if it is right, the server's certificate is out of date"
    elif code == _HOSTNAME_MISMATCH:
        fix = f"the certificate is not for {host}: check the host name in the URL"
    else:
        fix = "check the URL and this machine's CA bundle"
    return ProbeFailure(reason, fix)


class Link:
    """One TCP connection to an endpoint, upgraded to TLS on demand; :meth:`close` ends it."""

    def __init__(self, transport: asyncio.Transport, protocol: _Quiet, elapsed: float) -> None:
        self._transport = transport
        self._protocol = protocol
        self._gone = False  # closed under us (a failed TLS handshake closes the socket)
        self.tcp_elapsed = elapsed

    @classmethod
    async def open(cls, endpoint: Endpoint, address: str, timeout: float) -> Link:
        """Connect to ``address`` (one the host resolved to); raises ProbeFailure."""
        loop = asyncio.get_running_loop()
        protocol = _Quiet()
        started = time.perf_counter()
        where = f"{address}:{endpoint.port}"
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: protocol, address, endpoint.port), timeout
            )
        except asyncio.TimeoutError:
            raise ProbeFailure(
                f"no answer from {where} within {timeout:g} s",
                "a firewall drops the packets or the host is down: check that this network "
                f"(VPN, egress rules) allows TCP to {endpoint.where}",
            ) from None
        except ConnectionRefusedError:
            raise ProbeFailure(
                f"connection refused by {where}",
                "nothing listens there: check the port in the URL, or whether the service is up",
            ) from None
        except OSError as exc:
            raise ProbeFailure(
                f"cannot connect to {where}: {exc.strerror or type(exc).__name__}",
                "check this machine's network route to the host (VPN, firewall)",
            ) from None
        return cls(transport, protocol, time.perf_counter() - started)

    async def start_tls(
        self, endpoint: Endpoint, context: ssl.SSLContext, timeout: float
    ) -> tuple[Certificate, float]:
        """The verified TLS handshake on this connection: the certificate and the handshake's time."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        self._gone = True  # until the handshake succeeds: asyncio closes the socket if it fails
        try:
            tls = await loop.start_tls(
                self._transport,
                self._protocol,
                context,
                server_hostname=endpoint.host,
                ssl_handshake_timeout=timeout,
            )
        except ssl.SSLCertVerificationError as exc:
            raise _verify_failure(exc, endpoint.host) from None
        except ssl.SSLError as exc:
            raise ProbeFailure(
                f"TLS handshake failed: {exc.reason or exc.strerror or type(exc).__name__}",
                "the port may not speak TLS: check the URL's scheme (https/wss) and port",
            ) from None
        except (asyncio.TimeoutError, TimeoutError):
            raise ProbeFailure(
                f"no TLS handshake within {timeout:g} s",
                "the server accepted TCP but does not complete TLS: a proxy or firewall in the way?",
            ) from None
        except (ConnectionError, OSError) as exc:
            raise ProbeFailure(
                f"the connection ended during the TLS handshake ({type(exc).__name__})",
                "a proxy or firewall may be cutting TLS: check the network path",
            ) from None
        if tls is None:  # the connection closed under the handshake
            raise ProbeFailure(
                "the connection closed during the TLS handshake",
                "a proxy or firewall may be cutting TLS: check the network path",
            )
        self._transport = tls
        self._gone = False
        ssl_object = tls.get_extra_info("ssl_object")
        if ssl_object is None:
            raise ProbeFailure("no TLS session after the handshake", "report this as a bug")
        return _certificate(ssl_object), time.perf_counter() - started

    async def close(self) -> None:
        """Drop the connection (no TLS close_notify exchange) and wait until it is gone."""
        self._transport.abort()
        if self._gone:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._protocol.lost), _CLOSE_WAIT)


# ---- the server's clock ---------------------------------------------------------------


@dataclass(frozen=True)
class ServerClock:
    """This machine's clock against the server's ``Date`` header.

    ``skew`` is server minus local, in seconds; ``uncertainty`` bounds the
    estimate (half a second for the header's whole seconds, plus half the
    round trip).
    """

    skew: float
    uncertainty: float
    date: str


async def server_clock(url: str, timeout: float, context: ssl.SSLContext) -> ServerClock | None:
    """One GET of ``url`` (no token, no redirect, no proxy) to read ``Date``; None without one.

    Raises ProbeFailure when no HTTP answer comes.
    """
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    headers = {"User-Agent": "cadenza-async doctor"}
    try:
        async with aiohttp.ClientSession(timeout=client_timeout, trust_env=False) as session:
            sent = time.time()
            async with session.get(
                url, allow_redirects=False, ssl=context, headers=headers
            ) as response:
                received = time.time()
                date = response.headers.get("Date")
    except (asyncio.TimeoutError, TimeoutError):
        raise ProbeFailure(
            f"no HTTP answer within {timeout:g} s", "check the REST checks above"
        ) from None
    except aiohttp.ClientError as exc:
        raise ProbeFailure(
            f"no HTTP answer ({type(exc).__name__})", "check the REST checks above"
        ) from None
    if not date:
        return None
    try:
        server = email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return None
    middle = (sent + received) / 2
    # Date has whole seconds: the server's time was somewhere in [date, date + 1).
    return ServerClock(
        skew=server + 0.5 - middle,
        uncertainty=0.5 + (received - sent) / 2,
        date=date,
    )
