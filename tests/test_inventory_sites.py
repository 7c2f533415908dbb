"""Inventory sites: the network tree, its checks, subtrees and rollout, on every backend."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from inventory import sites as s
from inventory.errors import (
    ConflictError,
    InvalidTransitionError,
    InvalidValueError,
    NotFoundError,
)
from inventory.history import history_of
from inventory.tables import events, sites

BY = "coordinator@valle"


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(sites)).scalar_one(),
            conn.execute(select(func.count()).select_from(events)).scalar_one(),
        )


@pytest.fixture
def network(engine: Engine) -> Engine:
    """A network with two regions, municipalities and four lab sites (one right under a region)."""
    with engine.begin() as conn:
        s.create_site(conn=conn, code="VL", name="ValleLabs", kind="network", by=BY)
        for code, name in (("VL-N", "Norte"), ("VL-S", "Sur")):
            s.create_site(conn=conn, code=code, name=name, kind="region", parent_code="VL", by=BY)
        s.create_site(conn=conn, code="VL-N-CAL", name="Cali", kind="municipality",
                      parent_code="VL-N", by=BY)
        s.create_site(conn=conn, code="VL-S-BUE", name="Buenaventura", kind="municipality",
                      parent_code="VL-S", by=BY)
        labs: list[tuple[str, str, Any]] = [
            ("VL-LC-001", "VL-N-CAL", "lab_center"),
            ("VL-LP-002", "VL-N", "lab_point"),
            ("VL-LP-003", "VL-S-BUE", "lab_point"),
            ("VL-LS-004", "VL-S-BUE", "lab_spark"),
        ]
        for code, parent, tier in labs:
            s.create_site(conn=conn, code=code, name=f"Lab {code}", kind="site",
                          parent_code=parent, tier=tier, by=BY)
    return engine


def test_a_lab_site_keeps_its_fields_and_writes_site_created(engine: Engine) -> None:
    with engine.begin() as conn:
        s.create_site(conn=conn, code="MIN", name="Ministry pilot", kind="network", by=BY)
        s.create_site(conn=conn, code="MIN-R1", name="Cauca", kind="region",
                      parent_code="MIN", by=BY)
        site = s.create_site(
            conn=conn, code="MIN-LS-7", name=" Lab Spark Timbío ", kind="site",
            parent_code="MIN-R1", tier="lab_spark", rural=True, latitude=2.35,
            longitude=-76.68, institution="IE Timbío", by=BY,
        )
    assert site == s.Site("MIN-LS-7", "Lab Spark Timbío", "site", "MIN-R1", "lab_spark", True,
                          2.35, -76.68, "IE Timbío", "planned", site.rollout_changed_at)
    with engine.connect() as conn:
        assert s.get_site(conn=conn, code="MIN-LS-7") == site
        assert s.get_site(conn=conn, code="MIN").rural is None
        (event,) = history_of(conn=conn, subject="MIN-LS-7")
    assert event.kind == "SiteCreated" and event.by == BY and event.site_code == "MIN-LS-7"
    assert event.at == site.rollout_changed_at
    assert event.to_state is not None
    assert event.to_state["tier"] == "lab_spark" and event.to_state["rural"] is True
    assert event.to_state["parent_code"] == "MIN-R1"


def test_subtree_of_a_region_holds_only_its_own_sites(network: Engine) -> None:
    with network.connect() as conn:
        north = s.list_sites(conn=conn, under="VL-N", kind="site")
        assert [x.code for x in north] == ["VL-LC-001", "VL-LP-002"]
        assert {x.code for x in s.list_sites(conn=conn, under="VL-S")} == {
            "VL-S", "VL-S-BUE", "VL-LP-003", "VL-LS-004"}
        assert len(s.list_sites(conn=conn, under="VL")) == 9
        assert len(s.list_sites(conn=conn)) == 9
        assert [x.code for x in s.list_sites(conn=conn, under="VL-LS-004")] == ["VL-LS-004"]
        assert [x.code for x in s.list_sites(conn=conn, kind="region")] == ["VL-N", "VL-S"]
        with pytest.raises(NotFoundError, match="no site with code 'NOPE'"):
            s.list_sites(conn=conn, under="NOPE")


BAD_SITES: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"code": "X1", "kind": "site", "parent_code": "VL", "tier": "lab_point"},
     InvalidValueError, "site 'X1' cannot be under network 'VL': its parent must be a "
                        "municipality or region"),
    ({"code": "X2", "kind": "region", "parent_code": "VL-N"},
     InvalidValueError, "region 'X2' cannot be under region 'VL-N': its parent must be a network"),
    ({"code": "X3", "kind": "municipality", "parent_code": "VL"},
     InvalidValueError, "must be a region"),
    ({"code": "X4", "kind": "region"}, InvalidValueError, "region 'X4' needs a parent: a network"),
    ({"code": "X5", "kind": "network", "parent_code": "VL"},
     InvalidValueError, "has no parent"),
    ({"code": "X6", "kind": "site", "parent_code": "VL-NOPE", "tier": "lab_point"},
     NotFoundError, "parent 'VL-NOPE' of site 'X6' is not a site"),
    ({"code": "VL-LP-002", "kind": "site", "parent_code": "VL-S", "tier": "lab_point"},
     ConflictError, "site code 'VL-LP-002' is already used by site 'Lab VL-LP-002' under VL-N"),
    ({"code": "X7", "kind": "municipality", "parent_code": "VL-N", "tier": "lab_point"},
     InvalidValueError, "municipality 'X7' is not a lab site: tier belong to lab sites only"),
    ({"code": "X8", "kind": "site", "parent_code": "VL-N"}, InvalidValueError, "needs a tier"),
    ({"code": "X9", "kind": "site", "parent_code": "VL-N", "tier": "lab_moon"},
     InvalidValueError, "'lab_moon' is not one of"),
    ({"code": "X 10", "kind": "network"}, InvalidValueError, "no spaces"),
    ({"code": "", "kind": "network"}, InvalidValueError, "site code cannot be empty"),
    ({"code": "X11", "kind": "site", "parent_code": "VL-N", "tier": "lab_point",
      "latitude": 3.4}, InvalidValueError, "both latitude and longitude"),
    ({"code": "X12", "kind": "site", "parent_code": "VL-N", "tier": "lab_point",
      "latitude": 93.0, "longitude": 0.0}, InvalidValueError, "not in -90..90"),
    ({"code": "X13", "kind": "planet"}, InvalidValueError, "site kind 'planet' is not one of"),
]


@pytest.mark.parametrize(("fields", "error", "message"), BAD_SITES)
def test_a_site_that_does_not_fit_the_tree_is_refused_and_nothing_is_written(
    network: Engine, fields: dict[str, Any], error: type[Exception], message: str
) -> None:
    before = _counts(network)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")), \
            network.begin() as conn:
        s.create_site(conn=conn, name="New", by=BY, **fields)
    assert _counts(network) == before


def test_an_error_rolls_back_the_whole_transaction(network: Engine) -> None:
    before = _counts(network)

    def twice() -> None:
        with network.begin() as conn:
            for _ in range(2):
                s.create_site(conn=conn, code="VL-E", name="Este", kind="region",
                              parent_code="VL", by=BY)

    with pytest.raises(ConflictError, match="site code 'VL-E' is already used by region 'Este'"):
        twice()
    assert _counts(network) == before
    with network.connect() as conn:
        assert s.find_site(conn=conn, code="VL-E") is None


def test_rollout_moves_on_with_its_time_and_an_event(network: Engine) -> None:
    with network.begin() as conn:
        created = s.get_site(conn=conn, code="VL-LP-003")
        site = s.set_rollout_status(conn=conn, code="VL-LP-003", status="installing", by=BY)
        site = s.set_rollout_status(conn=conn, code="VL-LP-003", status="active", by=BY,
                                    note="inaugurated")
    assert site.rollout_status == "active"
    assert created.rollout_changed_at is not None and site.rollout_changed_at is not None
    assert site.rollout_changed_at > created.rollout_changed_at
    with network.connect() as conn:
        log = history_of(conn=conn, subject="VL-LP-003")
    assert [e.kind for e in log] == ["SiteCreated", "SiteRolloutChanged", "SiteRolloutChanged"]
    assert log[2].from_state == {"rollout_status": "installing"}
    assert log[2].to_state == {"rollout_status": "active"}
    assert log[2].note == "inaugurated" and log[2].at == site.rollout_changed_at


def test_rollout_refuses_no_change_a_closed_site_and_a_region(network: Engine) -> None:
    with network.begin() as conn:
        with pytest.raises(InvalidTransitionError, match="site 'VL-LP-002' is already planned"):
            s.set_rollout_status(conn=conn, code="VL-LP-002", status="planned", by=BY)
        s.set_rollout_status(conn=conn, code="VL-LP-002", status="closed", by=BY)
        with pytest.raises(InvalidTransitionError, match="closed site cannot be active"):
            s.set_rollout_status(conn=conn, code="VL-LP-002", status="active", by=BY)
        with pytest.raises(InvalidValueError, match="region 'VL-N' is not a lab site"):
            s.set_rollout_status(conn=conn, code="VL-N", status="active", by=BY)
        with pytest.raises(NotFoundError, match="no site with code 'VL-ZZ'"):
            s.set_rollout_status(conn=conn, code="VL-ZZ", status="active", by=BY)
