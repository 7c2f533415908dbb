"""The hub's HTTP(S) to the central: the standard library's ``http.client``, a school's
proxy, time-outs, and a bandwidth limit on what goes up.

- **TLS** is verified against the system's trust store, or against the one CA file of
  ``network_ca_file`` (a central with a certificate of its own).
- **A proxy** named by ``HTTPS_PROXY`` / ``HTTP_PROXY`` (and skipped for ``NO_PROXY``) is
  used as browsers do: an HTTPS central through a ``CONNECT`` tunnel, an HTTP one with
  the whole URL in the request line. ``user:password@`` in the proxy's URL is sent as
  ``Proxy-Authorization``.
- **Time-outs**: every socket operation (connect, each send, each read) gives up after
  ``timeout_s``; a contact never hangs on a dead link.
- **Throttling**: the bodies sent go through a token bucket (:class:`TokenBucket`) in
  chunks of about 50 ms of the allowed rate, so a 256 kbit/s link limited to 64 keeps
  room for a class's browsing between them.

Errors are :class:`NetworkError`, whose text says what failed and where (the request and
the central's URL) and, when the central answered a problem, its detail: the sync records
that text, an expected network error is never a traceback.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

DEFAULT_TIMEOUT_S = 30.0
CUT_PAUSE_S = 0.2  # the first pause after a cut upload (setting network_cut_pause_ms)
CHUNK_SECONDS = 0.05  # a throttled chunk is about this long at the allowed rate
MIN_CHUNK = 512
MAX_CHUNK = 64 * 1024
UNTHROTTLED_CHUNK = 64 * 1024
MAX_ANSWER_BYTES = 64 * 1024 * 1024  # a down batch larger than this is refused


class NetworkError(Exception):
    """A request to the central failed: ``what`` was being done, ``where`` (method and
    URL), and why; ``status`` and ``detail`` when the central answered with an error."""

    def __init__(self, what: str, where: str, why: str, *, status: int | None = None,
                 detail: str | None = None) -> None:
        super().__init__(f"{what} ({where}): {why}")
        self.what = what
        self.where = where
        self.why = why
        self.status = status
        self.detail = detail


class CutError(NetworkError):
    """The connection failed or was cut before a whole answer came (try again)."""


class RefusedError(NetworkError):
    """The central answered with an error status (its problem's detail in the text)."""

    def __init__(self, what: str, where: str, why: str, *, status: int,
                 detail: str | None = None, body: Any = None) -> None:
        super().__init__(what, where, why, status=status, detail=detail)
        self.body = body  # the answer's JSON (a 409's upload state), when it was JSON


class StoppedError(NetworkError):
    """The hub is stopping: the request was given up."""


class TokenBucket:
    """At most ``rate`` bytes a second on average, with bursts of ``burst`` bytes.
    :meth:`take` waits (on ``stop``, so a stopping hub is not held) until the bytes may
    go."""

    def __init__(self, rate_bytes_s: float, burst_bytes: int, *,
                 clock: Callable[[], float] = time.monotonic,
                 stop: threading.Event | None = None) -> None:
        self.rate = float(rate_bytes_s)
        self.burst = float(burst_bytes)
        self._clock = clock
        self._stop = stop or threading.Event()
        self._tokens = self.burst
        self._at = clock()

    def take(self, n: int) -> None:
        """Spend ``n`` bytes, waiting until the bucket holds them (``StoppedError`` if the
        hub stops meanwhile)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= n
        if self._tokens < 0:
            wait = -self._tokens / self.rate
            if self._stop.wait(wait):
                raise StoppedError("sending", "the hub", "the hub is stopping")


def chunk_size(rate_bytes_s: float | None) -> int:
    """How many bytes one ``send`` writes: about :data:`CHUNK_SECONDS` of the rate."""
    if not rate_bytes_s:
        return UNTHROTTLED_CHUNK
    return int(min(MAX_CHUNK, max(MIN_CHUNK, rate_bytes_s * CHUNK_SECONDS)))


@dataclass(frozen=True, slots=True)
class Answer:
    """The central's answer: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self, what: str, where: str) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise NetworkError(what, where, f"the answer is not JSON: {exc}") from None


def _proxy(scheme: str, host: str) -> tuple[str, int, str | None] | None:
    """``(host, port, Proxy-Authorization)`` of the proxy for ``scheme://host``, from
    the environment; None for a direct connection."""
    if urllib.request.proxy_bypass(host):
        return None
    url = urllib.request.getproxies().get(scheme)
    if not url:
        return None
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    auth = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode()
    return parts.hostname, parts.port or 8080, auth


class Transport:
    """Requests to one central. Holds one connection (kept alive between requests of a
    contact, opened again after an error); not shared between threads, but
    :meth:`abort` may be called from another thread to end a request at once."""

    def __init__(self, base_url: str, *, credential: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, ca_file: Path | None = None,
                 bandwidth_kbit: int = 0, stop: threading.Event | None = None,
                 cut_pause_s: float = CUT_PAUSE_S) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{base_url!r} is not an http:// or https:// URL of a central")
        self.base_url = base_url.rstrip("/")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self.credential = credential
        self.timeout_s = timeout_s
        self.ca_file = ca_file
        self.stop = stop or threading.Event()
        self.cut_pause_s = cut_pause_s  # the first pause after a cut upload (then doubled)
        rate = bandwidth_kbit * 1000 / 8 if bandwidth_kbit else None
        self.chunk = chunk_size(rate)
        self.bucket = (TokenBucket(rate, self.chunk, stop=self.stop) if rate else None)
        self.bytes_uploaded = 0  # bytes of batches written (throttled bodies)
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _connect(self) -> tuple[http.client.HTTPConnection, str]:
        """The open connection and the prefix of request targets (the whole URL's start
        through an HTTP proxy, else nothing)."""
        proxy = _proxy(self.scheme, self.host)
        target_prefix = ""
        if self._conn is None:
            conn: http.client.HTTPConnection
            if self.scheme == "https":
                context = ssl.create_default_context(
                    cafile=str(self.ca_file) if self.ca_file is not None else None)
                if proxy is not None:
                    conn = http.client.HTTPSConnection(proxy[0], proxy[1], context=context,
                                                       timeout=self.timeout_s)
                    conn.set_tunnel(self.host, self.port, headers=(
                        {"Proxy-Authorization": proxy[2]} if proxy[2] else None))
                else:
                    conn = http.client.HTTPSConnection(self.host, self.port, context=context,
                                                       timeout=self.timeout_s)
            elif proxy is not None:
                conn = http.client.HTTPConnection(proxy[0], proxy[1], timeout=self.timeout_s)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            with self._lock:
                self._conn = conn
        if self.scheme == "http" and proxy is not None:
            target_prefix = f"http://{self.host}:{self.port}"
        return self._conn, target_prefix

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def abort(self) -> None:
        """End the request under way at once (from another thread: the hub stops)."""
        self.stop.set()
        with self._lock:
            conn = self._conn
        sock = getattr(conn, "sock", None) if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def request(self, method: str, path: str, *, what: str, body: bytes = b"",
                headers: Mapping[str, str] | None = None, throttle: bool = False) -> Answer:
        """Send one request and read its whole answer. A 2xx is returned; another status
        is :class:`RefusedError`; a failed or cut connection :class:`CutError`."""
        where = f"{method} {self.url(path)}"
        if self.stop.is_set():
            raise StoppedError(what, where, "the hub is stopping")
        try:
            conn, prefix = self._connect()
            conn.putrequest(method, prefix + self.base_path + path,
                            skip_accept_encoding=True)
            if self.credential is not None:
                conn.putheader("Authorization", f"Bearer {self.credential}")
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            self._send_body(conn, body, throttle=throttle)
            response = conn.getresponse()
            data = response.read(MAX_ANSWER_BYTES + 1)
            if len(data) > MAX_ANSWER_BYTES:
                raise NetworkError(what, where, f"the answer is larger than "
                                   f"{MAX_ANSWER_BYTES} bytes")
            answer = Answer(response.status,
                            {k.lower(): v for k, v in response.getheaders()}, data)
            if response.will_close:
                self.close()
        except StoppedError:
            self.close()
            raise
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise NetworkError(what, where, f"the central's certificate is not trusted: "
                               f"{exc.verify_message or exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            if self.stop.is_set():
                raise StoppedError(what, where, "the hub is stopping") from None
            raise CutError(what, where, _why(exc)) from None
        if 200 <= answer.status < 300:
            return answer
        raise _refused(what, where, answer)

    def _send_body(self, conn: http.client.HTTPConnection, body: bytes, *,
                   throttle: bool) -> None:
        view = memoryview(body)
        step = self.chunk if throttle and self.bucket is not None else UNTHROTTLED_CHUNK
        for at in range(0, len(view), step):
            piece = view[at:at + step]
            if throttle and self.bucket is not None:
                self.bucket.take(len(piece))
            conn.send(piece)
            if throttle:
                self.bytes_uploaded += len(piece)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer in time (timed out)"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the connection was closed before an answer came"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the central running, at this address?)"
    if isinstance(exc, socket.gaierror):
        return f"the central's name does not resolve: {exc.strerror or exc}"
    text = str(exc) or type(exc).__name__
    return f"the connection failed: {text}"


def _refused(what: str, where: str, answer: Answer) -> RefusedError:
    body: Any = None
    detail: str | None = None
    title: str | None = None
    try:
        body = json.loads(answer.body) if answer.body else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail") if isinstance(body.get("detail"), str) else None
        title = body.get("title") if isinstance(body.get("title"), str) else None
    why = f"the central answered {answer.status}"
    if title:
        why += f" {title}"
    if detail:
        why += f": {detail}"
    elif body is None and answer.body:
        why += f": {answer.body[:200].decode('utf-8', 'replace')}"
    return RefusedError(what, where, why, status=answer.status, detail=detail, body=body)
