"""The network tests' proxy (tests/sync_proxy.py) does what it says, on real sockets: it
forwards and counts, cuts at the byte asked, delays, throttles, duplicates requests and
refuses connections."""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sync_proxy import SyncProxy
from waiting import wait_for


class _Recorder(socketserver.ThreadingTCPServer):
    """A TCP server that keeps what each connection sent, and answers ``reply`` bytes
    once it has read ``expect`` bytes (or the connection ended)."""

    allow_reuse_address = True
    daemon_threads = False
    block_on_close = True

    def __init__(self, reply: bytes = b"", expect: int = 0) -> None:
        self.received: list[bytes] = []
        self.reply = reply
        self.expect = expect
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _RecorderHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _RecorderHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: _Recorder = self.server  # type: ignore[assignment]
        got = bytearray()
        self.request.settimeout(5)
        with contextlib.suppress(OSError):
            while len(got) < server.expect or not server.expect:
                data = self.request.recv(65536)
                if not data:
                    break
                got += data
            if server.reply:
                self.request.sendall(server.reply)
        with server.lock:
            server.received.append(bytes(got))


@contextlib.contextmanager
def _serving(server: socketserver.BaseServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    count = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with _Counting.lock:
            _Counting.count += 1
            n = _Counting.count
        answer = json.dumps({"n": n, "got": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


def _exchange(port: int, data: bytes, *, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        got = bytearray()
        while read:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return bytes(got)


def _post(port: int, body: bytes) -> dict[str, int]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/x", body=body, headers={"Content-Type": "text/plain"})
        answer = conn.getresponse()
        assert answer.status == 200
        return dict(json.loads(answer.read()))
    finally:
        conn.close()


def test_forwards_both_ways_and_counts_the_bytes() -> None:
    server = _Recorder(reply=b"R" * 70_000)
    with _serving(server), SyncProxy(server.port) as proxy:
        got = _exchange(proxy.port, b"Q" * 100_000)
        assert got == b"R" * 70_000
        wait_for(lambda: len(server.received) == 1, 5, "the server to have the request")
        assert server.received == [b"Q" * 100_000]
        assert (proxy.bytes_up, proxy.bytes_down, proxy.connections) == (100_000, 70_000, 1)


def test_cuts_upstream_at_the_offsets_over_every_connection() -> None:
    server = _Recorder()
    with _serving(server), SyncProxy(server.port) as proxy:
        proxy.cut_at([1000, 2500])
        for _ in range(3):
            _exchange(proxy.port, b"x" * 2000)
        wait_for(lambda: len(server.received) == 3, 5, "three connections at the server")
        # The first is cut at byte 1000, the second 1500 bytes in (byte 2500 overall),
        # the third passes whole: exactly the bytes before each cut arrived.
        assert sorted(len(r) for r in server.received) == [1000, 1500, 2000]
        assert proxy.cuts_done == 2 and proxy.pending_cuts() == 0
        assert proxy.bytes_up == 4500
        with pytest.raises(ValueError, match="behind"):
            proxy.cut_at([4000])


def test_cuts_downstream_and_the_client_sees_the_end() -> None:
    server = _Recorder(reply=b"D" * 50_000, expect=10)
    with _serving(server), SyncProxy(server.port) as proxy:
        proxy.cut_at([12_345], "down")
        assert _exchange(proxy.port, b"0123456789") == b"D" * 12_345
        assert _exchange(proxy.port, b"0123456789") == b"D" * 50_000
        assert proxy.cuts_done == 1 and proxy.bytes_down == 62_345


def test_random_cuts_are_the_same_for_the_same_seed() -> None:
    with SyncProxy(1) as first, SyncProxy(1) as second:
        a = first.cut_randomly(100, span=1_000_000, seed=42)
        b = second.cut_randomly(100, span=1_000_000, seed=42)
        assert a == b and len(set(a)) == 100 and all(0 < o <= 1_000_000 for o in a)
        assert a != second.cut_randomly(100, span=1_000_000, seed=43)


def test_throttles_to_the_bandwidth_and_delays_each_chunk() -> None:
    server = _Recorder()
    with _serving(server), SyncProxy(server.port) as proxy:
        proxy.bandwidth_bps = 256_000  # 32 KB/s: 16 KB take half a second
        started = time.monotonic()
        _exchange(proxy.port, b"t" * 16_000)
        wait_for(lambda: len(server.received) == 1, 5, "the throttled bytes")
        took = time.monotonic() - started
        assert 0.45 < took < 2.0, took
        proxy.bandwidth_bps = 0
        proxy.latency_s = 0.3
        started = time.monotonic()
        _exchange(proxy.port, b"l" * 10)
        wait_for(lambda: len(server.received) == 2, 5, "the delayed bytes")
        assert 0.3 <= time.monotonic() - started < 2.0


def test_duplicates_each_request_and_answers_once() -> None:
    _Counting.count = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    server.daemon_threads = False
    with _serving(server), SyncProxy(int(server.server_address[1])) as proxy:
        proxy.duplicate = True
        assert _post(proxy.port, b"a" * 5000) == {"n": 1, "got": 5000}
        assert _Counting.count == 2  # the central saw the request twice
        proxy.answer = "second"
        assert _post(proxy.port, b"b" * 10) == {"n": 4, "got": 10}
        assert _Counting.count == 4 and proxy.requests == 2


def test_refuses_connections_while_down_and_listens_again() -> None:
    server = _Recorder(reply=b"ok")
    with _serving(server), SyncProxy(server.port) as proxy:
        assert _exchange(proxy.port, b"1") == b"ok"
        proxy.down()
        assert not proxy.listening
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        proxy.up()
        assert _exchange(proxy.port, b"2") == b"ok"
        assert proxy.connections == 2
