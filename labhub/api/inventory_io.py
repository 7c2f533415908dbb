"""Inventory import, export and labels over HTTP: CSV in, CSV out, QR label sheets.

Thin routes over ``inventory.csvio`` and ``inventory.labels``. An import is one
transaction: with ``mode=all`` (the default) any bad row refuses the whole file with a
problem+json 422 whose ``errors`` list every row, column and problem, and nothing is
written; ``mode=valid`` writes the good rows and answers with the rest; ``dry_run=true``
only checks. Exports take the readings export's options (``delimiter``, ``decimal``,
``bom``). Labels are one PDF with every page, or one SVG page at a time (``page``; the
``X-Label-Pages`` header tells how many there are).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from inventory import csvio, labels
from inventory.assets import Status
from inventory.catalog import Category
from labhub.access.caller import Forbidden
from labhub.access.gate import (
    On,
    gated_caller,
    needs,
    require_any,
    require_at,
    require_network,
    scope_of,
)
from labhub.access.permissions import P
from labhub.access.sites import asset_sites, network_wide, sites_of, subject_sites, tree_for
from labhub.api.common import Actor, Key, PathText, ReadConn, WriteConn
from labhub.api.deps import settings_of
from labhub.api.document import file_response
from labhub.problems import Problem, problem_responses
from labtext.csvtext import DELIMITER_NAMES as _DELIMITERS

router = APIRouter(prefix="/api/v1", tags=["inventory import, export and labels"])

Delimiter = Annotated[Literal["comma", "semicolon", "tab"],
                      Query(description="cell separator: semicolon for Spanish Excel")]
DecimalMark = Annotated[Literal["point", "comma"], Query(description="decimal separator")]
Bom = Annotated[bool, Query(description="start with a UTF-8 byte order mark (Excel)")]
CSV_MEDIA = "text/csv; charset=utf-8"
_CSV_FILE = file_response("text/csv", "The CSV file")
ERRORS_SHOWN_MAX = 1000  # row errors in one answer: enough to fix a file, not a flood


async def _csv_body(request: Request) -> bytes:
    limit: int = settings_of(request).max_body_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem(413, "Upload too large", f"the body is over {limit} bytes")
    return bytes(body)


CsvBody = Annotated[bytes, Depends(_csv_body)]


class RowErrorOut(BaseModel):
    """One problem in one row of an imported file (the header is row 1)."""

    row: int
    column: str | None
    where: str
    message: str


class ImportOut(BaseModel):
    """What an import found and wrote."""

    kind: str
    rows: int
    valid: int
    created: int
    dry_run: bool
    errors: list[RowErrorOut]


def _errors(report: csvio.ImportReport) -> list[RowErrorOut]:
    return [
        RowErrorOut(row=e.row, column=e.column,
                    where=f"row {e.row}" + (f", column {e.column}" if e.column else ""),
                    message=e.problem)
        for e in report.errors[:ERRORS_SHOWN_MAX]
    ]


_CSV_TEXT: dict[str, Any] = {"schema": {"description": "the CSV file, UTF-8"}}
# The media types a CSV file may come as: text/plain is Excel's tab-separated "Unicode
# text"; a body without a Content-Type is application/octet-stream. Any other (a form) is
# a 415 (labhub.api.edge.refuse_media_type reads this list from the document).
CSV_UPLOAD_MEDIA: dict[str, Any] = {"text/csv": _CSV_TEXT, "text/plain": _CSV_TEXT,
                                    "application/octet-stream": {
                                        "schema": {"type": "string", "format": "binary"}}}


def _import_reach(request: Request, kind: str) -> frozenset[str] | None:
    """The sites the caller may import rows at (None: everywhere). Models are the whole
    network's catalogue: importing them needs ``inventory.manage`` for the whole network."""
    if kind == "models":
        require_network(request, P.INVENTORY_MANAGE)
        return None
    tree = tree_for(request)
    if network_wide(gated_caller(request), P.INVENTORY_MANAGE, tree):
        return None
    return scope_of(request, P.INVENTORY_MANAGE)


@router.post("/import/{kind}", response_model=ImportOut,
             summary="Import sites, models or assets from a CSV file",
             openapi_extra={"requestBody": {"required": True, "content": CSV_UPLOAD_MEDIA}},
             dependencies=[needs(P.INVENTORY_MANAGE, On.ROUTE)])
def import_csv(
    kind: Literal["sites", "models", "assets"],
    data: CsvBody,
    conn: WriteConn,
    request: Request,
    actor: Actor,
    mode: Literal["all", "valid"] = "all",
    dry_run: bool = False,
    delimiter: Annotated[Literal["comma", "semicolon", "tab"] | None,
                         Query(description="detected from the header when not given")] = None,
) -> ImportOut:
    """The body is the CSV file (``text/csv``, UTF-8 with or without BOM). With
    ``mode=all`` a file with any bad row is a 422 listing every row error, and nothing is
    imported; with ``mode=valid`` the good rows are imported and the bad ones listed.
    Models need ``inventory.manage`` for the whole network; a row of sites or assets at a
    site outside the caller's is a row error (a new site: under one of theirs)."""
    reach = _import_reach(request, kind)
    report = csvio.import_csv(
        conn=conn, kind=kind, data=data, by=actor, mode=mode, dry_run=dry_run,
        delimiter=None if delimiter is None else _DELIMITERS[delimiter],
        in_reach=reach,
    )
    errors = _errors(report)
    if report.errors and mode == "all":
        raise Problem(
            422, "CSV rows are not valid",
            f"{len({e.row for e in report.errors})} of {report.rows} rows have errors; nothing "
            f"was imported (first: {report.errors[0]})",
            errors=[e.model_dump() for e in errors],
        )
    return ImportOut(kind=kind, rows=report.rows, valid=report.valid, created=report.created,
                     dry_run=report.dry_run, errors=errors)


def _options(
    delimiter: Delimiter = "comma", decimal: DecimalMark = "point", bom: Bom = False
) -> csvio.CsvOptions:
    """The export options every CSV route takes, as query parameters."""
    return csvio.CsvOptions(delimiter=_DELIMITERS[delimiter],
                            decimal="," if decimal == "comma" else ".", bom=bom)


ExportOptions = Annotated[csvio.CsvOptions, Depends(_options)]


def _readable(request: Request, site: str | None) -> frozenset[str] | None:
    """The sites an export may show (None: all); a 403 when it asks for a ``site`` outside
    them (a code the tree does not know passes: the export answers its 404)."""
    scope = scope_of(request, P.INVENTORY_READ)
    if (scope is not None and site is not None and site not in scope
            and site in tree_for(request).parents):
        raise Forbidden(P.INVENTORY_READ, site)
    return scope


def _csv(text: str, filename: str) -> Response:
    return Response(text.encode("utf-8"), media_type=CSV_MEDIA,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/export/sites.csv", summary="Export sites as CSV",
            responses={**_CSV_FILE, **problem_responses(404)},
            dependencies=[needs(P.INVENTORY_READ, On.NOTHING)])
def export_sites(conn: ReadConn, options: ExportOptions, request: Request,
                 under: Key | None = None) -> Response:
    """All sites, or one site and its subtree, parents before children (it imports back);
    only the sites where the caller may read the inventory."""
    only = _readable(request, under)
    return _csv(csvio.export_text(csvio.export_sites(
        conn=conn, options=options, under=under, only=only)), "sites.csv")


@router.get("/export/models.csv", summary="Export the catalog as CSV", responses=_CSV_FILE,
            dependencies=[needs(P.INVENTORY_READ, On.NOTHING)])
def export_models(
    conn: ReadConn, options: ExportOptions, category: Category | None = None,
) -> Response:
    """Catalog models by code, optionally of one category."""
    return _csv(csvio.export_text(csvio.export_models(
        conn=conn, options=options, category=category)), "models.csv")


@router.get("/export/assets.csv", summary="Export assets as CSV",
            responses={**_CSV_FILE, **problem_responses(404)},
            dependencies=[needs(P.INVENTORY_READ, On.NOTHING)])
def export_assets(
    conn: ReadConn, options: ExportOptions, request: Request, site: Key | None = None,
    status: Status | None = None, model: Key | None = None,
) -> Response:
    """Assets by tag; ``site`` takes the site and its whole subtree; only assets at sites
    where the caller may read the inventory."""
    sites = _readable(request, site)
    return _csv(csvio.export_text(csvio.export_assets(
        conn=conn, options=options, site_under=site, status=status,
        model_code=model, sites=sites)), "assets.csv")


@router.get("/export/history.csv", summary="Export an item's history as CSV",
            responses={**_CSV_FILE, **problem_responses(404)},
            dependencies=[needs(P.INVENTORY_READ, On.ROUTE)])
def export_history(
    conn: ReadConn,
    request: Request,
    subject: Annotated[PathText, Query(min_length=1,
                                       description="asset tag, site or model code")],
    options: ExportOptions,
) -> Response:
    """Every event about the subject, oldest first, times in UTC; only those at the
    caller's sites (and those at none)."""
    require_any(request, P.INVENTORY_READ, subject_sites(conn, subject))
    return _csv(csvio.export_text(csvio.export_history(
        conn=conn, subject=subject, options=options,
        sites=scope_of(request, P.INVENTORY_READ))), "history.csv")


@router.get("/export/audit-counts.csv", summary="Export an audit's count lines as CSV",
            responses={**_CSV_FILE, **problem_responses(404, 409)},
            dependencies=[needs(P.INVENTORY_READ, On.ROUTE)])
def export_audit_counts(
    conn: ReadConn, options: ExportOptions, request: Request,
    audit: Annotated[PathText, Query(min_length=1, description="the audit's id")],
) -> Response:
    """The counted models of a finished audit against the site's stock, by model code
    (404 for no such audit, 409 while it is open)."""
    require_any(request, P.INVENTORY_READ, sites_of(conn, "audit", audit) or ())
    return _csv(csvio.export_text(csvio.export_audit_counts(
        conn=conn, audit_uuid=audit, options=options)), "audit-counts.csv")


class LabelQuery(BaseModel):
    """Which labels and on which grid."""

    tag: list[Key] | None = Field(default=None, description="asset tags, in print order")
    site: Key | None = Field(default=None, description="every asset at this site's subtree")
    include_lost_in_transit: bool = Field(
        default=False, description="print lost and in-transit assets too (left out by "
        "default: they are not on the shelf); X-Labels-Left-Out says how many were")
    columns: int = Field(default=3, ge=1, le=labels.MAX_COLUMNS)
    rows: int = Field(default=8, ge=1, le=labels.MAX_ROWS)
    margin_mm: float = Field(default=10.0, ge=0, le=40)
    format: Literal["a4", "small"] = Field(
        default="a4", description="small: one 50 x 30 mm label a page, for a small label "
        "printer (columns, rows and margin are then not used)")


def _labels(conn: ReadConn, q: LabelQuery, request: Request
            ) -> tuple[labels.LabelSelection, labels.Grid]:
    """The labels asked for: a 403 for a tag or a site outside the caller's sites."""
    _readable(request, q.site)
    if q.tag:
        require_at(request, P.INVENTORY_READ, *asset_sites(conn, q.tag))
    found = labels.select_labels(conn=conn, tags=q.tag, site_under=q.site,
                                 leave_out=() if q.include_lost_in_transit
                                 else labels.AWAY_STATUSES)
    grid = labels.SMALL_LABEL if q.format == "small" else labels.Grid(
        columns=q.columns, rows=q.rows, margin_mm=q.margin_mm)
    return found, grid


def _left_out(found: labels.LabelSelection) -> dict[str, str]:
    """``X-Labels-Left-Out``: how many assets were left out (lost, in transit)."""
    return {"X-Labels-Left-Out": str(found.left_out_total)}


@router.get("/labels.pdf", summary="QR labels as an A4 PDF",
            responses={**file_response("application/pdf", "The label sheets"),
                       **problem_responses(404)},
            dependencies=[needs(P.INVENTORY_READ, On.NOTHING)])
def labels_pdf(conn: ReadConn, q: Annotated[LabelQuery, Query()],
               request: Request) -> Response:
    """Labels for ``tag`` (repeatable) or every asset under ``site``, ``columns`` x
    ``rows`` per A4 page, as many pages as needed. Lost and in-transit assets are left
    out unless ``include_lost_in_transit``; ``X-Labels-Left-Out`` says how many were."""
    found, grid = _labels(conn, q, request)
    return Response(labels.render_pdf(found.labels, grid), media_type="application/pdf",
                    headers={"Content-Disposition": 'inline; filename="labels.pdf"',
                             **_left_out(found)})


@router.get("/labels.svg", summary="QR labels as an A4 SVG page",
            responses={**file_response("image/svg+xml", "One label sheet", headers={
                "X-Label-Pages": {"description": "how many pages the labels fill",
                                  "schema": {"type": "string", "pattern": "^[0-9]+$"}}}),
                       **problem_responses(404)},
            dependencies=[needs(P.INVENTORY_READ, On.NOTHING)])
def labels_svg(
    conn: ReadConn, q: Annotated[LabelQuery, Query()], request: Request,
    page: Annotated[int, Query(ge=1, description="which page, from 1")] = 1,
) -> Response:
    """One A4 page of the labels; the ``X-Label-Pages`` header says how many pages, and
    ``X-Labels-Left-Out`` how many lost and in-transit assets were left out."""
    found, grid = _labels(conn, q, request)
    pages = labels.render_svg(found.labels, grid)
    if page > len(pages):
        raise Problem(422, "No such page",
                      f"page {page}: the labels fill {len(pages)} page(s)")
    return Response(pages[page - 1], media_type="image/svg+xml",
                    headers={"X-Label-Pages": str(len(pages)), **_left_out(found)})
