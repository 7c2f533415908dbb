"""A small lab network and the checks the transfer, rotation and audit tests share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select

from inventory import catalog, sites
from inventory.tables import metadata

BY = "Ana (coordinadora)"


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
