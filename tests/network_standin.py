"""A small stand-in of the central's network API (labhub/network/protocol.py), on a real
socket in a thread, for testing the hub's client: join, hello, resumable batch uploads
and down batches, with knobs to cut a connection at a byte, refuse, and go back in time.

It keeps what a real central keeps in its tables in memory: hubs by credential,
positions, the pieces of each batch, the batches applied, and the records it took (by
their key, so a replay changes nothing).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from labhub.network import protocol as p


@dataclass
class StandIn:
    """The central's state, and the test's knobs."""

    tokens: dict[str, str] = field(default_factory=dict)  # enrolment token -> site
    hubs: dict[str, tuple[str, str]] = field(default_factory=dict)  # credential -> (id, site)
    positions: dict[str, dict[str, p.Position]] = field(default_factory=dict)  # hub -> ...
    parts: dict[str, bytearray] = field(default_factory=dict)  # batch -> bytes so far
    applied: dict[str, dict[str, p.Position]] = field(default_factory=dict)  # batch -> pos
    records: dict[str, dict[Any, dict[str, Any]]] = field(default_factory=dict)  # by key
    deliveries: int = 0  # records applied, replays included
    hellos: list[dict[str, Any]] = field(default_factory=list)
    down: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # stream -> items
    down_asked: list[dict[str, Any]] = field(default_factory=list)
    clock_us: int = 0  # the central's clock minus the real one
    # knobs
    cut_put_after: list[int] = field(default_factory=list)  # cut the next PUTs there
    cut_get: int = 0  # cut this many GETs of a batch's state
    refuse: int | None = None  # answer every request with this status
    pieces: list[tuple[int, int, float, float]] = field(default_factory=list)  # PUTs
    requests: list[str] = field(default_factory=list)
    proxied: int = 0  # requests that came with a whole URL (through a proxy)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _hub(state: StandIn, handler: BaseHTTPRequestHandler) -> tuple[str, str] | None:
    auth = handler.headers.get("Authorization", "")
    return state.hubs.get(auth.removeprefix("Bearer ").strip())


def _apply(state: StandIn, hub_id: str, data: bytes) -> dict[str, p.Position]:
    batch = p.unpack_batch(data)
    positions = state.positions.setdefault(hub_id, {})
    for s in batch.sections:
        for record in p.unpack_records(s.data):
            state.records.setdefault(s.stream, {})[record["seq"]] = record
            state.deliveries += 1
        held = p.position_key(positions.get(s.stream))
        if p.position_key(s.start) <= held < p.position_key(s.to):
            positions[s.stream] = list(s.to)
    return dict(positions)


class _Handler(BaseHTTPRequestHandler):
    state: StandIn
    protocol_version = "HTTP/1.1"
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _path(self) -> str:
        path = self.path
        if path.startswith("http://"):
            path = "/" + path.split("/", 3)[3]
        return path

    def _answer(self, status: int, body: Any = None, *, raw: bytes | None = None,
                ctype: str = "application/json") -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _problem(self, status: int, title: str, detail: str) -> None:
        self._answer(status, {"type": "about:blank", "title": title, "status": status,
                              "detail": detail}, ctype="application/problem+json")

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _gate(self) -> tuple[str, str] | None:
        s = self.state
        s.requests.append(f"{self.command} {self._path()}")
        s.proxied += self.path.startswith("http://")
        if s.refuse is not None:
            self._body()
            self._problem(s.refuse, "Central is down", "the stand-in refuses everything")
            return None
        hub = _hub(s, self)
        if hub is None and self._path() != p.JOIN:
            self._body()
            self._problem(401, "Not signed in", "no valid hub credential")
            return None
        return hub or ("", "")

    def do_POST(self) -> None:
        s = self.state
        hub = self._gate()
        if hub is None:
            return
        path = self._path()
        if path == p.JOIN:
            body = json.loads(self._body())
            if set(body) != {"token", "name", "version", "sent_at_us"}:  # as the central
                self._problem(422, "Invalid request", f"fields {sorted(body)}")
                return
            site = s.tokens.pop(body["token"], None)
            if site is None:
                self._problem(403, "Not a valid enrolment token", "the token was used or "
                              "never made")
                return
            hub_id = f"hub-{len(s.hubs) + 1}"
            credential = f"{p.CREDENTIAL_PREFIX}{hub_id}-secret"
            s.hubs[credential] = (hub_id, site)
            self._answer(201, {"hub_id": hub_id, "site": site, "credential": credential,
                               "central_time_us": int(time.time() * 1e6) + s.clock_us})
        elif path == p.HELLO:
            hello = p.Hello.from_json(json.loads(self._body()))
            s.hellos.append(json.loads(json.dumps(hello.to_json())))
            welcome = p.Welcome(hub_id=hub[0], site=hub[1],
                                central_time_us=int(time.time() * 1e6) + s.clock_us,
                                positions=dict(s.positions.get(hub[0], {})))
            self._answer(200, welcome.to_json())
        elif path == p.DOWN:
            asked = json.loads(self._body())["positions"]
            s.down_asked.append(asked)
            sections = []
            for stream, items in s.down.items():
                after = asked.get(stream, [])
                new = [i for i in items if p.position_key([i["seq"]]) > p.position_key(after)]
                if new:
                    sections.append(p.Section(stream, p.CODEC_RECORDS, after,
                                              [new[-1]["seq"]], len(new),
                                              p.pack_records(new)))
            self._answer(200, raw=p.pack_batch(batch_id="down", hub_id=hub[0],
                                               made_at_us=0, sections=sections),
                         ctype="application/octet-stream")
        else:
            self._problem(404, "Not found", path)

    def _state_of(self, batch_id: str) -> dict[str, Any]:
        s = self.state
        if batch_id in s.applied:
            return p.UploadState(offset=len(s.parts.get(batch_id, b"")), complete=True,
                                 positions=s.applied[batch_id]).to_json()
        return p.UploadState(offset=len(s.parts.get(batch_id, b"")), complete=False).to_json()

    def do_GET(self) -> None:
        s = self.state
        if self._gate() is None:
            return
        batch_id = self._path().rsplit("/", 1)[1]
        if s.cut_get:
            s.cut_get -= 1
            self.close_connection = True
            self.connection.close()
            return
        self._answer(200, self._state_of(batch_id))

    def do_PUT(self) -> None:
        s = self.state
        hub = self._gate()
        if hub is None:
            return
        batch_id = self._path().rsplit("/", 1)[1]
        offset = int(self.headers[p.HEADER_OFFSET])
        total = int(self.headers[p.HEADER_LENGTH])
        length = int(self.headers.get("Content-Length", "0"))
        held = s.parts.setdefault(batch_id, bytearray())
        cut = s.cut_put_after.pop(0) if s.cut_put_after else None
        if offset != len(held) and batch_id not in s.applied:
            self.rfile.read(length)
            self._answer(409, self._state_of(batch_id))
            return
        started = time.monotonic()
        first: float | None = None
        got = 0
        while got < length:  # keep every byte that arrives, as the central does
            chunk = self.rfile.read1(min(65536, length - got))
            if not chunk:
                break
            if first is None:
                first = time.monotonic()
            if cut is not None and got + len(chunk) >= cut:
                held.extend(chunk[:cut - got])
                got = cut
                self.close_connection = True
                self.connection.close()
                return
            held.extend(chunk)
            got += len(chunk)
        s.pieces.append((offset, got, first or started, time.monotonic()))
        if len(held) == total and batch_id not in s.applied:
            if p.digest(bytes(held)) != self.headers[p.HEADER_DIGEST]:
                del s.parts[batch_id]
                self._problem(422, "Digest does not match", f"batch {batch_id}")
                return
            s.applied[batch_id] = _apply(s, hub[0], bytes(held))
        self._answer(200, self._state_of(batch_id))


@contextmanager
def running(state: StandIn | None = None, *, tls: ssl.SSLContext | None = None
            ) -> Iterator[tuple[StandIn, str]]:
    """The stand-in on a free port of 127.0.0.1: its state and its base URL (HTTPS at
    ``localhost`` with ``tls``, a server context)."""
    state = state or StandIn()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
    server.daemon_threads = False
    server.block_on_close = True
    thread = threading.Thread(target=server.serve_forever, name="standin-central",
                              kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        port = server.server_address[1]
        yield state, (f"https://localhost:{port}" if tls is not None
                      else f"http://127.0.0.1:{port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def connect_proxy() -> Iterator[tuple[list[str], str]]:
    """A proxy that takes ``CONNECT host:port`` (as a school's does for HTTPS) and pipes
    the bytes both ways: the targets it was asked for, and its URL."""
    asked: list[str] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()
    pipes: list[threading.Thread] = []
    sockets: list[socket.socket] = []

    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            sockets.append(client)
            client.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                head += client.recv(4096)
            method, target = head.split(b" ")[:2]
            assert method == b"CONNECT"
            asked.append(target.decode())
            host, port = target.decode().rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)), timeout=10)
            sockets.append(upstream)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            for a, b in ((client, upstream), (upstream, client)):
                t = threading.Thread(target=pipe, args=(a, b), name="proxy-pipe")
                t.start()
                pipes.append(t)

    thread = threading.Thread(target=serve, name="connect-proxy")
    thread.start()
    try:
        yield asked, f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for t in pipes:
            t.join(5)
        for s in sockets:
            s.close()
