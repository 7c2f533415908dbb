"""A small lab network for the inventory movement tests: two lab sites, a kit with a board
and counted parts, and a count of everything that a refused change must leave as it was."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, func, select

from inventory import assets, catalog, kits, sites, stock
from inventory.tables import metadata

BY = "Ana (coordinadora)"
DAY_US = 86_400_000_000


def build(conn: Connection, p: str = "") -> None:
    """Network VL > region R1 > lab sites LC-1 (Lab Center) and LP-2 (Lab Point); models:
    a robotics kit, an Arduino Uno, an ultrasonic sensor (counted), jumper wires and LEDs
    (counted). Kit KIT-1 at LC-1 holds board UNO-1, 1 ultrasonic sensor, 40 jumper wires
    and 10 LEDs; LC-1 has 100 jumper wires, 50 LEDs and 5 sensors in stock, thresholds
    60, 20 and 5. Loose boards UNO-2, UNO-3 at LC-1, UNO-9 at LP-2. ``p`` prefixes every
    key (property tests share one database across examples)."""
    sites.create_site(conn=conn, code=f"{p}VL", name="ValleLabs", kind="network", by=BY)
    sites.create_site(conn=conn, code=f"{p}R1", name="Valle", kind="region",
                      parent_code=f"{p}VL", by=BY)
    for code, tier in (("LC-1", "lab_center"), ("LP-2", "lab_point")):
        sites.create_site(conn=conn, code=f"{p}{code}", name=code, kind="site",
                          parent_code=f"{p}R1", tier=tier, by=BY)  # type: ignore[arg-type]
    catalog.create_model(conn=conn, code=f"{p}KIT", name="Robotics kit",
                         category="robotics_kit", by=BY)
    catalog.create_model(conn=conn, code=f"{p}UNO", name="Arduino Uno R3",
                         category="microcontroller_board", by=BY)
    for code, name, category in (("HC-SR04", "Ultrasonic sensor", "sensor_module"),
                                 ("JMP", "Jumper wire", "consumable"),
                                 ("LED", "LED 5 mm", "consumable")):
        catalog.create_model(conn=conn, code=f"{p}{code}", name=name, category=category,  # type: ignore[arg-type]
                             tracking="counted", unit="pcs", by=BY)
    assets.register_asset(conn=conn, tag=f"{p}KIT-1", model_code=f"{p}KIT",
                          site_code=f"{p}LC-1", by=BY)
    for tag, site in (("UNO-1", "LC-1"), ("UNO-2", "LC-1"), ("UNO-3", "LC-1"),
                      ("UNO-9", "LP-2")):
        assets.register_asset(conn=conn, tag=f"{p}{tag}", model_code=f"{p}UNO",
                              site_code=f"{p}{site}", by=BY)
    kits.define_contents(conn=conn, kit_tag=f"{p}KIT-1", assets=[f"{p}UNO-1"],
                         parts={f"{p}HC-SR04": 1, f"{p}JMP": 40, f"{p}LED": 10}, by=BY)
    for code, quantity, threshold in (("JMP", 100, 60), ("LED", 50, 20), ("HC-SR04", 5, 5)):
        stock.receive(conn=conn, site_code=f"{p}LC-1", model_code=f"{p}{code}",
                      quantity=quantity, by=BY)
        stock.set_reorder_threshold(conn=conn, site_code=f"{p}LC-1", model_code=f"{p}{code}",
                                    threshold=threshold, by=BY)


def snapshot(engine: Engine) -> dict[str, Any]:
    """Every inventory table's rows, sorted: what a refused change must leave as it was."""
    with engine.connect() as conn:
        return {
            t.name: sorted(tuple(str(v) for v in r) for r in conn.execute(select(t)))
            for t in metadata.sorted_tables
        }


def count(conn: Connection, table: Any) -> int:
    """Rows in ``table``."""
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
