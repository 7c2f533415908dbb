"""Scheduled runs and slow sampling of boards: the hub's two clock-driven jobs.

"run-schedules" runs every minute and calls :func:`sensors.run_schedules.tick` with the
time: it starts the run of each open window that has none and stops the runs of windows
that ended. Its state is the database, not the scheduler's memory, so a hub that was off
at a window's start starts the run when it comes back (if the window is still open) and
stops a run whose window ended meanwhile; a repeated tick, or one in each of two hub
processes, starts one run per window (the window's row is its key).

"firmata-sampling" runs every ``SAMPLING_TICK_S`` and asks the hub for one slow sample of
each Firmata board whose settings have ``firmata.sample_every_s`` and whose time has come:
samples fall on multiples of that period since the epoch (every 10 minutes: :00, :10, ...),
so a climate log's rows line up across boards and restarts. Each board is waited for at
most ``SAMPLE_WAIT_S``, one after the other, and the job checks ``ctx.stopping()``
between boards, so it never holds up the scheduler's other jobs for long. A board that is
unplugged or does not answer is logged once (and once again when it is back) and tried
again at the next tick; the job itself does not fail for it.

Both bodies take the time from their callers (``*_at(ctx, now)``): the scheduler passes
the clock, tests pass the instants they want.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from apscheduler.triggers.interval import IntervalTrigger

from firmware_bridge import registry
from firmware_bridge.errors import DeviceUnavailableError, NoSuchDeviceError
from firmware_bridge.firmata import SAMPLE_WAIT_S
from labhub.scheduler.jobs import JobContext, JobSpec
from labhub.settings import Settings
from sensors import run_schedules
from sensors.samples import now_us

if TYPE_CHECKING:
    from labhub.wiring import Hub

log = logging.getLogger(__name__)

SCHEDULES_TICK_S = 60  # a window starts and stops within a minute of its wall-clock time
SAMPLING_TICK_S = 30  # slow samples are taken within this of their time (periods of 10 min);
# each tick is a run the scheduler records, so a shorter one would wear an SD card for nothing
US = 1_000_000


def specs(settings: Settings) -> list[JobSpec]:
    """This module's jobs."""
    tz = ZoneInfo(settings.timezone)
    return [
        JobSpec(id="run-schedules", title="Start and stop scheduled runs",
                run=run_schedules_job, trigger=IntervalTrigger(seconds=SCHEDULES_TICK_S,
                                                               timezone=tz),
                # The tick reads what is due from the database: a late or missed tick is
                # caught up by the next one, so a stale one is not worth running.
                coalesce=True, misfire_grace_s=SCHEDULES_TICK_S, retries=1,
                retry_after_s=10),
        JobSpec(id="firmata-sampling", title="Sample slow Firmata boards",
                run=firmata_sampling_job, trigger=IntervalTrigger(seconds=SAMPLING_TICK_S,
                                                                  timezone=tz),
                coalesce=True, misfire_grace_s=SAMPLING_TICK_S, retries=0),
    ]


# -- scheduled runs ---------------------------------------------------------------------------

def run_schedules_job(ctx: JobContext) -> str:
    """The "run-schedules" job at the hub's clock."""
    return run_schedules_at(ctx, now_us())


def run_schedules_at(ctx: JobContext, now: int) -> str:
    """Start and stop the scheduled runs due at ``now`` (µs); a line for people."""
    from labhub.web.schedules import late_note  # the words are the web app's (schedules.po)

    with ctx.engine.begin() as conn:  # the note is read by the class: the hub's language
        done = run_schedules.tick(conn=conn, now=now,
                                  late_note=late_note(ctx.settings.language))
    for run_id in done.started:
        log.info("scheduled run %s started%s", run_id,
                 " late (the hub was off at its start)" if run_id in done.late else "")
    for run_id in done.stopped:
        log.info("scheduled run %s stopped", run_id)
    if not done.started and not done.stopped:
        return "no scheduled run to start or stop"
    late = f" ({len(done.late)} late)" if done.late else ""
    return f"started {len(done.started)} scheduled runs{late}, stopped {len(done.stopped)}"


# -- slow sampling ----------------------------------------------------------------------------

class _Sampling:
    """What the sampling job remembers of one hub between ticks: each board's last sample
    time and the boards whose failure was already logged."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.failing: set[str] = set()
        self.lock = threading.Lock()  # a tick and a test's call never interleave


_STATE: weakref.WeakKeyDictionary[Hub, _Sampling] = weakref.WeakKeyDictionary()
_STATE_LOCK = threading.Lock()


def _state(hub: Hub) -> _Sampling:
    with _STATE_LOCK:
        state = _STATE.get(hub)
        if state is None:
            state = _STATE[hub] = _Sampling()
        return state


def slow_boards(ctx: JobContext) -> dict[str, int]:
    """The boards sampled slowly, by device id: their ``sample_every_s``."""
    with ctx.engine.connect() as conn:
        return {d.id: d.settings.firmata.sample_every_s
                for d in registry.list_devices(conn=conn)
                if d.settings.protocol in ("firmata", "auto")
                and d.settings.firmata.sample_every_s is not None}


def due(last: int | None, every_s: int, now: int) -> bool:
    """Whether a board sampled at ``last`` (µs; None: never) is due at ``now``: a sample
    time (a multiple of ``every_s`` since the epoch) has passed since."""
    period = every_s * US
    return last is None or now // period > last // period


def firmata_sampling_job(ctx: JobContext) -> str:
    """The "firmata-sampling" job at the hub's clock."""
    return firmata_sampling_at(ctx, now_us())


def firmata_sampling_at(ctx: JobContext, now: int, *,
                        timeout_s: float = SAMPLE_WAIT_S) -> str:
    """Sample each slow board due at ``now`` (µs); a line for people."""
    state = _state(ctx.hub)
    boards = slow_boards(ctx)
    sampled: list[str] = []
    readings = 0
    missing: list[str] = []
    with state.lock:
        for device_id in list(state.last):
            if device_id not in boards:  # settings changed: continuous again, or forgotten
                state.last.pop(device_id, None)
                state.failing.discard(device_id)
        for device_id, every_s in sorted(boards.items()):
            if ctx.stopping():
                break
            if not due(state.last.get(device_id), every_s, now):
                continue
            began = time.monotonic()
            try:
                values = ctx.hub.sample(device_id, timeout_s)
            except (DeviceUnavailableError, NoSuchDeviceError) as exc:
                missing.append(device_id)
                if device_id not in state.failing:
                    state.failing.add(device_id)
                    log.warning("slow sampling of %s failed: %s; trying again every %d s "
                                "until it answers", device_id, exc, SAMPLING_TICK_S)
                continue
            if device_id in state.failing:
                state.failing.discard(device_id)
                log.info("slow sampling of %s works again", device_id)
            # The sample counts in the period it ended in: one begun just before a sample
            # time and stored just after it is that time's sample, not one more before it.
            state.last[device_id] = now + int((time.monotonic() - began) * US)
            sampled.append(device_id)
            readings += len(values)
    if not sampled and not missing:
        return "no board due for a sample"
    text = f"sampled {len(sampled)} boards ({readings} readings)"
    if missing:
        text += f"; not answering: {', '.join(missing)}"
    return text
