"""The served hub's idle memory and its time from start to API ready. (Part of
``bench/ops.py``.)

``labhub serve`` runs as its own process, as systemd starts it: the web app and the
scheduler on (``jobs_enabled``), serial scanning on (no boards here), MQTT off, on a fresh
SQLite data directory (the first start migrates it; the later ones find it migrated, as a
hub does every morning). Measured: the time from ``Popen`` to the first 200 of
``/api/v1/health`` (three starts, the median; the first, migrating, printed apart), and
its resident memory (``VmRSS``) once ready and after idling 30 s (smoke: 2 s).

The baseline, measured in the same run the same way: a bare uvicorn serving an empty
FastAPI app with one route (what any FastAPI service pays), so the figures say what
LabHub adds. Targets: under 120 MB idle and under 3 s to ready; ThingsBoard Edge needs
256-512 MB and a JVM. Then the heavy modules the served process imported (label PDFs,
fonts, test tools), which must not load until a label or a card is asked for.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from _common import free_port, load_average, verdict

RSS_TARGET_MB = 120.0
READY_TARGET_S = 3.0
STARTS = 3
IDLE_S = 30.0
READY_WAIT_S = 120.0  # a start that takes longer than this is broken, not slow
# Modules a served hub has no use for until someone asks for a label sheet or a QR card
# (fpdf, fontTools, PIL), or never (the test tools).
HEAVY = ("fpdf", "fontTools", "PIL", "fontpkg", "schemathesis", "playwright", "hypothesis",
         "pytest")
BASELINE_APP = """
import sys
import uvicorn
from fastapi import FastAPI

app = FastAPI()

@app.get("/api/v1/health")
def health() -> dict[str, str]:
    return {"status": "ok"}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
PROBE_IMPORTS = """
import json, sys
from pathlib import Path
from labhub.app import create_app
from labhub.settings import Settings
create_app(Settings(data_dir=Path(sys.argv[1]), database_url="sqlite:///" + sys.argv[1] + "/x.db"))
print(json.dumps({"heavy": [m for m in sys.argv[2:] if m in sys.modules],
                  "modules": len(sys.modules)}))
"""


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _cpu_s(pid: int) -> float:
    """The CPU seconds (user + system) process ``pid`` has used: on a loaded machine a
    start's wall time mostly says how long it waited for a core; this says its work."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health",
                                    timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _start(command: list[str], port: int, env: dict[str, str]) -> tuple[subprocess.Popen[bytes],
                                                                         float]:
    """Start ``command`` and wait for its health answer: the process and the seconds."""
    began = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while not _ready(port):
        if proc.poll() is not None:
            raise RuntimeError(f"{command[0]} exited with {proc.returncode} before ready")
        if time.perf_counter() - began > READY_WAIT_S:
            proc.kill()
            raise RuntimeError(f"{command[0]} not ready in {READY_WAIT_S} s")
        time.sleep(0.02)
    return proc, time.perf_counter() - began


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _run(command: list[str], env: dict[str, str], idle_s: float | None,
         port: int) -> tuple[float, float, float | None, float]:
    """One start: (seconds to ready, RSS MB once ready, RSS MB after ``idle_s``, CPU
    seconds to ready)."""
    proc, took = _start(command, port, env)
    try:
        cpu = _cpu_s(proc.pid)
        ready_mb = _rss_mb(proc.pid)
        idle_mb = None
        if idle_s is not None:
            time.sleep(idle_s)  # idling is what is measured: nothing to wait for
            idle_mb = _rss_mb(proc.pid)
    finally:
        _stop(proc)
    return took, ready_mb, idle_mb, cpu


def measure(smoke: bool) -> Iterator[str]:
    """The part's lines of figures."""
    idle_s = 2.0 if smoke else IDLE_S
    starts = 1 if smoke else STARTS
    labhub = str(Path(sys.executable).parent / "labhub")
    yield f"== footprint of `labhub serve` (load {load_average()})"
    with tempfile.TemporaryDirectory(prefix="labhub-footprint-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABHUB_")}
        env.update(LABHUB_CONFIG="/dev/null", LABHUB_DATA_DIR=f"{tmp}/data",
                   LABHUB_JOBS_ENABLED="true", HOME=tmp)
        hub_times: list[float] = []
        base_times: list[float] = []
        hub_ready: list[float] = []
        base_ready: list[float] = []
        hub_cpu: list[float] = []
        base_cpu: list[float] = []
        hub_idle = base_idle = None
        first = None
        for n in range(starts + 1):  # the first hub start migrates the new database
            last = smoke or n == starts
            port = free_port()
            took, ready_mb, idle_mb, cpu = _run(
                [labhub, "serve", "--port", str(port)], env, idle_s if last else None, port)
            if n == 0:
                first = (took, ready_mb)
                if starts > 0 and not smoke:
                    continue
            hub_times.append(took)
            hub_cpu.append(cpu)
            hub_ready.append(ready_mb)
            hub_idle = idle_mb if idle_mb is not None else hub_idle
            port = free_port()
            took, ready_mb, idle_mb, cpu = _run(
                [sys.executable, "-c", BASELINE_APP, str(port)], env,
                idle_s if last or smoke else None, port)
            base_times.append(took)
            base_cpu.append(cpu)
            base_ready.append(ready_mb)
            base_idle = idle_mb if idle_mb is not None else base_idle
            if smoke:
                break
        assert first is not None
        yield (f"first start (migrates a new SQLite database): {first[0]:.2f} s to ready, "
               f"{first[1]:.1f} MB")
        hub_s, base_s = statistics.median(hub_times), statistics.median(base_times)
        yield (f"start to API ready: labhub serve {hub_s:.2f} s, bare FastAPI + uvicorn "
               f"{base_s:.2f} s (median of {len(hub_times)}); LabHub adds {hub_s - base_s:.2f} s; "
               f"{verdict(hub_s, READY_TARGET_S)}")
        yield (f"CPU time to ready: labhub serve {statistics.median(hub_cpu):.2f} s, bare "
               f"{statistics.median(base_cpu):.2f} s (a start's own work, whatever the load)")
        yield (f"RSS once ready: labhub serve {statistics.median(hub_ready):.1f} MB, bare "
               f"{statistics.median(base_ready):.1f} MB")
        if hub_idle is not None and base_idle is not None:
            yield (f"RSS after {idle_s:.0f} s idle: labhub serve {hub_idle:.1f} MB, bare "
                   f"{base_idle:.1f} MB; LabHub adds {hub_idle - base_idle:.1f} MB; "
                   f"{verdict(hub_idle, RSS_TARGET_MB)}")
        probe = subprocess.run([sys.executable, "-c", PROBE_IMPORTS, tmp, *HEAVY], env=env,
                               capture_output=True, text=True, check=True, timeout=300)
        yield f"modules the served app imports: {probe.stdout.strip()}"
