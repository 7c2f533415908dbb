"""Importing sites, models and assets from CSV: what ministries keep in spreadsheets.

Import reads the whole file, checks every row with the services' own validators
(``sites``, ``catalog`` and ``assets``: one rule, one function, for a service call and a
spreadsheet row) and against the database and the file itself (a tag twice in the file, a
tag already registered, a parent site on an earlier row), and reports each problem with
its row number (as a spreadsheet numbers them: the header is row 1), its column and what
is wrong. Assets come in with the statuses a person may set by hand: an asset ``on_loan``
or ``in_repair`` needs the loan or repair behind it, so such a row is refused with a
message that says to import the asset available and record the loan or repair. Nothing
is written unless every row is valid, or, in ``mode="valid"``, only the valid rows are
written (a row that leans on an invalid row is invalid too). The rows then go in with
Core ``executemany`` in one transaction (the caller's), one history event per created
thing, so 10,000 assets take well under a second instead of the ~30 s of one service call
per row. The delimiter (``,`` ``;`` tab) is detected from the header unless given (the
rule of :mod:`labtext.csvtext`); text is UTF-8 with or without a byte order mark; header
names are English or Spanish, and asset statuses and conditions English, Spanish or
Portuguese (see :mod:`inventory.csvio.columns`), in any case and with or without accents;
the formula guard the export puts on text cells is taken off.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import re
import unicodedata
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import ARRAY, ColumnElement, Connection, String, bindparam, func, insert, select

from inventory import assets as asset_rules
from inventory import catalog
from inventory import sites as site_rules
from inventory.assets import CONDITIONS, STATUSES
from inventory.catalog import CATEGORIES, TRACKINGS
from inventory.csvio.columns import (
    ALIASES,
    COLUMNS,
    KINDS,
    REQUIRED,
    VALUE_WORDS,
    Kind,
    checked_delimiter,
)
from inventory.errors import InvalidValueError, InventoryError
from inventory.sites import ALLOWED_PARENTS, LAB_FIELDS, ROLLOUT_STATUSES, SITE_KINDS, TIERS
from inventory.tables import assets, events, models, sites
from inventory.values import check_key, check_text, now_us
from labtext.csvtext import decimal_point, detect_delimiter, unguard_formula

Mode = Literal["all", "valid"]
_T = TypeVar("_T")
MAX_ROWS = 200_000  # rows of one import: a national network's assets; more is split in files
LOOKUP_CHUNK = 500  # keys per "IN (...)" look-up: well under SQLite's 32,766 parameters
WRITE_CHUNK = 5_000  # rows per executemany: bounded memory for the statement parameters
PROGRESS_EVERY = 1_000  # rows between two progress callbacks
FOLD_CACHE = 4_096  # distinct header and enumeration cells folded; a file repeats few
TRUE_WORDS = frozenset({"true", "yes", "si", "1", "rural", "verdadero", "x"})
FALSE_WORDS = frozenset({"false", "no", "0", "urban", "urbano", "urbana", "falso"})


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
    else:
        checked_delimiter(delimiter)
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
            row = {col: unguard_formula(cell.strip())
                   for col, cell in zip(columns, cells, strict=False) if cell.strip()}
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
    """Collects the errors of one row. Each method reads one cell and hands it to a
    validator of the services (``sites.check_*``, ``catalog.check_*``, ``assets.check_*``):
    the clean value comes back, or None with the validator's message as the cell's error."""

    def __init__(self, number: int, row: dict[str, str], errors: list[RowError]) -> None:
        self.number = number
        self.row = row
        self.errors = errors
        self.ok = True

    def fail(self, column: str | None, problem: str) -> None:
        self.ok = False
        self.errors.append(RowError(self.number, column, problem))

    def rule(self, column: str, check: Callable[..., _T], *args: Any, **kwargs: Any) -> _T | None:
        """``check(*args, **kwargs)``, or None with its error recorded against ``column``."""
        try:
            return check(*args, **kwargs)
        except InventoryError as exc:
            self.fail(column, str(exc))
            return None

    def required(self, column: str, missing: str, check: Callable[..., str],
                 **kwargs: Any) -> str | None:
        """A cell that must be there (``missing`` names it when it is not), checked by
        ``check``."""
        value = self.row.get(column)
        if value is None:
            self.fail(column, f"{missing} is missing")
            return None
        return self.rule(column, check, value, **kwargs)

    def code_and_name(self, what: str, check_code: Callable[[str], str],
                      check_name: Callable[..., str]) -> tuple[str | None, str | None]:
        """The ``code`` and ``name`` cells of a site or model row (``what``), both required."""
        code = self.required("code", f"{what} code", check_code)
        return code, self.required("name", f"the name of {what} {code!r}", check_name,
                                   code=code)

    def optional(self, column: str, check: Callable[..., _T], **kwargs: Any) -> _T | None:
        """A cell that may be left empty (None), else checked by ``check``."""
        value = self.row.get(column)
        return None if value is None else self.rule(column, check, value, **kwargs)

    def choice(self, column: str, choices: Sequence[str], check: Callable[..., str],
               default: str | None = None, **kwargs: Any) -> str | None:
        """An enumeration's value, as written or folded (``Lab Point`` is ``lab_point``),
        checked by ``check``; ``default`` for an empty cell."""
        value = self.row.get(column)
        if value is None:
            return default
        if value not in choices:
            folded = _fold(value)
            folded = VALUE_WORDS.get(column, {}).get(folded, folded)
            if folded in choices:
                value = folded
        return self.rule(column, check, value, **kwargs)

    def unique(self, column: str, key: str | None, seen: dict[str, int], *, what: str,
               taken: str | None) -> None:
        """``key`` is not ``taken`` already (where: ``"in the catalog"``) nor on an earlier
        row of the file (``seen``: key -> row, which this row joins)."""
        if key is None:
            return
        if taken is not None:
            self.fail(column, f"{what} {key!r} is already {taken}")
        elif key in seen:
            self.fail(column, f"{what} {key!r} is already on row {seen[key]}")
        else:
            seen[key] = self.number

    def decimal(self, column: str, what: str) -> float | None:
        """A number with a decimal point or a decimal comma, or None if empty or not one."""
        value = self.row.get(column)
        if value is None:
            return None
        try:
            return float(decimal_point(value))
        except ValueError:
            self.fail(column, f"{what} {value!r} is not a number")
            return None

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


def _outside(site: str, sites: Collection[str] | None) -> str | None:
    """The row error for a row at ``site`` when it is not among ``sites`` (None: all are
    in reach)."""
    if sites is None or site in sites:
        return None
    return f"site {site!r} is outside your sites"


def _check_sites(
    conn: Connection, rows: list[tuple[int, dict[str, str]]], errors: list[RowError],
    sites_in_reach: Collection[str] | None = None,
) -> list[tuple[int, dict[str, Any]]]:
    stored = _existing(conn, sites.c.code, (r.get("code", "") for _, r in rows))
    stored_kinds = _site_kinds(conn, [r["parent"] for _, r in rows if "parent" in r])
    in_file: dict[str, tuple[int, str, bool]] = {}  # code -> (row, kind, valid)
    # A new site is in reach when its parent is (one on an earlier row too).
    reach = None if sites_in_reach is None else set(sites_in_reach)
    good: list[tuple[int, dict[str, Any]]] = []
    for number, row in rows:
        c = _RowCheck(number, row, errors)
        code, name = c.code_and_name("site", site_rules.check_site_code,
                                     site_rules.check_site_name)
        kind = c.choice("kind", SITE_KINDS, site_rules.check_site_kind)
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
            _check_site_parent(c, code, kind, parent, in_file, stored_kinds)
            values["parent_code"] = parent
            if kind == "site":
                _check_lab_fields(c, code, values)
            else:
                given = [f for f in LAB_FIELDS if f in row]
                if given:
                    c.rule(given[0], site_rules.check_no_lab_fields, kind=kind, code=code,
                           given=given)
        if reach is not None and code is not None and (parent is None or parent not in reach):
            c.fail("parent", f"site {code!r} is outside your sites" + (
                f": its parent {parent!r} is not one of them" if parent is not None
                else ": a site at the top of the tree belongs to the whole network"))
        if reach is not None and code is not None and c.ok:
            reach.add(code)
        if code is not None and code not in in_file:
            in_file[code] = (number, kind or "", c.ok)
        if c.ok:
            good.append((number, values))
    return good


def _check_site_parent(
    c: _RowCheck, code: str | None, kind: str, parent: str | None,
    in_file: dict[str, tuple[int, str, bool]], stored_kinds: dict[str, str],
) -> None:
    """The tree's rule (``sites.check_parent``) with the parent found on an earlier row of
    the file or in the database."""
    parent_kind: str | None = None
    if parent is not None and ALLOWED_PARENTS[kind]:
        if parent in in_file:
            p_row, parent_kind, p_ok = in_file[parent]
            if not p_ok:
                c.fail("parent", f"parent {parent!r} is on row {p_row}, which has errors")
                return
        elif parent in stored_kinds:
            parent_kind = stored_kinds[parent]
        else:
            c.fail("parent", f"parent {parent!r} is neither in the database nor on an "
                             "earlier row")
            return
    c.rule("parent", site_rules.check_parent, code=code, kind=kind, parent_code=parent,
           parent_kind=parent_kind)


def _check_lab_fields(c: _RowCheck, code: str | None, values: dict[str, Any]) -> None:
    """A lab site's tier, coordinates, institution and rollout status, into ``values``."""
    row = c.row
    tier = c.choice("tier", TIERS, site_rules.check_tier, code=code)
    if "tier" not in row:
        c.rule("tier", site_rules.check_tier, None, code=code)
    lat = c.decimal("latitude", "latitude")
    lon = c.decimal("longitude", "longitude")
    if lat is not None:
        lat = c.rule("latitude", site_rules.check_latitude, lat, code=code)
    if lon is not None:
        lon = c.rule("longitude", site_rules.check_longitude, lon, code=code)
    c.rule("latitude" if "latitude" not in row else "longitude",
           site_rules.check_both_coordinates, code=code, latitude="latitude" in row,
           longitude="longitude" in row)
    values.update(
        tier=tier, rural=bool(c.flag("rural", "rural")), latitude=lat, longitude=lon,
        institution=c.optional("institution", site_rules.check_institution, code=code),
        rollout_status=c.choice("rollout_status", ROLLOUT_STATUSES,
                                site_rules.check_rollout_status, "planned", code=code),
    )


def _check_models(
    conn: Connection, rows: list[tuple[int, dict[str, str]]], errors: list[RowError],
) -> list[tuple[int, dict[str, Any]]]:
    stored = _existing(conn, models.c.code, (r.get("code", "") for _, r in rows))
    seen: dict[str, int] = {}
    good: list[tuple[int, dict[str, Any]]] = []
    for number, row in rows:
        c = _RowCheck(number, row, errors)
        code, name = c.code_and_name("model", catalog.check_model_code,
                                     catalog.check_model_name)
        category = c.choice("category", CATEGORIES, catalog.check_category, code=code)
        if "category" not in row:
            c.fail("category", f"the category is missing: one of {', '.join(CATEGORIES)}")
        tracking = c.choice("tracking", TRACKINGS, catalog.check_tracking, "serialized",
                            code=code)
        unit = None
        if tracking is not None:
            unit = c.rule("unit", catalog.check_unit, row.get("unit"), code=code,
                          tracking=tracking)
        c.unique("code", code, seen, what="model code",
                 taken="in the catalog" if code in stored else None)
        if c.ok:
            good.append((number, {"code": code, "name": name, "category": category,
                                  "tracking": tracking, "unit": unit}))
    return good


def _check_assets(
    conn: Connection, rows: list[tuple[int, dict[str, str]]], errors: list[RowError],
    progress: Callable[[int], None] | None, sites_in_reach: Collection[str] | None = None,
) -> list[tuple[int, dict[str, Any]]]:
    stored_tags = _existing(conn, assets.c.tag, (r.get("tag", "") for _, r in rows))
    stored_serials = dict(_serial_holders(
        conn, [r["serial_number"] for _, r in rows if "serial_number" in r]
    ))
    catalog_rows = {m.code: (m.tracking, m.unit)
                    for m in conn.execute(select(models.c.code, models.c.tracking,
                                                 models.c.unit))}
    site_kinds = _site_kinds(conn, [r["site"] for _, r in rows if "site" in r])
    tags: dict[str, int] = {}
    serials: dict[str, int] = {}
    good: list[tuple[int, dict[str, Any]]] = []
    for done, (number, row) in enumerate(rows, 1):
        c = _RowCheck(number, row, errors)
        tag = c.required("tag", "asset tag", asset_rules.check_tag)
        asset = asset_rules.asset_words(tag)
        model = c.required("model", f"the model of {asset}", check_key,
                           what=f"the model of {asset}")
        site = c.required("site", f"the site of {asset}", check_key,
                          what=f"the site of {asset}")
        serial = c.optional("serial_number", asset_rules.check_serial_number, tag=tag)
        status = c.choice("status", STATUSES, asset_rules.check_status_by_hand, "available",
                          tag=tag, imported=True)
        condition = c.choice("condition", CONDITIONS, asset_rules.check_condition, "good",
                             tag=tag)
        notes = c.optional("notes", asset_rules.check_notes, tag=tag)
        c.unique("tag", tag, tags, what="asset tag",
                 taken="registered in the database" if tag in stored_tags else None)
        if model is not None:
            found = catalog_rows.get(model)
            if found is None:
                c.fail("model", f"no model with code {model!r} in the catalog")
            else:
                c.rule("model", asset_rules.check_tracks_assets, code=model, tracking=found[0],
                       unit=found[1])
        if site is not None:
            site_kind = site_kinds.get(site)
            if site_kind is None:
                c.fail("site", f"no site with code {site!r}")
            else:
                c.rule("site", asset_rules.check_lab_site_kind, code=site, kind=site_kind)
                outside = _outside(site, sites_in_reach)
                if outside is not None:
                    c.fail("site", outside)
        holder = None if serial is None else stored_serials.get(serial)
        c.unique("serial_number", serial, serials, what="serial number",
                 taken=None if holder is None else f"registered as asset {holder!r}")
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
    in_reach: Collection[str] | None = None,
) -> ImportReport:
    """Check every row of a CSV of ``kind`` and, unless refused, write the valid ones.

    ``mode="all"`` writes nothing when any row has an error; ``mode="valid"`` writes the
    rows without errors. ``dry_run`` checks and writes nothing. Each created site, model
    and asset gets its ``SiteCreated``, ``ModelCreated`` or ``AssetRegistered`` event, as
    the services write them. Writes through ``conn`` and never commits. ``progress`` is
    called with the number of rows just checked (then written), for a progress bar.
    File-level problems (not UTF-8, an unknown column) raise InvalidValueError.

    ``in_reach``, when given, are the sites the person importing may manage: an asset at
    another site, or a site whose parent is not among them (nor a site on an earlier row
    that is), is a row error ("site 'X' is outside your sites"). Models are the whole
    network's catalogue: whoever may import them is not limited by ``in_reach``.
    """
    by = check_text(by, what="who made the import ('by')")
    if mode not in ("all", "valid"):
        raise InvalidValueError(f"import mode {mode!r} is not 'all' or 'valid'")
    _columns, rows = read_rows(decode(data), kind=kind, delimiter=delimiter)
    report = ImportReport(kind=kind, rows=len(rows), dry_run=dry_run)
    if kind == "sites":
        good = _check_sites(conn, rows, report.errors, in_reach)
    elif kind == "models":
        good = _check_models(conn, rows, report.errors)
    else:
        good = _check_assets(conn, rows, report.errors, progress, in_reach)
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
