"""A network of real processes for the network tests: a central and hubs, each a
``labhub serve`` of its own, with its own labhub.toml, database, data directory and port.

- :func:`network_templates` (module fixture ``net_templates``) makes, once per test module,
  a PostgreSQL database migrated by ``labhub db upgrade`` under the central's settings, and
  a SQLite file migrated under a hub's; each central then starts on a copy of the first
  (``CREATE DATABASE ... TEMPLATE``, a fraction of a second) and each hub on a copy of the
  second. Every database made is dropped at the end of the module.
- :class:`Network` (fixture ``net``) starts them: :meth:`Network.central` (``role =
  "central"``, an admin and its API token, the tree: a network, a region and two labs) and
  :meth:`Network.hub` (``network_sync_every_s`` small, no USB scanning, an admin token of
  its own). Each is a :class:`LabHubProcess`: started with ``Popen``, ready once
  ``/api/v1/health`` answers, stopped with SIGTERM (SIGKILL after a bounded wait). The
  fixture's finalizer stops every process whatever happened, and prints the end of each
  one's log, which pytest shows under a failed test ("Captured stdout teardown").
- A hub talks to the central through a :class:`sync_proxy.SyncProxy` of its own (passing
  everything until a test says otherwise), so a test cuts, delays or refuses its link.
- Helpers: enrolment tokens (``labhub network token`` on the central), ``labhub network
  join`` on a hub, readings written straight into a hub's SQLite file with
  ``sensors.storage.BatchWriter`` (a million in seconds) or uploaded through its API,
  inventory events made on a hub's file with the inventory's own functions, a contact now
  (``POST /api/v1/network/sync`` on the hub), and reads of the central's database that
  check exactly-once (readings per series: count, distinct times, sums; events by UUID).

A hub's clock can be shifted with Debian's ``faketime`` (libfaketime preloaded into the
process: Python's ``time.time()`` and ``time.time_ns()`` follow it; the monotonic clock is
left alone so timeouts and back-off keep real time).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sync_proxy import SyncProxy

LABHUB = str(Path(sys.executable).with_name("labhub"))
START_TIMEOUT_S = 90.0  # a cold `labhub serve` is ready in ~3 s; a shared 2-core box
# under a load of 20 took over 30 s
STOP_TIMEOUT_S = 10.0
CLI_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 60
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"

NETWORK = "NET"
REGION = "NET-R1"
LAB_A = "NET-LA"  # a Lab Center
LAB_B = "NET-LB"  # a rural Lab Point
MODEL = "ARD-UNO-R3"  # in the central's catalog, which comes down to every hub
CENTRAL_ADMIN = "admin-central"  # distinct names: the central's people come down to hubs
HUB_ADMIN = "admin-hub"
BY = "Coordinadora (pruebas)"


class NetworkError(AssertionError):
    """A process of the network did not do what the test needed; says which and why."""


def _env(config: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABHUB_")}
    env["LABHUB_CONFIG"] = str(config)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_cli(config: Path, *args: str, input: str | None = None, check: bool = True,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``labhub <args>`` with ``config`` as its labhub.toml; NetworkError (with its
    output) when it fails and ``check``."""
    done = subprocess.run([LABHUB, *args], input=input, capture_output=True, text=True,
                          env=_env(config, env), timeout=CLI_TIMEOUT_S, check=False)
    if check and done.returncode != 0:
        raise NetworkError(f"`labhub {' '.join(args)}` failed ({done.returncode}):\n"
                           f"{done.stdout}\n{done.stderr}")
    return done


def _toml(values: Mapping[str, Any]) -> str:
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the templates -------------------------------------------------------------------------


@dataclass
class Templates:
    """A migrated central database (a PostgreSQL template) and a migrated hub file."""

    admin_url: str  # the PostgreSQL server's, to make and drop databases
    central_db: str  # the template database's name
    hub_file: Path
    central_token: str = ""  # an admin's API token in every central made from it
    hub_token: str = ""  # an admin's API token in every hub made from it
    made: list[str] = field(default_factory=list)  # databases to drop at the end

    def new_central_url(self) -> str:
        name = f"labhub_net_{uuid.uuid4().hex[:10]}"
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.central_db}"'))
        finally:
            admin.dispose()
        self.made.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(
            hide_password=False)


@contextlib.contextmanager
def network_templates(tmp: Path) -> Iterator[Templates]:
    """The templates (see the module's text); every database made is dropped after."""
    from conftest import IN_CI, _admin_url

    admin_url = make_url(_admin_url()).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        reason = f"no PostgreSQL at {_admin_url()} for the central ({type(exc).__name__})"
        if IN_CI:
            pytest.fail(f"{reason}; under CI=true the network suite may not be skipped")
        pytest.skip(reason)
    name = f"labhub_net_tpl_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    templates = Templates(admin_url=admin_url.render_as_string(hide_password=False),
                          central_db=name, hub_file=tmp / "hub-template.db")
    try:
        central_toml = tmp / "central-template.toml"
        central_toml.write_text(_toml({"role": "central", "database_url": url,
                                       "data_dir": str(tmp / "central-template")}))
        run_cli(central_toml, "db", "upgrade")
        templates.central_token = make_admin(url, CENTRAL_ADMIN)
        hub_toml = tmp / "hub-template.toml"
        hub_toml.write_text(_toml({"data_dir": str(tmp / "hub-template")}))
        run_cli(hub_toml, "db", "upgrade")
        made = tmp / "hub-template" / "labhub.db"
        templates.hub_token = make_admin(f"sqlite:///{made}", HUB_ADMIN)
        engine = create_engine(f"sqlite:///{made}")
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        shutil.copy(made, templates.hub_file)
        yield templates
    finally:
        with admin.connect() as conn:
            for db_name in [*templates.made, name]:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        admin.dispose()


def make_admin(url: str, name: str) -> str:
    """An admin of the whole network (no password) in the database at ``url``, with an
    API token of all an admin may do: the token. Made in the templates, so every process
    has it without a command of its own (a `labhub` command costs ~2 s of CPU)."""
    from labhub import db
    from labhub.access import accounts

    engine = db.make_engine(url)
    try:
        with engine.begin() as conn:
            user = accounts.create_user(conn, name=name, password_hash=None,
                                        grants_given=[accounts.check_grant("admin", "*")])
            _, secret = accounts.create_api_token(conn, user_id=user.id,
                                                  name="network tests")
        return secret
    finally:
        engine.dispose()


# -- one process ---------------------------------------------------------------------------


@dataclass
class LabHubProcess:
    """One ``labhub serve``: its settings file, port, database, log and API token."""

    name: str
    root: Path  # its own directory: labhub.toml, data, log
    port: int
    settings: dict[str, Any]
    token: str | None = None  # an admin's API token on it
    faketime: str | None = None  # libfaketime's FAKETIME (e.g. "-3d"); None: real clock
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def config(self) -> Path:
        return self.root / "labhub.toml"

    @property
    def log(self) -> Path:
        return self.root / "serve.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return str(self.settings.get("database_url")
                   or f"sqlite:///{self.root / 'data' / 'labhub.db'}")

    def write_config(self) -> None:
        self.config.write_text(_toml({**self.settings, "port": self.port}))

    def clock_env(self) -> dict[str, str]:
        if self.faketime is None:
            return {}
        if not Path(FAKETIME_LIB).exists():
            from conftest import IN_CI

            reason = (f"no libfaketime ({FAKETIME_LIB}): install Debian's faketime to run "
                      "the wrong-clock test")
            if IN_CI:
                pytest.fail(f"{reason}; under CI=true it may not be skipped")
            pytest.skip(reason)
        return {"LD_PRELOAD": FAKETIME_LIB, "FAKETIME": self.faketime,
                "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_NO_CACHE": "1"}

    def cli(self, *args: str, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """``labhub <args>`` as this process's machine (its labhub.toml and clock)."""
        return run_cli(self.config, *args, input=input, check=check, env=self.clock_env())

    def start(self) -> None:
        """Start ``labhub serve`` and wait until its health check answers."""
        if self.popen is not None and self.popen.poll() is None:
            raise NetworkError(f"{self.name} is already running")
        self.write_config()
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"---- start {self.starts} ----\n".encode())
            self.popen = subprocess.Popen(
                [LABHUB, "serve"], stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                env=_env(self.config, self.clock_env()), start_new_session=True)
        self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise NetworkError(f"{self.name} exited with {self.popen.returncode} while "
                                   f"starting:\n{self.log_tail()}")
            try:
                answer = httpx.get(f"{self.url}/api/v1/health", timeout=10)
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)
        raise NetworkError(f"{self.name} was not ready on {self.url} within {timeout} s "
                           f"({last}):\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, and SIGKILL (to its whole process group) if it does not end in time."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(STOP_TIMEOUT_S)
                with self.log.open("a") as log:
                    log.write(f"---- killed: no exit {STOP_TIMEOUT_S} s after SIGTERM\n")
        with contextlib.suppress(ProcessLookupError):  # anything it left in its group
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen = None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.log.exists():
            return f"({self.name}: no log)"
        text_ = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text_[-lines:])

    # -- its API --

    def request(self, method: str, path: str, *, expect: int | Sequence[int] | None = 200,
                **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        answer = httpx.request(method, f"{self.url}{path}", headers=headers,
                               timeout=HTTP_TIMEOUT_S, **kwargs)
        wanted = (expect,) if isinstance(expect, int) else expect
        if wanted is not None and answer.status_code not in wanted:
            raise NetworkError(f"{method} {path} on {self.name}: {answer.status_code} "
                               f"(expected {expect}): {answer.text[:2000]}")
        return answer

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        answer = self.request("POST", path, json=body, **kwargs)
        return answer.json() if answer.content else None

    def engine(self) -> Engine:
        from labhub import db

        return db.make_engine(self.database_url)


# -- the network ---------------------------------------------------------------------------


@dataclass
class Hub(LabHubProcess):
    site: str = ""
    proxy: SyncProxy | None = None


class Network:
    """The processes of one test: a central, hubs and their proxies (see the module)."""

    def __init__(self, root: Path, templates: Templates) -> None:
        self.root = root
        self.templates = templates
        self.processes: list[LabHubProcess] = []
        self.proxies: list[SyncProxy] = []
        self._central: LabHubProcess | None = None

    # -- life --

    def close(self) -> None:
        """Stop every process and proxy (whatever state they are in); print their logs."""
        errors = []
        for proc in self.processes:
            try:
                proc.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(f"{proc.name}: {exc}")
        for proxy in self.proxies:
            try:
                proxy.stop()
            except Exception as exc:
                errors.append(f"proxy {proxy.port}: {exc}")
        for proc in self.processes:
            print(f"\n==== {proc.name} ({proc.url}), end of {proc.log} ====")
            print(proc.log_tail())
        if errors:
            raise NetworkError("could not stop: " + "; ".join(errors))

    @property
    def central_proc(self) -> LabHubProcess:
        if self._central is None:
            raise NetworkError("the test has not started a central (net.central())")
        return self._central

    def central(self, **settings: Any) -> LabHubProcess:
        """The central on a fresh copy of the migrated database, with an admin and the
        tree: network NET, region NET-R1, labs NET-LA (Lab Center, urban) and NET-LB (Lab
        Point, rural)."""
        root = self.root / "central"
        root.mkdir()
        proc = LabHubProcess(
            name="central", root=root, port=free_port(),
            settings={"role": "central", "database_url": self.templates.new_central_url(),
                      "data_dir": str(root / "data"), "host": "127.0.0.1",
                      "serial_scan": False, "log_level": "info", **settings})
        proc.write_config()
        proc.token = self.templates.central_token
        self.processes.append(proc)
        self._central = proc
        proc.start()
        self._tree(proc)
        return proc

    def _tree(self, central: LabHubProcess) -> None:
        central.post("/api/v1/sites", {"code": NETWORK, "name": "Red de prueba",
                                       "kind": "network"}, expect=201)
        central.post("/api/v1/sites", {"code": REGION, "name": "Region 1", "kind": "region",
                                       "parent": NETWORK}, expect=201)
        for code, tier, rural, lat, lon in ((LAB_A, "lab_center", False, 3.45, -76.53),
                                            (LAB_B, "lab_point", True, 3.9, -76.3)):
            central.post("/api/v1/sites", {
                "code": code, "name": f"Lab {code}", "kind": "site", "parent": REGION,
                "tier": tier, "rural": rural, "latitude": lat, "longitude": lon},
                expect=201)
        central.post("/api/v1/models", {"code": MODEL, "name": "Arduino Uno R3",
                                        "category": "microcontroller_board",
                                        "tracking": "serialized"}, expect=201)

    def hub(self, name: str, site: str, *, faketime: str | None = None,
            join: bool = True, **settings: Any) -> Hub:
        """A hub on a fresh copy of the migrated file, with an admin; joined to the
        central's lab ``site`` through a proxy of its own unless ``join`` is false."""
        root = self.root / name
        (root / "data").mkdir(parents=True)
        shutil.copy(self.templates.hub_file, root / "data" / "labhub.db")
        proxy = SyncProxy(self.central_proc.port)
        proxy.start()
        self.proxies.append(proxy)
        proc = Hub(name=name, root=root, port=free_port(), faketime=faketime, site=site,
                   proxy=proxy,
                   settings={"data_dir": str(root / "data"), "host": "127.0.0.1",
                             "serial_scan": False, "network_sync_every_s": 5,
                             "log_level": "info", **settings})
        proc.token = self.templates.hub_token
        proc.write_config()
        self.processes.append(proc)
        if join:
            self.join(proc)
        proc.start()
        return proc

    # -- enrolment and contacts --

    def enrolment_token(self, site: str) -> str:
        """A one-time enrolment token for lab ``site``, made on the central."""
        out = self.central_proc.cli("network", "token", "--site", site).stdout
        found = re.search(r"lhe_[A-Za-z0-9_\-]+", out)
        if found is None:
            raise NetworkError(f"`labhub network token --site {site}` printed no lhe_ "
                               f"token:\n{out}")
        return found.group(0)

    def join(self, hub: Hub) -> None:
        """``labhub network join`` on the hub, through its proxy, for its lab."""
        assert hub.proxy is not None
        hub.cli("network", "join", hub.proxy.url, "--token", self.enrolment_token(hub.site))

    def sync(self, hub: LabHubProcess, *, expect: int | Sequence[int] = 200) -> Any:
        """A contact now (``POST /api/v1/network/sync`` on the hub); its answer."""
        return hub.post("/api/v1/network/sync", expect=expect)

    def status(self, hub: LabHubProcess) -> Any:
        return hub.get("/api/v1/network/status")

    def sync_until(self, hub: LabHubProcess, done: Any, *, timeout: float, what: str,
                   attempts: int = 10_000) -> int:
        """Contacts, one after the other, until ``done()``; how many it took. A contact
        that fails (a cut, a refusal) is expected here: the next one goes on."""
        deadline = time.monotonic() + timeout
        tries = 0
        last: Any = None
        while not done():
            if time.monotonic() > deadline or tries >= attempts:
                raise NetworkError(f"timed out waiting for {what} after {tries} contacts "
                                   f"({timeout} s); last answer: {last}")
            tries += 1
            try:
                answer = hub.request("POST", "/api/v1/network/sync", expect=None)
                last = f"{answer.status_code} {answer.text[:500]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
        return tries


    def sync_all(self, hub: LabHubProcess, *, timeout: float, what: str,
                 settled: Any = None) -> int:
        """Contacts until one goes through having sent nothing and left nothing waiting
        (and ``settled()``, when given, is true); the number of contacts. Failed
        contacts (a cut, a refusal) are part of it: the next goes on."""
        quiet = {"done": False}

        def done() -> bool:
            return quiet["done"] and (settled is None or bool(settled()))

        deadline = time.monotonic() + timeout
        tries = 0
        last: Any = None
        while not done():
            if time.monotonic() > deadline:
                raise NetworkError(f"timed out waiting for {what} after {tries} contacts "
                                   f"({timeout} s); last answer: {last}\n"
                                   f"{hub.name}'s log:\n{hub.log_tail(20)}")
            tries += 1
            try:
                answer = hub.request("POST", "/api/v1/network/sync", expect=None)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            last = f"{answer.status_code} {answer.text[:500]}"
            if answer.status_code == 200:
                body = answer.json()
                quiet["done"] = not body["more"] and not any(body["sent"].values())
        return tries

    # -- the central's database: a backup and a restore --

    def central_libpq_url(self) -> str:
        url = make_url(str(self.central_proc.settings["database_url"]))
        return url.set(drivername="postgresql").render_as_string(hide_password=False)

    def backup_central(self, path: Path) -> None:
        """``pg_dump`` of the central's database (custom format) into ``path``."""
        done = subprocess.run(["pg_dump", "-Fc", "-f", str(path), self.central_libpq_url()],
                              capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                              check=False)
        if done.returncode != 0:
            raise NetworkError(f"pg_dump failed: {done.stderr}")

    def restore_central(self, path: Path) -> None:
        """The central stopped, its database dropped and made again from ``path``
        (``pg_restore``), and started again: what it had at the backup, nothing since."""
        central = self.central_proc
        central.stop()
        url = make_url(str(central.settings["database_url"]))
        admin = create_engine(self.templates.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE "{url.database}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{url.database}"'))
        finally:
            admin.dispose()
        done = subprocess.run(["pg_restore", "--no-owner", "-d", self.central_libpq_url(),
                               str(path)], capture_output=True, text=True,
                              timeout=CLI_TIMEOUT_S, check=False)
        if done.returncode != 0:
            raise NetworkError(f"pg_restore failed: {done.stderr}")
        central.start()


def upload_bytes(hub: LabHubProcess, budget: int = 256 * 1024) -> int:
    """The bytes of every up section the hub would send from nothing: what a first
    sync of what it holds puts on the wire, before HTTP's own bytes."""
    from labhub.network.streams import up_streams

    engine = hub.engine()
    total = 0
    try:
        with engine.connect() as conn:
            for stream in up_streams().values():
                after: list[int] = []
                while (section := stream.collect(conn, after, budget)) is not None:
                    total += len(section.data)
                    if section.to == after:
                        break
                    after = section.to
        return total
    finally:
        engine.dispose()


# -- data on a hub -------------------------------------------------------------------------


def write_readings(hub: LabHubProcess, device: str, channels: Sequence[str], *,
                   start_us: int, step_us: int, count: int, site: str | None = None,
                   batch: int = 50_000, noise_seed: int | None = None) -> int:
    """``count`` readings per channel of ``device`` every ``step_us`` from ``start_us``,
    written straight into the hub's SQLite file with the hub's own writer, which keeps the
    readings' journal (value: the reading's index plus an eighth per channel, so the sums
    tell channels apart; with ``noise_seed``, plus a seeded 0.00-9.99 as a sensor's noise,
    which compresses as real readings do rather than to almost nothing); the number
    written."""
    import random

    rng = random.Random(noise_seed)
    from sensors.storage import BatchWriter, ReadingStore

    engine = hub.engine()
    try:
        store = ReadingStore(engine)
        ids = [store.ensure_series(device=device, channel=c, quantity=None, unit=None,
                                   site=site or getattr(hub, "site", None)).id
               for c in channels]
        writer = BatchWriter(engine)
        try:
            written = 0
            for first in range(0, count, batch):
                last = min(count, first + batch)
                noise = noise_seed is not None
                groups = [[(sid, start_us + i * step_us,
                            i + k / 8 + (rng.randrange(1000) / 100 if noise else 0), 0)
                           for i in range(first, last)] for k, sid in enumerate(ids)]
                written += sum(writer.write(groups))
        finally:
            writer.close()
        return written
    finally:
        engine.dispose()


def plug_device(hub: Hub, device: str, *, kind: str = "mqtt") -> None:
    """The hub's registry meets ``device`` (as when a board or node first reports), at
    the hub's lab: written into its file as its own supervisor does."""
    from firmware_bridge import registry

    engine = hub.engine()
    try:
        with engine.begin() as conn:
            registry.record_seen(conn=conn, device_id=device, kind=kind,  # type: ignore[arg-type]
                                 site=hub.site, name=f"{device} ({hub.site})")
    finally:
        engine.dispose()


def upload_readings(hub: LabHubProcess, device: str, channel: str, values: Sequence[
        tuple[str, float]], *, site: str | None = None) -> Any:
    """Readings through the hub's API (``POST /api/v1/readings``): (RFC 3339 time,
    value) pairs of one channel."""
    return hub.post("/api/v1/readings", {
        "device": device, "site": site or getattr(hub, "site", None),
        "readings": [{"channel": channel, "value": v, "ts": ts} for ts, v in values]})


# A sum of the times themselves overflows 64 bits at a million readings: times are
# compared by count, first, last and the sum of their remainders by a prime.
TS_PRIME = 1_000_003


@dataclass(frozen=True)
class SeriesCount:
    """One series' readings: rows, distinct times, first and last time, the sum of the
    times' remainders by :data:`TS_PRIME` and the sum of the values."""

    rows: int
    distinct: int
    first: int
    last: int
    ts_sum: int
    value_sum: float

    def same_readings(self, other: SeriesCount) -> bool:
        return ((self.rows, self.first, self.last, self.ts_sum)
                == (other.rows, other.first, other.last, other.ts_sum)
                and abs(self.value_sum - other.value_sum)
                <= 1e-6 * max(1.0, abs(self.value_sum)))


_COUNTS = ("SELECT s.device, s.channel, count(*), count(DISTINCT r.ts), min(r.ts), "
           f"max(r.ts), sum(r.ts % {TS_PRIME}), sum(r.value) FROM series s JOIN readings r "
           "ON r.series_id = s.id {where} GROUP BY s.device, s.channel")


def _counts(proc: LabHubProcess, where: str = "",
            **params: Any) -> dict[tuple[str, str], SeriesCount]:
    engine = proc.engine()
    try:
        with engine.connect() as conn:
            return {(r[0], r[1]): SeriesCount(int(r[2]), int(r[3]), int(r[4]), int(r[5]),
                                              int(r[6]), float(r[7]))
                    for r in conn.execute(text(_COUNTS.format(where=where)), params)}
    finally:
        engine.dispose()


def hub_readings(hub: LabHubProcess) -> dict[tuple[str, str], SeriesCount]:
    """Per (device, channel) on the hub: what it holds."""
    return _counts(hub)


def central_readings(central: LabHubProcess, site: str) -> dict[tuple[str, str],
                                                                SeriesCount]:
    """Per (hub's device id, channel) of lab ``site`` on the central: what arrived.
    ``distinct`` against ``rows`` shows a reading stored twice."""
    from labhub.network.protocol import DEVICE_SEPARATOR

    found = _counts(central, "WHERE s.device LIKE :prefix",
                    prefix=f"{site}{DEVICE_SEPARATOR}%")
    return {(device.split(DEVICE_SEPARATOR, 1)[1], channel): count
            for (device, channel), count in found.items()}


def assert_readings_exactly_once(hub: LabHubProcess, central: LabHubProcess,
                                 site: str) -> int:
    """Every reading of the hub is on the central once, with its time and value; the
    number of readings. Fails naming the first series that differs."""
    here = hub_readings(hub)
    there = central_readings(central, site)
    assert set(there) == set(here), (f"series on the hub {sorted(here)} but on the "
                                     f"central {sorted(there)}")
    for key, mine in here.items():
        got = there[key]
        assert got.rows == got.distinct, f"{key}: {got.rows - got.distinct} stored twice"
        assert got.same_readings(mine), f"{key}: the hub has {mine}, the central {got}"
    return sum(c.rows for c in here.values())


def event_uuids(proc: LabHubProcess, site: str | None = None) -> list[str]:
    """The inventory events' UUIDs in ``proc``'s database (of one site, or all)."""
    engine = proc.engine()
    try:
        with engine.connect() as conn:
            if site is None:
                rows = conn.execute(text("SELECT uuid FROM events"))
            else:
                rows = conn.execute(text("SELECT uuid FROM events WHERE site_code = :s"),
                                    {"s": site})
            return [r[0] for r in rows]
    finally:
        engine.dispose()


def central_scalar(central: LabHubProcess, sql: str, **params: Any) -> Any:
    engine = central.engine()
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


def make_inventory_events(hub: Hub, count: int, *, prefix: str = "A") -> list[str]:
    """``count`` inventory events at the hub's lab, made with the inventory's own
    functions on its file: assets of the central's model :data:`MODEL` registered there
    (the model and the lab came down from the central first). The tags."""
    from inventory import assets

    engine = hub.engine()
    tags = []
    try:
        for first in range(0, count, 500):
            with engine.begin() as conn:
                for i in range(first, min(count, first + 500)):
                    tag = f"{hub.site}-{prefix}{i:06d}"
                    assets.register_asset(conn=conn, tag=tag, model_code=MODEL,
                                          site_code=hub.site, by=BY)
                    tags.append(tag)
        return tags
    finally:
        engine.dispose()


# -- fixtures: a test module imports ``net_fixture`` and ``net_templates_fixture`` (other
# names than the fixtures', so a test's ``net`` parameter does not shadow an import).


@pytest.fixture(scope="module", name="net_templates")
def net_templates_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Templates]:
    """The migrated central database and hub file of this module (see the module)."""
    with network_templates(tmp_path_factory.mktemp("network")) as templates:
        yield templates


@pytest.fixture(name="net")
def net_fixture(net_templates: Templates, tmp_path: Path) -> Iterator[Network]:
    """The test's network; every process and proxy is stopped after it, whatever
    happened, and their logs' ends printed (shown when the test failed)."""
    network = Network(tmp_path, net_templates)
    try:
        yield network
    finally:
        network.close()


def missing_parts() -> dict[str, str]:
    """The parts of the network this LabHub does not have yet (an empty router or no
    stream), by key: the network tests that need one are expected to fail until it is in."""
    from labhub.api import network, network_admin, network_conflicts, network_hub
    from labhub.network import inventory_sync, up_readings, up_records

    missing = {
        "central": (not network.router.routes,
                    "the central's routes (enrolment, join, hello, batches, down)"),
        "client": (not network_hub.router.routes,
                   "the hub's sync client (network join, POST /api/v1/network/sync)"),
        "readings": (not up_readings.UP, "the readings' up stream"),
        "records": (not up_records.UP, "the devices', runs' and notes' up streams"),
        "inventory": (not inventory_sync.UP or not inventory_sync.DOWN,
                      "the inventory's streams (events up, tree down, transfers)"),
        "clocks": (not network_admin.router.routes, "clock corrections on the central"),
        "conflicts": (not network_conflicts.router.routes, "the central's conflicts list"),
    }
    return {key: words for key, (absent, words) in missing.items() if absent}


def needs(*parts: str) -> pytest.MarkDecorator:
    """Expect the test to fail (strictly) while one of ``parts`` (keys of
    :func:`missing_parts`) is missing from this LabHub; a plain test once all are in."""
    absent = missing_parts()
    unknown = [p for p in parts if p not in ("central", "client", "readings", "records",
                                             "inventory", "clocks", "conflicts")]
    if unknown:
        raise ValueError(f"unknown parts {unknown}")
    lacking = [absent[p] for p in parts if p in absent]
    return pytest.mark.xfail(bool(lacking), strict=True,
                             reason="not in this LabHub yet: " + "; ".join(lacking))
