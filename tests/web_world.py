"""A small lab for the web pages' tests: VL > VL-R1 > LAB-A (the hub's own site), LAB-B; a teacher
with a password at LAB-A; a class at LAB-A with a student who has a PIN and a QR card;
two devices at LAB-A (one online, one offline) and one at LAB-B."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pytest
from sqlalchemy import Engine

from firmware_bridge import registry
from inventory import sites
from labhub.access import accounts, classes, passwords
from labhub.access.permissions import Grant, Role

BY = "Ana (coordinadora)"
TEACHER = "Ana Pérez"
TEACHER_PASSWORD = "una clave de prueba"
STUDENT = "Sofía"
STUDENT_PIN = "4821"
CLASS_NAME = "7°B Ciencias"


@cache
def password_hash(password: str) -> str:
    """The argon2id hash of ``password`` at the hub's parameters, made once per test process:
    each costs about 0.4 s (a second under load) and the worlds are built for every test."""
    return passwords.hash_password(password)


_HASH_PIN = passwords.hash_pin  # the hub's own, kept before make_world swaps it a moment


@cache
def _pin_hash(pin: str) -> str:
    """The argon2id hash of ``pin`` at the hub's parameters, made once per test process."""
    return _HASH_PIN(pin)


@dataclass(frozen=True)
class WebWorld:
    class_code: str
    card: str


def make_world(engine: Engine) -> WebWorld:
    """The lab on ``engine``'s migrated database."""
    with engine.begin() as conn:
        sites.create_site(conn=conn, code="VL", name="ValleLabs", kind="network", by=BY)
        sites.create_site(conn=conn, code="VL-R1", name="Valle", kind="region",
                          parent_code="VL", by=BY)
        for code, name in (("LAB-A", "Escuela Simón Bolívar"), ("LAB-B", "Colegio Nariño")):
            sites.create_site(conn=conn, code=code, name=name, kind="site",
                              parent_code="VL-R1", tier="lab_point", by=BY)
        teacher = accounts.create_user(
            conn, name=TEACHER, password_hash=password_hash(TEACHER_PASSWORD),
            grants_given=[Grant(Role.TEACHER, "LAB-A")])
        group = classes.create_class(conn, site="LAB-A", name=CLASS_NAME,
                                     teacher_id=teacher.id)
        with pytest.MonkeyPatch.context() as patch:  # the student's PIN hashed once, too
            patch.setattr(passwords, "hash_pin", _pin_hash)
            classes.add_student(conn, class_id=group.id, name=STUDENT, pin=STUDENT_PIN)
        [card] = classes.issue_cards(conn, class_id=group.id, names=[STUDENT])
        for device_id, site, name, online in (
                ("kit-a", "LAB-A", "Estación del patio", True),
                ("kit-a2", "LAB-A", "Invernadero", False),
                ("kit-b", "LAB-B", "Estación de Nariño", True)):
            registry.record_seen(conn=conn, device_id=device_id, kind="lines", site=site,
                                 name=name)
            if not online:
                registry.update_status(conn=conn, device_id=device_id, online=False,
                                       status="offline")
    return WebWorld(class_code=group.join_code, card=card.secret)
