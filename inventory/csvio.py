"""CSV import and export of sites, models and assets: what ministries keep in spreadsheets.

Import reads the whole file, checks every row against the same rules as the services
(``sites.create_site``, ``catalog.create_model``, ``assets.register_asset``) and against
the database and the file itself (a tag twice in the file, a tag already registered, a
parent site on an earlier row), and reports each problem with its row number (as a
spreadsheet numbers them: the header is row 1), its column and what is wrong. Nothing is
written unless every row is valid, or, in ``mode="valid"``, only the valid rows are
written (a row that leans on an invalid row is invalid too). The rows then go in with
Core ``executemany`` in one transaction (the caller's), one history event per created
thing, so 10,000 assets take well under a second instead of the ~30 s of one service call
per row. The delimiter (``,`` ``;`` tab) is detected from the header unless given; text is
UTF-8 with or without a byte order mark; header names are English or Spanish (see
``COLUMNS`` and ``ALIASES``), in any case and with or without accents.

Export writes the same columns, so an export imports back as it was (a hypothesis test),
with the options of the readings export (delimiter, decimal comma, BOM, ``\\r\\n`` line
ends) and a formula-injection guard: a text cell that starts with ``=`` ``+`` ``-`` ``@``
(or ``'``) gets a leading apostrophe, which import takes off again. Inventory imports
nothing from the readings domain, so the small writer here is its own. An item's history
and an audit's count lines (counted parts against stock) export too, with the same
options; they are reports, with no import.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import ARRAY, ColumnElement, Connection, String, bindparam, func, insert, select

from inventory.assets import CONDITIONS, STATUSES
from inventory.audits import get_report
from inventory.catalog import CATEGORIES, TRACKINGS, UNIT_MAX
from inventory.errors import InvalidValueError, NotFoundError
from inventory.history import history_of
from inventory.sites import ALLOWED_PARENTS, ROLLOUT_STATUSES, SITE_KINDS, TIERS, get_site, subtree
from inventory.tables import assets, events, models, sites
from inventory.values import US_PER_S, check_key, check_text, now_us

Kind = Literal["sites", "models", "assets"]
Mode = Literal["all", "valid"]
KINDS: tuple[str, ...] = ("sites", "models", "assets")
DELIMITERS = (",", ";", "\t")  # what spreadsheets write; tab for copy-paste from a sheet
DECIMALS = (".", ",")
MAX_ROWS = 200_000  # rows of one import: a national network's assets; more is split in files
LOOKUP_CHUNK = 500  # keys per "IN (...)" look-up: well under SQLite's 32,766 parameters
WRITE_CHUNK = 5_000  # rows per executemany: bounded memory for the statement parameters
PROGRESS_EVERY = 1_000  # rows between two progress callbacks
FORMULA_START = ("=", "+", "-", "@", "'")  # cells a spreadsheet would run as a formula
FOLD_CACHE = 4_096  # distinct header and enumeration cells folded; a file repeats few
NOTES_MAX = 2_000  # an asset's notes from a spreadsheet cell: a paragraph, not a document

# The columns of each kind, in export order; the first ones are required on import.
COLUMNS: dict[str, tuple[str, ...]] = {
    "sites": ("code", "name", "kind", "parent", "tier", "rural", "latitude", "longitude",
              "institution", "rollout_status"),
    "models": ("code", "name", "category", "tracking", "unit"),
    "assets": ("tag", "model", "site", "serial_number", "status", "condition", "notes"),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "sites": ("code", "name", "kind"),
    "models": ("code", "name", "category"),
    "assets": ("tag", "model", "site"),
}
# Header names a ministry's spreadsheet may use instead (compared without case, accents,
# spaces or dashes: "Código", "NÚMERO DE SERIE" and "numero_serie" all match).
ALIASES: dict[str, str] = {
    "codigo": "code", "cod": "code", "nombre": "name", "tipo": "kind", "clase": "kind",
    "padre": "parent", "parent_code": "parent", "codigo_padre": "parent", "nivel": "tier",
    "ruralidad": "rural", "zona_rural": "rural", "latitud": "latitude", "lat": "latitude",
    "longitud": "longitude", "lon": "longitude", "lng": "longitude",
    "institucion": "institution", "institucion_educativa": "institution",
    "estado_despliegue": "rollout_status", "despliegue": "rollout_status",
    "categoria": "category", "seguimiento": "tracking", "unidad": "unit",
    "etiqueta": "tag", "placa": "tag", "asset_tag": "tag", "modelo": "model",
    "model_code": "model", "codigo_modelo": "model", "sede": "site", "sitio": "site",
    "site_code": "site", "codigo_sede": "site", "serial": "serial_number", "serie": "serial_number",
    "numero_serie": "serial_number", "numero_de_serie": "serial_number",
    "estado": "status", "condicion": "condition", "notas": "notes",
    "observaciones": "notes",
}
TRUE_WORDS = frozenset({"true", "yes", "si", "1", "rural", "verdadero", "x"})
FALSE_WORDS = frozenset({"false", "no", "0", "urban", "urbano", "urbana", "falso"})
HISTORY_COLUMNS = ("at", "kind", "subject", "by", "site", "from_state", "to_state", "note",
                   "uuid")
AUDIT_COUNT_COLUMNS = ("audit", "site", "model", "unit", "expected", "counted", "difference",
                       "corrected_at")
_DECIMAL_COMMA = re.compile(r"[-+]?\d+,\d+(?:[eE][-+]?\d+)?")  # 3,45 or 1,5e-05


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem in one row: ``row`` as a spreadsheet numbers it (header = 1)."""

    row: int
    column: str | None
    problem: str

    def __str__(self) -> str:
        where = f"row {self.row}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.problem}"


@dataclass(slots=True)
class ImportReport:
    """What an import found and did."""

    kind: str
    rows: int = 0  # data rows read (blank lines not counted)
    created: int = 0  # things written (0 on a dry run or a refused import)
    valid: int = 0  # rows that passed every check
    dry_run: bool = False
    errors: list[RowError] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        """True when rows had errors and, in mode ``all``, nothing was written for it."""
        return bool(self.errors) and self.created == 0


@dataclass(frozen=True, slots=True)
class CsvOptions:
    """How an export is written: delimiter, decimal mark, byte order mark."""

    delimiter: str = ","
    decimal: str = "."
    bom: bool = False

    def __post_init__(self) -> None:
        if self.delimiter not in DELIMITERS:
            raise InvalidValueError(
                f"delimiter {self.delimiter!r} is not one of , ; or tab"
            )
        if self.decimal not in DECIMALS:
            raise InvalidValueError(f"decimal mark {self.decimal!r} is not . or ,")


# -- reading --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=FOLD_CACHE)
def _fold(name: str) -> str:
    """A header name without case, accents or spaces: ``Código Padre`` -> ``codigo_padre``."""
    text = unicodedata.normalize("NFKD", name.strip().lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"[\s\-.]+", "_", text).strip("_")


def decode(data: bytes | str) -> str:
    """The text of a CSV file: UTF-8, a byte order mark dropped; InvalidValueError if not UTF-8."""
    if isinstance(data, str):
        return data.removeprefix("\ufeff")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidValueError(
            f"the file is not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line}; "
            "save it from the spreadsheet as 'CSV UTF-8'"
        ) from None


def detect_delimiter(text: str) -> str:
    """The delimiter of ``text``: the one of , ; tab that appears most in its header line."""
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _unguard(cell: str) -> str:
    if len(cell) > 1 and cell[0] == "'" and cell[1] in FORMULA_START:
        return cell[1:]
    return cell


def read_rows(
    text: str, *, kind: str, delimiter: str | None = None
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The known columns of the header and each data row as ``(row number, {column: cell})``.

    Cells are stripped; empty cells are left out of a row's dict. Raises InvalidValueError
    for a header that misses a required column, names one twice or names one that is not
    known (with the columns that are), and for a row with more cells than the header.
    """
    if kind not in KINDS:
        raise InvalidValueError(f"import kind {kind!r} is not one of: {', '.join(KINDS)}")
    if delimiter is None:
        delimiter = detect_delimiter(text)
    elif delimiter not in DELIMITERS:
        raise InvalidValueError(f"delimiter {delimiter!r} is not one of , ; or tab")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidValueError("the file is empty: it needs a header row") from None
    except csv.Error as exc:
        raise InvalidValueError(f"row 1: {exc}") from None
    known = COLUMNS[kind]
    columns: list[str] = []
    unknown: list[str] = []
    for raw in header:
        name = _fold(raw)
        name = ALIASES.get(name, name)
        if name in columns:
            raise InvalidValueError(f"row 1: column {raw.strip()!r} appears twice")
        if name not in known:
            unknown.append(raw.strip())
        columns.append(name)
    if unknown:
        raise InvalidValueError(
            f"row 1: unknown column(s) {', '.join(repr(u) for u in unknown)}; "
            f"{kind} take: {', '.join(known)}"
        )
    missing = [c for c in REQUIRED[kind] if c not in columns]
    if missing:
        raise InvalidValueError(
            f"row 1: the header lacks the column(s) {', '.join(missing)} (it has "
            f"{', '.join(columns) or 'none'})"
        )
    rows: list[tuple[int, dict[str, str]]] = []
    number = 1
    try:
        for cells in reader:
            number += 1
            if not any(c.strip() for c in cells):
                continue  # a blank line between blocks of rows
            if len(cells) > len(columns):
                raise InvalidValueError(
                    f"row {number}: {len(cells)} cells but the header has {len(columns)} "
                    f"columns (is the delimiter {delimiter!r} right?)"
                )
            row = {col: _unguard(cell.strip()) for col, cell in zip(columns, cells, strict=False)
                   if cell.strip()}
            rows.append((number, row))
            if len(rows) > MAX_ROWS:
                raise InvalidValueError(
                    f"the file has more than {MAX_ROWS:,} rows: split it in parts"
                )
    except csv.Error as exc:
        raise InvalidValueError(f"row {number + 1}: {exc}") from None
    return columns, rows


# -- checking -------------------------------------------------------------------------------


class _RowCheck:
    """Collects the errors of one row; each check returns the clean value or None."""

    def __init__(self, number: int, row: dict[str, str], errors: list[RowError]) -> None:
        self.number = number
        self.row = row
        self.errors = errors
        self.ok = True

    def fail(self, column: str | None, problem: str) -> None:
        self.ok = False
        self.errors.append(RowError(self.number, column, problem))

    def key(self, column: str, what: str) -> str | None:
        value = self.row.get(column)
        if value is None:
            self.fail(column, f"{what} is missing")
            return None
        try:
            return check_key(value, what=what)
        except InvalidValueError as exc:
            self.fail(column, str(exc))
            return None

    def text(self, column: str, what: str, *, required: bool = False,
             max_len: int | None = None) -> str | None:
        value = self.row.get(column)
        if value is None:
            if required:
                self.fail(column, f"{what} is missing")
            return None
        try:
            return (check_text(value, what=what) if max_len is None
                    else check_text(value, what=what, max_len=max_len))
        except InvalidValueError as exc:
            self.fail(column, str(exc))
            return None

    def choice(self, column: str, choices: Sequence[str], what: str,
               default: str | None = None) -> str | None:
        value = self.row.get(column)
        if value is None:
            return default
        if value in choices:
            return value
        folded = _fold(value)
        if folded in choices:
            return folded
        self.fail(column, f"{what} {value!r} is not one of: {', '.join(choices)}")
        return None

    def number_in(self, column: str, what: str, low: float, high: float) -> float | None:
        value = self.row.get(column)
        if value is None:
            return None
        text = value.replace(",", ".") if _DECIMAL_COMMA.fullmatch(value) else value
        try:
            number = float(text)
        except ValueError:
            self.fail(column, f"{what} {value!r} is not a number")
            return None
        if not math.isfinite(number) or not low <= number <= high:
            self.fail(column, f"{what} {value} is not in {low:g}..{high:g}")
            return None
        return number

    def flag(self, column: str, what: str) -> bool | None:
        value = self.row.get(column)
        if value is None:
            return None
        folded = _fold(value)
        if folded in TRUE_WORDS:
            return True
        if folded in FALSE_WORDS:
            return False
        self.fail(column, f"{what} {value!r} is not yes/no (true/false, si/no, 1/0)")
        return None


def _among(conn: Connection, column: Any, keys: list[str]) -> ColumnElement[bool]:
    """``column`` is one of ``keys``: ``IN (?, ?, ...)`` on SQLite; on PostgreSQL
    ``IN (SELECT unnest(%s))`` of one array parameter, which PostgreSQL runs as a semi-join
    (index or hash) whatever its plan. A list of 500 parameters, once psycopg prepared the
    statement, became a linear scan of the list per row: ~0.35 s per look-up on a table of
    10,000 assets, and an import that slowed down with every file imported before."""
    if conn.dialect.name == "postgresql":
        wanted = (func.unnest(bindparam(None, keys, type_=ARRAY(String)))
                  .table_valued("key").render_derived(name="wanted"))
        return cast("ColumnElement[bool]", column.in_(select(wanted.c.key)))
    return cast("ColumnElement[bool]", column.in_(keys))


def _existing(conn: Connection, column: Any, keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` are already stored in ``column`` (looked up in chunks)."""
    wanted = list(dict.fromkeys(keys))
    found: set[str] = set()
    for i in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[i:i + LOOKUP_CHUNK]
        found.update(conn.execute(select(column).where(_among(conn, column, chunk))).scalars())
    return found


def _site_kinds(conn: Connection, codes: Iterable[str]) -> dict[str, str]:
    """The kind of each of ``codes`` that is a stored site."""
    wanted = list(dict.fromkeys(codes))
    found: dict[str, str] = {}
    for i in range(0, len(wanted), LOOKUP_CHUNK):
        found.update(conn.execute(
            select(sites.c.code, sites.c.kind)
            .where(_among(conn, sites.c.code, wanted[i:i + LOOKUP_CHUNK]))
        ).all())
    return found


def _check_sites(
    conn: Connection, rows: list[tuple[int, dict[str, str]]], errors: list[RowError],
) -> list[tuple[int, dict[str, Any]]]:
    stored = _existing(conn, sites.c.code, (r.get("code", "") for _, r in rows))
    stored_kinds = _site_kinds(conn, [r["parent"] for _, r in rows if "parent" in r])
    in_file: dict[str, tuple[int, str, bool]] = {}  # code -> (row, kind, valid)
    good: list[tuple[int, dict[str, Any]]] = []
    for number, row in rows:
        c = _RowCheck(number, row, errors)
        code = c.key("code", "site code")
        name = c.text("name", f"the name of site {code!r}", required=True)
        kind = c.choice("kind", SITE_KINDS, "site kind")
        if "kind" not in row:
            c.fail("kind", "site kind is missing: network, region, municipality or site")
        if code is not None:
            if code in stored:
                c.fail("code", f"site code {code!r} is already in the database")
            elif code in in_file:
                c.fail("code", f"site code {code!r} is already on row {in_file[code][0]}")
        values: dict[str, Any] = {"code": code, "name": name, "kind": kind, "parent_code": None,
                                  "tier": None, "rural": None, "latitude": None,
                                  "longitude": None, "institution": None,
                                  "rollout_status": None, "rollout_changed_at": None}
        parent = row.get("parent")
        if kind is not None:
            allowed = ALLOWED_PARENTS[kind]
            if not allowed and parent is not None:
                c.fail("parent", f"network {code!r} is the top of a tree and has no parent")
            elif allowed and parent is None:
                c.fail("parent", f"{kind} {code!r} needs a parent: a {' or '.join(allowed)}")
            elif parent is not None:
                if parent in in_file:
                    p_row, p_kind, p_ok = in_file[parent]
                    if not p_ok:
                        c.fail("parent", f"parent {parent!r} is on row {p_row}, which has errors")
                    elif p_kind not in allowed:
                        c.fail("parent", f"{kind} {code!r} cannot be under {p_kind} {parent!r}: "
                                         f"its parent must be a {' or '.join(allowed)}")
                elif parent in stored_kinds:
                    if stored_kinds[parent] not in allowed:
                        c.fail("parent", f"{kind} {code!r} cannot be under "
                                         f"{stored_kinds[parent]} {parent!r}: its parent "
                                         f"must be a {' or '.join(allowed)}")
                else:
                    c.fail("parent", f"parent {parent!r} is neither in the database nor on "
                                     "an earlier row")
                values["parent_code"] = parent
            if kind == "site":
                tier = c.choice("tier", TIERS, f"the tier of site {code!r}")
                if "tier" not in row:
                    c.fail("tier", f"lab site {code!r} needs a tier: one of {', '.join(TIERS)}")
                lat = c.number_in("latitude", "latitude", -90, 90)
                lon = c.number_in("longitude", "longitude", -180, 180)
                if ("latitude" in row) != ("longitude" in row):
                    c.fail("latitude" if "latitude" not in row else "longitude",
                           f"site {code!r} needs both latitude and longitude, or neither")
                values.update(
                    tier=tier, rural=bool(c.flag("rural", "rural")), latitude=lat,
                    longitude=lon,
                    institution=c.text("institution", f"the institution of site {code!r}"),
                    rollout_status=c.choice("rollout_status", ROLLOUT_STATUSES,
                                            f"the rollout status of {code!r}", "planned"),
                )
            else:
                given = [f for f in ("tier", "rural", "latitude", "longitude", "institution",
                                     "rollout_status") if f in row]
                if given:
                    c.fail(given[0], f"{kind} {code!r} is not a lab site: "
                                     f"{', '.join(given)} belong to lab sites only")
        if code is not None and code not in in_file:
            in_file[code] = (number, kind or "", c.ok)
        if c.ok:
            good.append((number, values))
    return good


def _check_models(
    conn: Connection, rows: list[tuple[int, dict[str, str]]], errors: list[RowError],
) -> list[tuple[int, dict[str, Any]]]:
    stored = _existing(conn, models.c.code, (r.get("code", "") for _, r in rows))
    seen: dict[str, int] = {}
    good: list[tuple[int, dict[str, Any]]] = []
    for number, row in rows:
        c = _RowCheck(number, row, errors)
        code = c.key("code", "model code")
        name = c.text("name", f"the name of model {code!r}", required=True)
        category = c.choice("category", CATEGORIES, f"the category of model {code!r}")
        if "category" not in row:
            c.fail("category", f"the category is missing: one of {', '.join(CATEGORIES)}")
        tracking = c.choice("tracking", TRACKINGS, f"the tracking of model {code!r}",
                            "serialized")
        unit = c.text("unit", f"the unit of model {code!r}", max_len=UNIT_MAX)
        if tracking == "counted" and "unit" not in row:
            c.fail("unit", f"counted model {code!r} needs a unit, e.g. 'pcs'")
        if tracking == "serialized" and "unit" in row:
            c.fail("unit", f"serialized model {code!r} has no unit: each asset is one item")
        if code is not None:
            if code in stored:
                c.fail("code", f"model code {code!r} is already in the catalog")
            elif code in seen:
                c.fail("code", f"model code {code!r} is already on row {seen[code]}")
            else:
                seen[code] = number
        if c.ok:
            good.append((number, {"code": code, "name": name, "category": category,
                                  "tracking": tracking, "unit": unit}))
    return good


def _check_assets(
    conn: Connection, rows: list[tuple[int, dict[str, str]]], errors: list[RowError],
    progress: Callable[[int], None] | None,
) -> list[tuple[int, dict[str, Any]]]:
    stored_tags = _existing(conn, assets.c.tag, (r.get("tag", "") for _, r in rows))
    stored_serials = dict(_serial_holders(
        conn, [r["serial_number"] for _, r in rows if "serial_number" in r]
    ))
    catalog = {m.code: m.tracking for m in conn.execute(select(models.c.code, models.c.tracking))}
    site_kinds = _site_kinds(conn, [r["site"] for _, r in rows if "site" in r])
    tags: dict[str, int] = {}
    serials: dict[str, int] = {}
    good: list[tuple[int, dict[str, Any]]] = []
    for done, (number, row) in enumerate(rows, 1):
        c = _RowCheck(number, row, errors)
        tag = c.key("tag", "asset tag")
        model = c.key("model", f"the model of asset {tag!r}")
        site = c.key("site", f"the site of asset {tag!r}")
        serial = c.text("serial_number", f"the serial number of asset {tag!r}")
        status = c.choice("status", STATUSES, f"the status of asset {tag!r}", "available")
        condition = c.choice("condition", CONDITIONS, f"the condition of asset {tag!r}", "good")
        notes = c.text("notes", f"the notes of asset {tag!r}", max_len=NOTES_MAX)
        if tag is not None:
            if tag in stored_tags:
                c.fail("tag", f"asset tag {tag!r} is already registered in the database")
            elif tag in tags:
                c.fail("tag", f"asset tag {tag!r} is already on row {tags[tag]}")
            else:
                tags[tag] = number
        if model is not None:
            tracking = catalog.get(model)
            if tracking is None:
                c.fail("model", f"no model with code {model!r} in the catalog")
            elif tracking != "serialized":
                c.fail("model", f"model {model!r} is counted, not tracked as tagged assets")
        if site is not None:
            site_kind = site_kinds.get(site)
            if site_kind is None:
                c.fail("site", f"no site with code {site!r}")
            elif site_kind != "site":
                c.fail("site", f"assets are kept at lab sites, and {site!r} is a {site_kind}")
        if serial is not None:
            if serial in stored_serials:
                c.fail("serial_number", f"serial number {serial!r} is already registered as "
                                        f"asset {stored_serials[serial]!r}")
            elif serial in serials:
                c.fail("serial_number", f"serial number {serial!r} is already on row "
                                        f"{serials[serial]}")
            else:
                serials[serial] = number
        if c.ok:
            good.append((number, {"tag": tag, "model_code": model, "serial_number": serial,
                                  "status": status, "condition": condition,
                                  "site_code": site, "notes": notes}))
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    if progress is not None and len(rows) % PROGRESS_EVERY:
        progress(len(rows) % PROGRESS_EVERY)
    return good


def _serial_holders(conn: Connection, serials: list[str]) -> Iterator[tuple[str, str]]:
    wanted = list(dict.fromkeys(serials))
    for i in range(0, len(wanted), LOOKUP_CHUNK):
        yield from conn.execute(
            select(assets.c.serial_number, assets.c.tag)
            .where(_among(conn, assets.c.serial_number, wanted[i:i + LOOKUP_CHUNK]))
        )


# -- importing ------------------------------------------------------------------------------


def _dump(state: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in state.items() if v is not None}, sort_keys=True,
                      ensure_ascii=False)


def _executemany(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) with the driver's own ``executemany``.

    The columns hold only text, integers, floats, booleans and NULL, which both drivers
    adapt without SQLAlchemy's per-row parameter processing; skipping it makes a
    10,000-asset import about a third faster (bench/inventory.py).
    """
    if not rows:
        return
    columns = list(rows[0])
    quote = conn.dialect.identifier_preparer.quote
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(conn.dialect.paramstyle)
    if mark is None:  # a driver LabHub does not use: let SQLAlchemy bind the parameters
        for i in range(0, len(rows), WRITE_CHUNK):
            conn.execute(insert(table), rows[i:i + WRITE_CHUNK])
        return
    sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
           f"VALUES ({', '.join([mark] * len(columns))})")
    for i in range(0, len(rows), WRITE_CHUNK):
        conn.exec_driver_sql(sql, [tuple(r[c] for c in columns) for r in rows[i:i + WRITE_CHUNK]])


def import_csv(
    *,
    conn: Connection,
    kind: Kind,
    data: bytes | str,
    by: str,
    mode: Mode = "all",
    dry_run: bool = False,
    delimiter: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Check every row of a CSV of ``kind`` and, unless refused, write the valid ones.

    ``mode="all"`` writes nothing when any row has an error; ``mode="valid"`` writes the
    rows without errors. ``dry_run`` checks and writes nothing. Each created site, model
    and asset gets its ``SiteCreated``, ``ModelCreated`` or ``AssetRegistered`` event, as
    the services write them. Writes through ``conn`` and never commits. ``progress`` is
    called with the number of rows just checked (then written), for a progress bar.
    File-level problems (not UTF-8, an unknown column) raise InvalidValueError.
    """
    by = check_text(by, what="who made the import ('by')")
    if mode not in ("all", "valid"):
        raise InvalidValueError(f"import mode {mode!r} is not 'all' or 'valid'")
    _columns, rows = read_rows(decode(data), kind=kind, delimiter=delimiter)
    report = ImportReport(kind=kind, rows=len(rows), dry_run=dry_run)
    if kind == "sites":
        good = _check_sites(conn, rows, report.errors)
    elif kind == "models":
        good = _check_models(conn, rows, report.errors)
    else:
        good = _check_assets(conn, rows, report.errors, progress)
    report.errors.sort(key=lambda e: e.row)
    report.valid = len(good)
    if dry_run or (report.errors and mode == "all") or not good:
        return report
    base = now_us()
    values = [v for _, v in good]
    if kind == "sites":
        for v in values:
            if v["kind"] == "site":
                v["rollout_changed_at"] = base
        _executemany(conn, sites, values)
        event_rows = [
            _event_row("SiteCreated", v["code"], by, v["code"], base + i,
                       {k: x for k, x in v.items() if k != "rollout_changed_at"}, None)
            for i, v in enumerate(values)
        ]
    elif kind == "models":
        _executemany(conn, models, values)
        event_rows = [_event_row("ModelCreated", v["code"], by, None, base + i, v, None)
                      for i, v in enumerate(values)]
    else:
        for i, v in enumerate(values):
            v["updated_at"] = base + i
        _executemany(conn, assets, values)
        event_rows = [
            _event_row("AssetRegistered", v["tag"], by, v["site_code"], v["updated_at"],
                       {k: v[k] for k in ("model_code", "serial_number", "status",
                                          "condition", "site_code")}, v["notes"])
            for v in values
        ]
    _executemany(conn, events, event_rows)
    report.created = len(values)
    return report


def _event_row(kind: str, subject: str, by: str, site_code: str | None, at: int,
               to_state: dict[str, Any], note: str | None) -> dict[str, Any]:
    return {"uuid": str(uuid.uuid4()), "at": at, "kind": kind, "subject": subject, "by": by,
            "site_code": site_code, "from_state": None, "to_state": _dump(to_state),
            "note": note}


# -- writing --------------------------------------------------------------------------------


class _Sink:
    """A file-like target for ``csv.writer`` whose text is taken out chunk by chunk."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def take(self) -> str:
        text = "".join(self.parts)
        self.parts.clear()
        return text


def guard(cell: str) -> str:
    """A text cell a spreadsheet will not run as a formula: ``=1+1`` -> ``'=1+1``."""
    return "'" + cell if cell.startswith(FORMULA_START) else cell


def _cell(value: Any, options: CsvOptions) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text.replace(".", ",") if options.decimal == "," else text
    if isinstance(value, int):
        return str(value)
    return guard(str(value))


def iter_csv(
    header: Sequence[str], rows: Iterable[Sequence[Any]], options: CsvOptions,
    chunk_rows: int = 1000,
) -> Iterator[str]:
    """CSV text in chunks: the header, then one line per row, ``\\r\\n`` line ends."""
    sink = _Sink()
    writer = csv.writer(sink, delimiter=options.delimiter, lineterminator="\r\n")
    if options.bom:
        sink.write("\ufeff")
    writer.writerow(header)
    for count, row in enumerate(rows, 1):
        writer.writerow([_cell(v, options) for v in row])
        if count % chunk_rows == 0:
            yield sink.take()
    yield sink.take()


def _tree_order(found: list[Any]) -> list[Any]:
    """Sites with every parent before its children (then by code), so the file imports."""
    codes = {r.code for r in found}
    children: dict[str | None, list[Any]] = {}
    for r in found:
        children.setdefault(r.parent_code if r.parent_code in codes else None, []).append(r)
    ordered: list[Any] = []
    stack = sorted(children.get(None, []), key=lambda r: r.code, reverse=True)
    while stack:
        r = stack.pop()
        ordered.append(r)
        stack.extend(sorted(children.get(r.code, []), key=lambda x: x.code, reverse=True))
    return ordered


def export_sites(
    *, conn: Connection, options: CsvOptions, under: str | None = None
) -> Iterator[str]:
    """The sites (all, or ``under`` and its subtree) as CSV, parents before children."""
    query = select(sites)
    if under is not None:
        get_site(conn=conn, code=under)
        query = query.where(sites.c.code.in_(select(subtree(under).c.code)))
    ordered = _tree_order(list(conn.execute(query)))
    rows = ((r.code, r.name, r.kind, r.parent_code, r.tier,
             None if r.rural is None else bool(r.rural), r.latitude, r.longitude,
             r.institution, r.rollout_status) for r in ordered)
    return iter_csv(COLUMNS["sites"], rows, options)


def export_models(
    *, conn: Connection, options: CsvOptions, category: str | None = None
) -> Iterator[str]:
    """The catalog (optionally one category) as CSV, by code."""
    query = select(models).order_by(models.c.code)
    if category is not None:
        query = query.where(models.c.category == category)
    rows = ((r.code, r.name, r.category, r.tracking, r.unit) for r in conn.execute(query))
    return iter_csv(COLUMNS["models"], rows, options)


def export_assets(
    *,
    conn: Connection,
    options: CsvOptions,
    site_under: str | None = None,
    status: str | None = None,
    model_code: str | None = None,
) -> Iterator[str]:
    """Assets by tag as CSV: all, or those under a site's subtree, of a status, of a model."""
    query = select(
        assets.c.tag, assets.c.model_code, assets.c.site_code, assets.c.serial_number,
        assets.c.status, assets.c.condition, assets.c.notes,
    ).order_by(assets.c.tag)
    if site_under is not None:
        get_site(conn=conn, code=site_under)
        query = query.where(assets.c.site_code.in_(select(subtree(site_under).c.code)))
    if status is not None:
        if status not in STATUSES:
            raise InvalidValueError(f"asset status {status!r} is not one of: "
                                    f"{', '.join(STATUSES)}")
        query = query.where(assets.c.status == status)
    if model_code is not None:
        query = query.where(assets.c.model_code == model_code)
    return iter_csv(COLUMNS["assets"], conn.execute(query), options)


def _iso(ts: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts)
    text = moment.isoformat(timespec="microseconds" if ts % US_PER_S else "seconds")
    return text.replace("+00:00", "Z")


def export_history(*, conn: Connection, subject: str, options: CsvOptions) -> Iterator[str]:
    """Every event about ``subject`` as CSV, oldest first; times RFC 3339 UTC."""
    found = history_of(conn=conn, subject=subject)
    if not found:
        raise NotFoundError(f"nothing in the inventory has the key {subject!r}",
                            what="history", key=subject)
    rows = ((_iso(e.at), e.kind, e.subject, e.by, e.site_code,
             None if e.from_state is None else json.dumps(e.from_state, sort_keys=True,
                                                          ensure_ascii=False),
             None if e.to_state is None else json.dumps(e.to_state, sort_keys=True,
                                                        ensure_ascii=False),
             e.note, e.uuid) for e in found)
    return iter_csv(HISTORY_COLUMNS, rows, options)


def export_audit_counts(
    *, conn: Connection, audit_uuid: str, options: CsvOptions
) -> Iterator[str]:
    """The count lines of a finished audit as CSV, by model code: the site's stock when the
    audit finished (``expected``), the count, the difference (count minus stock) and when
    applying the audit set the stock to the count (RFC 3339 UTC, empty if it did not).
    An open audit has no report yet (InvalidTransitionError)."""
    report = get_report(conn=conn, audit_uuid=audit_uuid)
    a = report.audit
    rows = ((a.uuid, a.site_code, c.model_code, c.unit, c.expected, c.counted, c.difference,
             None if c.corrected_at is None else _iso(c.corrected_at)) for c in report.counts)
    return iter_csv(AUDIT_COUNT_COLUMNS, rows, options)


def export_text(chunks: Iterable[str]) -> str:
    """All of an export's chunks as one text (for tests and small files)."""
    return "".join(chunks)
