"""Classes on SQLite and PostgreSQL, over real HTTP: a teacher makes a class and adds
students, a student signs in with the class's code, their name and a PIN (or a QR card)
and holds only a student's rights at that lab; failures never say what was wrong; joining
with the code works only while open; a PIN reset ends the old PIN and the sessions; a
teacher of another lab changes nothing; the card sheet's QR codes (read back with zbarimg
from poppler's rendering) sign in until the cards are made again; and the CLI."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from inventory import sites
from labhub import db
from labhub.access import accounts
from labhub.access import cards as card_sheet
from labhub.access.classes import JOIN_ALPHABET
from labhub.access.limits import FREE_FAILURES, SignInLimiter
from labhub.access.permissions import ROLE_PERMISSIONS, Grant, Role
from labhub.access.tables import class_members, classes, sessions, users
from labhub.app import create_app
from labhub.cli import app as cli_app
from labhub.settings import Settings

V1 = "/api/v1"
BY = "tests"
FAILED = "wrong name or password"


@dataclass
class World:
    client: TestClient
    engine: Engine
    tokens: dict[str, str]  # person -> API token

    def as_(self, person: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[person]}"}

    def ok(self, person: str, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self.client.request(method, V1 + path, headers=self.as_(person), **kw)
        assert r.status_code == status, r.text
        return r.json() if r.content and "json" in r.headers["content-type"] else r

    def counts(self) -> tuple[int, ...]:
        with self.engine.connect() as conn:
            return tuple(conn.execute(select(func.count()).select_from(t)).scalar_one()
                         for t in (classes, class_members, users, sessions))


@pytest.fixture
def world(settings: Settings, database_url: str) -> Iterator[World]:
    """VL > VL-R1 > LAB-A, LAB-B; teachers ana (LAB-A), beto (LAB-B), carla (LAB-A, a
    second teacher there), coordinator coco at VL-R1, admin root; each with an API token."""
    engine = db.make_engine(database_url)
    with TestClient(create_app(settings)) as client, engine.begin() as conn:
        sites.create_site(conn=conn, code="VL", name="ValleLabs", kind="network", by=BY)
        sites.create_site(conn=conn, code="VL-R1", name="Valle", kind="region",
                          parent_code="VL", by=BY)
        for code, name in (("LAB-A", "Escuela Simón Bolívar"), ("LAB-B", "Colegio Nariño")):
            sites.create_site(conn=conn, code=code, name=name, kind="site",
                              parent_code="VL-R1", tier="lab_point", by=BY)
        tokens = {}
        for name, role, site in (("ana", Role.TEACHER, "LAB-A"), ("beto", Role.TEACHER, "LAB-B"),
                                 ("carla", Role.TEACHER, "LAB-A"),
                                 ("coco", Role.COORDINATOR, "VL-R1"),
                                 ("root", Role.ADMIN, "*")):
            user = accounts.create_user(conn, name=name, password_hash=None,
                                        grants_given=[Grant(role, site)])
            tokens[name] = accounts.create_api_token(conn, user_id=user.id, name="t")[1]
        conn.commit()
        yield World(client, engine, tokens)
    engine.dispose()


def _class(w: World, teacher: str, site: str, name: str = "7°B Ciencias") -> dict[str, Any]:
    made: dict[str, Any] = w.ok(teacher, "POST", "/classes", 201,
                                json={"site": site, "name": name})
    return made


def _sign_in(w: World, status: int = 200, **body: str) -> dict[str, Any]:
    w.client.cookies.clear()
    r = w.client.post(f"{V1}/auth/sign-in", json=body)
    assert r.status_code == status, r.text
    answer: dict[str, Any] = r.json()
    return answer


def test_a_student_signs_in_with_class_name_and_pin_and_is_only_a_student_there(
        world: World) -> None:
    w = world
    made = _class(w, "ana", "LAB-A")
    assert made["teacher"] == "ana" and made["joining_open"] is False
    assert re.fullmatch(f"[{JOIN_ALPHABET}]{{6}}", made["join_code"])
    added = w.ok("ana", "POST", f"/classes/{made['id']}/students", 201, json={"name": "María"})
    assert re.fullmatch(r"[0-9]{4}", added["pin"])
    assert added["account"] == f"class-{made['id']}/María"
    # The code in any case, the name as accounts compare it.
    answer = _sign_in(w, class_code=made["join_code"].lower(), name="MARÍA", pin=added["pin"])
    assert answer["name"] == added["account"]
    assert answer["grants"] == [{"role": "student", "site": "LAB-A"}]
    me = w.client.get(f"{V1}/auth/me").json()
    assert me["via"] == "session"
    assert set(me["permissions"]) == {p.value for p in ROLE_PERMISSIONS[Role.STUDENT]}
    assert w.client.get(f"{V1}/classes").status_code == 403  # no users.manage
    # The account has no password: its name and the PIN do not sign in that way.
    _sign_in(w, 401, name=added["account"], password=added["pin"])
    listed = w.ok("ana", "GET", f"/classes/{made['id']}")
    assert [(m["name"], m["active"]) for m in listed["members"]] == [("María", True)]
    assert listed["students"] == 1


def test_wrong_pin_unknown_name_and_unknown_class_answer_alike(world: World) -> None:
    w = world
    made = _class(w, "ana", "LAB-A")
    pin = w.ok("ana", "POST", f"/classes/{made['id']}/students", 201,
               json={"name": "Luis"})["pin"]
    wrong = "0000" if pin != "0000" else "1111"
    answers = [_sign_in(w, 401, class_code=made["join_code"], name="Luis", pin=wrong),
               _sign_in(w, 401, class_code=made["join_code"], name="Nadie", pin=pin),
               _sign_in(w, 401, class_code="ZZZZZZ", name="Luis", pin=pin),
               _sign_in(w, 401, card="lhc_" + "x" * 43)]
    assert {a["detail"] for a in answers} == {FAILED}
    log = w.ok("root", "GET", "/audit-log", params={"action": "sign_in_failed"})["items"]
    assert sorted(e["detail"] for e in log) == sorted(
        ['{"with": "pin"}'] * 3 + ['{"with": "card"}'])
    # A shape that is none of the three ways is refused before anything is looked up.
    _sign_in(w, 422, class_code=made["join_code"], name="Luis", password="x" * 10)
    _sign_in(w, 422, class_code=made["join_code"], name="Luis", pin="12")


def test_wrong_pins_are_rate_limited_per_student(world: World) -> None:
    w = world
    # A clock that stands still: the first wait (1 s) cannot run out on a slow machine.
    w.client.app.state.sign_in_limiter = SignInLimiter(clock=lambda: 1000.0)  # type: ignore[attr-defined]
    made = _class(w, "ana", "LAB-A")
    pin = w.ok("ana", "POST", f"/classes/{made['id']}/students", 201,
               json={"name": "Luis"})["pin"]
    wrong = "0000" if pin != "0000" else "1111"
    for _ in range(FREE_FAILURES + 1):
        _sign_in(w, 401, class_code=made["join_code"], name="Luis", pin=wrong)
    limited = w.client.post(f"{V1}/auth/sign-in", json={
        "class_code": made["join_code"], "name": "luis", "pin": pin})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


def test_self_join_only_while_joining_is_open(world: World) -> None:
    w = world
    made = _class(w, "ana", "LAB-A")
    code = made["join_code"]
    join = {"code": code, "name": "Sofía", "pin": "482913"}
    shut = w.client.post(f"{V1}/classes/join", json=join)
    assert shut.status_code == 404
    opened = w.ok("ana", "PATCH", f"/classes/{made['id']}", json={"joining_minutes": 30})
    assert opened["joining_open"] is True and opened["joining_until"]
    joined = w.client.post(f"{V1}/classes/join", json=join)
    assert joined.status_code == 201, joined.text
    assert joined.json() == {"name": "Sofía", "class_name": "7°B Ciencias", "site": "LAB-A"}
    again = w.client.post(f"{V1}/classes/join", json={**join, "name": "SOFÍA"})
    assert again.status_code == 409
    assert _sign_in(w, class_code=code, name="Sofía", pin="482913")["grants"] == [
        {"role": "student", "site": "LAB-A"}]
    w.ok("ana", "PATCH", f"/classes/{made['id']}", json={"joining_minutes": 0})
    late = w.client.post(f"{V1}/classes/join", json={**join, "name": "Tomás"})
    assert late.status_code == 404
    # A new join code: the old one neither joins nor signs in.
    renewed = w.ok("ana", "PATCH", f"/classes/{made['id']}",
                   json={"joining_minutes": 10, "new_join_code": True})
    assert renewed["join_code"] != code
    assert w.client.post(f"{V1}/classes/join", json={**join, "name": "Tomás"}
                         ).status_code == 404
    _sign_in(w, 401, class_code=code, name="Sofía", pin="482913")
    _sign_in(w, class_code=renewed["join_code"], name="Sofía", pin="482913")
    names = [m["name"] for m in w.ok("ana", "GET", f"/classes/{made['id']}")["members"]]
    assert names == ["Sofía"]


def test_a_pin_reset_ends_the_old_pin_and_the_sessions(world: World) -> None:
    w = world
    made = _class(w, "ana", "LAB-A")
    old = w.ok("ana", "POST", f"/classes/{made['id']}/students", 201,
               json={"name": "Luis"})["pin"]
    _sign_in(w, class_code=made["join_code"], name="Luis", pin=old)
    cookie = w.client.cookies.get("labhub_session")
    assert w.client.get(f"{V1}/auth/me").status_code == 200
    reset = w.ok("coco", "POST", f"/classes/{made['id']}/students/luis/pin")
    new = w.ok("ana", "POST", f"/classes/{made['id']}/students/Luis/pin")["pin"]
    assert reset["name"] == "Luis"
    w.client.cookies.clear()
    w.client.cookies.set("labhub_session", cookie or "")
    assert w.client.get(f"{V1}/auth/me").status_code == 401
    if new != old:
        _sign_in(w, 401, class_code=made["join_code"], name="Luis", pin=old)
    _sign_in(w, class_code=made["join_code"], name="Luis", pin=new)
    log = w.ok("root", "GET", "/audit-log", params={"action": "pin_reset"})["items"]
    assert [(e["actor"], e["target"], e["site"]) for e in log] == [
        ("ana", f"class-{made['id']}/Luis", "LAB-A"), ("coco", f"class-{made['id']}/Luis",
                                                      "LAB-A")]
    # Removing the student: PIN and sessions stop; adding the name again brings the
    # account back with a new PIN.
    w.ok("ana", "DELETE", f"/classes/{made['id']}/students/Luis", 204)
    _sign_in(w, 401, class_code=made["join_code"], name="Luis", pin=new)
    back = w.ok("ana", "POST", f"/classes/{made['id']}/students", 201, json={"name": "luis"})
    assert back["account"] == f"class-{made['id']}/Luis"
    _sign_in(w, class_code=made["join_code"], name="Luis", pin=back["pin"])


def test_a_teacher_of_another_lab_changes_nothing(world: World) -> None:
    w = world
    theirs = _class(w, "beto", "LAB-B")
    cid = theirs["id"]
    w.ok("beto", "POST", f"/classes/{cid}/students", 201, json={"name": "Pedro"})
    before = w.counts()
    for method, path, body in (
            ("GET", f"/classes/{cid}", None),
            ("PATCH", f"/classes/{cid}", {"joining_minutes": 60}),
            ("POST", f"/classes/{cid}/students", {"name": "Intruso"}),
            ("POST", f"/classes/{cid}/students/Pedro/pin", None),
            ("DELETE", f"/classes/{cid}/students/Pedro", None),
            ("POST", f"/classes/{cid}/cards", None),
            ("POST", f"/classes/{cid}/cards.pdf", None),
            ("POST", "/classes", {"site": "LAB-B", "name": "Mía"})):
        for who in ("ana", "carla"):
            r = w.client.request(method, V1 + path, headers=w.as_(who), json=body)
            assert r.status_code == 403, (who, method, path, r.text)
    assert w.counts() == before
    assert w.ok("ana", "GET", "/classes") == []
    # A second teacher of the same lab does not manage ana's class either.
    mine = _class(w, "ana", "LAB-A")
    r = w.client.post(f"{V1}/classes/{mine['id']}/students", headers=w.as_("carla"),
                      json={"name": "X"})
    assert r.status_code == 403
    # The coordinator above both labs sees and manages both; a teacher only their own.
    assert {c["id"] for c in w.ok("coco", "GET", "/classes")} == {cid, mine["id"]}
    assert [c["id"] for c in w.ok("ana", "GET", "/classes")] == [mine["id"]]
    w.ok("coco", "POST", f"/classes/{cid}/students/Pedro/pin")
    # A coordinator makes a class for a teacher; not for one who does not teach there.
    made = w.ok("coco", "POST", "/classes", 201,
                json={"site": "LAB-A", "name": "8°A", "teacher": "carla"})
    assert made["teacher"] == "carla"
    w.ok("coco", "POST", "/classes", 422, json={"site": "LAB-A", "name": "8°A",
                                               "teacher": "beto"})
    w.ok("ana", "POST", "/classes", 403, json={"site": "LAB-A", "name": "8°B",
                                              "teacher": "carla"})
    w.ok("ana", "GET", "/classes/999999", 404)


def test_two_marias_in_two_classes(world: World) -> None:
    w = world
    first = _class(w, "ana", "LAB-A", "7°B")
    second = _class(w, "beto", "LAB-B", "7°B")
    pins = [w.ok(t, "POST", f"/classes/{c['id']}/students", 201, json={"name": "María"})["pin"]
            for t, c in (("ana", first), ("beto", second))]
    one = _sign_in(w, class_code=first["join_code"], name="María", pin=pins[0])
    two = _sign_in(w, class_code=second["join_code"], name="maría", pin=pins[1])
    assert one["name"] != two["name"]
    assert one["grants"] == [{"role": "student", "site": "LAB-A"}]
    assert two["grants"] == [{"role": "student", "site": "LAB-B"}]
    if pins[0] != pins[1]:
        _sign_in(w, 401, class_code=first["join_code"], name="María", pin=pins[1])
    # The same name twice in one class is one name (NFKC + casefold).
    r = w.client.post(f"{V1}/classes/{first['id']}/students", headers=w.as_("ana"),
                      json={"name": "MARI\u0301A"})
    assert r.status_code == 409


needs_poppler_zbar = pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None
    or shutil.which("zbarimg") is None,
    reason="poppler-utils and zbar-tools are not installed: scripts/test-services")


def _qr_texts(pdf: bytes, tmp_path: Path) -> tuple[list[str], str]:
    """The texts of every QR code on the PDF's pages, each card read on its own as a phone
    reads one card (rendered by poppler at 150 dpi, cut along the card grid, read by zbar:
    zbar scanning a whole page of ten codes now and then misses one, which a card never
    meets), and the PDF's text."""
    path = tmp_path / "cards.pdf"
    path.write_bytes(pdf)
    dpi = 150
    subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-png", path, tmp_path / "page"],
                   check=True, timeout=60)
    px = dpi / 25.4  # pixels a millimetre
    cell_w = (card_sheet.PAGE_W_MM - 2 * card_sheet.MARGIN_MM) / card_sheet.COLUMNS
    cell_h = (card_sheet.PAGE_H_MM - 2 * card_sheet.MARGIN_MM) / card_sheet.ROWS
    found = []
    for page in sorted(tmp_path.glob("page-*.png")):
        with Image.open(page) as image:
            for row in range(card_sheet.ROWS):
                for column in range(card_sheet.COLUMNS):
                    x0 = card_sheet.MARGIN_MM + column * cell_w
                    y0 = card_sheet.MARGIN_MM + row * cell_h
                    one = tmp_path / f"{page.stem}-{row}-{column}.png"
                    image.crop((round(x0 * px), round(y0 * px), round((x0 + cell_w) * px),
                                round((y0 + cell_h) * px))).save(one)
                    out = subprocess.run(["zbarimg", "-q", "--raw", one],
                                         capture_output=True, text=True, timeout=60)
                    found += out.stdout.split()
    text = subprocess.run(["pdftotext", path, "-"], capture_output=True, text=True,
                          check=True, timeout=60).stdout
    return found, text


@needs_poppler_zbar
def test_card_sheet_codes_sign_in_until_new_cards_are_made(world: World,
                                                          tmp_path: Path) -> None:
    w = world
    made = _class(w, "ana", "LAB-A")
    cid = made["id"]
    names = [f"Estudiante {i:02d}" for i in range(11)] + ["Ñandú Quispe"]
    for name in names:
        w.ok("ana", "POST", f"/classes/{cid}/students", 201, json={"name": name})
    pdf = w.ok("ana", "POST", f"/classes/{cid}/cards.pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    codes, text = _qr_texts(pdf.content, tmp_path)
    assert len(codes) == len(names) == len(set(codes))  # one code per student, 2 pages
    assert all(re.fullmatch(r"http://testserver/signin#card=lhc_[A-Za-z0-9_-]{43}", c)
               for c in codes)
    for name in names:
        assert name in text
    assert "Escuela Simón Bolívar" in text and made["join_code"] in text
    signed = {_sign_in(w, card=c.split("#card=")[1])["name"] for c in codes}
    assert signed == {f"class-{cid}/{n}" for n in names}
    log = w.ok("root", "GET", "/audit-log", params={"action": "sign_in"})["items"]
    assert sum(e["detail"] == '{"with": "card"}' for e in log) == len(names)
    # New cards (as JSON, for printing elsewhere) void the sheet's; one student's only.
    again = w.ok("ana", "POST", f"/classes/{cid}/cards")["cards"]
    assert [c["name"] for c in again] == sorted(names, key=str.casefold)
    _sign_in(w, 401, card=codes[0].split("#card=")[1])
    card = {c["name"]: c["card"] for c in again}
    assert _sign_in(w, card=card["Ñandú Quispe"])["name"] == f"class-{cid}/Ñandú Quispe"
    one = w.ok("ana", "POST", f"/classes/{cid}/cards", json={"students": ["ñandú quispe"]})
    assert [c["name"] for c in one["cards"]] == ["Ñandú Quispe"]
    _sign_in(w, 401, card=card["Ñandú Quispe"])
    assert _sign_in(w, card=card["Estudiante 00"])["name"] == f"class-{cid}/Estudiante 00"
    # A removed student's card stops working.
    w.ok("ana", "DELETE", f"/classes/{cid}/students/Estudiante 00", 204)
    _sign_in(w, 401, card=card["Estudiante 00"])


def test_a_class_without_students_has_no_cards_to_print(world: World) -> None:
    made = _class(world, "ana", "LAB-A")
    world.ok("ana", "POST", f"/classes/{made['id']}/cards.pdf", 422)


@pytest.fixture
def run(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LABHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def _cli(runner: CliRunner, *args: str, code: int = 0) -> str:
    result = runner.invoke(cli_app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_the_cli_makes_a_class_adds_students_resets_pins_and_prints_cards(
        world: World, run: CliRunner, tmp_path: Path) -> None:
    w = world
    out = _cli(run, "classes", "add", "--site", "LAB-A", "--teacher", "ana", "7°B")
    class_id, code = re.search(r"class (\d+): .* join code ([A-Z0-9]{6})", out).groups()  # type: ignore[union-attr]
    assert "beto does not teach" in _cli(run, "classes", "add", "--site", "LAB-A",
                                         "--teacher", "beto", "X", code=1)
    out = _cli(run, "classes", "students", "add", code, "María", "José")
    pins = dict(re.findall(r"^(\S+)\tPIN (\d{4})$", out, re.M))
    assert set(pins) == {"María", "José"}
    assert "already has a student" in _cli(run, "classes", "students", "add", class_id,
                                           "maría", code=1)
    listed = _cli(run, "classes", "list")
    assert f"{class_id}  {code}  LAB-A  7°B  teacher ana  2 students" in listed
    _sign_in(w, class_code=code, name="José", pin=pins["José"])
    out = _cli(run, "classes", "pin-reset", class_id, "José")
    new = re.search(r"PIN (\d{4})", out).group(1)  # type: ignore[union-attr]
    _sign_in(w, class_code=code, name="José", pin=new)
    target = tmp_path / "cards.pdf"
    out = _cli(run, "classes", "cards", code, "-o", str(target),
               "--base-url", "http://labhub.local:8000")
    assert "2 cards" in out and target.read_bytes().startswith(b"%PDF")
    assert "no class" in _cli(run, "classes", "cards", "QQQQQQ", "-o", str(target), code=1)
    log = _cli(run, "audit-log", "--action", "pin_reset")
    assert f"class-{class_id}/José" in log
