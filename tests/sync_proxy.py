"""A TCP proxy of our own between a hub and the central, that the test steers.

:class:`SyncProxy` listens on ``127.0.0.1`` (a port of its own, kept for its whole life)
and forwards every connection to the central's port. It runs an asyncio loop on a thread
of its own, so a synchronous test drives it while real processes talk through it. What it
can do to the traffic, each set at any time from the test's thread:

- **cut** (:meth:`SyncProxy.cut_at`, :meth:`SyncProxy.cut_randomly`): close the
  connection that carries byte N of a direction (``"up"``: hub to central, ``"down"``:
  central to hub). N counts every byte the proxy forwarded that way since it started,
  over all connections, so a list of offsets cuts a sync that many times wherever its
  retries have got to. The bytes before N are delivered (the far side sees them, then the
  end of the connection), the rest of that connection's are not.
- **delay** (``latency_s``): wait that long before forwarding each chunk read.
- **throttle** (``bandwidth_bps``): at most that many bits per second each way, shared by
  every connection (a token bucket; chunks are forwarded in pieces of 1 KiB or less).
- **duplicate** (``duplicate``): read each HTTP/1.1 request whole, send it to the
  central twice, on two connections one after the other, and answer the hub with the
  first or the second answer (``answer``), so the central sees every request replayed.
- **refuse** (:meth:`SyncProxy.down` / :meth:`SyncProxy.up`): stop listening and drop
  every open connection, so a hub's connect is refused (ECONNREFUSED) as when the central
  is down; listen again on the same port when it comes back.

It counts the bytes forwarded each way (``bytes_up``, ``bytes_down``), the connections
accepted and refused, and the cuts made. Use it as a context manager::

    with SyncProxy(central_port) as proxy:
        proxy.cut_randomly(100, span=2_000_000, seed=7)
        ...hub syncs through f"http://127.0.0.1:{proxy.port}"...
        assert proxy.cuts_done == 100
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import random
import socket
import threading
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Literal

Direction = Literal["up", "down"]
DIRECTIONS: tuple[Direction, Direction] = ("up", "down")
CHUNK = 64 * 1024  # bytes read at once from a socket
THROTTLED_PIECE = 1024  # bytes forwarded at once when throttled
START_TIMEOUT_S = 5.0
MAX_HEAD_BYTES = 64 * 1024  # an HTTP request's or answer's head, at most


class ProxyError(RuntimeError):
    """The proxy could not do what it was asked (start, listen again, stop)."""


class _Cut(Exception):
    """The connection reached a cut offset: close it."""


@dataclass(eq=False)
class _Link:
    """One accepted connection and the connection(s) it opened to the central."""

    client: asyncio.StreamWriter
    upstream: list[asyncio.StreamWriter]

    def close(self) -> None:
        for writer in (self.client, *self.upstream):
            with contextlib.suppress(Exception):
                writer.close()


class SyncProxy:
    """A steerable proxy from ``127.0.0.1:<port>`` to ``target_host:target_port``."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.latency_s = 0.0
        self.bandwidth_bps = 0  # 0: no limit
        self.duplicate = False
        self.answer: Literal["first", "second"] = "first"
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self.requests = 0  # HTTP requests read whole (duplicate mode only)
        self.cuts_done = 0
        self._cuts: dict[Direction, list[int]] = {"up": [], "down": []}
        self._lock = threading.Lock()
        self._bucket_free_at: dict[Direction, float] = {"up": 0.0, "down": 0.0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._listening = False
        self.port = _free_port()

    # -- life -------------------------------------------------------------------------

    def __enter__(self) -> SyncProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Run the loop on its thread and listen; return once connections are accepted."""
        self._thread = threading.Thread(target=self._run, name=f"sync-proxy-{self.port}",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise ProxyError(f"the proxy did not start listening on {self.port} within "
                             f"{START_TIMEOUT_S} s")
        if self._failure is not None:
            raise ProxyError(f"the proxy could not listen on {self.port}: "
                             f"{self._failure}") from self._failure

    def stop(self) -> None:
        """Close every connection and the listener; end the thread."""
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT_S)
        if self._thread.is_alive():
            raise ProxyError(f"the proxy's thread on {self.port} did not end")
        self._loop = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._listen())
        except OSError as exc:
            self._failure = exc
        self._ready.set()
        if self._failure is None:
            loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(START_TIMEOUT_S)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True)
        self._listening = True

    async def _shutdown(self) -> None:
        await self._close_listener()
        for link in list(self._links):
            link.close()
        self._links.clear()
        for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
            task.cancel()

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._listening = False

    # -- steering ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def down(self) -> None:
        """The central is down: connections are refused, open ones are dropped."""
        self._call(self._shutdown_keep_loop())

    async def _shutdown_keep_loop(self) -> None:
        await self._close_listener()
        for link in list(self._links):
            link.close()
        self._links.clear()

    def up(self) -> None:
        """The central is back: listen again on the same port."""
        try:
            self._call(self._listen())
        except OSError as exc:
            raise ProxyError(f"the proxy could not listen again on {self.port}: "
                             f"{exc}") from exc

    @property
    def listening(self) -> bool:
        return self._listening

    def cut_at(self, offsets: Iterable[int], direction: Direction = "up") -> None:
        """Cut the connection carrying each of these byte offsets of ``direction``
        (counted over every byte forwarded that way since the proxy started)."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction is 'up' or 'down', not {direction!r}")
        with self._lock:
            done = self.bytes_up if direction == "up" else self.bytes_down
            wanted = sorted(set(offsets))
            if wanted and wanted[0] < done:
                raise ValueError(f"offset {wanted[0]} is behind the {done} bytes already "
                                 f"forwarded {direction}")
            merged = self._cuts[direction] + wanted
            self._cuts[direction] = sorted(set(merged))

    def cut_randomly(self, count: int, *, span: int, seed: int,
                     direction: Direction = "up") -> list[int]:
        """Cut ``count`` times at offsets drawn from a seeded RNG, spread over the next
        ``span`` bytes of ``direction``; the offsets (the same for the same seed)."""
        if count > span:
            raise ValueError(f"{count} distinct cuts do not fit in {span} bytes")
        rng = random.Random(seed)
        base = self.bytes_up if direction == "up" else self.bytes_down
        offsets = sorted(base + 1 + o for o in rng.sample(range(span), count))
        self.cut_at(offsets, direction)
        return offsets

    def pending_cuts(self, direction: Direction = "up") -> int:
        with self._lock:
            return len(self._cuts[direction])

    def clear_cuts(self) -> None:
        with self._lock:
            self._cuts = {"up": [], "down": []}

    # -- forwarding -------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        link = _Link(client=writer, upstream=[])
        self._links.add(link)
        try:
            if self.duplicate:
                await self._serve_duplicating(reader, link)
            else:
                await self._serve_plain(reader, link)
        except (_Cut, ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            link.close()
            self._links.discard(link)

    async def _open_upstream(self, link: _Link) -> tuple[asyncio.StreamReader,
                                                         asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.target_host, self.target_port)
        link.upstream.append(writer)
        return reader, writer

    async def _serve_plain(self, reader: asyncio.StreamReader, link: _Link) -> None:
        up_reader, up_writer = await self._open_upstream(link)
        pipes = [asyncio.create_task(self._pipe(reader, up_writer, "up")),
                 asyncio.create_task(self._pipe(up_reader, link.client, "down"))]
        try:
            done, _ = await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    break
            else:  # both ended cleanly
                return
        finally:
            for task in pipes:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    direction: Direction) -> None:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write_eof()
                return
            await self._forward(writer, data, direction)

    async def _forward(self, writer: asyncio.StreamWriter, data: bytes,
                       direction: Direction) -> None:
        """Write ``data`` on, with the delay, the throttle and the cuts; _Cut after
        writing the bytes before a cut."""
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        step = THROTTLED_PIECE if self.bandwidth_bps else len(data)
        for start in range(0, len(data), step):
            piece = data[start:start + step]
            if self.bandwidth_bps:
                await self._throttle(direction, len(piece))
            allowed = self._take(direction, len(piece))
            if allowed:
                writer.write(piece[:allowed])
                await writer.drain()
            if allowed < len(piece):
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write_eof()  # the far side gets what came, then the end
                await writer.drain()
                raise _Cut

    def _take(self, direction: Direction, size: int) -> int:
        """How many of the next ``size`` bytes pass before a cut; counts them."""
        with self._lock:
            done = self.bytes_up if direction == "up" else self.bytes_down
            cuts = self._cuts[direction]
            allowed = size
            if cuts and cuts[0] <= done + size:
                allowed = max(0, cuts[0] - done)
                del cuts[:bisect.bisect_right(cuts, done + allowed)]
                self.cuts_done += 1
            if direction == "up":
                self.bytes_up += allowed
            else:
                self.bytes_down += allowed
            return allowed

    async def _throttle(self, direction: Direction, size: int) -> None:
        now = time.monotonic()
        start = max(now, self._bucket_free_at[direction])
        self._bucket_free_at[direction] = start + size * 8 / self.bandwidth_bps
        if self._bucket_free_at[direction] > now:
            await asyncio.sleep(self._bucket_free_at[direction] - now)

    # -- duplicating ------------------------------------------------------------------

    async def _serve_duplicating(self, reader: asyncio.StreamReader, link: _Link) -> None:
        """Each request of the connection, whole, twice to the central; one answer back."""
        while True:
            request = await _read_message(reader, request=True)
            if request is None:
                return
            self.requests += 1
            answers = [await self._exchange(link, request) for _ in range(2)]
            chosen = answers[0] if self.answer == "first" else answers[1]
            await self._forward(link.client, chosen, "down")

    async def _exchange(self, link: _Link, request: bytes) -> bytes:
        up_reader, up_writer = await self._open_upstream(link)
        try:
            await self._forward(up_writer, request, "up")
            answer = await _read_message(up_reader, request=False)
            if answer is None:
                raise ConnectionError("the central closed the connection without answering")
            return answer
        finally:
            up_writer.close()
            link.upstream.remove(up_writer)


async def _read_message(reader: asyncio.StreamReader, *, request: bool) -> bytes | None:
    """One HTTP/1.1 message's bytes, head and body (``Content-Length`` or chunked); None
    at the end of the connection before a message starts."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    except asyncio.LimitOverrunError as exc:
        raise ConnectionError(f"an HTTP head longer than {MAX_HEAD_BYTES} bytes") from exc
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if "chunked" in fields.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            body += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            body += await reader.readexactly(size + 2)
            if size == 0:
                return head + bytes(body)
    length = fields.get("content-length")
    if length is not None:
        return head + await reader.readexactly(int(length))
    status = lines[0].split(" ")
    if request or (len(status) > 1 and status[1] in ("204", "304")):
        return head
    return head + await reader.read()  # an answer that ends with its connection


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
