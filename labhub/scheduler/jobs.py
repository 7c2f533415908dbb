"""What a job is: its stable id, what it runs, when, and its policy for late and failed runs.

Jobs are defined in code (``labhub.jobs.*``, each module's ``specs(settings)``); their times
come from the settings. A job's body is a plain function of a :class:`JobContext` that
returns a one-line result for people ("rolled up 3,600 readings"); it raises to fail. Long
work goes in chunks and checks ``ctx.stopping()`` between them, so a closing hub does not
wait for it and ingest is never held up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from apscheduler.triggers.base import BaseTrigger

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from labhub.settings import Settings
    from labhub.wiring import Hub

HubRole = Literal["hub", "central"]


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job's body is given: the running hub (its engine, settings, pipeline and
    hardware), the job's id and which attempt this is (1, then the retries)."""

    hub: Hub
    job_id: str
    attempt: int = 1
    stopping: Callable[[], bool] = lambda: False  # the hub is closing: stop between chunks

    @property
    def engine(self) -> Engine:
        return self.hub.engine

    @property
    def settings(self) -> Settings:
        return self.hub.settings


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job of the hub.

    ``coalesce``: runs missed while the hub was off (or asleep) run once, not once each.
    ``misfire_grace_s``: how late a run may still start (a laptop that slept through 02:00
    and wakes at 07:00 runs the backup then if this is long enough). A failed run is
    retried ``retries`` times, ``retry_after_s`` apart, then waits for its next time.
    """

    id: str  # stable: the key in the job store, the API, metrics and the log
    title: str  # for people, in English (the web app translates it)
    run: Callable[[JobContext], str]
    trigger: BaseTrigger
    coalesce: bool = True
    misfire_grace_s: int = 3600
    retries: int = 2
    retry_after_s: int = 60
    roles: frozenset[HubRole] = field(default_factory=lambda: frozenset({"hub"}))
