"""What ``/metrics`` tells Prometheus about a running hub, read when it is scraped.

Each hub (so each app: a test process holds many) has its own ``CollectorRegistry``
(:func:`for_hub`), never prometheus-client's global one. Nearly every figure is read at
scrape time from what the hub already counts, by :class:`HubCollector`: the ingest
pipeline's counters by source and its queue, the MQTT bridge's status and outbox, the
device registry, the scheduler's jobs, the sync backlog, the data disk's free space. The
hot paths carry no instrumentation of their own, with one exception: the histogram of
the ingest writer's commit durations, which the pipeline feeds through its commit
observer (one ``observe`` per batch, on the writer thread).

A part the hub does not run (MQTT off, no scheduler, a central's sync) is simply absent
from the answer. A database that does not answer at scrape time leaves out the figures
read from it and logs why; the rest is still served. docs/operations.md lists every
metric and what it means.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from firmware_bridge.registry import devices
from labhub import __version__
from labhub.network import client as network_client
from labhub.network.health import free_disk_bytes

if TYPE_CHECKING:
    from labhub.wiring import Hub

log = logging.getLogger(__name__)

# The text format every Prometheus server reads (prometheus-client's newest content type
# names a format version older servers refuse; the body is the same).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Commit durations, in seconds: a batch on SQLite commits in about a millisecond; an SD
# card's fsync or a PostgreSQL over a slow network can take a second or more.
COMMIT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0, 10.0)

# A job's counts as the scheduler's status gives them: (job id, runs, failures).
JobCounts = Callable[[], Iterable[tuple[str, int, int]]]


def scheduler_job_counts(hub: Hub) -> Iterable[tuple[str, int, int]]:
    """Each job's runs that ended and how many failed, from the scheduler's ``job_runs``
    table (:func:`labhub.scheduler.runs.finished_counts`): every process of the database
    answers the same, whichever of them ran the jobs."""
    from labhub.scheduler import runs

    with hub.engine.connect() as conn:
        counts = runs.finished_counts(conn)
    return [(job, ran, failed) for job, (ran, failed) in sorted(counts.items())]


class HubCollector(Collector):
    """Reads a hub's figures when Prometheus scrapes (see the module docstring)."""

    def __init__(self, hub: Hub, *, job_counts: JobCounts | None = None) -> None:
        # A weak reference: the registry is kept by the hub's entry in _BY_HUB, whose key
        # must not be held alive by its own value.
        self._hub = weakref.ref(hub)
        self._job_counts = job_counts

    @property
    def hub(self) -> Hub:
        hub = self._hub()
        if hub is None:
            raise RuntimeError("the hub of these metrics is gone")
        return hub

    def job_counts(self) -> Iterable[tuple[str, int, int]]:
        if self._job_counts is not None:
            return self._job_counts()
        return scheduler_job_counts(self.hub)

    def describe(self) -> Iterable[Metric]:
        return []  # read at scrape time: nothing to check when registered

    def collect(self) -> Iterator[Metric]:
        if self._hub() is None:
            return
        yield from self._info()
        yield from self._ingest()
        yield from self._mqtt()
        yield from self._guarded("devices", self._devices)
        yield from self._guarded("jobs", self._jobs)
        yield from self._guarded("sync backlog", self._sync)
        yield from self._disk()

    def _guarded(self, what: str, part: Callable[[], list[Metric]]) -> list[Metric]:
        """A part read from the database (or a scheduler): left out when it fails."""
        try:
            return part()
        except SQLAlchemyError as exc:
            log.warning("/metrics: %s left out, the database did not answer: %s", what, exc)
        except Exception:
            log.exception("/metrics: %s left out", what)
        return []

    def _info(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("labhub_info", "This LabHub: its version and role (always 1)",
                                 labels=["version", "role"])
        info.add_metric([__version__, self.hub.settings.role], 1)
        yield info

    def _ingest(self) -> Iterator[Metric]:
        pipeline = self.hub.pipeline
        by_source = pipeline.counters_by_source()
        for key, name, text in (
            ("accepted", "labhub_readings_accepted", "Readings newly stored, by source"),
            ("duplicate", "labhub_readings_duplicate",
             "Readings already stored (a retry or redelivery), stored once, by source"),
            ("rejected", "labhub_readings_rejected",
             "Readings and inputs refused, kept as dead letters, by source"),
            ("failed", "labhub_readings_failed",
             "Readings not stored after every retry (storage failed), by source"),
        ):
            family = CounterMetricFamily(name, text, labels=["source"])
            for source, counts in sorted(by_source.items()):
                family.add_metric([source], counts[key])
            yield family
        counts = pipeline.counters()
        yield GaugeMetricFamily("labhub_ingest_queue_depth",
                                "Readings and dead letters waiting for the ingest writer",
                                value=counts["queued"])
        yield GaugeMetricFamily("labhub_ingest_queue_capacity",
                                "Readings the ingest queue holds before producers wait",
                                value=pipeline.max_queued)
        yield CounterMetricFamily("labhub_ingest_batches",
                                  "Batches the ingest writer wrote (one transaction each)",
                                  value=counts["batches"])

    def _mqtt(self) -> Iterator[Metric]:
        bridge = self.hub.mqtt
        if bridge is None:
            return
        status = bridge.status
        stats = status.stats
        yield GaugeMetricFamily("labhub_mqtt_connected",
                                "1 while the hub is connected to its MQTT broker",
                                value=1 if status.connected else 0)
        for name, text, value in (
            ("labhub_mqtt_received", "Messages the broker delivered to the hub",
             stats.received),
            ("labhub_mqtt_acks", "Acknowledgements (PUBACK) the hub sent, each after its "
             "message's readings were committed", stats.acked),
            ("labhub_mqtt_unacknowledged_failures",
             "Messages whose storage failed: not acknowledged, the broker delivers them again",
             stats.failed),
            ("labhub_mqtt_dropped", "QoS 0 messages dropped while the hub was behind",
             stats.dropped),
        ):
            yield CounterMetricFamily(name, text, value=value)
        outbox = status.outbox
        if outbox is None:
            return
        yield GaugeMetricFamily("labhub_mqtt_outbox_queued",
                                "The hub's own messages waiting in the outbox file (backlog)",
                                value=outbox.queued)
        yield GaugeMetricFamily("labhub_mqtt_outbox_queued_bytes",
                                "Bytes of the messages waiting in the outbox file",
                                value=outbox.queued_bytes)
        yield GaugeMetricFamily("labhub_mqtt_outbox_in_flight",
                                "Outbox messages published, waiting for the broker's PUBACK",
                                value=outbox.in_flight)
        for name, text, value in (
            ("labhub_mqtt_outbox_delivered",
             "Outbox messages the broker acknowledged since the hub started", outbox.delivered),
            ("labhub_mqtt_outbox_refused", "Outbox messages the broker refused for good",
             outbox.refused),
            ("labhub_mqtt_outbox_dropped",
             "Oldest outbox messages dropped because a bound was hit (since the file was made)",
             outbox.dropped),
        ):
            yield CounterMetricFamily(name, text, value=value)

    def _devices(self) -> list[Metric]:
        query = (select(devices.c.kind, devices.c.online, func.count())
                 .group_by(devices.c.kind, devices.c.online))
        with self.hub.engine.connect() as conn:
            rows = conn.execute(query).all()
        online = GaugeMetricFamily("labhub_devices_online",
                                   "Devices the registry marks online, by kind",
                                   labels=["kind"])
        known = GaugeMetricFamily("labhub_devices", "Devices in the registry, by kind",
                                  labels=["kind"])
        by_kind: dict[str, list[int]] = {}
        for kind, is_online, count in rows:
            both = by_kind.setdefault(str(kind), [0, 0])
            both[1] += int(count)
            if is_online:
                both[0] += int(count)
        for kind, (up, total) in sorted(by_kind.items()):
            online.add_metric([kind], up)
            known.add_metric([kind], total)
        return [online, known]

    def _jobs(self) -> list[Metric]:
        runs = CounterMetricFamily("labhub_job_runs", "Runs of each scheduled job",
                                   labels=["job"])
        failures = CounterMetricFamily("labhub_job_failures",
                                       "Failed runs of each scheduled job", labels=["job"])
        found = False
        for job, ran, failed in self.job_counts():
            found = True
            runs.add_metric([job], ran)
            failures.add_metric([job], failed)
        return [runs, failures] if found else []

    def _sync(self) -> list[Metric]:
        if self.hub.settings.role != "hub":
            return []
        found = network_client.status(self.hub.engine)
        backlog = GaugeMetricFamily("labhub_sync_backlog",
                                    "Items of each up stream the central has not acknowledged",
                                    labels=["stream"])
        for stream, count in sorted(found.backlog.items()):
            backlog.add_metric([stream], count)
        out: list[Metric] = [
            backlog,
            GaugeMetricFamily("labhub_sync_member", "1 once the hub has joined a network",
                              value=0 if found.membership is None else 1),
        ]
        m = found.membership
        if m is not None and m.last_contact_at is not None:
            out.append(GaugeMetricFamily(
                "labhub_sync_last_contact_timestamp_seconds",
                "When the last contact with the central succeeded (Unix time)",
                value=m.last_contact_at / 1_000_000))
        return out

    def _disk(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("labhub_data_disk_free_bytes",
                                "Free bytes on the disk of the hub's data directory",
                                value=free_disk_bytes(self.hub.settings.data_dir))


class HubMetrics:
    """A hub's registry: its :class:`HubCollector` and the commit-latency histogram."""

    def __init__(self, hub: Hub, *, job_counts: JobCounts | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.commit_seconds = Histogram(
            "labhub_ingest_commit_seconds",
            "Time the ingest writer took to write and commit one batch",
            buckets=COMMIT_BUCKETS_S, registry=self.registry)
        hub.pipeline.add_commit_observer(self.commit_seconds.observe)
        self.registry.register(HubCollector(hub, job_counts=job_counts))

    def render(self) -> bytes:
        """Every metric in Prometheus's text format."""
        return generate_latest(self.registry)


_BY_HUB: weakref.WeakKeyDictionary[Hub, HubMetrics] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def for_hub(hub: Hub) -> HubMetrics:
    """The hub's metrics, made the first time they are asked for (by the first scrape, or
    by the hub as it starts, so that commit durations are counted from then on)."""
    with _LOCK:
        found = _BY_HUB.get(hub)
        if found is None:
            found = _BY_HUB[hub] = HubMetrics(hub)
        return found


def sample_values(text: str) -> Mapping[str, float]:
    """``{'name{labels}': value}`` of a text exposition (for tests and tools)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


__all__: list[str] = ["CONTENT_TYPE", "HubCollector", "HubMetrics", "JobCounts", "for_hub",
                      "sample_values", "scheduler_job_counts"]
