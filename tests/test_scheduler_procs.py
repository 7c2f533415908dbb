"""Two hub processes on one database run each job once (SQLite and PostgreSQL).

Two real processes start a hub with its scheduler on one database where every job of the
catalog is due (a hub's and a central's), as the workers of ``labhub serve --workers N``
do. One holds the leader lock and runs every job once; the other runs none. Then the
leader is killed (SIGKILL: no goodbye, its lease or lock left behind) and the other takes
over within a lease, runs what it is asked to, and runs none of the jobs again. Each
scenario runs once (a module-scoped cache); each job's case checks its own rows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scheduler_world import (
    cases,
    fresh_database,
    hub_settings,
    make_all_due,
    runs_of,
    started_hub,
    stored_next_runs,
)
from waiting import wait_for

from labhub import db
from labhub.scheduler import runs
from labhub.scheduler.catalog import job_specs
from labhub.scheduler.service import Scheduler

RUNS_DEADLINE_S = 90.0  # two hubs starting and every job's real body, on 2 busy cores

# A hub process with its scheduler (a short lease and tick, so a takeover is quick);
# it stops when the file argv[4] appears.
HUB = """
import sys, time
from pathlib import Path
from labhub.scheduler import leader
leader.LEASE_S, leader.TICK_S = 2.0, 0.2
from labhub.settings import Settings
from labhub.wiring import Hub
data, url, role, stop = sys.argv[1:5]
hub = Hub(Settings(data_dir=data, database_url=url, role=role)).start(hardware=False,
                                                                     jobs=True)
assert hub.scheduler is not None
print("started", hub.scheduler.holder, flush=True)
while not Path(stop).exists():
    time.sleep(0.05)
hub.close()
print("closed", flush=True)
"""


@dataclass
class TwoHubs:
    due_us: int
    runs: list[Any]  # after the first leader ran every job
    later: list[Any]  # after the second one took over
    leader_pid: int
    other_pid: int
    asked: Any  # the run asked for after the takeover
    next_runs: dict[str, float | None]

    def scheduled(self, rows: list[Any], job_id: str) -> list[Any]:
        return [r for r in rows if r.job_id == job_id and r.kind == "schedule"]


def _pid(holder: str | None) -> int:
    assert holder is not None
    return int(holder.split(":")[-2])


def _two_hubs(request: pytest.FixtureRequest, where: Path, backend: str, role: str
              ) -> TwoHubs:
    url = fresh_database(request, backend, where)
    settings = hub_settings(url, role, where / "data")
    with started_hub(settings) as hub:  # a hub that ran before, with its jobs stored
        Scheduler(hub).start().close()
        due_us = make_all_due(hub.engine)
    ids = [s.id for s in job_specs(settings)]
    stop = where / "stop"
    procs = [subprocess.Popen(
        [sys.executable, "-c", HUB, str(where / "data"), url, role, str(stop)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    engine = db.make_engine(url)
    try:
        def ran_all() -> bool:
            return set(ids) <= {r.job_id for r in runs_of(engine)
                                if r.finished_at is not None}
        wait_for(ran_all, RUNS_DEADLINE_S, "every job to run once",
                 lambda: [p.poll() for p in procs])
        first = runs_of(engine)
        leader_pid = _pid(first[0].holder)
        by_pid = {p.pid: p for p in procs}
        assert set(by_pid) >= {leader_pid}
        by_pid[leader_pid].send_signal(signal.SIGKILL)
        by_pid[leader_pid].wait(10)
        other = next(p for p in procs if p.pid != leader_pid)
        asked = runs.request(engine, job_id=ids[0], requested_by="tests")
        assert asked is not None

        def taken_over() -> bool:
            with engine.connect() as conn:
                found = runs.get(conn, asked.id)
            return found is not None and found.finished_at is not None
        wait_for(taken_over, 30, "the other hub to take over and run what it was asked",
                 lambda: other.poll())
        stop.touch()
        _, err = other.communicate(timeout=30)
        assert other.returncode == 0, err
        with engine.connect() as conn:
            done = runs.get(conn, asked.id)
        return TwoHubs(due_us, first, runs_of(engine), leader_pid, other.pid, done,
                       stored_next_runs(engine))
    finally:
        stop.touch()
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=10)
        engine.dispose()


@pytest.fixture(scope="module")
def two_hubs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> Any:
    done: dict[tuple[str, str], TwoHubs] = {}
    where = tmp_path_factory.mktemp("two-hubs")

    def get(scenario: tuple[str, str]) -> TwoHubs:
        if scenario not in done:
            folder = where / "-".join(scenario)
            folder.mkdir()
            done[scenario] = _two_hubs(request, folder, *scenario)
        return done[scenario]
    return get


@pytest.mark.parametrize(("scenario", "job_id"), cases())
def test_two_hub_processes_on_one_database_run_each_job_once(
        two_hubs: Any, scenario: tuple[str, str], job_id: str) -> None:
    seen: TwoHubs = two_hubs(scenario)
    mine = seen.scheduled(seen.runs, job_id)
    assert [(r.scheduled_for, r.attempt) for r in mine] == [(seen.due_us, 1)], mine
    assert mine[0].outcome == "ok", f"{job_id} failed in a hub process: {mine[0].result}"
    assert _pid(mine[0].holder) == seen.leader_pid, "the process that leads runs the jobs"
    # The other process took over after the leader was killed, and ran none again.
    assert seen.scheduled(seen.later, job_id) == mine
    assert _pid(seen.asked.holder) == seen.other_pid
    assert seen.asked.outcome == "ok", seen.asked.result
    assert seen.next_runs[job_id] is not None
    assert seen.next_runs[job_id] * 1e6 > seen.due_us
    assert os.getpid() not in (seen.leader_pid, seen.other_pid)
