"""The network's faults, each on real processes (tests/network_procs.py): a central, hubs,
PostgreSQL, and a proxy of our own between each hub and the central
(tests/sync_proxy.py) that cuts, delays, duplicates and refuses.

Every test ends with the same check: what the hub holds is on the central exactly once
(readings per series: count, distinct times and sums; inventory events by UUID).
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest
from network_procs import (
    LAB_A,
    LAB_B,
    Hub,
    LabHubProcess,
    Network,
    assert_readings_exactly_once,
    central_scalar,
    event_uuids,
    make_inventory_events,
    needs,
    net_fixture,  # noqa: F401 (the fixture "net")
    net_templates_fixture,  # noqa: F401 (the fixture "net_templates")
    upload_bytes,
    upload_readings,
    write_readings,
)
from waiting import wait_for

US = 1_000_000
DAY_US = 86_400 * US
WEEK_READINGS = 1_000_000  # the week offline: one lab, 1M readings
WEEK_EVENTS = 5_000  # and 5k inventory events
WEEK_CHANNELS = ("temp", "hum", "luz", "co2")


def _now_us() -> int:
    return time.time_ns() // 1000


def _joined_and_synced(net: Network, name: str, site: str, **settings: object) -> Hub:
    """A hub of lab ``site``, joined, that has made its first contact (the tree and the
    catalog came down, so its lab and the central's model are there)."""
    hub = net.hub(name, site, **settings)
    net.sync_all(hub, timeout=60, what=f"{name}'s first contact")
    return hub


def _events_on_central(net: Network, hub: LabHubProcess, site: str) -> None:
    """Every inventory event of the hub's lab is on the central, once (by UUID)."""
    mine = set(event_uuids(hub, site))
    there = event_uuids(net.central_proc, site)
    assert len(there) == len(set(there)), "an event stored twice on the central"
    missing = mine - set(there)
    assert not missing, f"{len(missing)} of {len(mine)} events of {site} not on the central"


def _assets(proc: LabHubProcess, tag: str) -> dict[str, object]:
    return dict(proc.get(f"/api/v1/assets/by-tag/{tag}"))


@pytest.mark.timeout(900)
@needs("central", "client", "readings", "inventory")
def test_a_week_offline_with_a_million_readings_syncs_exactly_once(net: Network) -> None:
    """A hub offline for 7 days (its link refused) takes 1M readings and 5k inventory
    events, then syncs all of it: every reading and event once on the central."""
    net.central()
    hub = _joined_and_synced(net, "hub-a", LAB_A, network_batch_bytes=1024 * 1024)
    assert hub.proxy is not None
    hub.proxy.down()
    started = time.monotonic()
    per_channel = WEEK_READINGS // len(WEEK_CHANNELS)
    week_start = _now_us() - 7 * DAY_US
    assert write_readings(hub, "estacion-1", WEEK_CHANNELS, start_us=week_start,
                          step_us=7 * DAY_US // per_channel, count=per_channel) \
        == WEEK_READINGS
    tags = make_inventory_events(hub, WEEK_EVENTS, prefix="W")
    assert len(tags) == WEEK_EVENTS
    made_s = time.monotonic() - started

    hub.proxy.up()
    started = time.monotonic()
    contacts = net.sync_all(hub, timeout=600, what="the week's sync")
    took_s = time.monotonic() - started
    assert assert_readings_exactly_once(hub, net.central_proc, LAB_A) == WEEK_READINGS
    _events_on_central(net, hub, LAB_A)
    print(f"week offline: {WEEK_READINGS} readings and {WEEK_EVENTS} events made in "
          f"{made_s:.1f} s; synced in {took_s:.1f} s over {contacts} contacts, "
          f"{hub.proxy.bytes_up} bytes up ({hub.proxy.bytes_up / WEEK_READINGS:.2f} per "
          f"reading, events included), {hub.proxy.bytes_down} down")


@needs("central", "client", "readings", "inventory")
def test_a_hundred_cuts_at_random_offsets_lose_and_repeat_nothing(net: Network) -> None:
    """The link is cut 100 times at random bytes (seeded) while the hub syncs, in both
    directions: a cut request, and a cut answer to a batch the central already applied.
    Everything arrives, once."""
    net.central()
    # Cuts in a row come often here (a cut GET after a cut PUT): the hub's pause after
    # each, doubled each time in a row, would take most of the test at its default.
    hub = _joined_and_synced(net, "hub-a", LAB_A, network_batch_bytes=16 * 1024,
                             network_cut_pause_ms=10)
    proxy = hub.proxy
    assert proxy is not None
    rng = random.Random(15)
    start = _now_us() - DAY_US
    write_readings(hub, "estacion-1", ("temp", "hum"), start_us=start, step_us=US,
                   count=50_000, noise_seed=rng.randrange(1 << 30))
    make_inventory_events(hub, 300, prefix="C")
    size = upload_bytes(hub, 16 * 1024)
    up_cuts = proxy.cut_randomly(70, span=int(size * 0.9), seed=rng.randrange(1 << 30))
    # Answers are small: 30 cuts among the first answers of the batches' uploads.
    answers_span = max(300, 40 * 30 * (1 + size // (16 * 1024)) // 10)
    down_cuts = proxy.cut_randomly(30, span=answers_span, seed=rng.randrange(1 << 30),
                                   direction="down")
    extra = 0
    deadline = time.monotonic() + 150
    while True:
        net.sync_all(hub, timeout=max(1.0, deadline - time.monotonic()),
                     what=f"a sync through {proxy.cuts_done} of 100 cuts")
        if proxy.pending_cuts("up") == 0 and proxy.pending_cuts("down") == 0:
            break
        # Cuts left over: the data went through in fewer bytes than guessed. More comes
        # in, as it would in a lab, until every cut has hit a sync.
        extra += 1
        write_readings(hub, "estacion-2", ("temp",), start_us=start + extra * DAY_US,
                       step_us=US, count=5_000)
    assert proxy.cuts_done == 100, (proxy.cuts_done, up_cuts[:3], down_cuts[:3])
    assert assert_readings_exactly_once(hub, net.central_proc, LAB_A) >= 100_000
    _events_on_central(net, hub, LAB_A)
    print(f"100 cuts: {size} bytes of sections, {proxy.bytes_up} up and "
          f"{proxy.bytes_down} down on the wire, {proxy.connections} connections, "
          f"{extra} more lots of readings")


@needs("central", "client", "readings", "inventory")
def test_every_request_twice_stores_everything_once(net: Network) -> None:
    """The proxy sends every request of the hub twice to the central (hello, each piece
    of each batch, down) and answers the hub with the second answer, the replay's: the
    central stores each reading and event once, and the hub goes on from what it hears."""
    central = net.central()
    hub = _joined_and_synced(net, "hub-a", LAB_A, network_batch_bytes=8 * 1024)
    assert hub.proxy is not None
    write_readings(hub, "estacion-1", ("temp", "hum"), start_us=_now_us() - DAY_US,
                   step_us=US, count=20_000)
    make_inventory_events(hub, 100, prefix="R")
    hub.proxy.duplicate = True
    hub.proxy.answer = "second"
    net.sync_all(hub, timeout=90, what="a sync with every request twice")
    assert hub.proxy.requests > 2
    assert assert_readings_exactly_once(hub, central, LAB_A) == 40_000
    _events_on_central(net, hub, LAB_A)


@needs("central", "client", "readings", "inventory")
def test_the_central_down_for_a_day(net: Network) -> None:
    """The central refuses every connection for a day of the lab's readings: the hub
    takes readings and inventory work as ever, its contacts fail and back off (each wait
    longer, up to network_sync_every_s), and once the central is back its own sync
    thread catches up, with no contact asked for."""
    central = net.central()
    hub = _joined_and_synced(net, "hub-a", LAB_A)
    assert hub.proxy is not None
    hub.proxy.down()
    day_start = _now_us() - DAY_US
    write_readings(hub, "estacion-1", ("temp", "hum"), start_us=day_start, step_us=10 * US,
                   count=8640)  # a day at one reading every 10 s
    stored = upload_readings(hub, "estacion-api", "temp",
                             [("2026-12-01T10:00:00Z", 21.5), ("2026-12-01T10:00:10Z", 21.6)])
    assert stored["accepted"] == 2, stored
    make_inventory_events(hub, 40, prefix="D")
    refused = net.sync(hub, expect=502)
    assert "refused" in refused["detail"].lower() or "connect" in refused["detail"].lower()
    assert net.status(hub)["last_error"]

    def failures_in_a_row() -> int:
        found = re.findall(r"contact with the central failed \((\d+) in a row",
                           hub.log.read_text(errors="replace"))
        return max((int(n) for n in found), default=0)

    wait_for(lambda: failures_in_a_row() >= 3, 40, "three failed contacts in a row",
             state=lambda: hub.log_tail(10))
    waits = [float(w) for w in re.findall(r"in a row; next try in (\d+) s",
                                          hub.log.read_text(errors="replace"))]
    assert all(w <= 5 for w in waits), waits  # capped at network_sync_every_s
    assert central_scalar(central, "SELECT count(*) FROM series WHERE device LIKE :p",
                          p=f"{LAB_A}/estacion-1") == 0

    hub.proxy.up()
    wait_for(lambda: _all_there(hub, central), 60, "the hub's own thread to catch up",
             state=lambda: net.status(hub))
    assert assert_readings_exactly_once(hub, central, LAB_A) == 2 * 8640 + 2
    _events_on_central(net, hub, LAB_A)


def _all_there(hub: LabHubProcess, central: LabHubProcess) -> bool:
    try:
        assert_readings_exactly_once(hub, central, LAB_A)
        return set(event_uuids(hub, LAB_A)) <= set(event_uuids(central, LAB_A))
    except AssertionError:
        return False


@needs("central", "client", "readings", "inventory")
def test_the_central_restored_from_the_day_befores_backup(net: Network,
                                                          tmp_path: Path) -> None:
    """The central is restored from a pg_dump taken before the hub's last syncs: its
    positions for the hub went back, so the hub sends again what it lost, once."""
    central = net.central()
    hub = _joined_and_synced(net, "hub-a", LAB_A)
    yesterday = _now_us() - 2 * DAY_US
    write_readings(hub, "estacion-1", ("temp",), start_us=yesterday, step_us=US, count=5000)
    make_inventory_events(hub, 50, prefix="Y")
    net.sync_all(hub, timeout=60, what="the day before's sync")
    backup = tmp_path / "central.dump"
    net.backup_central(backup)
    before = assert_readings_exactly_once(hub, central, LAB_A)

    write_readings(hub, "estacion-1", ("temp",), start_us=yesterday + DAY_US, step_us=US,
                   count=5000)
    write_readings(hub, "estacion-2", ("hum",), start_us=yesterday + DAY_US, step_us=US,
                   count=3000)
    make_inventory_events(hub, 50, prefix="T")
    net.sync_all(hub, timeout=60, what="today's sync")
    assert assert_readings_exactly_once(hub, central, LAB_A) == before + 8000

    net.restore_central(backup)
    assert central_scalar(
        central, "SELECT count(*) FROM series s JOIN readings r ON r.series_id = s.id "
        "WHERE s.device LIKE :p", p=f"{LAB_A}/%") == before  # today's are gone
    net.sync_all(hub, timeout=60, what="the sync after the restore")
    assert assert_readings_exactly_once(hub, central, LAB_A) == before + 8000
    _events_on_central(net, hub, LAB_A)


@needs("central", "client", "readings", "clocks")
def test_a_hub_clock_three_days_wrong_is_flagged_then_corrected(net: Network) -> None:
    """A hub whose clock is 3 days behind (libfaketime in its process): its offset is
    measured at the hello, the central flags its readings, and a coordinator's clock
    correction moves them to the right time and clears the flag."""
    from sensors.storage import FLAG_CLOCK

    central = net.central()
    hub = net.hub("hub-a", LAB_A, faketime="-3d")
    net.sync_all(hub, timeout=60, what="the first contact")
    offset_ms = net.status(hub)["clock_offset_ms"]
    assert abs(offset_ms + 3 * 86_400_000) < 60_000, offset_ms
    # Readings stamped by the hub's own clock (the API's arrival time, 3 days behind).
    for n in range(20):
        hub.post("/api/v1/readings", {"device": "estacion-1", "site": LAB_A,
                                      "readings": [{"channel": "temp", "value": 20 + n}]})
    net.sync_all(hub, timeout=60, what="the wrong clock's readings")
    assert_readings_exactly_once(hub, central, LAB_A)

    def readings() -> list[tuple[int, int]]:
        engine = central.engine()
        try:
            from sqlalchemy import text

            with engine.connect() as conn:
                return [(int(r[0]), int(r[1])) for r in conn.execute(text(
                    "SELECT r.ts, r.flags FROM readings r JOIN series s ON "
                    "s.id = r.series_id WHERE s.device = :d ORDER BY r.ts"),
                    {"d": f"{LAB_A}/estacion-1"})]
        finally:
            engine.dispose()

    flagged = readings()
    assert len(flagged) == 20 and all(f & FLAG_CLOCK for _, f in flagged), flagged[:3]
    assert flagged[-1][0] < _now_us() - 2 * DAY_US  # stored at the hub's wrong times
    lo, hi = flagged[0][0], flagged[-1][0] + 1
    from labhub.api.common import iso

    central.post(f"/api/v1/network/sites/{LAB_A}/clock-corrections",
                 {"from": iso(lo), "to": iso(hi), "shift_s": 3 * 86_400}, expect=201)
    fixed = readings()
    assert [ts for ts, _ in fixed] == [ts + 3 * DAY_US for ts, _ in flagged]
    assert not any(f & FLAG_CLOCK for _, f in fixed)
    assert abs(fixed[-1][0] - _now_us()) < 10 * 60 * US


def _transfer(proc: LabHubProcess, tags: list[str], to_site: str) -> str:
    draft = proc.post("/api/v1/transfers", {"from_site": proc_site(proc), "to_site": to_site,
                                            "tags": tags}, expect=201)
    shipped = proc.post(f"/api/v1/transfers/{draft['id']}/ship",
                        {"carrier": "Luis (conductor)", "version": draft["version"]})
    assert shipped["status"] == "shipped"
    return str(draft["id"])


def proc_site(proc: LabHubProcess) -> str:
    return str(getattr(proc, "site", ""))


def _receive(proc: LabHubProcess, transfer_id: str, tags: list[str]) -> None:
    for tag in tags:
        proc.post(f"/api/v1/transfers/{transfer_id}/scans",
                  {"tag": tag, "site": proc_site(proc)})
    proc.post(f"/api/v1/transfers/{transfer_id}/receive",
              {"site": proc_site(proc), "missing_as": "lost"})


@needs("central", "client", "inventory")
def test_a_transfer_while_both_hubs_are_offline_at_different_times(net: Network) -> None:
    """Lab A ships two assets to lab B and goes offline; B, online then, takes the
    transfer down (in transit on B and the central), receives it and goes offline; A
    comes back and learns the outcome: the assets are B's, on every side."""
    central = net.central()
    a = _joined_and_synced(net, "hub-a", LAB_A)
    b = _joined_and_synced(net, "hub-b", LAB_B)
    assert a.proxy is not None and b.proxy is not None
    tags = make_inventory_events(a, 2, prefix="T")
    b.proxy.down()  # B offline while A ships
    transfer_id = _transfer(a, tags, LAB_B)
    net.sync_all(a, timeout=60, what="A's shipment going up")
    a.proxy.down()  # A offline from here
    assert {_assets(central, t)["status"] for t in tags} == {"in_transit"}

    b.proxy.up()
    net.sync_all(b, timeout=60, what="the transfer coming down to B")
    assert b.get(f"/api/v1/transfers/{transfer_id}")["status"] == "shipped"
    assert {_assets(b, t)["status"] for t in tags} == {"in_transit"}
    _receive(b, transfer_id, tags)
    net.sync_all(b, timeout=60, what="B's receipt going up")
    b.proxy.down()
    for tag in tags:
        on_central = _assets(central, tag)
        assert (on_central["site"] if "site" in on_central else on_central["site_code"],
                on_central["status"]) == (LAB_B, "available"), on_central
    assert central.get(f"/api/v1/transfers/{transfer_id}")["status"] == "received"

    a.proxy.up()
    net.sync_all(a, timeout=60, what="the outcome coming down to A")
    for tag in tags:
        on_a = _assets(a, tag)
        assert (on_a.get("site", on_a.get("site_code")), on_a["status"]) == (
            LAB_B, "available"), on_a
    assert a.get(f"/api/v1/transfers/{transfer_id}")["status"] == "received"
    _events_on_central(net, a, LAB_A)
    _events_on_central(net, b, LAB_B)


@needs("central", "client", "inventory", "conflicts")
def test_two_hubs_edit_the_same_asset_while_offline(net: Network) -> None:
    """Lab A ships an asset to lab B; B receives it and marks it broken while A, offline
    and not knowing, edits its notes. When both have synced, the owner's version (B's)
    is the central's and A's; A's edit is listed as a conflict, settled by the rule."""
    central = net.central()
    a = _joined_and_synced(net, "hub-a", LAB_A)
    b = _joined_and_synced(net, "hub-b", LAB_B)
    assert a.proxy is not None and b.proxy is not None
    [tag] = make_inventory_events(a, 1, prefix="X")
    transfer_id = _transfer(a, [tag], LAB_B)
    net.sync_all(a, timeout=60, what="A's shipment going up")
    net.sync_all(b, timeout=60, what="the transfer coming down to B")
    a.proxy.down()
    b.proxy.down()
    _receive(b, transfer_id, [tag])
    on_b = b.request("GET", f"/api/v1/assets/by-tag/{tag}")
    b.request("PATCH", f"/api/v1/assets/by-tag/{tag}", json={"condition": "broken"},
              headers={"If-Match": on_b.headers["ETag"]})
    on_a = a.request("GET", f"/api/v1/assets/by-tag/{tag}")
    a.request("PATCH", f"/api/v1/assets/by-tag/{tag}", json={"notes": "revisado en A"},
              headers={"If-Match": on_a.headers["ETag"]})

    b.proxy.up()
    net.sync_all(b, timeout=60, what="B's edit going up")
    a.proxy.up()
    net.sync_all(a, timeout=60, what="A's edit going up")
    net.sync_all(a, timeout=60, what="the outcome coming down to A")
    for proc in (central, a, b):
        asset = _assets(proc, tag)
        assert asset["condition"] == "broken", (proc.name, asset)
        assert asset.get("notes") != "revisado en A", (proc.name, asset)
    conflicts = central.get("/api/v1/network/conflicts")["items"]
    mine = [c for c in conflicts if c["key"] == tag]
    assert mine, conflicts
    assert any("revisado en A" in str(c["set_aside"]) for c in mine), mine
    assert all(c["rule"] for c in mine)
