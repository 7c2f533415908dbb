"""What the benchmarks share: the machine line, CPU clocks, timing pairs, and the station.

Every ``bench/*.py`` script runs as its own program (``python bench/ingest.py``), so this
folder is first on ``sys.path`` and the scripts import this module as ``_common``. Its name
starts with an underscore: it is no benchmark, so ``make bench`` and the smoke test of the
suite (``tests/test_bench_smoke.py``) pass it over.

Only helpers with the same meaning in every script live here; a script's own baseline and
its targets stay in the script, next to the figures it prints.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing.connection
import multiprocessing.process
import os
import platform
import random
import resource
import socket
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Sequence

from sensors.samples import US_PER_S, Sample, now_us

# -- the machine -----------------------------------------------------------------------------


def machine(*extra: str) -> str:
    """One line naming the platform, the CPUs, Python, SQLite and any ``extra`` versions."""
    parts = [platform.platform(), f"{os.cpu_count()} CPUs", f"Python {platform.python_version()}",
             f"SQLite {sqlite3.sqlite_version}", *extra]
    return ", ".join(parts)


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: a busy machine skews every figure after it."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- CPU clocks ------------------------------------------------------------------------------


def cpu_times() -> tuple[float, float]:
    """This process's (user, system) CPU seconds, every thread included, no children."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def thread_cpu(threads: Sequence[threading.Thread]) -> float:
    """CPU seconds the given live threads have used so far."""
    total = 0.0
    for thread in threads:
        if thread.ident is not None and thread.is_alive():
            total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return total


# -- timing a call against its baseline ----------------------------------------------------


def p95(samples: list[float]) -> float:
    """The 95th percentile by nearest rank: a value that was actually measured."""
    ordered = sorted(samples)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


class Timings:
    """Seconds per repetition of one measured call and of its baseline."""

    def __init__(self) -> None:
        self.measured: list[float] = []
        self.baseline: list[float] = []

    def speed_ratio(self) -> float:
        """Baseline median time over measured median time: above 1, faster than baseline."""
        return statistics.median(self.baseline) / statistics.median(self.measured)


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def alternate(
    repeat_count: int,
    measured: Callable[[int], Callable[[], object]],
    baseline: Callable[[int], Callable[[], object]],
    *,
    warm_up: bool = False,
) -> Timings:
    """Time ``measured(i)()`` and ``baseline(i)()`` alternately for i in range(repeat_count).

    The factories prepare their arguments (a random week, a fresh tag) outside the timing.
    With ``warm_up``, one untimed call of each (i = -1) comes first.
    """
    if warm_up:
        measured(-1)()
        baseline(-1)()
    timings = Timings()
    for i in range(repeat_count):
        call = measured(i)
        timings.measured.append(timed(call))
        call = baseline(i)
        timings.baseline.append(timed(call))
    return timings


def verdict(value: float, target: float, *, lower_is_better: bool = True) -> str:
    met = value <= target if lower_is_better else value >= target
    return f"{'target met' if met else 'target missed'}, {value / target:.2f} of target"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# -- a child process that answers over a pipe ------------------------------------------------


def close_child(conn: multiprocessing.connection.Connection,
                process: multiprocessing.process.BaseProcess) -> None:
    """Tell a benchmark's child process to finish, and make sure it has gone."""
    with contextlib.suppress(OSError):  # it exited already
        conn.send("done")
    conn.close()
    process.join(15)
    if process.is_alive():
        process.terminate()
        process.join(5)


# -- a school weather station ----------------------------------------------------------------

# (channel name as the kit prints it, centre value, daily swing, noise). Every value stays
# inside its quantity's plausible range, so no reading is flagged suspect and the pipeline
# stores exactly the rows a baseline stores.
STATION_CHANNELS: tuple[tuple[str, float, float, float], ...] = (
    ("temp", 18.0, 6.0, 0.3),
    ("hum", 60.0, 15.0, 1.0),
    ("pres", 1013.0, 4.0, 0.2),
    ("light", 20_000.0, 18_000.0, 500.0),
    ("soil", 40.0, 5.0, 0.5),
    ("co2", 700.0, 250.0, 20.0),
    ("pm25", 20.0, 10.0, 2.0),
    ("pm10", 35.0, 15.0, 3.0),
    ("uv", 4.0, 3.5, 0.2),
    ("rain", 2.0, 1.5, 0.1),
    ("wind", 5.0, 3.0, 1.0),
    ("sound", 55.0, 15.0, 3.0),
    ("dist", 100.0, 50.0, 2.0),
    ("battery", 3.8, 0.3, 0.01),
    ("a0", 512.0, 300.0, 10.0),
    ("a1", 300.0, 200.0, 10.0),
    ("a2", 700.0, 200.0, 10.0),
    ("a3", 100.0, 80.0, 5.0),
    ("a4", 900.0, 100.0, 5.0),
    ("a5", 450.0, 400.0, 20.0),
)


def station_samples(readings: int, seed: int, step_s: int = 1) -> list[Sample]:
    """``readings`` samples, channel by channel within each step, oldest step first.

    The station's clock starts two days ago so that every time passes the pipeline's
    "not in the future" check whatever ``readings`` is (up to a couple of million).
    """
    rng = random.Random(seed)
    steps = math.ceil(readings / len(STATION_CHANNELS))
    start_s = now_us() // US_PER_S - 2 * 86_400 - steps * step_s
    samples: list[Sample] = []
    append = samples.append
    gauss = rng.gauss
    for k in range(steps):
        ts = (start_s + k * step_s) * US_PER_S
        phase = math.sin(2 * math.pi * k / 86_400)
        for channel, centre, swing, noise in STATION_CHANNELS:
            value = centre + swing * phase + gauss(0.0, noise)
            low = 0.0 if channel != "temp" else -60.0
            append(Sample(channel, round(max(value, low), 2), ts))
    del samples[readings:]
    return samples
