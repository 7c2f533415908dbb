"""A lab network with equipment for the equipment pages' tests, on top of
:func:`web_world.make_world` (VL > VL-R1 > LAB-A, the hub's own site, and LAB-B, with a
teacher at LAB-A and a class):

- a coordinator, Carla, with a password, for the region VL-R1 (both labs);
- a mobile lab VL-ML-1 under VL-R1;
- models: a robotics kit, an Arduino Uno, a 3D printer (serialized), an ultrasonic
  sensor and jumper wires (counted);
- at LAB-A: kits KIT-1 (holding UNO-1, 1 ultrasonic sensor and 40 jumper wires) and KIT-2
  (empty list), boards UNO-2 to UNO-5, printer PRN-1; at LAB-B: UNO-9;
- LAB-A's stock: 100 jumper wires (reorder at 60) and 3 ultrasonic sensors (reorder at 5:
  low).

Each part's tests add what else they need (a loan, an audit, a transfer).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from web_browser import ServedHub, served_hub
from web_world import BY, WebWorld, make_world, password_hash

from inventory import assets, catalog, kits, sites, stock
from labhub import db
from labhub.access import accounts
from labhub.access.permissions import Grant, Role

COORDINATOR = "Carla Gómez"
COORDINATOR_PASSWORD = "otra clave de prueba"
KIT_PARTS = {"HC-SR04": 1, "JMP": 40}


@dataclass(frozen=True)
class EquipmentWorld:
    web: WebWorld


def make_equipment_world(engine: Engine) -> EquipmentWorld:
    """The lab of :func:`web_world.make_world` with its equipment, on ``engine``."""
    web = make_world(engine)
    with engine.begin() as conn:
        accounts.create_user(
            conn, name=COORDINATOR,
            password_hash=password_hash(COORDINATOR_PASSWORD),
            grants_given=[Grant(Role.COORDINATOR, "VL-R1")])
        sites.create_site(conn=conn, code="VL-ML-1", name="Laboratorio móvil 1", kind="site",
                          parent_code="VL-R1", tier="mobile_lab", by=BY)
        catalog.create_model(conn=conn, code="KIT-ROBOT", name="Kit de robótica",
                             category="robotics_kit", by=BY)
        catalog.create_model(conn=conn, code="UNO", name="Arduino Uno R3",
                             category="microcontroller_board", by=BY)
        catalog.create_model(conn=conn, code="PRN-3D", name="Impresora 3D",
                             category="3d_printer", by=BY)
        for code, name in (("HC-SR04", "Sensor ultrasónico"), ("JMP", "Cable de puente")):
            catalog.create_model(conn=conn, code=code, name=name, category="consumable"
                                 if code == "JMP" else "sensor_module",
                                 tracking="counted", unit="pcs", by=BY)
        for tag, model, site in (("KIT-1", "KIT-ROBOT", "LAB-A"), ("KIT-2", "KIT-ROBOT", "LAB-A"),
                                 ("UNO-1", "UNO", "LAB-A"), ("UNO-2", "UNO", "LAB-A"),
                                 ("UNO-3", "UNO", "LAB-A"), ("UNO-4", "UNO", "LAB-A"),
                                 ("UNO-5", "UNO", "LAB-A"), ("PRN-1", "PRN-3D", "LAB-A"),
                                 ("UNO-9", "UNO", "LAB-B")):
            assets.register_asset(conn=conn, tag=tag, model_code=model, site_code=site, by=BY)
        kits.define_contents(conn=conn, kit_tag="KIT-1", assets=["UNO-1"], parts=KIT_PARTS,
                             by=BY)
        for code, quantity, threshold in (("JMP", 100, 60), ("HC-SR04", 3, 5)):
            stock.receive(conn=conn, site_code="LAB-A", model_code=code, quantity=quantity,
                          by=BY)
            stock.set_reorder_threshold(conn=conn, site_code="LAB-A", model_code=code,
                                        threshold=threshold, by=BY)
    return EquipmentWorld(web=web)


def equipment_world_at(database_url: str) -> EquipmentWorld:
    """:func:`make_equipment_world` on the database a hub process will serve (a new SQLite
    file is migrated first, as the hub would at its start)."""
    engine = db.make_engine(database_url)
    try:
        if engine.dialect.name == "sqlite":
            db.upgrade(engine)
        return make_equipment_world(engine)
    finally:
        engine.dispose()


@contextmanager
def equipment_hub(tmp_path: Path, database_url: str) -> Iterator[ServedHub]:
    """``labhub serve`` on a database holding :func:`make_equipment_world`'s lab."""
    equipment_world_at(database_url)
    with served_hub(tmp_path, database_url) as served:
        yield served
