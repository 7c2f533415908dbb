"""Two hubs and a central, each a real ``labhub serve`` process (tests/network_procs.py),
enrolled and syncing: readings, devices, runs and notes, and inventory events up; the
site tree and the catalog down; the central lists both labs online."""

from __future__ import annotations

import time
import uuid

from network_procs import (
    LAB_A,
    LAB_B,
    MODEL,
    NETWORK,
    REGION,
    Network,
    assert_readings_exactly_once,
    event_uuids,
    make_inventory_events,
    needs,
    net_fixture,  # noqa: F401 (the fixture "net")
    net_templates_fixture,  # noqa: F401 (the fixture "net_templates")
    plug_device,
    upload_readings,
    write_readings,
)

US = 1_000_000


def test_the_processes_start_answer_and_stop(net: Network) -> None:
    """The harness itself: a central on PostgreSQL with its tree, a hub on SQLite, both
    answering; each is stopped by the fixture (the next test's `pgrep` finds none)."""
    central = net.central()
    hub = net.hub("hub-a", LAB_A, join=False)
    sites = {s["code"]: s for s in central.get("/api/v1/sites", params={"under": NETWORK})}
    assert {NETWORK, REGION, LAB_A, LAB_B} <= set(sites)
    assert sites[LAB_B]["rural"] is True
    assert central.get("/api/v1/health")["database"]
    assert hub.get("/api/v1/health")["database"]
    assert central.popen is not None and hub.popen is not None
    pids = [central.popen.pid, hub.popen.pid]
    hub.stop()
    central.stop()
    for pid in pids:
        try:
            import os

            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"process {pid} still runs after stop()")


@needs("central", "client", "readings", "records", "inventory")
def test_two_hubs_sync_everything_up_and_the_tree_down(net: Network) -> None:
    central = net.central()
    a = net.hub("hub-a", LAB_A)
    b = net.hub("hub-b", LAB_B)

    # The first contact brings the tree and the catalog down to each hub.
    net.sync(a)
    net.sync(b)
    for hub in (a, b):
        codes = {s["code"] for s in hub.get("/api/v1/sites")}
        assert {NETWORK, REGION, LAB_A, LAB_B} <= codes, (hub.name, codes)
        assert hub.get(f"/api/v1/models/{MODEL}")["code"] == MODEL

    # Each lab works: readings from a device through the API (the registry learns the
    # device) and straight from the writer, a run with a note, assets registered.
    now = time.time_ns() // 1000
    for hub in (a, b):  # the same device id in two labs: two devices on the central
        plug_device(hub, "estacion-1")
        upload_readings(hub, "estacion-1", "temp",
                        [(f"2026-12-01T10:00:{s:02d}Z", 20 + s / 10) for s in range(30)])
    write_readings(a, "estacion-2", ["A0", "A1"], start_us=now - 3600 * US, step_us=US,
                   count=2000)
    run_id = str(uuid.uuid4())
    a.post("/api/v1/runs", {"id": run_id, "title": "Sol y sombra", "group": "7B",
                            "site": LAB_A,
                            "channels": [{"device": "estacion-1", "channel": "temp"}]},
           expect=(200, 201))
    a.post(f"/api/v1/runs/{run_id}/notes", {"text": "sensor a la sombra"},
           expect=(200, 201))
    tags_a = make_inventory_events(a, 25, prefix="E")
    tags_b = make_inventory_events(b, 10, prefix="E")

    net.sync(a)
    net.sync(b)

    assert assert_readings_exactly_once(a, central, LAB_A) == 30 + 4000
    assert assert_readings_exactly_once(b, central, LAB_B) == 30
    central_events = set(event_uuids(central))
    for hub, site, tags in ((a, LAB_A, tags_a), (b, LAB_B, tags_b)):
        mine = set(event_uuids(hub, site))
        assert mine <= central_events, f"{len(mine - central_events)} events of {site} missing"
        listed = {x["tag"] for x in central.get(
            "/api/v1/assets", params={"site": site, "limit": 500})["items"]}
        assert set(tags) <= listed
    devices = {d["id"] for d in central.get("/api/v1/devices")}
    assert {f"{LAB_A}/estacion-1", f"{LAB_B}/estacion-1"} <= devices
    run = central.get(f"/api/v1/runs/{run_id}")
    assert [n["text"] for n in run["notes"]] == ["sensor a la sombra"]

    # The central lists both labs' hubs, in contact just now.
    by_site = {h["site"]: h for h in central.get("/api/v1/network/hubs")}
    assert {LAB_A, LAB_B} <= set(by_site)
    for site in (LAB_A, LAB_B):
        assert by_site[site]["last_contact_at"] is not None, by_site[site]
        assert by_site[site]["state"] == "ok", by_site[site]
    # ... and the ministry's view shows both labs with their hub online, and their use.
    rollout = {r["lab"]["code"]: r for r in central.get("/api/v1/network/rollout")}
    assert {LAB_A, LAB_B} <= set(rollout)
    for site in (LAB_A, LAB_B):
        assert rollout[site]["hub"] == "online", rollout[site]
    use = {r["lab"]["code"]: r for r in central.get("/api/v1/network/use")}
    assert all(use[site]["devices_active"] >= 1 for site in (LAB_A, LAB_B)), use
