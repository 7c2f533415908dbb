"""Soak benchmark: does the demo hub's memory come back under hours of mixed traffic?

Starts a real hub process (``labhub demo``: a virtual climate station and a virtual
Firmata kit attached, a fresh SQLite database in a temporary directory) on a free loopback
port, and drives it over HTTP from two client threads with a mix of what a lab's day
brings: readings uploads (JSON batches and Serial Plotter text), bad uploads (bodies that
are not JSON, readings that do not validate, a large undecodable body now and then, and
one upload just under the 16 MiB limit each minute), range queries, downsampled charts,
CSV and JSON exports, the dead-letter listing and the counters, and inventory reads and
writes (asset lists, registrations, moves, status changes, history, the assets CSV).

Every ``--sample-s`` seconds (60, 2 with ``--smoke``) the hub process's resident set is
read from ``/proc/<pid>/status`` (``VmRSS``). At the end it prints every sample, the
request counts, and whether the samples of the last half of the run (the last 10 minutes
of the default 20) stay within 10 % of their lowest value: ``target: ... flat`` or
``growing``. The target is printed, never asserted; the script exits with an error only
when the hub dies or answers a request with a 500 (a product bug either way).

At each sample the hub also says where its memory is: SQLite's own heap
(``sqlite3_memory_used``: page caches and statements, bounded by the hub's soft heap
limit), glibc malloc's bytes in use and free in its arenas, and its separately mmapped
blocks; then the kernel's split of RSS into anonymous memory and file pages, and the
number of threads. RSS that grows while those stay flat is elsewhere (thread stacks,
Python's own small-object arenas, fragmentation).

``--trace`` has the hub start ``tracemalloc`` (25 frames) at the first sample and write a
snapshot at each sample; the script then prints the 15 allocation sites that grew most between the
first sample after warm-up and the last. tracemalloc slows the hub down and counts Python
allocations only, not the C library's heap behind them: use it to find what holds memory,
and the plain run to measure RSS.

Run: ``python bench/soak.py`` (20 minutes), ``--minutes 5`` for a shorter run,
``--smoke`` for a 10-second run that checks the script and the hub still work together.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

if importlib.util.find_spec("labhub") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import free_port

START_WAIT_S = 60.0  # the demo hub opens its virtual kits (0.5 s reset wait) and migrates
REQUEST_TIMEOUT_S = 120.0  # a 16 MiB upload on a loaded machine takes seconds, not minutes
FLAT_WITHIN = 0.10  # the target: the last half's samples within 10 % of their lowest
BIG_BAD_BYTES = 16 * 1024 * 1024 - 4096  # just under the hub's default max_body_bytes
DEVICES = 8  # HTTP devices uploading readings, each with 3 channels
CHANNELS = ("temp", "hum", "light")

# Started as the hub process: ``labhub demo`` with a SIGUSR1 handler that writes where its
# memory is (SQLite's own heap, glibc malloc's totals) into LABHUB_SOAK_MEMORY, and, under
# --trace, turns tracemalloc on and writes a snapshot into LABHUB_SOAK_TRACE.
HUB_MAIN = """
import ctypes, ctypes.util, faulthandler, os, signal, sys, tracemalloc, itertools
faulthandler.register(signal.SIGUSR2, all_threads=True)  # a stack dump of every thread
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
mallinfo2 = getattr(libc, "mallinfo2", None)
if mallinfo2 is not None:
    mallinfo2.restype = MallInfo2
sqlite = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
sqlite.sqlite3_memory_used.restype = ctypes.c_int64
memory, trace = os.environ["LABHUB_SOAK_MEMORY"], os.environ.get("LABHUB_SOAK_TRACE")
numbers = itertools.count()
def dump(signum, frame):
    number = next(numbers)
    if trace:  # traced from the first sample on: tracing the start-up would slow it 10x
        if not tracemalloc.is_tracing():
            tracemalloc.start(25)
        tracemalloc.take_snapshot().dump(os.path.join(trace, f"snap-{number:03d}"))
    info = mallinfo2() if mallinfo2 is not None else MallInfo2()
    figures = (sqlite.sqlite3_memory_used(), info.arena, info.uordblks, info.fordblks,
               info.hblkhd)
    path = os.path.join(memory, f"mem-{number:03d}")
    with open(path + ".part", "w") as out:
        out.write(" ".join(str(f) for f in figures))
    os.replace(path + ".part", path)
signal.signal(signal.SIGUSR1, dump)
from labhub.cli import main
sys.argv = ["labhub", "demo", "--port", sys.argv[1]]
main()
"""


def where_memory_is(pid: int, memory_dir: Path, number: int) -> str:
    """Ask the hub (SIGUSR1) where its memory is: SQLite's heap, malloc's in use and free
    bytes, and its mmapped blocks, in MiB; tracemalloc's snapshot too under --trace."""
    os.kill(pid, signal.SIGUSR1)
    path = memory_dir / f"mem-{number:03d}"
    deadline = time.monotonic() + 10.0  # a snapshot under --trace takes a few seconds
    while not path.exists():
        if time.monotonic() > deadline:
            return "(the hub did not say where its memory is)"
        time.sleep(0.05)
    sqlite, _arena, used, free, mapped = (int(f) for f in path.read_text().split())
    status = {line.split(":")[0]: int(line.split()[1]) * 1024
              for line in Path(f"/proc/{pid}/status").read_text().splitlines()
              if line.startswith(("RssAnon:", "RssFile:", "Threads:"))}
    figures = (sqlite, used, free, mapped, status.get("RssAnon", 0), status.get("RssFile", 0))
    threads = status.get("Threads", 0) // 1024
    return "  ".join(f"{value / 2**20:7.1f} MiB" for value in figures) + f"  {threads:7d}"


def rss_kib(pid: int) -> int:
    """The process's resident set in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


AUTH: dict[str, str] = {}  # the demo admin's token, read from the demo's output


def sign_in_from_log(log: Path) -> None:
    """Use the token the demo printed (``token: curl -H 'Authorization: Bearer ...'``)."""
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("token: "):
            AUTH["Authorization"] = "Bearer " + line.split("Bearer ")[1].split("'")[0]
            return
    raise RuntimeError(f"the demo printed no token line in {log}")


class Client:
    """One keep-alive HTTP connection to the hub, counting answers by status class."""

    def __init__(self, port: int, counts: dict[str, int], lock: threading.Lock) -> None:
        self.port = port
        self.counts = counts
        self.lock = lock
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
        self.errors: list[str] = []

    def call(self, method: str, path: str, body: bytes | None = None,
             content_type: str = "application/json") -> tuple[int, bytes]:
        headers = {"Content-Type": content_type} if body is not None else {}
        headers.update(AUTH)
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            # The hub may close the connection after refusing a body (413): reconnect once.
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                   timeout=REQUEST_TIMEOUT_S)
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        status = response.status
        with self.lock:
            key = f"{status // 100}xx" if status != 503 else "503"
            self.counts[key] = self.counts.get(key, 0) + 1
        if status >= 500 and status != 503:
            self.errors.append(f"{method} {path}: {status} {data[:300]!r}")
        return status, data

    def json(self, method: str, path: str, doc: Any) -> tuple[int, Any]:
        status, data = self.call(method, path, json.dumps(doc).encode())
        try:
            return status, json.loads(data)
        except ValueError:
            return status, None


class Traffic:
    """The mix of requests one client thread sends, in random order."""

    def __init__(self, client: Client, rng: random.Random, worker: int, t0: float) -> None:
        self.client = client
        self.rng = rng
        self.worker = worker
        self.t0 = t0
        self.assets: list[str] = []
        self.n = 0
        self.last_big = time.monotonic()

    def ts(self) -> float:
        # Advancing epoch seconds, unique per worker, so uploads are new readings.
        self.n += 1
        return round(self.t0 + self.n * 0.001 + self.worker * 1e-6, 6)

    def upload_json(self) -> None:
        device = f"soak-{self.rng.randrange(DEVICES)}"
        readings = [{"channel": c, "value": round(self.rng.uniform(10, 30), 2), "ts": self.ts()}
                    for _ in range(30) for c in CHANNELS]
        self.client.json("POST", "/api/v1/readings", {"device": device, "readings": readings})

    def upload_plotter(self) -> None:
        device = f"soak-{self.rng.randrange(DEVICES)}"
        lines = "".join(f"temp:{self.rng.uniform(10, 30):.2f},hum:{self.rng.uniform(30, 80):.1f}"
                        f",light:{self.rng.randrange(1024)}\r\n" for _ in range(50))
        self.client.call("POST", f"/api/v1/devices/{device}/data?format=plotter",
                         lines.encode(), "text/plain")

    def upload_bad(self) -> None:
        kind = self.rng.randrange(4)
        if kind == 0:
            self.client.call("POST", "/api/v1/readings", b"{not json" + os.urandom(200))
        elif kind == 1:
            self.client.json("POST", "/api/v1/readings",
                             {"device": "soak-bad", "readings": [{"channel": "", "value": "x"}]})
        elif kind == 2:
            self.client.call("POST", "/api/v1/devices/soak-bad/data?format=json",
                             b"\xff\xfe" + os.urandom(4000), "text/plain")
        else:  # a large undecodable upload: 256 KiB to 1 MiB
            size = self.rng.randrange(256, 1024) * 1024
            self.client.call("POST", "/api/v1/readings", b"[" * size)

    def upload_huge_bad(self) -> None:
        self.client.call("POST", "/api/v1/readings", b"{" * BIG_BAD_BYTES)

    def query(self) -> None:
        device = f"soak-{self.rng.randrange(DEVICES)}"
        channel = self.rng.choice(CHANNELS)
        kind = self.rng.randrange(4)
        if kind == 0:
            self.client.call("GET", f"/api/v1/readings?device={device}&channel={channel}"
                                    "&limit=500")
        elif kind == 1:
            self.client.call("GET", f"/api/v1/readings?device={device}&channel={channel}"
                                    "&buckets=200")
        elif kind == 2:
            self.client.call("GET", "/api/v1/series")
        else:
            self.client.call("GET", "/api/v1/counters")

    def export(self) -> None:
        device = f"soak-{self.rng.randrange(DEVICES)}"
        if self.rng.random() < 0.5:
            self.client.call("GET", f"/api/v1/export.csv?device={device}")
        else:
            self.client.call("GET", f"/api/v1/export.json?device={device}&channel=temp")

    def rejects(self) -> None:
        self.client.call("GET", f"/api/v1/rejects?limit={self.rng.choice((10, 50, 100))}")

    def inventory_write(self) -> None:
        kind = self.rng.randrange(3)
        if kind == 0 or not self.assets:
            tag = f"SOAK-{self.worker}-{len(self.assets) + 1:06d}"
            status, _ = self.client.json("POST", "/api/v1/assets", {
                "tag": tag, "model": "SOAK-UNO", "site": self.rng.choice(("SOAK-LAB-1",
                                                                           "SOAK-LAB-2")),
                "serial_number": f"SN-{tag}"})
            if status == 201:
                self.assets.append(tag)
        elif kind == 1:
            tag = self.rng.choice(self.assets)
            _, asset = self.client.json("GET", f"/api/v1/assets/by-tag/{tag}", None)
            if isinstance(asset, dict):
                to_site = "SOAK-LAB-2" if asset.get("site") == "SOAK-LAB-1" else "SOAK-LAB-1"
                self.client.json("POST", f"/api/v1/assets/by-tag/{tag}/move",
                                 {"to_site": to_site})
        else:
            tag = self.rng.choice(self.assets)
            _, asset = self.client.json("GET", f"/api/v1/assets/by-tag/{tag}", None)
            if isinstance(asset, dict):
                status = "lost" if asset.get("status") == "available" else "available"
                self.client.json("POST", f"/api/v1/assets/by-tag/{tag}/status",
                                 {"status": status})

    def inventory_read(self) -> None:
        kind = self.rng.randrange(3)
        if kind == 0:
            self.client.call("GET", "/api/v1/assets?site=SOAK&limit=100")
        elif kind == 1 and self.assets:
            self.client.call("GET", f"/api/v1/history/{self.rng.choice(self.assets)}")
        else:
            self.client.call("GET", "/api/v1/export/assets.csv")

    def step(self, big_every_s: float) -> None:
        if self.worker == 0 and time.monotonic() - self.last_big >= big_every_s:
            self.last_big = time.monotonic()
            self.upload_huge_bad()
            return
        action = self.rng.choices(
            (self.upload_json, self.upload_plotter, self.upload_bad, self.query, self.export,
             self.rejects, self.inventory_write, self.inventory_read),
            weights=(30, 10, 8, 25, 5, 4, 8, 10))[0]
        action()


def get_json(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=AUTH)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def wait_for_hub(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the hub exited with {process.returncode} while starting")
        try:
            get_json(port, "/api/v1/health")
            return
        except (OSError, ValueError, http.client.HTTPException):
            time.sleep(0.2)
    raise RuntimeError(f"the hub did not answer /api/v1/health within {START_WAIT_S:.0f} s")


def seed_inventory(port: int, counts: dict[str, int], lock: threading.Lock) -> None:
    client = Client(port, counts, lock)
    for doc in ({"code": "SOAK", "name": "Soak network", "kind": "network"},
                {"code": "SOAK-R", "name": "Soak region", "kind": "region", "parent": "SOAK"},
                {"code": "SOAK-LAB-1", "name": "Soak lab 1", "kind": "site",
                 "parent": "SOAK-R", "tier": "lab_point"},
                {"code": "SOAK-LAB-2", "name": "Soak lab 2", "kind": "site",
                 "parent": "SOAK-R", "tier": "lab_point"}):
        status, answer = client.json("POST", "/api/v1/sites", doc)
        if status != 201:
            raise RuntimeError(f"creating site {doc['code']}: {status} {answer}")
    status, answer = client.json("POST", "/api/v1/models", {
        "code": "SOAK-UNO", "name": "Arduino Uno R3", "category": "microcontroller_board"})
    if status != 201:
        raise RuntimeError(f"creating model SOAK-UNO: {status} {answer}")
    client.conn.close()


def print_trace(trace_dir: Path, first: int) -> None:
    import tracemalloc

    snaps = sorted(trace_dir.glob("snap-*"))
    if len(snaps) <= first:
        print("trace: not enough snapshots")
        return
    old = tracemalloc.Snapshot.load(str(snaps[first]))
    new = tracemalloc.Snapshot.load(str(snaps[-1]))
    print(f"trace: python heap {sum(s.size for s in old.statistics('filename')) / 2**20:.1f} "
          f"MiB at {snaps[first].name}, "
          f"{sum(s.size for s in new.statistics('filename')) / 2**20:.1f} MiB at "
          f"{snaps[-1].name}; largest growth:")
    for stat in new.compare_to(old, "traceback")[:15]:
        print(f"  {stat.size_diff / 1024:+10.1f} KiB {stat.count_diff:+8d} blocks, "
              f"now {stat.size / 1024:.1f} KiB")
        for line in stat.traceback.format(limit=6, most_recent_first=True):
            print(f"      {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="how long (default 20)")
    parser.add_argument("--sample-s", type=float, default=60.0,
                        help="seconds between RSS samples (default 60)")
    parser.add_argument("--big-every-s", type=float, default=60.0,
                        help="seconds between 16 MiB bad uploads (default 60)")
    parser.add_argument("--clients", type=int, default=2, help="client threads (default 2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trace", action="store_true",
                        help="run the hub under tracemalloc and print the largest growth")
    parser.add_argument("--keep-log", type=Path, help="copy the hub's log to this file")
    parser.add_argument("--smoke", action="store_true", help="a 10-second run")
    args = parser.parse_args()
    if args.smoke:  # checks the script and the hub work together; one client, no contention
        args.minutes, args.sample_s, args.big_every_s, args.clients = 1 / 6, 2.0, 5.0, 1
    duration = args.minutes * 60

    with tempfile.TemporaryDirectory(prefix="labhub-soak-") as tmp:
        directory = Path(tmp)
        config = directory / "labhub.toml"
        config.write_text("serial_scan = false\n")
        env = {**os.environ, "LABHUB_CONFIG": str(config), "LABHUB_DATA_DIR": str(directory),
               "LABHUB_LOG_LEVEL": "warning"}
        env.pop("LABHUB_DATABASE_URL", None)
        trace_dir = directory / "trace"
        memory_dir = directory / "memory"
        memory_dir.mkdir()
        env["LABHUB_SOAK_MEMORY"] = str(memory_dir)
        if args.trace:
            trace_dir.mkdir()
            env["LABHUB_SOAK_TRACE"] = str(trace_dir)
        port = free_port()
        log = (directory / "hub.log").open("wb")
        process = subprocess.Popen([sys.executable, "-c", HUB_MAIN, str(port)], env=env,
                                   cwd=directory, stdout=log, stderr=subprocess.STDOUT)
        counts: dict[str, int] = {}
        lock = threading.Lock()
        stop = threading.Event()
        clients: list[Client] = []
        failures: list[str] = []
        try:
            wait_for_hub(process, port)
            sign_in_from_log(directory / "hub.log")
            seed_inventory(port, counts, lock)
            print(f"soak: demo hub (pid {process.pid}) on 127.0.0.1:{port}, {args.clients} "
                  f"clients, {args.minutes:g} min, RSS every {args.sample_s:g} s; "
                  f"load {Path('/proc/loadavg').read_text().split()[0]}", flush=True)

            def work(worker: int) -> None:
                client = Client(port, counts, lock)
                clients.append(client)
                traffic = Traffic(client, random.Random(args.seed * 100 + worker), worker,
                                  time.time() - 86_400)
                try:
                    while not stop.is_set():
                        traffic.step(args.big_every_s)
                except Exception as exc:  # reported below; the run then fails
                    failures.append(f"client {worker}: {exc!r}")
                finally:
                    client.conn.close()

            threads = [threading.Thread(target=work, args=(i,), name=f"soak-{i}")
                       for i in range(args.clients)]
            start = time.monotonic()
            samples = [(0.0, rss_kib(process.pid))]
            print(f"  {'':6}      {'RSS':>11}  {'SQLite heap':>11}  {'malloc used':>11}  "
                  f"{'malloc free':>11}  {'mmapped':>11}  {'anonymous':>11}  {'file':>11}  "
                  f"{'threads':>7}")
            print(f"  {0.0:6.1f} min  {samples[0][1] / 1024:7.1f} MiB  "
                  f"{where_memory_is(process.pid, memory_dir, 0)}", flush=True)
            for thread in threads:
                thread.start()
            while time.monotonic() - start < duration - 1e-3:
                stop.wait(min(args.sample_s, duration - (time.monotonic() - start)))
                if process.poll() is not None:
                    failures.append(f"the hub exited with {process.returncode}")
                    break
                elapsed = time.monotonic() - start
                samples.append((elapsed / 60, rss_kib(process.pid)))
                memory = where_memory_is(process.pid, memory_dir, len(samples) - 1)
                with lock:
                    done = sum(counts.values())
                print(f"  {elapsed / 60:6.1f} min  {samples[-1][1] / 1024:7.1f} MiB  {memory}  "
                      f"{done:,} requests", flush=True)
                if failures:
                    break
            stop.set()
            for thread in threads:
                thread.join(REQUEST_TIMEOUT_S)
        finally:
            stop.set()
            if process.poll() is None and (failures or any(c.errors for c in clients)):
                process.send_signal(signal.SIGUSR2)  # every thread's stack into the log
                time.sleep(1)
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            log.close()

        errors = [e for c in clients for e in c.errors]
        if args.keep_log:
            args.keep_log.write_bytes((directory / "hub.log").read_bytes())
        print(f"requests: {sum(counts.values()):,} "
              f"({', '.join(f'{k} {v:,}' for k, v in sorted(counts.items()))})")
        rss = [s[1] for s in samples]
        print("rss MiB: " + " ".join(f"{r / 1024:.1f}" for r in rss))
        half = [r for t, r in samples if t >= samples[-1][0] / 2]
        if half:
            spread = (max(half) - min(half)) / min(half)
            print(f"last half ({samples[-1][0] / 2:.1f} min on, {len(half)} samples): "
                  f"{min(half) / 1024:.1f} to {max(half) / 1024:.1f} MiB, spread {spread:.1%}")
            print(f"target: within {FLAT_WITHIN:.0%} over the last half: "
                  f"{'flat' if spread <= FLAT_WITHIN else 'growing'}")
        print(f"growth: {rss[0] / 1024:.1f} -> {rss[-1] / 1024:.1f} MiB "
              f"({rss[-1] / rss[0]:.2f}x)")
        if args.trace:
            print_trace(trace_dir, first=min(2, len(samples) - 1))
        if errors or failures:
            for line in failures:
                print(f"ERROR {line}", file=sys.stderr)
            for line, times in Counter(errors).most_common(20):
                print(f"ERROR {times} x {line}", file=sys.stderr)
            print("hub log (last 3,000 characters):", file=sys.stderr)
            print((directory / "hub.log").read_text(errors="replace")[-3000:], file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
