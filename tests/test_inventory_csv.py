"""CSV import and export of sites, models and assets, on every backend: a network imported
from ministry spreadsheets (Spanish headers, semicolons, BOM, decimal commas), every bad
row reported with its row and column while nothing is written, the valid-only mode, and
export then import as a round trip (hypothesis)."""

from __future__ import annotations

import csv
import io
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, func, select

from inventory import assets as a
from inventory import catalog, csvio
from inventory import sites as site_service
from inventory.csvio import CsvOptions, RowError, export_text, import_csv
from inventory.errors import InvalidValueError, NotFoundError
from inventory.history import history_of, rebuild_assets
from inventory.tables import assets, events, models, sites
from sensors.decoders import CsvLineDecoder
from sensors.export import guard_formula

BY = "Ministerio (carga inicial)"

SITES_CSV = (
    "\ufeffCódigo;Nombre;Tipo;Padre;Nivel;Rural;Latitud;Longitud;Institución;Estado despliegue\r\n"
    "VL;ValleLabs;network;;;;;;;\r\n"
    "VL-N;Valle Norte;region;VL;;;;;;\r\n"
    "VL-N-CAL;Cali;municipality;VL-N;;;;;;\r\n"
    "LC-01;Lab Center Cali;site;VL-N-CAL;lab_center;no;3,4516;-76,532;Univalle;active\r\n"
    "LP-14;Lab Point Escuela 14;site;VL-N-CAL;Lab Point;sí;3,5;-76,4;IE Escuela 14;\r\n"
    "LS-03;Lab Spark Dagua;site;VL-N;lab_spark;1;;;;planned\r\n"
)
MODELS_CSV = (
    "code,name,category,tracking,unit\n"
    "UNO,Arduino Uno R3,microcontroller_board,serialized,\n"
    "KIT-ROB,\"Kit robótica, 30 piezas\",robotics_kit,,\n"
    "LED-5MM,LED 5 mm,consumable,counted,pcs\n"
)
ASSETS_CSV = (
    "etiqueta\tmodelo\tsede\tnúmero de serie\testado\tcondición\tnotas\n"
    "VC-0001\tUNO\tLC-01\t8573531393235\t\t\t\n"
    "VC-0002\tUNO\tLP-14\t\tlost\tbroken\tUSB suelto\n"
    "VC-0003\tKIT-ROB\tLP-14\t\tIn transit\tfair\t\n"
)


def _counts(conn: Connection) -> dict[str, int]:
    return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (sites, models, assets, events)}


@pytest.fixture
def network(engine: Engine) -> Engine:
    with engine.begin() as conn:
        for kind, text in (("sites", SITES_CSV), ("models", MODELS_CSV),
                           ("assets", ASSETS_CSV)):
            report = import_csv(conn=conn, kind=kind, data=text.encode(), by=BY)  # type: ignore[arg-type]
            assert report.errors == [] and report.created == report.rows
    return engine


def test_a_network_imports_from_ministry_spreadsheets(network: Engine) -> None:
    with network.connect() as conn:
        lab = conn.execute(select(sites).where(sites.c.code == "LC-01")).one()
        assert (lab.kind, lab.parent_code, lab.tier, bool(lab.rural), lab.latitude,
                lab.longitude, lab.institution, lab.rollout_status) == (
            "site", "VL-N-CAL", "lab_center", False, 3.4516, -76.532, "Univalle", "active")
        lp = conn.execute(select(sites).where(sites.c.code == "LP-14")).one()
        assert (lp.tier, bool(lp.rural), lp.rollout_status) == ("lab_point", True, "planned")
        kit = conn.execute(select(models).where(models.c.code == "KIT-ROB")).one()
        assert (kit.name, kit.tracking, kit.unit) == ("Kit robótica, 30 piezas", "serialized",
                                                     None)
        rows = conn.execute(select(assets.c.tag, assets.c.status, assets.c.condition,
                                   assets.c.serial_number, assets.c.notes)
                            .order_by(assets.c.tag)).all()
        assert [tuple(r) for r in rows] == [
            ("VC-0001", "available", "good", "8573531393235", None),
            ("VC-0002", "lost", "broken", None, "USB suelto"),
            ("VC-0003", "in_transit", "fair", None, None),
        ]
        assert _counts(conn) == {"sites": 6, "models": 3, "assets": 3, "events": 12}
        [registered] = history_of(conn=conn, subject="VC-0002")
        assert (registered.kind, registered.by, registered.site_code, registered.note) == (
            "AssetRegistered", BY, "LP-14", "USB suelto")
        assert registered.to_state == {"model_code": "UNO", "status": "lost",
                                       "condition": "broken", "site_code": "LP-14"}
        assert [e.kind for e in history_of(conn=conn, subject="VL-N")] == ["SiteCreated"]
        assert [e.kind for e in history_of(conn=conn, subject="LED-5MM")] == ["ModelCreated"]
        rebuilt = rebuild_assets(conn=conn)
        assert {t: (s.site_code, s.status, s.condition) for t, s in rebuilt.items()} == {
            r.tag: (r.site_code, r.status, r.condition)
            for r in conn.execute(select(assets))}


def test_assets_on_loan_or_in_repair_need_the_record_behind_them(network: Engine) -> None:
    text = ("tag,model,site,status,condition\n"
            "VC-0200,UNO,LC-01,On loan,\n"       # row 2: a loan needs its borrower and due time
            "VC-0201,UNO,LC-01,in_repair,broken\n"  # row 3: a repair needs its fault
            "VC-0202,UNO,LC-01,lost,\n")         # row 4: set by hand, as set_status allows
    with network.begin() as conn:
        before = _counts(conn)
        report = import_csv(conn=conn, kind="assets", data=text, by=BY)
        assert _counts(conn) == before
    assert [str(e) for e in report.errors] == [
        "row 2, column status: asset 'VC-0200' cannot be imported on_loan: import it "
        "available, then check it out on a loan (labhub inventory lend, POST /loans)",
        "row 3, column status: asset 'VC-0201' cannot be imported in_repair: import it "
        "available, then start a repair (labhub inventory repair, POST "
        "/assets/{tag}/repairs)",
    ]
    with network.begin() as conn:
        report = import_csv(conn=conn, kind="assets", data=text, by=BY, mode="valid")
        assert report.created == 1
        assert conn.execute(select(assets.c.status).where(assets.c.tag == "VC-0202")
                            ).scalar_one() == "lost"


@pytest.mark.parametrize(("lang", "text"), [
    ("es", "Etiqueta;Modelo;Sede;Estado;Condición\n"
           "VC-0300;UNO;LC-01;Disponible;Bueno\n"
           "VC-0301;UNO;LC-01;EN TRÁNSITO;regular\n"
           "VC-0302;UNO;LC-01;Perdido;Dañado\n"
           "VC-0303;UNO;LC-01;Dado de baja;malo\n"),
    ("pt", "tag;model;site;status;condition\n"
           "VC-0300;UNO;LC-01;Disponível;Bom\n"
           "VC-0301;UNO;LC-01;Em trânsito;Razoável\n"
           "VC-0302;UNO;LC-01;perdido;quebrado\n"
           "VC-0303;UNO;LC-01;Baixado;Ruim\n"),
    ("en", "tag;model;site;status;condition\n"
           "VC-0300;UNO;LC-01;Available;Good\n"
           "VC-0301;UNO;LC-01;in transit;FAIR\n"
           "VC-0302;UNO;LC-01;Lost;broken\n"
           "VC-0303;UNO;LC-01;retired;Poor\n"),
])
def test_statuses_and_conditions_in_spanish_portuguese_and_english(
    network: Engine, lang: str, text: str
) -> None:
    with network.begin() as conn:
        report = import_csv(conn=conn, kind="assets", data=text, by=BY)
        assert report.errors == [], lang
        rows = {tag: (status, condition) for tag, status, condition in conn.execute(
            select(assets.c.tag, assets.c.status, assets.c.condition)
            .where(assets.c.tag.like("VC-03%")))}
    assert rows == {"VC-0300": ("available", "good"), "VC-0301": ("in_transit", "fair"),
                    "VC-0302": ("lost", "broken"), "VC-0303": ("retired", "poor")}


def test_on_loan_and_in_repair_are_refused_in_every_language_naming_the_asset(
    network: Engine,
) -> None:
    text = ("Etiqueta;Modelo;Sede;Estado;Condición\n"
            "VC-0400;UNO;LC-01;En préstamo;Bueno\n"   # row 2
            "VC-0401;UNO;LC-01;Em reparo;bom\n"       # row 3
            ";UNO;LC-01;Disponible;Excelente\n")      # row 4: no tag, a condition unknown
    with network.begin() as conn:
        report = import_csv(conn=conn, kind="assets", data=text, by=BY)
    messages = [str(e) for e in report.errors]
    assert messages[:2] == [
        "row 2, column status: asset 'VC-0400' cannot be imported on_loan: import it "
        "available, then check it out on a loan (labhub inventory lend, POST /loans)",
        "row 3, column status: asset 'VC-0401' cannot be imported in_repair: import it "
        "available, then start a repair (labhub inventory repair, POST "
        "/assets/{tag}/repairs)",
    ]
    assert "row 4, column tag: asset tag is missing" in messages
    assert ("row 4, column condition: the condition of the asset with no tag 'Excelente' "
            "is not one of: good, fair, poor, broken") in messages
    assert not any("None" in m for m in messages), messages


def test_the_import_and_the_services_share_their_validators(network: Engine) -> None:
    """The same bad value gives the same message from a service call and from a CSV row."""
    long_notes = "x" * 2_001
    cases: list[tuple[str, str, Any]] = [
        ("notes", f"tag,model,site,notes\nVC-0300,UNO,LC-01,{long_notes}\n",
         lambda conn: a.register_asset(conn=conn, tag="VC-0300", model_code="UNO",
                                       site_code="LC-01", by=BY, notes=long_notes)),
        ("model", "tag,model,site\nVC-0301,LED-5MM,LC-01\n",
         lambda conn: a.register_asset(conn=conn, tag="VC-0301", model_code="LED-5MM",
                                       site_code="LC-01", by=BY)),
        ("condition", "tag,model,site,condition\nVC-0302,UNO,LC-01,shiny\n",
         lambda conn: a.register_asset(conn=conn, tag="VC-0302", model_code="UNO",
                                       site_code="LC-01", by=BY, condition="shiny")),
        ("unit", "code,name,category,tracking\nWIRE,Cable,consumable,counted\n",
         lambda conn: catalog.create_model(conn=conn, code="WIRE", name="Cable",
                                           category="consumable", by=BY, tracking="counted")),
        ("longitude", "code,name,kind,parent,tier,latitude,longitude\n"
                      "LP-9,Lab 9,site,VL-N,lab_point,3,200\n",
         lambda conn: site_service.create_site(conn=conn, code="LP-9", name="Lab 9",
                                               kind="site", by=BY, parent_code="VL-N",
                                               tier="lab_point", latitude=3.0,
                                               longitude=200.0)),
    ]
    for column, text, service in cases:
        kind = "sites" if column == "longitude" else "models" if column == "unit" else "assets"
        with network.begin() as conn:
            report = import_csv(conn=conn, kind=kind, data=text, by=BY)  # type: ignore[arg-type]
            with pytest.raises(InvalidValueError) as caught:
                service(conn)
        [error] = report.errors
        assert (error.column, error.problem) == (column, str(caught.value))


BAD_ASSETS = (
    "tag,model,site,serial_number,status,condition\n"
    "VC-0100,UNO,LC-01,S-1,,\n"            # row 2: good
    "VC-0001,UNO,LC-01,,,\n"               # row 3: tag already in the database
    "VC-0101,NOPE,LC-01,,,\n"              # row 4: unknown model
    "VC-0102,UNO,LP-99,,,\n"               # row 5: unknown site
    "VC-0100,UNO,LP-14,,,\n"               # row 6: duplicate tag in the file
    "VC-0103,UNO,VL-N,,lost-ish,\n"        # row 7: a region, and a bad status
    "VC-0104,LED-5MM,LP-14,S-1,,\n"        # row 8: counted model, serial repeated
    "VC 0105,UNO,LP-14,8573531393235,,\n"  # row 9: bad tag, serial in the database
    "VC-0106,UNO,LP-14,,,good\n"           # row 10: good
)


def test_bad_asset_rows_are_reported_one_by_one_and_nothing_is_written(network: Engine) -> None:
    with network.begin() as conn:
        before = _counts(conn)
        report = import_csv(conn=conn, kind="assets", data=BAD_ASSETS, by=BY)
        assert _counts(conn) == before
    assert (report.rows, report.valid, report.created, report.refused) == (9, 2, 0, True)
    assert [(e.row, e.column) for e in report.errors] == [
        (3, "tag"), (4, "model"), (5, "site"), (6, "tag"), (7, "status"), (7, "site"),
        (8, "model"), (8, "serial_number"), (9, "tag"), (9, "serial_number"),
    ]
    problems = [e.problem for e in report.errors]
    assert problems[0] == "asset tag 'VC-0001' is already registered in the database"
    assert problems[1] == "no model with code 'NOPE' in the catalog"
    assert problems[2] == "no site with code 'LP-99'"
    assert problems[3] == "asset tag 'VC-0100' is already on row 2"
    assert "'lost-ish' is not one of: available, on_loan" in problems[4]
    assert problems[5] == "assets are kept at lab sites, and 'VL-N' is a region"
    assert problems[7] == "serial number 'S-1' is already on row 2"
    assert "may hold only letters, digits" in problems[8]
    assert problems[9] == "serial number '8573531393235' is already registered as asset 'VC-0001'"
    assert str(report.errors[0]) == (
        "row 3, column tag: asset tag 'VC-0001' is already registered in the database")
    with network.connect() as conn:
        assert _counts(conn) == before


def test_the_valid_only_mode_imports_exactly_the_good_rows(network: Engine) -> None:
    with network.begin() as conn:
        before = _counts(conn)
        report = import_csv(conn=conn, kind="assets", data=BAD_ASSETS, by=BY, mode="valid")
    assert (report.valid, report.created, report.refused) == (2, 2, False)
    assert len(report.errors) == 10
    with network.connect() as conn:
        after = _counts(conn)
        tags = conn.execute(select(assets.c.tag).where(assets.c.tag.like("VC-01%"))
                            .order_by(assets.c.tag)).scalars().all()
    assert tags == ["VC-0100", "VC-0106"]
    assert after["assets"] == before["assets"] + 2 and after["events"] == before["events"] + 2


def test_a_dry_run_checks_and_writes_nothing(network: Engine) -> None:
    with network.begin() as conn:
        before = _counts(conn)
        report = import_csv(conn=conn, kind="assets", data=BAD_ASSETS, by=BY, mode="valid",
                            dry_run=True)
        assert (report.valid, report.created, report.dry_run) == (2, 0, True)
        assert _counts(conn) == before


def test_site_rows_lean_on_earlier_rows_and_bad_ones_are_reported(engine: Engine) -> None:
    text = (
        "code,name,kind,parent,tier,latitude,longitude\n"
        "VL,ValleLabs,network,,,,\n"              # 2 good
        "VL-N,Norte,region,VL,,,\n"               # 3 good
        "LP-1,Lab 1,site,VL-N-X,lab_point,,\n"    # 4 parent nowhere
        "VL-N-X,Cali,municipality,VL-N,,,\n"      # 5 good (but after row 4)
        "VL-S,Sur,region,VL-BAD,,,\n"             # 6 unknown parent
        "LP-2,Lab 2,site,VL-S,lab_point,,\n"      # 7 parent on a row with errors
        "LP-3,Lab 3,site,VL,lab_point,,\n"        # 8 a lab under a network
        "LP-4,Lab 4,site,VL-N,castle,abc,\n"      # 9 bad tier, bad number, lat without lon
        "VL-N,Otra,region,VL,,,\n"                # 10 code twice in the file
        "M-1,Muni,municipality,VL-N,lab_point,,\n"  # 11 tier on a municipality
        "LP-5,Lab 5,site,VL-N,lab_point,91,0\n"   # 12 latitude out of range
        "LP-6,,site,VL-N,,,\n"                    # 13 no name, no tier
    )
    with engine.begin() as conn:
        report = import_csv(conn=conn, kind="sites", data=text, by=BY)
        assert _counts(conn)["sites"] == 0
    assert [(e.row, e.column) for e in report.errors] == [
        (4, "parent"), (6, "parent"), (7, "parent"), (8, "parent"), (9, "tier"),
        (9, "latitude"), (9, "longitude"), (10, "code"), (11, "tier"), (12, "latitude"),
        (13, "name"), (13, "tier"),
    ]
    by_row = {e.row: e.problem for e in reversed(report.errors)}
    assert by_row[4] == "parent 'VL-N-X' is neither in the database nor on an earlier row"
    assert by_row[7] == "parent 'VL-S' is on row 6, which has errors"
    assert by_row[8] == "site 'LP-3' cannot be under network 'VL': its parent must be a " \
                        "municipality or region"
    assert by_row[10] == "site code 'VL-N' is already on row 3"
    assert by_row[12] == "latitude 91.0 of site 'LP-5' is not in -90..90"
    with engine.begin() as conn:
        report = import_csv(conn=conn, kind="sites", data=text, by=BY, mode="valid")
        assert report.created == 3
        assert sorted(conn.execute(select(sites.c.code)).scalars()) == ["VL", "VL-N", "VL-N-X"]


def test_model_rows_are_checked(engine: Engine) -> None:
    text = ("code;name;category;tracking;unit\n"
            "A;Uno;microcontroller_board;;pcs\n"
            "B;Cable;consumable;counted;\n"
            "C;Toy;toy;;\n"
            "A;Otra;tool;;\n")
    with engine.begin() as conn:
        report = import_csv(conn=conn, kind="models", data=text, by=BY)
        assert _counts(conn)["models"] == 0
    assert [str(e) for e in report.errors] == [
        "row 2, column unit: serialized model 'A' has no unit: each asset is one item",
        "row 3, column unit: counted model 'B' needs a unit, e.g. 'pcs'",
        "row 4, column category: the category of model 'C' 'toy' is not one of: "
        "robotics_kit, microcontroller_board, sensor_module, actuator, 3d_printer, computer, "
        "tablet, tool, consumable",
        "row 5, column code: model code 'A' is already on row 2",
    ]


def test_file_level_problems_are_named(engine: Engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(InvalidValueError, match=r"unknown column\(s\) 'colour'; assets "
                                                    r"take: tag, model, site"):
            import_csv(conn=conn, kind="assets", data="tag,model,site,colour\n", by=BY)
        with pytest.raises(InvalidValueError, match="the header lacks the column"):
            import_csv(conn=conn, kind="assets", data="tag,model\nA,B\n", by=BY)
        with pytest.raises(InvalidValueError, match="not UTF-8 text: byte 0xf1 on line 2"):
            import_csv(conn=conn, kind="models", data="code,name,category\nA,Ni\xf1o,tool\n"
                       .encode("latin-1"), by=BY)
        with pytest.raises(InvalidValueError, match="the file is empty"):
            import_csv(conn=conn, kind="sites", data=b"", by=BY)
        with pytest.raises(InvalidValueError, match="row 3: 4 cells but the header has 3"):
            import_csv(conn=conn, kind="models", data="code,name,category\nA,a,tool\n"
                       "B,b,tool,x\n", by=BY)
        with pytest.raises(InvalidValueError, match="import kind 'kits' is not one of"):
            import_csv(conn=conn, kind="kits", data="a\n", by=BY)  # type: ignore[arg-type]
        assert _counts(conn) == {"sites": 0, "models": 0, "assets": 0, "events": 0}


def test_exports_filter_guard_formulas_and_take_spreadsheet_options(network: Engine) -> None:
    with network.begin() as conn:
        import_csv(conn=conn, kind="models", by=BY,
                   data="code,name,category\nEVIL,=HYPERLINK(\"x\"),tool\nPLUS,+1 cable,tool\n")
        import_csv(conn=conn, kind="assets", by=BY,
                   data="tag,model,site,notes\nVC-9,EVIL,LS-03,@SUM(A1)\n")
    with network.connect() as conn:
        text = export_text(csvio.export_models(conn=conn, options=CsvOptions()))
        assert text.splitlines()[0] == "code,name,category,tracking,unit"
        assert "EVIL,\"'=HYPERLINK(\"\"x\"\")\",tool,serialized,\r\n" in text
        assert "PLUS,'+1 cable,tool,serialized,\r\n" in text
        options = CsvOptions(delimiter=";", decimal=",", bom=True)
        text = export_text(csvio.export_sites(conn=conn, options=options, under="VL-N-CAL"))
        assert text.startswith("\ufeffcode;name;kind;parent;tier;rural;latitude;longitude;")
        assert text.splitlines()[1:] == [
            "VL-N-CAL;Cali;municipality;VL-N;;;;;;",
            "LC-01;Lab Center Cali;site;VL-N-CAL;lab_center;false;3,4516;-76,532;Univalle;active",
            "LP-14;Lab Point Escuela 14;site;VL-N-CAL;lab_point;true;3,5;-76,4;IE Escuela 14;"
            "planned",
        ], "numbers are never guarded: -76,532 stays a number"
        text = export_text(csvio.export_assets(conn=conn, options=CsvOptions(delimiter="\t"),
                                               site_under="VL-N-CAL", status="lost"))
        assert text == ("tag\tmodel\tsite\tserial_number\tstatus\tcondition\tnotes\r\n"
                        "VC-0002\tUNO\tLP-14\t\tlost\tbroken\tUSB suelto\r\n")
        text = export_text(csvio.export_assets(conn=conn, options=CsvOptions(),
                                               model_code="EVIL"))
        assert text.splitlines()[1] == "VC-9,EVIL,LS-03,,available,good,'@SUM(A1)"
        text = export_text(csvio.export_history(conn=conn, subject="VC-0002",
                                                options=CsvOptions()))
        header, row = text.splitlines()
        assert header == "at,kind,subject,by,on_behalf_of,site,from_state,to_state,note,uuid"
        assert ",AssetRegistered,VC-0002,Ministerio (carga inicial),,LP-14,," in row
        with pytest.raises(NotFoundError, match="nothing in the inventory has the key 'NO'"):
            csvio.export_history(conn=conn, subject="NO", options=CsvOptions())
        with pytest.raises(InvalidValueError, match=r"delimiter '\|' is not one of"):
            CsvOptions(delimiter="|")


# -- export then import: a round trip ------------------------------------------------------

# Names hold no control character (labtext.printable); notes may hold tabs.
_NAME = st.text(alphabet=string.ascii_letters + string.digits + " ,;\"'=+-@áéíóúñÑçãõ()",
                min_size=1, max_size=30).map(str.strip).filter(bool)
_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " ,;\t\"'=+-@áéíóúñÑçãõ()",
                min_size=1, max_size=30).map(str.strip).filter(bool)
_CODE = st.from_regex(r"[A-Z][A-Z0-9]{0,5}", fullmatch=True)


@st.composite
def _network_data(draw: Any) -> dict[str, list[dict[str, Any]]]:
    codes = draw(st.lists(_CODE, min_size=3, max_size=12, unique=True))
    net, *rest = [f"S-{c}" for c in codes]
    region = rest[0]
    labs = rest[1:]
    site_rows: list[dict[str, Any]] = [
        {"code": net, "name": draw(_NAME), "kind": "network"},
        {"code": region, "name": draw(_NAME), "kind": "region", "parent": net},
    ]
    for code in labs:
        located = draw(st.booleans())
        site_rows.append({
            "code": code, "name": draw(_NAME), "kind": "site", "parent": region,
            "tier": draw(st.sampled_from(["lab_center", "lab_point", "lab_spark",
                                          "mobile_lab"])),
            "rural": draw(st.booleans()),
            "latitude": draw(st.floats(-90, 90)) if located else None,
            "longitude": draw(st.floats(-180, 180)) if located else None,
            "institution": draw(st.none() | _NAME),
            "rollout_status": draw(st.sampled_from(["planned", "installing", "active",
                                                    "paused", "closed"])),
        })
    model_codes = draw(st.lists(_CODE, min_size=1, max_size=4, unique=True))
    model_rows = [{"code": f"M-{c}", "name": draw(_NAME),
                   "category": draw(st.sampled_from(["robotics_kit", "tool", "computer"])),
                   "tracking": "serialized"} for c in model_codes]
    model_rows.append({"code": "M-COUNTED", "name": "Jumper", "category": "consumable",
                       "tracking": "counted", "unit": draw(st.sampled_from(["pcs", "m"]))})
    asset_rows: list[dict[str, Any]] = []
    if labs:
        tags = draw(st.lists(_CODE, max_size=15, unique=True))
        serials = iter(draw(st.lists(_NAME, min_size=len(tags), max_size=len(tags),
                                     unique=True)))
        for tag in tags:
            asset_rows.append({
                "tag": f"T-{tag}", "model": f"M-{draw(st.sampled_from(model_codes))}",
                "site": draw(st.sampled_from(labs)),
                "serial_number": next(serials) if draw(st.booleans()) else None,
                "status": draw(st.sampled_from(["available", "in_transit", "lost", "retired"])),
                "condition": draw(st.sampled_from(["good", "fair", "poor", "broken"])),
                "notes": draw(st.none() | _TEXT),
            })
    return {"sites": site_rows, "models": model_rows, "assets": asset_rows}


def _as_csv(kind: str, rows: list[dict[str, Any]], options: CsvOptions) -> str:
    columns = csvio.COLUMNS[kind]
    return export_text(csvio.iter_csv(columns, ([r.get(c) for c in columns] for r in rows),
                                      options))


def _export_all(conn: Connection, options: CsvOptions) -> dict[str, str]:
    return {
        "sites": export_text(csvio.export_sites(conn=conn, options=options)),
        "models": export_text(csvio.export_models(conn=conn, options=options)),
        "assets": export_text(csvio.export_assets(conn=conn, options=options)),
    }


def _stored(conn: Connection) -> dict[str, set[tuple[Any, ...]]]:
    return {
        "sites": {tuple(r) for r in conn.execute(select(
            sites.c.code, sites.c.name, sites.c.kind, sites.c.parent_code, sites.c.tier,
            sites.c.rural, sites.c.latitude, sites.c.longitude, sites.c.institution,
            sites.c.rollout_status))},
        "models": {tuple(r) for r in conn.execute(select(models))},
        "assets": {tuple(r) for r in conn.execute(select(
            assets.c.tag, assets.c.model_code, assets.c.site_code, assets.c.serial_number,
            assets.c.status, assets.c.condition, assets.c.notes))},
    }


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=_network_data(), delimiter=st.sampled_from(csvio.DELIMITERS),
       decimal=st.sampled_from(csvio.DECIMALS), bom=st.booleans())
def test_export_then_import_is_a_round_trip(
    engine: Engine, data: dict[str, list[dict[str, Any]]], delimiter: str, decimal: str,
    bom: bool,
) -> None:
    options = CsvOptions(delimiter=delimiter, decimal=decimal, bom=bom)
    with engine.connect() as conn:
        first = conn.begin()
        for kind in ("sites", "models", "assets"):
            report = import_csv(conn=conn, kind=kind, data=_as_csv(kind, data[kind], options),  # type: ignore[arg-type]
                                by=BY, delimiter=delimiter)
            assert report.errors == [] and report.created == len(data[kind])
        stored = _stored(conn)
        exported = _export_all(conn, options)
        first.rollback()
        second = conn.begin()
        for kind in ("sites", "models", "assets"):
            raw = exported[kind].encode()
            report = import_csv(conn=conn, kind=kind, data=raw, by=BY)  # type: ignore[arg-type]
            assert report.errors == [], report.errors[:3]
        assert _stored(conn) == stored
        assert _export_all(conn, options) == exported
        second.rollback()
    expected_assets = {(r["tag"], r["model"], r["site"], r["serial_number"], r["status"],
                        r["condition"], r["notes"]) for r in data["assets"]}
    assert stored["assets"] == expected_assets
    assert {(r[0], r[2], r[3]) for r in stored["sites"]} == {
        (r["code"], r["kind"], r.get("parent")) for r in data["sites"]}
    assert {r[0]: r[6] for r in stored["sites"]} == {r["code"]: r.get("latitude")
                                                     for r in data["sites"]}


def test_row_errors_read_like_a_spreadsheet_would_number_them() -> None:
    assert str(RowError(7, None, "x")) == "row 7: x"
    assert csvio.detect_delimiter("a;b;c\n1,5;2;3") == ";"
    assert csvio.detect_delimiter("only\n") == ","


# -- one CSV dialect with the readings ------------------------------------------------------


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r", "'"])
def test_text_cells_get_the_formula_guard_of_the_readings_export(start: str) -> None:
    text = f"{start}SUM(A1)"
    written = export_text(csvio.iter_csv(["code", "name", "category"], [["A", text, "tool"]],
                                         CsvOptions()))
    [_, [_, cell, _]] = list(csv.reader(io.StringIO(written, newline="")))
    assert cell == guard_formula(text) == "'" + text
    _, [(_, row)] = csvio.read_rows(written, kind="models")
    assert row["name"] == text, "the import takes the guard off again"


@pytest.mark.parametrize(
    ("first_line", "delimiter"),
    [("tag,model,site", ","), ("tag;model;site", ";"), ("tag\tmodel\tsite", "\t"),
     ("21,5;40,2;33", ";"), ("etiqueta;modelo,marca,serie", ";"), ("a\tb,c;d", "\t")],
)
def test_the_delimiter_is_detected_as_readings_csv_detects_it(
    first_line: str, delimiter: str
) -> None:
    decoder = CsvLineDecoder()
    decoder.feed(first_line)
    assert csvio.detect_delimiter(first_line + "\n1") == decoder.delimiter == delimiter


def test_csvio_is_split_into_import_export_and_reports() -> None:
    from inventory.csvio import columns, exporting, importing, reports

    for module in (columns, exporting, importing, reports):
        assert module.__doc__ and len(module.__doc__.split()) > 20, module.__name__
    assert csvio.import_csv.__module__ == importing.__name__
    assert {f.__module__ for f in (csvio.export_sites, csvio.export_models,
                                   csvio.export_assets)} == {exporting.__name__}
    assert {f.__module__ for f in (csvio.export_history, csvio.export_audit_counts)} == {
        reports.__name__}
    assert csvio.CsvOptions.__module__ == columns.__name__
