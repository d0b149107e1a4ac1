"""Fault injection on loopback TCP: a scriptable asyncio proxy between a client and a server.

The proxy listens on a loopback port and forwards every accepted connection
to a loopback target. While it runs, a test (or an SDK user's own test) can
add latency, cut the byte stream into tiny writes, cap the bandwidth, make
the link silent without closing it, reset connections (RST) at once or in
the middle of a frame, and refuse new connections. The bytes themselves are
never altered, so TLS, HTTP and WebSocket traffic pass through unmodified.

Usage::

    from cadenza_async.testing.faults import FaultProxy

    async with FaultProxy(target_host="127.0.0.1", target_port=server_port) as px:
        ws_url = px.url("ws://127.0.0.1:8000/connection/websocket")
        ...                                  # connect the client to ws_url
        px.latency = 0.3                     # both directions, per chunk
        px.downstream.slice_size = 1         # server -> client in 1-byte writes
        px.bandwidth = 10_000                # bytes/second, per connection and direction
        px.blackhole()                       # silent link: nothing forwarded, no FIN
        px.restore()                         # held bytes are delivered, in order
        await px.reset_all()                 # RST to both peers of every live connection
        fired = px.reset_after(100)          # reset after 100 more bytes downstream
        await fired.wait()
        px.refuse = True                     # connect() fails with ECONNREFUSED
        await px.wait_for_connections(2)     # e.g. the client reconnected

Semantics, in short:

- *Latency* is added to each chunk as it is read (a per-connection queue of
  time-stamped chunks), so order is kept and throughput is not divided.
- *Slicing* writes at most ``slice_size`` bytes per ``send()``, waits until the
  kernel took them, and yields to the event loop between slices.
- *Bandwidth* paces writes per connection and per direction.
- *Blackhole* holds data instead of dropping it: the proxy stops reading and
  stops writing, so the peers see neither data nor FIN (their own sends succeed
  until the socket buffers fill, as on a real silent link). New connections are
  accepted by the kernel but the proxy does not connect them to the target
  until :meth:`FaultProxy.restore`. On restore everything held, EOF included, is
  delivered in order: the stream is never corrupted by a gap.
- *Reset* sets ``SO_LINGER`` to 0 and aborts both sockets, so both peers get
  RST (``ConnectionResetError``). A reset or an error from one peer is passed
  on to the other as a reset; an EOF (half-close) is passed on as an EOF.
- *Refuse* closes the listening socket, so ``connect()`` fails with
  ``ConnectionRefusedError``; turning it off listens again on the same port.
- If the target refuses the proxy's own connection, the client is reset.

The proxy binds and targets loopback addresses only (``ValueError`` otherwise)
and needs an event loop with ``add_reader`` (the default loop on Linux and
macOS, and uvloop). Leaving the ``async with`` block resets every live
connection and awaits every task the proxy started.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import math
import socket
import struct
from collections import deque
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

__all__ = ["Direction", "FaultLink", "FaultProxy"]

_log = logging.getLogger(__name__)

Direction = Literal["upstream", "downstream"]

_CHUNK: Final = 64 * 1024
# Bytes one direction of one connection may hold before the proxy stops reading.
_HIGH_WATER: Final = 256 * 1024
# Under a bandwidth cap, each write carries at most this many seconds of traffic.
_BANDWIDTH_QUANTUM: Final = 0.02
_ACCEPT_BURST: Final = 64
_CLOSE_TIMEOUT: Final = 5.0
_LINGER_RESET: Final = struct.pack("ii", 1, 0)


def _require_loopback(host: object, what: str) -> str:
    """Return ``host`` if it names a loopback address; raise ``ValueError`` otherwise."""
    if not isinstance(host, str):
        raise ValueError(f"{what} must be a str, not {type(host).__name__}")
    bare = host.strip("[]")
    if bare.lower() == "localhost":
        return "localhost"
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        raise ValueError(
            f"{what} {host!r} is not a loopback address; use 127.0.0.1, ::1 or localhost"
        ) from None
    if not address.is_loopback:
        raise ValueError(
            f"{what} {host!r} is not a loopback address; the fault proxy is loopback only"
        )
    return str(address)


def _reset_socket(writer: asyncio.StreamWriter) -> None:
    """Abort ``writer``'s transport so that the peer gets RST, not FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    writer.transport.abort()


class FaultLink:
    """The faults applied to one direction of every connection through a :class:`FaultProxy`.

    ``upstream`` is client to target, ``downstream`` is target to client. Every
    setting takes effect on the next chunk or slice, on live connections too.
    Setters raise ``ValueError`` for out-of-range values.
    """

    def __init__(self, name: Direction) -> None:
        self.name: Final[Direction] = name
        self._latency = 0.0
        self._slice_size: int | None = None
        self._bandwidth: float | None = None
        self._open = asyncio.Event()
        self._open.set()
        self._reset_remaining: int | None = None
        self._reset_fired: asyncio.Event | None = None

    def __repr__(self) -> str:
        return (
            f"<FaultLink {self.name} latency={self._latency} slice_size={self._slice_size} "
            f"bandwidth={self._bandwidth} blackholed={self.blackholed}>"
        )

    @property
    def latency(self) -> float:
        """Seconds added to each chunk between reading it and forwarding it (0 = none)."""
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        seconds = float(seconds)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"latency must be a finite number of seconds >= 0, got {seconds!r}")
        self._latency = seconds

    @property
    def slice_size(self) -> int | None:
        """Largest write in bytes (``None`` = forward chunks whole)."""
        return self._slice_size

    @slice_size.setter
    def slice_size(self, size: int | None) -> None:
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"slice_size must be an int >= 1 or None, got {size!r}")
        self._slice_size = size

    @property
    def bandwidth(self) -> float | None:
        """Cap in bytes per second, per connection (``None`` = unlimited)."""
        return self._bandwidth

    @bandwidth.setter
    def bandwidth(self, bytes_per_second: float | None) -> None:
        if bytes_per_second is not None:
            bytes_per_second = float(bytes_per_second)
            if not math.isfinite(bytes_per_second) or bytes_per_second <= 0:
                raise ValueError(f"bandwidth must be > 0 bytes/s or None, got {bytes_per_second!r}")
        self._bandwidth = bytes_per_second

    @property
    def blackholed(self) -> bool:
        """True while this direction forwards nothing (see :meth:`blackhole`)."""
        return not self._open.is_set()

    def blackhole(self) -> None:
        """Stop reading and forwarding in this direction, without closing anything.

        Data is held, not dropped: :meth:`restore` delivers it in order.
        """
        self._open.clear()

    def restore(self) -> None:
        """Forward again, starting with whatever was held during the blackhole."""
        self._open.set()

    def reset_after(self, nbytes: int) -> asyncio.Event:
        """Reset the connection that carries the ``nbytes``-th next byte in this direction.

        Exactly ``nbytes`` more bytes are forwarded (counted across connections),
        then that connection is reset on both sides. One-shot: a second call
        replaces the first. Returns an event set once the reset was done.
        """
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
            raise ValueError(f"nbytes must be an int >= 0, got {nbytes!r}")
        self._reset_remaining = nbytes
        self._reset_fired = asyncio.Event()
        return self._reset_fired

    def clear(self) -> None:
        """Remove every fault from this direction (latency, slicing, cap, blackhole, reset)."""
        self._latency = 0.0
        self._slice_size = None
        self._bandwidth = None
        self._reset_remaining = None
        self._reset_fired = None
        self._open.set()

    def _spend(self, nbytes: int) -> tuple[int, asyncio.Event | None]:
        """How many of ``nbytes`` to forward, and the reset event if the budget ran out."""
        remaining = self._reset_remaining
        if remaining is None or nbytes < remaining:
            if remaining is not None:
                self._reset_remaining = remaining - nbytes
            return nbytes, None
        fired = self._reset_fired
        self._reset_remaining = None
        self._reset_fired = None
        return remaining, fired or asyncio.Event()


class _ResetRequested(Exception):
    """Raised by a pipe when a ``reset_after`` budget ran out on its connection."""

    def __init__(self, fired: asyncio.Event) -> None:
        super().__init__("reset_after budget reached")
        self.fired = fired


class _Pipe:
    """One direction of one connection: a reader and a writer joined by a time-stamped queue."""

    def __init__(
        self,
        proxy: FaultProxy,
        link: FaultLink,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
    ) -> None:
        self._proxy = proxy
        self._link = link
        self._src = src
        self._dst = dst
        self.name = link.name
        self._queue: deque[tuple[float, bytes]] = deque()
        self._held = 0
        self._queued = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._next_send = 0.0

    async def read_side(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._link._open.wait()
            while self._held >= _HIGH_WATER:
                self._room.clear()
                await self._room.wait()
            data = await self._src.read(_CHUNK)
            self._queue.append((loop.time() + self._link.latency, data))
            self._held += len(data)
            self._queued.set()
            if not data:
                return

    async def write_side(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._queued.clear()
                await self._queued.wait()
            due, data = self._queue.popleft()
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not data:
                await self._link._open.wait()
                if self._dst.can_write_eof():
                    self._dst.write_eof()
                return
            await self._forward(data)
            self._held -= len(data)
            if self._held < _HIGH_WATER:
                self._room.set()

    async def _forward(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        link = self._link
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            await link._open.wait()
            size = len(view) - pos
            slice_size = link.slice_size
            if slice_size is not None:
                size = min(size, slice_size)
            bandwidth = link.bandwidth
            if bandwidth is not None:
                size = min(size, max(1, int(bandwidth * _BANDWIDTH_QUANTUM)))
                now = loop.time()
                start = max(now, self._next_send)
                self._next_send = start + size / bandwidth
                if start > now:
                    await asyncio.sleep(start - now)
                await link._open.wait()
            size, fired = link._spend(size)
            if size:
                self._dst.write(view[pos : pos + size])
                pos += size
                self._proxy._count(link.name, size)
                await self._dst.drain()
            if fired is not None:
                raise _ResetRequested(fired)
            if slice_size is not None:
                await asyncio.sleep(0)


class _Connection:
    """Book-keeping for one accepted connection: its task and how it must end."""

    def __init__(self, number: int, sock: socket.socket) -> None:
        self.number = number
        self.sock = sock
        self.task: asyncio.Task[None] | None = None
        self.reset = False
        self.fired: list[asyncio.Event] = []


class FaultProxy:
    """A loopback TCP proxy to ``target_host:target_port`` whose faults are set while it runs.

    Use it as an async context manager (or call :meth:`start` and
    :meth:`aclose`). ``port=0`` picks a free port; read it from :attr:`port`.
    Settings on the proxy itself apply to both directions; :attr:`upstream`
    (client to target) and :attr:`downstream` (target to client) hold the
    per-direction ones. Raises ``ValueError`` for a non-loopback address.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._target_host = _require_loopback(target_host, "target_host")
        bind_host = _require_loopback(host, "host")
        self._host = "127.0.0.1" if bind_host == "localhost" else bind_host
        for name, value in (("target_port", target_port), ("port", port)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
                raise ValueError(f"{name} must be an int in 0..65535, got {value!r}")
        if target_port == 0:
            raise ValueError("target_port must not be 0")
        self._target_port = target_port
        self._port = port
        self.upstream: Final = FaultLink("upstream")
        self.downstream: Final = FaultLink("downstream")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: socket.socket | None = None
        self._refuse = False
        self._closing = False
        self._conns: set[_Connection] = set()
        self._total = 0
        self._forwarded = {"upstream": 0, "downstream": 0}
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        state = "closed" if self._closing else "running" if self._loop else "not started"
        return (
            f"<FaultProxy {self._host}:{self._port} -> {self._target_host}:{self._target_port} "
            f"{state} live={len(self._conns)} total={self._total} refuse={self._refuse}>"
        )

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Bind and start accepting. Raises ``OSError`` if the port is taken, ``RuntimeError`` if started twice."""
        if self._loop is not None or self._closing:
            raise RuntimeError("a FaultProxy can be started only once")
        self._loop = asyncio.get_running_loop()
        self._listen()
        if self._refuse:
            self._stop_listening()

    async def aclose(self) -> None:
        """Stop listening, reset every live connection and await every task. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._stop_listening()
        await self._reset_connections()

    # -- where clients connect -----------------------------------------------

    @property
    def host(self) -> str:
        """The address the proxy listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port the proxy listens on (known once started)."""
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` where clients connect."""
        return self._host, self._port

    def url(self, template: str) -> str:
        """Return ``template`` with its host and port replaced by the proxy's.

        Scheme, credentials, path, query and fragment are kept, so
        ``px.url("wss://127.0.0.1:5555/ws?x=1")`` is ``"wss://127.0.0.1:<port>/ws?x=1"``.
        Raises ``ValueError`` if ``template`` has no host.
        """
        parts = urlsplit(template)
        if not parts.hostname:
            raise ValueError(f"URL {template!r} has no host")
        userinfo, _, _ = parts.netloc.rpartition("@")
        host = f"[{self._host}]" if ":" in self._host else self._host
        netloc = f"{userinfo}@{host}:{self._port}" if userinfo else f"{host}:{self._port}"
        return urlunsplit(parts._replace(netloc=netloc))

    # -- faults on both directions ------------------------------------------

    @property
    def latency(self) -> float:
        """Seconds added to each chunk. Setting it sets both directions; reading returns upstream's."""
        return self.upstream.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.upstream.latency = seconds
        self.downstream.latency = seconds

    @property
    def slice_size(self) -> int | None:
        """Largest write in bytes. Setting it sets both directions; reading returns upstream's."""
        return self.upstream.slice_size

    @slice_size.setter
    def slice_size(self, size: int | None) -> None:
        self.upstream.slice_size = size
        self.downstream.slice_size = size

    @property
    def bandwidth(self) -> float | None:
        """Bytes/second cap per connection and direction. Setting it sets both; reading returns upstream's."""
        return self.upstream.bandwidth

    @bandwidth.setter
    def bandwidth(self, bytes_per_second: float | None) -> None:
        self.upstream.bandwidth = bytes_per_second
        self.downstream.bandwidth = bytes_per_second

    @property
    def blackholed(self) -> bool:
        """True while either direction is blackholed."""
        return self.upstream.blackholed or self.downstream.blackholed

    def blackhole(self) -> None:
        """Make every connection silent in both directions without closing it (no FIN, no RST).

        Nothing is read or forwarded; held data is not dropped. New connections
        are accepted but not connected to the target until :meth:`restore`.
        """
        self.upstream.blackhole()
        self.downstream.blackhole()

    def restore(self) -> None:
        """End a blackhole: held data (and a held EOF) is delivered in order, then traffic flows."""
        self.upstream.restore()
        self.downstream.restore()

    def clear_faults(self) -> None:
        """Remove every fault: no latency, slicing, cap, blackhole, pending reset or refusal."""
        self.upstream.clear()
        self.downstream.clear()
        self.refuse = False

    def reset_after(self, nbytes: int, direction: Direction = "downstream") -> asyncio.Event:
        """Reset the connection carrying the ``nbytes``-th next byte in ``direction`` (see :meth:`FaultLink.reset_after`)."""
        if direction == "upstream":
            return self.upstream.reset_after(nbytes)
        if direction == "downstream":
            return self.downstream.reset_after(nbytes)
        raise ValueError(f"direction must be 'upstream' or 'downstream', got {direction!r}")

    async def reset_all(self) -> None:
        """Reset (RST, ``SO_LINGER`` 0) both sides of every live connection; return once they are closed.

        Connections accepted during a blackhole are reset too. The proxy keeps
        listening; clients may reconnect.
        """
        await self._reset_connections()

    @property
    def refuse(self) -> bool:
        """While True the listening socket is closed, so new connections get ``ConnectionRefusedError``.

        Live connections are not touched. Setting it back to False listens again
        on the same port (``OSError`` if another socket took the port meanwhile).
        """
        return self._refuse

    @refuse.setter
    def refuse(self, value: bool) -> None:
        value = bool(value)
        if value == self._refuse:
            return
        if self._loop is not None and not self._closing:
            if value:
                self._stop_listening()
            else:
                self._listen()
        self._refuse = value

    # -- counters ------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Connections accepted and not yet closed (including ones held by a blackhole)."""
        return len(self._conns)

    @property
    def total_connections(self) -> int:
        """Connections accepted since the proxy started."""
        return self._total

    @property
    def bytes_upstream(self) -> int:
        """Bytes forwarded from clients to the target."""
        return self._forwarded["upstream"]

    @property
    def bytes_downstream(self) -> int:
        """Bytes forwarded from the target to clients."""
        return self._forwarded["downstream"]

    async def wait_for_connections(self, n: int, timeout: float = 5.0) -> None:
        """Return once :attr:`total_connections` is at least ``n``; ``TimeoutError`` after ``timeout`` s."""
        try:
            await asyncio.wait_for(self._wait_until(lambda: self._total >= n), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"{self._total} connection(s) through the proxy after {timeout} s, expected {n}"
            ) from None

    async def wait_for_idle(self, timeout: float = 5.0) -> None:
        """Return once no connection is live; ``TimeoutError`` after ``timeout`` s."""
        try:
            await asyncio.wait_for(self._wait_until(lambda: not self._conns), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"{len(self._conns)} connection(s) still live after {timeout} s"
            ) from None

    # -- internals -----------------------------------------------------------

    async def _wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _count(self, direction: Direction, nbytes: int) -> None:
        self._forwarded[direction] += nbytes

    def _listen(self) -> None:
        assert self._loop is not None
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setblocking(False)
            sock.bind((self._host, self._port))
            sock.listen(128)
            self._loop.add_reader(sock.fileno(), self._on_acceptable)
        except BaseException:
            sock.close()
            raise
        self._listener = sock
        self._port = sock.getsockname()[1]

    def _stop_listening(self) -> None:
        sock, self._listener = self._listener, None
        if sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
        sock.close()

    def _on_acceptable(self) -> None:
        listener = self._listener
        loop = self._loop
        if listener is None or loop is None:
            return
        for _ in range(_ACCEPT_BURST):
            try:
                sock, _address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE, ECONNABORTED: the client sees a failure
                _log.warning("fault proxy: accept failed: %s", exc)
                return
            sock.setblocking(False)
            self._total += 1
            conn = _Connection(self._total, sock)
            conn.task = loop.create_task(
                self._serve(conn, sock), name=f"fault-proxy-{self._port}-conn-{conn.number}"
            )
            conn.task.add_done_callback(functools.partial(self._on_served, conn))
            self._conns.add(conn)
            self._notify()

    def _on_served(self, conn: _Connection, task: asyncio.Task[None]) -> None:
        self._conns.discard(conn)
        conn.sock.close()  # already closed unless the task was cancelled before it ran
        self._notify()
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("fault proxy: connection %d failed", conn.number, exc_info=exc)

    async def _wait_until_open(self) -> None:
        while self.blackholed:
            await self.upstream._open.wait()
            await self.downstream._open.wait()

    async def _serve(self, conn: _Connection, sock: socket.socket) -> None:
        client: asyncio.StreamWriter | None = None
        server: asyncio.StreamWriter | None = None
        try:
            try:
                client_reader, client = await asyncio.open_connection(sock=sock)
            finally:
                if client is None:
                    sock.close()
            await self._wait_until_open()
            server_reader, server = await asyncio.open_connection(
                self._target_host, self._target_port
            )
            for writer in (client, server):
                writer.transport.set_write_buffer_limits(high=0)
            pipes = (
                _Pipe(self, self.upstream, client_reader, server),
                _Pipe(self, self.downstream, server_reader, client),
            )
            await self._run_pipes(conn, pipes)
        except OSError:
            conn.reset = True  # a peer failed or the target refused: reset the other side
        except asyncio.CancelledError:
            conn.reset = True
            raise
        finally:
            await self._close_sides(conn, client, server)

    async def _run_pipes(self, conn: _Connection, pipes: tuple[_Pipe, _Pipe]) -> None:
        tasks = [
            asyncio.create_task(side(), name=f"fault-proxy-conn-{conn.number}-{pipe.name}-{kind}")
            for pipe in pipes
            for side, kind in ((pipe.read_side, "read"), (pipe.write_side, "write"))
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, _ResetRequested):
                conn.fired.append(result.fired)
                conn.reset = True
            elif isinstance(result, Exception):
                conn.reset = True

    async def _close_sides(
        self,
        conn: _Connection,
        *writers: asyncio.StreamWriter | None,
    ) -> None:
        live = [writer for writer in writers if writer is not None]
        for writer in live:
            if conn.reset:
                _reset_socket(writer)
            else:
                writer.close()
        for writer in live:
            try:
                await asyncio.wait_for(writer.wait_closed(), _CLOSE_TIMEOUT)
            except asyncio.TimeoutError:
                writer.transport.abort()
            except Exception:  # the peer's reset or error; the socket is closed either way
                _log.debug("fault proxy: connection %d closed with an error", conn.number)
        for fired in conn.fired:
            fired.set()

    async def _reset_connections(self) -> None:
        tasks = []
        for conn in list(self._conns):
            if conn.task is not None and not conn.task.done():
                conn.reset = True
                conn.task.cancel()
                tasks.append(conn.task)
        if tasks:
            await asyncio.wait(tasks)
