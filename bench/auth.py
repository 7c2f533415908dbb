"""Access-control benchmark: what a bearer token costs an upload, what a sign-in costs, and
how many password guesses the sign-in limit lets through.

1. Uploads. A real hub (uvicorn in a child process, a fresh SQLite file, as ``labhub
   serve`` runs it) takes JSON readings batches (``POST /api/v1/readings``, ``--batch``
   readings each) from ``--clients`` keep-alive connections. In the hub's process LabHub's
   own seam ``labhub.access.who.identify`` is wrapped: a request with no
   ``Authorization`` header gets a fixed admin caller without touching the database (the
   baseline: there is no switch to turn access control off), one with a token goes
   through the real look-up. One process for both keeps its warm state, its file and its
   place on the CPUs the same. Rounds of ``--seconds`` alternate baseline, a person's API
   token (``lhp_``), a device token (``lhd_``); the medians of their requests/s are
   compared (target: 0.90 of the baseline or more). The hub's CPU per request
   (``/proc/<pid>/stat``) and the client's CPU are printed too: a client near a full core
   would make the client, not the hub, the limit. Then ``who.identify`` alone is timed in
   this process over ``--identify-calls`` calls per kind, on the hub's file, against the
   stand-in: the token look-up in microseconds.
2. Passwords. ``passwords.verify`` alone with today's ``ARGON2_PARAMETERS`` and a sign-in
   over HTTP (``POST /api/v1/auth/sign-in``, right password) on the same hub, each
   ``--argon2-repeat`` times; the median is compared with the 0.2-0.5 s a sign-in should
   take. The full run also times a few other parameter sets (``--grid``).
3. Sign-in limit. ``labhub.access.limits.SignInLimiter`` driven over a simulated hour
   with its injectable clock by an attacker who guesses one password at a time (each guess
   taking the sign-in time measured in part 2) and waits exactly the ``Retry-After`` when
   refused: from one address at one account, from a new address every guess at one
   account, from one address at a new account every guess, and a new address and a new
   account every guess (what the limit cannot stop: only argon2's cost bounds it). Then a
   short real run through the sign-in route in this process (the client's address set in
   the ASGI scope, the limiter's clock simulated) confirms the first 429s.

Run: ``python bench/auth.py`` (about 4 minutes); ``--smoke`` runs it in about 20 seconds
(``make test`` does), which checks that it works and measures nothing worth reading.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

if importlib.util.find_spec("labhub") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import free_port, load_average, machine
from argon2 import PasswordHasher
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from labhub import db
from labhub.access import accounts, limits, passwords, who
from labhub.access.caller import NETWORK, Caller
from labhub.access.limits import SignInLimiter
from labhub.access.permissions import Grant, Role

TARGET_RATIO = 0.90  # uploads with a token at least 0.9 of the rate without checks
SIGN_IN_S = (0.2, 0.5)  # how long a sign-in should take on the hub's own machine
START_WAIT_S = 60.0
DEVICE = "bench-node"
ADMIN = "bench-admin"
PASSWORD = "correct horse battery staple"
CHANNELS = ("temp", "hum", "light")
# The hub writes what it queues within 2 ms instead of the shipped 200: an upload then
# waits for its commit, not for the timer, and the hub's work per request is what limits.
FLUSH_MS = 2
SERVER_ENV_DROP = ("LABHUB_",)

# The hub process. LabHub's seam who.identify is wrapped: no Authorization header, a fixed
# admin caller and no database (the baseline); a token, the real look-up, whose wall and
# thread CPU time are added up by kind and written to a file when the hub stops.
SERVER_MAIN = """
import json, sys, time
port, url, data, flush_ms, out = (int(sys.argv[1]), sys.argv[2], sys.argv[3],
                                  int(sys.argv[4]), sys.argv[5])
from labhub.access import who
from labhub.access.caller import NETWORK, Caller
from labhub.access.permissions import Grant, Role
ADMIN = Caller(name="bench-admin", via="token", grants=(Grant(Role.ADMIN, NETWORK),))
real = who.identify
totals = {}
def identify(request):
    if "authorization" not in request.headers:
        return ADMIN
    wall, cpu = time.perf_counter(), time.thread_time()
    caller = real(request)
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    kind = totals.setdefault(caller.via if caller else "refused", [0, 0.0, 0.0])
    kind[0] += 1; kind[1] += wall; kind[2] += cpu
    return caller
who.identify = identify
import uvicorn
from labhub.app import create_app
from labhub.settings import Settings
settings = Settings(data_dir=data, database_url=url, serial_scan=False,
                    ingest_flush_ms=flush_ms, log_level="warning")
try:  # stopped by SIGINT, which uvicorn raises again once it has shut down
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
finally:
    with open(out, "w") as file:
        json.dump(totals, file)
"""


def fixed_admin(request: Request) -> Caller | None:
    """The baseline's stand-in for ``who.identify``: no token, no database."""
    return STAND_IN


STAND_IN = Caller(name=ADMIN, via="token", grants=(Grant(Role.ADMIN, NETWORK),))


# -- the hubs ------------------------------------------------------------------------------


@dataclass
class Credentials:
    person: str
    device: str


def prepare(url: str) -> Credentials:
    """Migrate a fresh file and add an admin with a password, an API token, and a device
    token for :data:`DEVICE`."""
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        with engine.begin() as conn:
            user = accounts.create_user(conn, name=ADMIN,
                                        password_hash=passwords.hash_password(PASSWORD),
                                        grants_given=[Grant(Role.ADMIN, NETWORK)])
            _, person = accounts.create_api_token(conn, user_id=user.id, name="bench")
            _, device = accounts.create_device_token(conn, device_id=DEVICE, site=None,
                                                     name="bench")
    finally:
        engine.dispose()
    return Credentials(person, device)


@dataclass
class Hub:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def cpu_s(self) -> float:
        """The hub process's user + system CPU seconds so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def hub(url: str, directory: Path) -> Iterator[Hub]:
    directory.mkdir()
    config = directory / "labhub.toml"
    config.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(SERVER_ENV_DROP)}
    env["LABHUB_CONFIG"] = str(config)
    port = free_port()
    log = directory / "hub.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER_MAIN, str(port), url, str(directory),
             str(FLUSH_MS), str(directory / "identify.json")], env=env, stdout=out,
            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_WAIT_S
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the hub exited with {process.returncode}:\n"
                                 f"{log.read_text(errors='replace')}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/api/v1/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the hub did not answer within {START_WAIT_S:.0f} s")
            time.sleep(0.1)
        yield Hub(port, process, log)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    report_identify_in_hub(directory / "identify.json")


def report_identify_in_hub(path: Path) -> None:
    """The real look-up's time inside the hub, under the upload load (the hub's own
    clocks: wall time and the calling thread's CPU)."""
    if not path.exists():
        print("identify in the hub: no figures (the hub did not stop cleanly)")
        return
    for via, (calls, wall, cpu) in sorted(json.loads(path.read_text()).items()):
        print(f"identify in the hub under load, {via}: {calls:,} calls, mean "
              f"{wall / calls * 1e6:.0f} us wall, {cpu / calls * 1e6:.0f} us CPU")


# -- uploads -------------------------------------------------------------------------------


class Uploader:
    """One keep-alive connection posting readings batches with advancing timestamps."""

    def __init__(self, port: int, number: int, batch: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        # From three days ago, 200 s apart per connection (each posts well under a second
        # of readings, 1 us apart): every reading is new, none in the future.
        self.next_us = (int(time.time()) - 3 * 86_400 + number * 200) * 1_000_000
        self.batch = batch

    def body(self) -> bytes:
        parts = []
        for i in range(self.batch):
            self.next_us += 1
            parts.append(f'{{"channel":"{CHANNELS[i % 3]}","value":{20 + (i % 17) * 0.5},'
                         f'"ts":{self.next_us / 1e6:.6f}}}')
        return f'{{"device":"{DEVICE}","readings":[{",".join(parts)}]}}'.encode()

    def reconnect(self) -> None:
        """A new connection: the hub closes one left idle for 5 s (between rounds)."""
        self.conn.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        self.conn.connect()

    def post(self, headers: dict[str, str]) -> tuple[int, bytes]:
        self.conn.request("POST", "/api/v1/readings", body=self.body(),
                          headers={"Content-Type": "application/json", **headers})
        response = self.conn.getresponse()
        return response.status, response.read()


@dataclass
class Round:
    requests: int
    seconds: float
    hub_cpu_s: float
    client_cpu_s: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def upload_round(target: Hub, uploaders: list[Uploader], headers: dict[str, str],
                 seconds: float) -> Round:
    """Every uploader posts batches for ``seconds``; any answer but 200 stops the bench."""
    counts = [0] * len(uploaders)
    errors: list[str] = []
    start = threading.Event()
    stop_at = [0.0]

    def work(k: int) -> None:
        start.wait()
        while time.monotonic() < stop_at[0] and not errors:
            try:
                status, data = uploaders[k].post(headers)
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{exc!r}")
                return
            if status != 200:
                errors.append(f"the hub answered {status}: {data[:300]!r}")
                return
            counts[k] += 1

    for uploader in uploaders:
        uploader.reconnect()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(uploaders))]
    for thread in threads:
        thread.start()
    hub_cpu = target.cpu_s()
    usage = os.times()
    began = time.monotonic()
    stop_at[0] = began + seconds
    start.set()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    after = os.times()
    if errors:
        raise SystemExit(errors[0])
    return Round(sum(counts), elapsed, target.cpu_s() - hub_cpu,
                 (after.user - usage.user) + (after.system - usage.system))


def measure_uploads(args: argparse.Namespace, target: Hub, creds: Credentials
                    ) -> dict[str, list[Round]]:
    kinds: list[tuple[str, dict[str, str]]] = [
        ("baseline", {}),
        ("person token", {"Authorization": f"Bearer {creds.person}"}),
        ("device token", {"Authorization": f"Bearer {creds.device}"}),
    ]
    pools = {name: [Uploader(target.port, number * 100 + k, args.batch)
                    for k in range(args.clients)]
             for number, (name, _) in enumerate(kinds)}
    for name, headers in kinds:  # warm up: connections, the device row, caches
        upload_round(target, pools[name], headers, min(1.0, args.seconds))
    rounds: dict[str, list[Round]] = {name: [] for name, _ in kinds}
    for number in range(1, args.rounds + 1):
        for name, headers in kinds:
            result = upload_round(target, pools[name], headers, args.seconds)
            rounds[name].append(result)
            print(f"round {number} {name:13s} {result.requests:6,} requests in "
                  f"{result.seconds:5.2f} s  {result.rate:8,.1f} requests/s  hub cpu "
                  f"{result.hub_cpu_s / result.requests * 1000:5.2f} ms/request  client "
                  f"{result.client_cpu_s / result.seconds:4.0%} of a core")
    for pool in pools.values():
        for uploader in pool:
            uploader.conn.close()
    return rounds


def report_uploads(rounds: dict[str, list[Round]]) -> float:
    base = statistics.median(r.rate for r in rounds["baseline"])
    base_cpu = statistics.median(r.hub_cpu_s / r.requests for r in rounds["baseline"])
    client = max(r.client_cpu_s / r.seconds for rs in rounds.values() for r in rs)
    print(f"baseline median: {base:8,.1f} requests/s, hub cpu {base_cpu * 1000:.2f} ms/request")
    worst = 1.0
    for name in ("person token", "device token"):
        rate = statistics.median(r.rate for r in rounds[name])
        cpu = statistics.median(r.hub_cpu_s / r.requests for r in rounds[name])
        ratio = rate / base
        worst = min(worst, ratio)
        print(f"{name} median: {rate:8,.1f} requests/s, hub cpu {cpu * 1000:.2f} ms/request "
              f"({(cpu - base_cpu) * 1e6:+.0f} us against the baseline); ratio {ratio:.2f}")
    bound = "the client may be the limit" if client > 0.9 else "not the limit"
    print(f"client: at most {client:.0%} of a core in any round ({bound})")
    return worst


# -- who.identify alone ---------------------------------------------------------------------


def request_with(engine: Engine, token: str | None) -> Request:
    """A fresh request (``identify`` remembers its answer in the scope) as the upload route
    sees it, on an app whose hub holds ``engine``."""
    app = SimpleNamespace(state=SimpleNamespace(hub=SimpleNamespace(engine=engine)))
    headers = [(b"content-type", b"application/json")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return Request({"type": "http", "method": "POST", "path": "/api/v1/readings",
                    "headers": headers, "query_string": b"", "client": ("127.0.0.1", 1),
                    "app": app, "scheme": "http", "server": ("127.0.0.1", 80)})


def time_identify(engine: Engine, calls: int, identify: Callable[[Request], Caller | None],
                  token: str | None) -> tuple[float, float]:
    """Median and 95th percentile in microseconds of ``identify`` over ``calls`` calls, in
    chunks of 50 (one chunk's mean per sample: the clock's own cost stays out)."""
    chunk = 50
    per_call: list[float] = []
    for _ in range(max(calls // chunk, 1)):
        requests = [request_with(engine, token) for _ in range(chunk)]
        began = time.perf_counter()
        for request in requests:
            if identify(request) is None:
                raise SystemExit(f"identify refused the bench's token {token and token[:4]}")
        per_call.append((time.perf_counter() - began) / chunk * 1e6)
    ordered = sorted(per_call)
    return statistics.median(per_call), ordered[max(int(0.95 * len(ordered)) - 1, 0)]


def measure_identify(url: str, creds: Credentials, calls: int) -> None:
    engine = db.make_engine(url)
    try:
        time_identify(engine, 100, who.identify, creds.person)  # warm the pool and caches
        rows = [("stand-in (baseline)", fixed_admin, None),
                ("person token", who.identify, creds.person),
                ("device token", who.identify, creds.device)]
        base = 0.0
        for name, identify, token in rows:
            median, p95 = time_identify(engine, calls, identify, token)
            base = base or median
            extra = "" if identify is fixed_admin else f"  ({median - base:+.0f} us)"
            print(f"identify {name:19s}: median {median:7.1f} us, p95 {p95:7.1f} us per "
                  f"call{extra}")
    finally:
        engine.dispose()


# -- passwords -----------------------------------------------------------------------------


def median_s(repeat: int, call: Callable[[], object]) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times), times


def measure_sign_in(target: Hub, repeat: int) -> float:
    """Median seconds of a right-password sign-in over HTTP (fresh connection each)."""
    body = json.dumps({"name": ADMIN, "password": PASSWORD}).encode()

    def sign_in() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
        conn.request("POST", "/api/v1/auth/sign-in", body=body,
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        conn.close()
        if response.status != 200:
            raise SystemExit(f"sign-in answered {response.status}: {data[:300]!r}")

    sign_in()  # a first sign-in may rehash a password made with other parameters
    median, times = median_s(repeat, sign_in)
    print(f"sign-in over HTTP: median {median:.3f} s of {repeat} "
          f"(min {min(times):.3f}, max {max(times):.3f})  {verdict_s(median)}")
    return median


def verdict_s(seconds: float) -> str:
    low, high = SIGN_IN_S
    return "target met" if low <= seconds <= high else f"target missed ({low}-{high} s)"


def measure_verify(repeat: int, grid: bool) -> None:
    p = passwords.ARGON2_PARAMETERS
    stored = passwords.hash_password(PASSWORD)
    median, times = median_s(repeat, lambda: passwords.verify(stored, PASSWORD))
    print(f"passwords.verify: median {median:.3f} s of {repeat} (min {min(times):.3f}, max "
          f"{max(times):.3f}) with time_cost {p.time_cost}, memory "
          f"{p.memory_cost_kib // 1024} MiB, parallelism {p.parallelism}  {verdict_s(median)}")
    if not grid:
        return
    for time_cost, mib in ((3, 64), (4, 64), (5, 64), (6, 64), (8, 64), (3, 128), (4, 128)):
        other = passwords.hasher(passwords.Argon2Parameters(time_cost, mib * 1024, 1))
        made = other.hash(PASSWORD)

        def check(other: PasswordHasher = other, made: str = made) -> bool:
            return other.verify(made, PASSWORD)

        median, _ = median_s(max(repeat // 2, 3), check)
        print(f"  time_cost {time_cost}, memory {mib:3d} MiB: verify median {median:.3f} s")


# -- the sign-in limit ---------------------------------------------------------------------


class Clock:
    """The simulated clock the limiter reads (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


CASES: list[tuple[str, Callable[[int], list[str]]]] = [
    ("one address, one account", lambda i: ["name:ana", "address:10.0.0.1"]),
    ("many addresses, one account", lambda i: ["name:ana", f"address:10.1.{i // 250}.{i % 250}"]),
    ("one address, many accounts", lambda i: [f"name:user{i}", "address:10.0.0.1"]),
    ("many addresses, many accounts", lambda i: [f"name:user{i}",
                                                 f"address:10.2.{i // 250 % 250}.{i % 250}"]),
]


def simulate(keys_of: Callable[[int], list[str]], guess_s: float, hour_s: float = 3600.0
             ) -> tuple[int, int]:
    """Guesses the limiter lets through in the first minute and in the first hour, for an
    attacker who guesses one at a time (each taking ``guess_s``) and, when refused, waits
    exactly the wait the limiter names."""
    clock = Clock()
    limiter = SignInLimiter(clock=clock)
    guesses: list[float] = []
    while clock.now < hour_s:
        keys = keys_of(len(guesses))
        wait = limiter.wait_s(keys)
        if wait > 0:
            clock.now += wait
            continue
        guesses.append(clock.now)
        limiter.failed(keys)
        clock.now += guess_s
    return sum(1 for t in guesses if t < 60.0), len(guesses)


def report_limit(guess_s: float) -> None:
    print(f"sign-in limit over a simulated hour (one guess at a time, {guess_s:.3f} s each; "
          f"{limits.FREE_FAILURES} free per account, {limits.FREE_FAILURES_ADDRESS} per "
          f"address, then waits doubling from 1 s to {limits.MAX_WAIT_S} s):")
    for name, keys_of in CASES:
        minute, hour = simulate(keys_of, guess_s)
        print(f"  {name:30s}: {minute:6,} in the first minute, {hour:7,} in the hour "
              f"({hour / 60:8.2f} guesses/minute)")


def real_limit_run(directory: Path, cases: int) -> None:
    """Wrong passwords through the sign-in route until the first 429s, the client address
    set in the ASGI scope, the limiter on a simulated clock."""
    from fastapi.testclient import TestClient

    from labhub.app import create_app
    from labhub.settings import Settings

    url = f"sqlite:///{directory / 'limit.sqlite'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    with engine.begin() as conn:
        stored = passwords.hash_password(PASSWORD)
        for name in ["ana", *(f"user{i}" for i in range(limits.FREE_FAILURES_ADDRESS + 1))]:
            accounts.create_user(conn, name=name, password_hash=stored,
                                 grants_given=[Grant(Role.STUDENT, "BENCH-LAB")])
    engine.dispose()
    app = create_app(Settings(data_dir=directory / "limit", database_url=url,
                              serial_scan=False, log_level="warning"))
    clock = Clock()
    app.state.sign_in_limiter = SignInLimiter(clock=clock)

    async def addressed(scope: Scope, receive: Receive, send: Send) -> None:
        """The address the bench names in ``X-Bench-Address`` as the client's."""
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"x-bench-address", b"10.0.0.1").decode()
            scope = {**scope, "client": (given, 50000)}
        await app(scope, receive, send)

    def guess(client: TestClient, name: str, address: str) -> str:
        r = client.post("/api/v1/auth/sign-in", headers={"X-Bench-Address": address},
                        json={"name": name, "password": "wrong password"})
        return f"{r.status_code}" + (f" (Retry-After {r.headers['retry-after']})"
                                     if r.status_code == 429 else "")

    with TestClient(addressed) as client:
        plans: list[tuple[str, Callable[[int], tuple[str, str]]]] = [
            ("one address, one account", lambda i: ("ana", "10.0.0.1")),
            ("many addresses, one account", lambda i: ("ana", f"10.1.0.{i}")),
            ("one address, many accounts", lambda i: (f"user{i}", "10.0.0.2")),
        ]
        for name, plan in plans[:cases]:
            clock.now += 2 * limits.FORGET_AFTER_S  # every count of a previous case fades
            answers: list[str] = []
            i = 0
            while not answers or not answers[-1].startswith("429"):
                answers.append(guess(client, *plan(i)))
                i += 1
                if i > limits.FREE_FAILURES_ADDRESS + 2:
                    raise SystemExit(f"{name}: no 429 after {i} guesses: {answers}")
            waited = float(answers[-1].split()[-1].rstrip(")"))
            clock.now += waited
            again = [guess(client, *plan(i)), guess(client, *plan(i + 1))]
            print(f"  real run, {name}: {summary(answers)}; after waiting {waited:.0f} s: "
                  f"{', '.join(again)}")


def summary(answers: list[str]) -> str:
    """``401 x5, 429 (Retry-After 1)``."""
    out: list[tuple[str, int]] = []
    for answer in answers:
        if out and out[-1][0] == answer:
            out[-1] = (answer, out[-1][1] + 1)
        else:
            out.append((answer, 1))
    return ", ".join(a if n == 1 else f"{a} x{n}" for a, n in out)


# -- main ----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="upload connections")
    parser.add_argument("--batch", type=int, default=100, help="readings per upload")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per upload round")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of each kind")
    parser.add_argument("--identify-calls", type=int, default=5000,
                        help="calls of who.identify per kind")
    parser.add_argument("--argon2-repeat", type=int, default=9,
                        help="verifications and sign-ins timed")
    parser.add_argument("--no-grid", dest="grid", action="store_false",
                        help="skip the other argon2 parameters")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    parser.add_argument("--smoke", action="store_true",
                        help="small sizes, a few seconds: checks the script still runs")
    args = parser.parse_args()
    if args.smoke:
        args.clients, args.seconds, args.rounds, args.identify_calls = 2, 0.5, 1, 200
        args.argon2_repeat, args.grid = 1, False
    return args


def main() -> None:
    args = parse_args()
    print(f"auth: uploads of {args.batch} readings from {args.clients} connections, "
          f"{args.rounds} rounds of {args.seconds:g} s each kind, alternating; sign-in cost; "
          "sign-in limit")
    print(f"machine: {machine()}")
    print(f"load average at start: {load_average()}")
    print(f"hub: uvicorn in a child process, a fresh SQLite file, ingest_flush_ms {FLUSH_MS}; "
          "baseline: no Authorization header, and who.identify answers a fixed admin caller "
          "for it without the database")
    with tempfile.TemporaryDirectory(prefix="labhub-bench-auth-", dir=args.dir) as tmp:
        directory = Path(tmp)
        url = f"sqlite:///{directory / 'hub.sqlite'}"
        creds = prepare(url)
        with hub(url, directory / "hub") as target:
            rounds = measure_uploads(args, target, creds)
            ratio = report_uploads(rounds)
            sign_in_s = measure_sign_in(target, args.argon2_repeat)
        measure_identify(url, creds, args.identify_calls)
        measure_verify(args.argon2_repeat, args.grid)
        report_limit(sign_in_s)
        real_limit_run(directory, 2 if args.smoke else 3)
    print(f"load average at end: {load_average()}")
    verdict = "target met" if ratio >= TARGET_RATIO else "target missed"
    print(f"target: uploads with a token at least {TARGET_RATIO:.2f} of the baseline: {verdict}")
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
