"""A small lab network and the checks the transfer, rotation and audit tests share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select

from inventory import assets, catalog, loans, maintenance, sites
from inventory.tables import metadata
from inventory.values import now_us

BY = "Ana (coordinadora)"
WEEK_US = 7 * 86_400_000_000


def put_in_status(conn: Connection, tag: str, status: str, by: str = BY) -> None:
    """Give an asset ``status`` the way a lab does: ``on_loan`` by lending it to a group,
    ``in_repair`` by starting a repair (``set_status`` refuses both), any other by hand."""
    if status == "on_loan":
        loans.check_out(conn=conn, asset_tags=[tag], borrower="Grupo 7B",
                        borrower_kind="group", due_at=now_us() + WEEK_US, by=by)
    elif status == "in_repair":
        maintenance.start_repair(conn=conn, tag=tag, fault="no enciende", by=by)
    else:
        assets.set_status(conn=conn, tag=tag, status=status, by=by)  # type: ignore[arg-type]


@contextmanager
def refused(engine: Engine, error: type[Exception], match: str) -> Iterator[Connection]:
    """A transaction in which ``error`` must be raised (matching ``match``); it rolls back."""
    with pytest.raises(error, match=match), engine.begin() as conn:
        yield conn


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every inventory table: what a refused change must leave as it was."""
    with engine.connect() as conn:
        return {
            t.name: sorted(tuple(r) for r in conn.execute(select(t)))
            for t in metadata.sorted_tables
        }


def network(conn: Any) -> None:
    """ValleLabs: a Lab Center and a Lab Point in Cali, a Lab Point in Cauca, a mobile lab,
    boards (serialized) and jumper wires (counted)."""
    sites.create_site(conn=conn, code="VL", name="ValleLabs", kind="network", by=BY)
    for r in ("VL-R1", "VL-R2"):
        sites.create_site(conn=conn, code=r, name=r, kind="region", parent_code="VL", by=BY)
    sites.create_site(conn=conn, code="VL-M-CALI", name="Cali", kind="municipality",
                      parent_code="VL-R1", by=BY)
    for code, parent, tier in (("VL-LC-01", "VL-M-CALI", "lab_center"),
                               ("VL-LP-014", "VL-M-CALI", "lab_point"),
                               ("VL-LP-020", "VL-R2", "lab_point"),
                               ("VL-ML-1", "VL-R2", "mobile_lab")):
        sites.create_site(conn=conn, code=code, name=f"Lab {code}", kind="site",
                          parent_code=parent, tier=tier, by=BY)  # type: ignore[arg-type]
    catalog.create_model(conn=conn, code="KIT-ROBOT", name="Robotics kit",
                         category="robotics_kit", by=BY)
    catalog.create_model(conn=conn, code="JMP-WIRE", name="Jumper wire", category="consumable",
                         tracking="counted", unit="pcs", by=BY)
