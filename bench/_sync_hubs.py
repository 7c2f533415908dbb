"""A part of ``bench/sync.py``: 1,000 simulated hubs against one central with 2 worker
processes and PostgreSQL (docs/scaling.md).

The central is ``labhub serve --workers 2`` (role ``central``) on a fresh PostgreSQL
database of its own, on 127.0.0.1. The hubs are asyncio clients in this process, each
with its own credential (``lhh_...``), each making the contacts of the protocol
(``labhub.network.protocol``): a hello, then its readings since the last contact in
resumable batches (``PUT`` of the whole batch from offset 0, a ``GET`` of the state and
the rest from there when the central answers 409), readings encoded with the network's
codec (``labhub.network.codec``).

The credentials are written straight into ``network_hubs`` with the hashing the central
checks them with (``labhub.access.accounts.secret_hash``) rather than enrolled one by one
through ``POST /api/v1/network/join``: the bench measures the central's steady work,
not 1,000 enrolments.

The mix of labs (``MIX``), over ``SYNC_EVERY_S`` between contacts (the hubs' default):
most labs a few sensors at one reading each 10 s; some busy ones with more sensors at
1 Hz; a few catching up after days offline, which send their backlog batch after batch
as fast as the central takes it (their batches are made before the clock starts: on real
hubs each does that on its own CPU).

Measured over the window: the readings the central acknowledged per second (all labs,
and the catching-up ones alone, which is how much the central takes when pushed), the
p95 latency of each kind of request, the CPU the central's processes (the serve process
and its workers) and its PostgreSQL backends used per 1,000 readings (from /proc), and
this client process's own CPU, so a client that was the bottleneck shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from _common import free_port, load_average, p95
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from labhub import db
from labhub.access.accounts import secret_hash
from labhub.network import codec, protocol
from labhub.network.tables import network_hubs

ADMIN_URL = os.environ.get("LABHUB_BENCH_POSTGRES_URL",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
LABHUB = str(Path(sys.executable).with_name("labhub"))
WORKERS = 2
START_S = 120  # two workers import LabHub at once on a loaded machine
REQUEST_TIMEOUT_S = 60
RETRIES = 3  # a request cut or refused (409) is resumed at most this many times
BATCH_READINGS = 20_000  # readings in one batch at most (~120 kB at 6 bytes a reading)
HUB_CONNECTIONS = 200  # hubs talking to the central at once, at most
WARM_UP = 8  # hellos at once before the clock starts
MAX_HEADERS = 100  # header lines of one answer, at most
MAX_BATCHES_A_CONTACT = 1_000  # a catching-up hub's batches in one contact, at most


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of lab: how many of every 1,000, its sensors, their rate, days offline."""

    name: str
    per_1000: int
    sensors: int
    every_s: float  # seconds between two readings of a sensor
    offline_days: float = 0.0


MIX = (
    Kind("quiet", 880, sensors=4, every_s=10.0),
    Kind("busy", 110, sensors=8, every_s=1.0),
    Kind("catching up", 10, sensors=10, every_s=10.0, offline_days=2.0),
)
SYNC_EVERY_S = 60.0
# Two phases: the labs that are online alone (every one makes a contact or more), then the
# catching-up labs join them. The CPU of each phase gives the central's cost per request
# and per reading apart (``_cost_model``).
PHASE_S = 70.0
WINDOW_S = 160.0
SMOKE = dict(hubs=20, sync_every_s=2.0, phase_s=3.0, window_s=8.0, offline_days=0.02)


# -- a minimal HTTP/1.1 client on asyncio streams (little CPU per request) -----------------


class HttpError(RuntimeError):
    """The central's answer was not what the protocol says."""


class Connection:
    """One hub's keep-alive connection to the central; reopened when the central closed
    it between two requests."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, headers: dict[str, str],
                      body: bytes = b"") -> tuple[int, bytes]:
        for attempt in range(2):  # once more on a connection the central had closed
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}",
                    f"Content-Length: {len(body)}",
                    *(f"{k}: {v}" for k, v in headers.items()), "", ""]
            try:
                self.writer.write("\r\n".join(head).encode() + body)
                await self.writer.drain()
                status_line = await self.reader.readline()
                if not status_line:
                    raise ConnectionResetError("the central closed the connection")
            except (ConnectionError, OSError):
                await self.close()
                if attempt:
                    raise
                continue
            status = int(status_line.split()[1])
            length = 0
            keep = True
            for _ in range(MAX_HEADERS):
                line = await self.reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value.strip().lower() == "close":
                    keep = False
            data = await self.reader.readexactly(length) if length else b""
            if not keep:
                await self.close()
            return status, data
        raise AssertionError("unreachable")


# -- the simulated hubs --------------------------------------------------------------------


@dataclass
class Figures:
    """What the hubs saw."""

    latency: dict[str, list[float]] = field(default_factory=dict)
    readings: int = 0  # acknowledged by the central within the window
    catch_up_readings: int = 0
    catch_up_seconds: float = 0.0  # from the second phase's start to their last batch
    contacts: int = 0
    batches: int = 0
    resumed: int = 0  # batches resumed after a 409
    wire_bytes: int = 0
    errors: list[str] = field(default_factory=list)

    def timed(self, kind: str, seconds: float) -> None:
        self.latency.setdefault(kind, []).append(seconds)

    def requests(self) -> int:
        return sum(len(samples) for samples in self.latency.values())


@dataclass
class SimHub:
    """One lab's hub: its credential, sensors, and what it sent so far."""

    hub_id: str
    site: str
    credential: str
    kind: Kind
    generated_to_us: int  # readings exist up to here
    seq: int = 0  # readings made so far (the journal's position)
    made_to: protocol.Position = field(default_factory=list)  # the last batch's "to"
    acknowledged: protocol.Position = field(default_factory=list)
    ready: list[bytes] = field(default_factory=list)  # batches made before the clock

    def readings_until(self, now_us: int, limit: int) -> tuple[list[codec.SeriesReadings],
                                                               int]:
        """The next readings up to ``now_us`` (at most ``limit``), per sensor."""
        step = int(self.kind.every_s * 1_000_000)
        per_sensor = max(min((now_us - self.generated_to_us) // step,
                             limit // self.kind.sensors), 0)
        if per_sensor == 0:
            return [], 0
        ts = [self.generated_to_us + step * (i + 1) for i in range(per_sensor)]
        self.generated_to_us = ts[-1]
        rnd = random.Random(self.seq)
        series = []
        for n in range(self.kind.sensors):
            value = 20.0 + n
            values = []
            for _ in ts:
                value = round(value + rnd.uniform(-0.05, 0.05), 2)
                values.append(value)
            series.append(codec.SeriesReadings(
                device=f"estacion-{n // 4 + 1}", channel=f"c{n % 4}", quantity="temperature",
                unit="degC", ts=ts, values=values, flags=[0] * per_sensor))
        return series, per_sensor * self.kind.sensors

    def next_batch(self, now_us: int) -> bytes | None:
        series, count = self.readings_until(now_us, BATCH_READINGS)
        if not count:
            return None
        start = self.made_to
        self.seq += count
        to = self.made_to = [self.seq, series[0].ts[-1]]
        section = protocol.Section(stream="readings", codec=protocol.CODEC_READINGS,
                                   start=start, to=to, count=count,
                                   data=codec.encode(series))
        return protocol.pack_batch(batch_id=str(uuid.uuid4()), hub_id=self.hub_id,
                                   made_at_us=now_us, sections=[section])


def _now_us() -> int:
    return time.time_ns() // 1000


class Fleet:
    """The hubs, their contacts, and the figures."""

    def __init__(self, port: int, hubs: list[SimHub], *, sync_every_s: float,
                 phase_s: float, window_s: float,
                 at_phase: Callable[[], None]) -> None:
        self.port = port
        self.phase_s = phase_s
        self.at_phase = at_phase
        self.hubs = hubs
        self.sync_every_s = sync_every_s
        self.window_s = window_s
        self.figures = Figures()
        self.gate = asyncio.Semaphore(HUB_CONNECTIONS)
        self.started = 0.0

    async def call(self, conn: Connection, kind: str, method: str, path: str,
                   headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
        t0 = time.perf_counter()
        status, data = await asyncio.wait_for(conn.request(method, path, headers, body),
                                              REQUEST_TIMEOUT_S)
        self.figures.timed(kind, time.perf_counter() - t0)
        self.figures.wire_bytes += len(body)
        return status, data

    async def upload(self, conn: Connection, hub: SimHub, batch: bytes, auth: str) -> int:
        """One batch, resumed from where the central says on a 409; its readings count."""
        header = protocol.unpack_batch(batch)
        path = protocol.BATCH.format(batch_id=header.batch_id)
        offset = 0
        for _ in range(RETRIES + 1):
            kind = "PUT batch, backlog" if hub.kind.offline_days else "PUT batch, live"
            status, data = await self.call(conn, kind, "PUT", path, {
                "Authorization": auth, "Content-Type": "application/octet-stream",
                protocol.HEADER_OFFSET: str(offset),
                protocol.HEADER_LENGTH: str(len(batch)),
                protocol.HEADER_DIGEST: protocol.digest(batch)}, batch[offset:])
            if status == 409:
                self.figures.resumed += 1
                status, data = await self.call(conn, "GET batch", "GET", path,
                                               {"Authorization": auth})
            if status != 200 and status != 409:
                raise HttpError(f"PUT {path}: {status} {data[:200]!r}")
            state = protocol.UploadState.from_json(json.loads(data))
            if state.complete:
                self.figures.batches += 1
                if state.positions is not None:
                    hub.acknowledged = state.positions.get("readings", hub.acknowledged)
                return sum(s.count for s in header.sections)
            offset = state.offset
        raise HttpError(f"PUT {path}: not complete after {RETRIES} resumptions")

    async def contact(self, hub: SimHub) -> None:
        """A hello, then the readings since the last contact (a catching-up hub: its
        backlog, batch after batch, until the window ends)."""
        auth = f"Bearer {hub.credential}"
        async with self.gate:
            conn = Connection(self.port)
            try:
                hello = protocol.Hello(health=protocol.Health(
                    version="bench", uptime_s=int(time.monotonic()), free_disk_bytes=10**10,
                    backlog=len(hub.ready) * BATCH_READINGS, devices_online=hub.kind.sensors,
                    dead_letters=0), sent_at_us=_now_us())
                status, data = await self.call(
                    conn, "POST hello", "POST", protocol.HELLO,
                    {"Authorization": auth, "Content-Type": "application/json"},
                    json.dumps(hello.to_json()).encode())
                if status != 200:
                    raise HttpError(f"POST hello: {status} {data[:200]!r}")
                self.figures.contacts += 1
                for _ in range(MAX_BATCHES_A_CONTACT):
                    if time.perf_counter() - self.started >= self.window_s:
                        break
                    batch = hub.ready.pop(0) if hub.ready else hub.next_batch(_now_us())
                    if batch is None:
                        break
                    count = await self.upload(conn, hub, batch, auth)
                    self.figures.readings += count
                    if hub.kind.offline_days:
                        self.figures.catch_up_readings += count
                        self.figures.catch_up_seconds = (time.perf_counter() - self.started
                                                         - self.phase_s)
            finally:
                await conn.close()

    async def run_hub(self, hub: SimHub, first_after_s: float) -> None:
        await asyncio.sleep(first_after_s)
        for _ in range(math.ceil(self.window_s / self.sync_every_s) + 1):
            if time.perf_counter() - self.started >= self.window_s:
                return
            began = time.perf_counter()
            try:
                await self.contact(hub)
            except (TimeoutError, HttpError, OSError, protocol.ProtocolError) as exc:
                if len(self.figures.errors) < 20:
                    self.figures.errors.append(f"{hub.site}: {type(exc).__name__}: {exc}")
                return
            left = self.window_s - (time.perf_counter() - self.started)
            await asyncio.sleep(max(min(self.sync_every_s - (time.perf_counter() - began),
                                        left), 0))

    async def run(self) -> None:
        self.started = time.perf_counter()
        rnd = random.Random(15)

        async def second_phase() -> None:
            await asyncio.sleep(self.phase_s)
            self.at_phase()

        await asyncio.gather(second_phase(), *(
            self.run_hub(hub, self.phase_s if hub.kind.offline_days
                         else rnd.uniform(0, self.sync_every_s))
            for hub in self.hubs))


# -- the central ---------------------------------------------------------------------------


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """``pid`` and every process under it."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


@contextlib.contextmanager
def _database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database of its own; dropped at the end."""
    admin = make_url(ADMIN_URL).set(drivername="postgresql+psycopg")
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    name = f"labhub_bench_hubs_{uuid.uuid4().hex[:10]}"
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.set(database=name).render_as_string(hide_password=False)
    try:
        central = db.make_engine(url)
        db.upgrade(central)
        central.dispose()
        yield url
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def _enrol(url: str, count: int, kinds: list[Kind], start_us: int) -> list[SimHub]:
    """``count`` labs in the inventory's tree and a hub enrolled for each, its credential
    hashed as the central checks it."""
    from inventory import sites

    engine = db.make_engine(url)
    hubs = []
    rows = []
    with engine.begin() as conn:
        sites.create_site(conn=conn, code="PAIS", name="Red nacional", kind="network",
                          by="bench")
        for r in range(math.ceil(count / 100)):
            sites.create_site(conn=conn, code=f"PAIS-R{r}", name=f"Region {r}",
                              kind="region", by="bench", parent_code="PAIS")
        for i, kind in enumerate(kinds):
            code = f"PAIS-LAB-{i:05d}"
            sites.create_site(conn=conn, code=code, name=f"Lab {i}", kind="site", by="bench",
                              parent_code=f"PAIS-R{i // 100}", tier="lab_point",
                              rural=i % 3 == 0, rollout_status="active")
            credential = protocol.CREDENTIAL_PREFIX + uuid.uuid4().hex + uuid.uuid4().hex
            hub_id = str(uuid.uuid4())
            rows.append({"id": hub_id, "site": code, "name": f"hub-{i}",
                         "credential_hash": secret_hash(credential), "enrolled_at": start_us,
                         "enrolled_by": "bench"})
            offline_us = int(kind.offline_days * 86_400 * 1_000_000)
            hubs.append(SimHub(hub_id=hub_id, site=code, credential=credential, kind=kind,
                               generated_to_us=start_us - max(offline_us, 1_000_000)))
        conn.execute(insert(network_hubs), rows)
    engine.dispose()
    return hubs


@contextlib.contextmanager
def _central(url: str, workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = free_port()
    log = workdir / "central.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [LABHUB, "serve", "--port", str(port), "--workers", str(WORKERS)],
            env={"PATH": os.environ.get("PATH", ""), "LABHUB_CONFIG": os.devnull,
                 "LABHUB_DATA_DIR": str(workdir / "data"), "LABHUB_ROLE": "central",
                 "LABHUB_DATABASE_URL": url, "LABHUB_SERIAL_SCAN": "false",
                 "LABHUB_LOG_LEVEL": "warning",
                 **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}},
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_S
        ready = False
        for _ in range(int(START_S / 0.2) + 1):
            if process.poll() is not None:
                raise RuntimeError(f"the central stopped: {log.read_text()[-2000:]}")
            workers = [p for p in _tree(process.pid) if p != process.pid
                       and b"spawn_main" in _cmdline(p)]
            ready = len(workers) == WORKERS and _answers(port)
            if ready or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if not ready:
            raise RuntimeError(f"the central did not answer in {START_S} s: "
                               f"{log.read_text()[-2000:]}")
        yield process, port, log
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _answers(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


class BackendWatch:
    """The CPU of the central's PostgreSQL backends (those of its database), sampled every
    half second from /proc: a pooled connection that opens and closes within the window
    counts too (up to its last half second)."""

    def __init__(self, url: str) -> None:
        import threading

        self.url = url
        self.first: dict[int, float] = {p: _cpu_s(p) for p in _postgres_backends(url)}
        self.last: dict[int, float] = dict(self.first)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-backends", daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        for pid in _postgres_backends(self.url):
            cpu = _cpu_s(pid)
            self.first.setdefault(pid, 0.0)  # opened within the window: all of its CPU
            if cpu:
                self.last[pid] = cpu
        for pid in list(self.last):
            cpu = _cpu_s(pid)
            if cpu:
                self.last[pid] = cpu

    def _run(self) -> None:
        for _ in range(100_000):
            if self.stop.wait(0.5):
                return
            self._sample()

    def so_far_s(self) -> float:
        """CPU seconds the backends used since this watch began, up to now."""
        self._sample()
        return sum(self.last[p] - self.first.get(p, 0.0) for p in self.last)

    def cpu_s(self) -> float:
        """The same, at the end: the watch stops."""
        self.stop.set()
        self.thread.join(10)
        return self.so_far_s()


def _postgres_backends(url: str) -> list[int]:
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    with engine.connect() as conn:
        pids = [int(p) for p in conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")).scalars()]
    engine.dispose()
    return pids


def _codec_missing() -> str | None:
    """Why the readings cannot be encoded yet; None when they can."""
    try:
        codec.encode([codec.SeriesReadings(device="d", channel="c", quantity=None, unit=None,
                                           ts=[1], values=[1.0], flags=[0])])
    except NotImplementedError:
        return "the readings codec (labhub.network.codec.encode) is not built"
    return None


def _routes_missing(port: int, hub: SimHub) -> str | None:
    """Why the central cannot take a hub's hello yet; None when it can."""
    import urllib.error
    import urllib.request

    hello = protocol.Hello(health=protocol.Health(
        version="bench", uptime_s=0, free_disk_bytes=0, backlog=0, devices_online=0,
        dead_letters=0), sent_at_us=_now_us())
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{protocol.HELLO}", method="POST",
        data=json.dumps(hello.to_json()).encode(),
        headers={"Authorization": f"Bearer {hub.credential}",
                 "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30):
            return None
    except urllib.error.HTTPError as exc:
        return (f"the central answers POST {protocol.HELLO} with {exc.code} "
                f"({exc.read()[:200]!r})")


def _copy_ceiling(url: str, rows: int) -> float:
    """PostgreSQL's own ``COPY`` of ``rows`` readings into the central's readings table on
    this machine, in readings/s (then removed): the ceiling the central's rate is read
    against, measured in the same run."""
    import psycopg

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(
        hide_password=False)
    now = _now_us()
    with psycopg.connect(conninfo) as conn:
        series_id = conn.execute(
            "INSERT INTO series (device, channel, quantity, unit, site, created_at) "
            "VALUES ('bench/copy', 'c', NULL, NULL, NULL, %s) RETURNING id",
            (now,)).fetchone()
        assert series_id is not None
        conn.commit()
        t0 = time.perf_counter()
        for start in range(0, rows, 10_000):
            with conn.cursor() as cur, cur.copy(
                    "COPY readings (series_id, ts, value, flags) FROM STDIN") as copy:
                for i in range(start, min(start + 10_000, rows)):
                    copy.write_row((series_id[0], now - 3_600_000_000 + i * 1000,
                                    20.0 + (i % 100) / 10, 0))
            conn.commit()
        took = time.perf_counter() - t0
        conn.execute("DELETE FROM series WHERE id = %s", (series_id[0],))
        conn.commit()
    return rows / took


def _warm_up(port: int, hubs: list[SimHub]) -> None:
    """A few hellos at once before the clock starts, so that each worker has answered
    one (a worker's first request imports what the network's routes use)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(WARM_UP) as pool:
        list(pool.map(lambda hub: _routes_missing(port, hub), hubs[:WARM_UP] * 2))


def _storage(url: str) -> str:
    """The readings the central holds, and their size on disk per reading (the table,
    its partitions and their indexes)."""
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM readings")).scalar_one()
        size = conn.execute(text(
            "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) "
            "FROM pg_partition_tree('readings')")).scalar_one()
        partitions = conn.execute(text(
            "SELECT count(*) FROM pg_partition_tree('readings') WHERE isleaf "
            "AND relid <> 'readings'::regclass")).scalar_one()
    engine.dispose()
    shape = f"{partitions} monthly partitions" if partitions else "not partitioned"
    each = (f"{size / count:.0f} bytes each on disk with the indexes" if count >= 100_000
            else f"{size:,} bytes on disk: too few readings to size one")
    return f"  stored: {count:,} readings in the central's readings table ({shape}), {each}"


def _kinds(count: int, offline_days: float | None) -> list[Kind]:
    """The kind of each of ``count`` labs, in the proportions of :data:`MIX`: at least
    one of each rarer kind, the first kind (the quiet labs) the rest."""
    out: list[Kind] = []
    for kind in MIX[1:]:
        k = kind if offline_days is None or not kind.offline_days else Kind(
            kind.name, kind.per_1000, kind.sensors, kind.every_s, offline_days)
        out += [k] * max(round(count * kind.per_1000 / 1000), 1)
    return [MIX[0]] * (count - len(out)) + out


def measure(smoke: bool) -> list[str]:
    """This part's lines for ``bench/sync.py``."""
    import tempfile

    if smoke:
        count, sync_every_s, phase_s, window_s = (
            int(SMOKE["hubs"]), SMOKE["sync_every_s"], SMOKE["phase_s"], SMOKE["window_s"])
        kinds = _kinds(count, SMOKE["offline_days"])
    else:
        count, sync_every_s, phase_s, window_s = 1000, SYNC_EVERY_S, PHASE_S, WINDOW_S
        kinds = _kinds(count, None)
    lines = [f"1,000 hubs: {count} simulated hubs against one central "
             f"({WORKERS} workers, PostgreSQL), a contact every {sync_every_s:g} s, "
             f"{window_s:g} s measured; load {load_average()}"]
    missing = _codec_missing()
    if missing is not None:
        return [*lines, f"  not measured: {missing}"]
    with tempfile.TemporaryDirectory(prefix="labhub-bench-hubs-") as tmp, \
            _database() as url:
        t0 = time.perf_counter()
        hubs = _enrol(url, count, kinds, _now_us())
        enrol_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for hub in hubs:  # the backlog of the catching-up labs, made on "their" CPU
            if hub.kind.offline_days:
                for _ in range(MAX_BATCHES_A_CONTACT):
                    batch = hub.next_batch(_now_us())
                    if batch is None:
                        break
                    hub.ready.append(batch)
        backlog = sum(len(h.ready) for h in hubs)
        made_s = time.perf_counter() - t0
        lines.append(f"  set-up: {count} labs and credentials written in {enrol_s:.1f} s "
                     f"(straight into network_hubs); {backlog} backlog batches made in "
                     f"{made_s:.1f} s")
        ceiling = _copy_ceiling(url, 20_000 if smoke else 300_000)
        lines.append(f"  PostgreSQL's own COPY of readings here: {ceiling:,.0f} readings/s "
                     "(one connection, commit per 10,000)")
        with _central(url, Path(tmp)) as (process, port, log):
            missing = _routes_missing(port, hubs[0])
            if missing is not None:
                return [*lines, f"  not measured: {missing}"]
            _warm_up(port, hubs)
            central_before = {p: _cpu_s(p) for p in _tree(process.pid)}
            backends = BackendWatch(url)
            phase: list[float] = []

            def at_phase() -> None:
                phase[:] = [sum(_cpu_s(p) - central_before.get(p, 0.0)
                                for p in _tree(process.pid)), backends.so_far_s(),
                            fleet.figures.readings, fleet.figures.requests()]

            fleet = Fleet(port, hubs, sync_every_s=sync_every_s, phase_s=phase_s,
                          window_s=window_s, at_phase=at_phase)
            client_before = resource.getrusage(resource.RUSAGE_SELF)
            wall0 = time.perf_counter()
            asyncio.run(fleet.run())
            wall = time.perf_counter() - wall0
            client_after = resource.getrusage(resource.RUSAGE_SELF)
            central_cpu = sum(_cpu_s(p) - central_before.get(p, 0.0)
                              for p in _tree(process.pid))
            each = sorted((_cpu_s(p) - central_before.get(p, 0.0)
                           for p in _tree(process.pid) if b"spawn_main" in _cmdline(p)),
                          reverse=True)
            postgres_cpu = backends.cpu_s()
            central_log = log.read_text()
        lines.append(_storage(url))
        lines += _report(fleet.figures, wall=wall, window=window_s, central_cpu=central_cpu,
                         postgres_cpu=postgres_cpu,
                         client_cpu=(client_after.ru_utime - client_before.ru_utime
                                     + client_after.ru_stime - client_before.ru_stime))
        shared = ("every worker did a share of the work" if each and each[-1] > 0.1 * each[0]
                  else "one worker did nearly all of the work")
        lines.append("  each worker's CPU: " + ", ".join(f"{c:.1f} s" for c in each)
                     + f": {shared}")
        if phase:
            lines += _cost_model(phase, [central_cpu, postgres_cpu, fleet.figures.readings,
                                         fleet.figures.requests()], phase_s=phase_s)
        if "Traceback" in central_log:
            lines.append("  the central logged errors: "
                         + central_log[central_log.index("Traceback"):][:600])
    return lines


def _solve(c1: float, n1: float, r1: float, c2: float, n2: float,
           r2: float) -> tuple[float, float] | None:
    """``(a, b)`` with ``c = a * requests + b * readings`` in both phases; None when the
    phases do not tell them apart."""
    det = r1 * n2 - r2 * n1
    if not det:
        return None
    a, b = (c1 * n2 - c2 * n1) / det, (r1 * c2 - r2 * c1) / det
    return (a, b) if a > 0 and b > 0 else None


def _cost_model(first: list[float], whole: list[float], *, phase_s: float) -> list[str]:
    """The central's CPU as ``a`` per request plus ``b`` per reading, from the two phases
    (online labs alone, then with the catching-up labs): two equations, two unknowns, for
    the workers and PostgreSQL apart. And what that says of a country."""
    workers1, postgres1, readings1, requests1 = first
    workers2, postgres2, readings2, requests2 = (w - f for w, f in zip(whole, first,
                                                                       strict=True))
    out = [f"  phase 1, online labs alone ({phase_s:g} s): {int(readings1):,} readings, "
           f"{int(requests1):,} requests, CPU workers {workers1:.1f} s + PostgreSQL "
           f"{postgres1:.1f} s; phase 2, with the catching-up labs: {int(readings2):,} "
           f"readings, {int(requests2):,} requests, CPU workers {workers2:.1f} s + "
           f"PostgreSQL {postgres2:.1f} s"]
    # A country: 10,000 labs, 20 sensors each at one reading a 10 s, a contact a minute
    # (a hello and one batch): 20,000 readings/s and 333 requests/s.
    readings_s, requests_s = 20_000, 2 * 10_000 / SYNC_EVERY_S
    cores = 0.0
    for name, c1, c2 in (("workers", workers1, workers2),
                         ("PostgreSQL", postgres1, postgres2),
                         ("both", workers1 + postgres1, workers2 + postgres2)):
        solved = _solve(c1, readings1, requests1, c2, readings2, requests2)
        if solved is None:
            return [*out, "  cost model: the phases do not tell the costs apart (too few)"]
        a, b = solved
        cores = readings_s * b + requests_s * a
        out.append(f"  cost model, {name}: {a * 1000:.2f} ms of CPU a request + "
                   f"{b * 1e6:.2f} ms per 1,000 readings; at a country's 20,000 "
                   f"readings/s and {requests_s:.0f} requests/s: {cores:.1f} cores")
    return out


def _report(f: Figures, *, wall: float, window: float, central_cpu: float,
            postgres_cpu: float, client_cpu: float) -> list[str]:
    out = []
    per_k = 1000 / f.readings if f.readings else math.nan
    out.append(f"  sustained: {f.readings:,} readings acknowledged in the {window:g} s "
               f"window (the last requests done at {wall:.1f} s) = "
               f"{f.readings / wall:,.0f} readings/s; {f.contacts:,} contacts, "
               f"{f.batches:,} batches ({f.resumed} resumed after a 409), "
               f"{f.wire_bytes / max(f.readings, 1):.2f} bytes/reading on the wire")
    if f.catch_up_readings:
        out.append(f"  catching-up labs alone: {f.catch_up_readings:,} readings in "
                   f"{f.catch_up_seconds:.1f} s = "
                   f"{f.catch_up_readings / max(f.catch_up_seconds, 1e-9):,.0f} readings/s "
                   "(the central pushed as hard as those hubs can send)")
    for kind, samples in sorted(f.latency.items()):
        out.append(f"  p95 latency {kind}: {p95(samples) * 1000:.0f} ms "
                   f"(median {sorted(samples)[len(samples) // 2] * 1000:.0f} ms, "
                   f"{len(samples):,} requests)")
    everything = [s for samples in f.latency.values() for s in samples]
    if everything:
        out.append(f"  p95 latency, every request: {p95(everything) * 1000:.0f} ms")
    out.append(f"  central CPU: workers {central_cpu:.1f} s + PostgreSQL backends "
               f"{postgres_cpu:.1f} s = {(central_cpu + postgres_cpu) * per_k * 1000:.1f} ms "
               f"per 1,000 readings (workers {central_cpu * per_k * 1000:.1f} ms, "
               f"PostgreSQL {postgres_cpu * per_k * 1000:.1f} ms); "
               f"{(central_cpu + postgres_cpu) / wall:.2f} cores busy on average")
    verdict = ("the client was NOT the bottleneck" if client_cpu / wall < 0.8
               else "the client may have been the bottleneck: read the figures as a floor")
    out.append(f"  client (this process, every hub): {client_cpu:.1f} s CPU = "
               f"{client_cpu / wall:.0%} of one core; {verdict}")
    if f.errors:
        out.append(f"  ERRORS ({len(f.errors)} shown): " + "; ".join(f.errors[:5]))
    return out
