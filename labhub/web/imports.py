"""CSV import: upload, a preview of every row's errors, and nothing written unless all rows are
good: ``/import``.

The upload is a multipart form (a file cannot travel url-encoded), which
:func:`labhub.web.pages.signed_form` does not read: :func:`signed_upload` reads it here, as
it streams, up to the API's upload limit, and checks its ``csrf_token`` field against the
session's with the same constant-time compare. The check is the API's own route function
(:func:`labhub.api.inventory_io.import_csv` with ``dry_run`` and ``mode=valid``: every row
checked, with the API's rules of reach, nothing written), whose errors the page shows per
row and column in the person's words, the domain's English as secondary detail. A file
with no error is kept in the hub's data folder (``imports/``, an hour at most, named by a
random key bound to the person) so that "Import" need not send it again: the import is the
API's route function again with ``mode=all``, which writes nothing if any row has become
wrong meanwhile. Template files (a header and an example row) are at
``/import/template/<kind>.csv``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Final, Literal, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from inventory import csvio
from inventory.errors import InvalidValueError
from labhub.access.gate import gated_caller, needs
from labhub.access.permissions import Permission as P
from labhub.access.who import CSRF_FORM_FIELD
from labhub.api import inventory_io
from labhub.api.common import actor_of
from labhub.api.deps import HubDep, settings_of
from labhub.api.edge import BodyTooLargeError, body_limit
from labhub.problems import Problem
from labhub.web import i18n, pages
from labhub.web.i18n import N_
from labhub.web.pages import FormRefused, PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

Kind = Literal["sites", "models", "assets"]
KINDS: Final = {"sites": N_("Sites"), "models": N_("Models of the catalog"),
                "assets": N_("Assets")}
PENDING_DIR: Final = "imports"  # under the hub's data_dir
PENDING_MAX_AGE_S: Final = 3600  # a checked file waits an hour for its "Import"
FIELDS_MAX: Final = 10  # parts of the upload form: csrf_token, kind, file
_KEY: Final = re.compile(r"[A-Za-z0-9_-]{20,64}")
# The columns of each kind in the person's words (the header names stay the domain's).
COLUMN_NAMES: Final = {
    "code": N_("the code column"),
    "name": N_("the name column"),
    "kind": N_("the kind column"),
    "parent": N_("the parent column"),
    "tier": N_("the tier column"),
    "rural": N_("the rural column"),
    "latitude": N_("the latitude column"),
    "longitude": N_("the longitude column"),
    "institution": N_("the institution column"),
    "rollout_status": N_("the rollout status column"),
    "category": N_("the category column"),
    "tracking": N_("the tracking column"),
    "unit": N_("the unit column"),
    "tag": N_("the tag column"),
    "model": N_("the model column"),
    "site": N_("the site column"),
    "serial_number": N_("the serial number column"),
    "status": N_("the status column"),
    "condition": N_("the condition column"),
    "notes": N_("the notes column"),
}
# The domain's row errors (inventory.csvio, the services' validators) -> words: the first
# pattern the English message matches.
ROW_RULES: Final = (
    (r"is missing", N_("This cell is empty: fill it in.")),
    (r"is already (in the database|in the catalog|registered)", N_("This is already in the "
                                                                  "inventory.")),
    (r"is already on row (\d+)", N_("This is already on an earlier row of the file.")),
    (r"no model with code", N_("There is no model with this code in the catalog.")),
    (r"no site with code", N_("There is no site with this code.")),
    (r"outside your sites", N_("This site is outside the sites you manage.")),
    (r"neither in the database nor on an earlier row", N_("This parent site is neither in "
                                                          "the inventory nor on an earlier "
                                                          "row.")),
    (r"which has errors", N_("This parent site is on a row that has errors.")),
    (r"is not a number", N_("Write a number, such as 4.5 or 4,5.")),
    (r"is not yes/no", N_("Write yes or no.")),
    (r"is not one of", N_("This value is not one of those this column takes.")),
    (r"longer than", N_("This text is too long.")),
    (r"on_loan|in_repair|loan or repair", N_("Import the asset as available, then record its "
                                            "loan or repair.")),
    (r"counted|tracks", N_("This model is counted, not tagged: it goes to the stock, not "
                          "to the assets.")),
    (r"latitude|longitude", N_("Check the coordinates: both, within range.")),
)
FILE_RULES: Final = (  # file-level errors (csvio.read_rows, decode)
    (r"not UTF-8", N_("The file is not UTF-8 text: save it from the spreadsheet as “CSV "
                      "UTF-8”.")),
    (r"unknown column", N_("The first row names columns this kind does not take: use the "
                           "template's header.")),
    (r"lacks the column", N_("The first row lacks a column this kind needs: use the "
                             "template's header.")),
    (r"appears twice", N_("The first row names a column twice.")),
    (r"is empty", N_("The file is empty: it needs a header row.")),
    (r"cells but the header has", N_("A row has more cells than the header: is the "
                                     "separator right?")),
    (r"more than", N_("The file has too many rows: split it in parts.")),
)
_BINARY_SIGNS: Final = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0", b"%PDF", b"\x89PNG", b"\xff\xd8")


# -- the multipart upload ----------------------------------------------------------------------

@dataclass
class Upload:
    """A multipart form's text fields and its file (its name and bytes)."""

    fields: dict[str, str]
    filename: str | None
    data: bytes | None


class TooLarge(Exception):
    """The upload is over the hub's limit (``limit`` bytes)."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def upload_limit(request: Request) -> int:
    """The largest upload this page takes, in bytes: the API's for a CSV import
    (``max_body_bytes``), and no more than the hub's edge lets reach this path."""
    settings = settings_of(request)
    return min(settings.max_body_bytes, body_limit(settings, "POST", request.url.path)[0])


def _param(header: str, name: str, param: str) -> str | None:
    message = Message()
    message[name] = header
    value = message.get_param(param, header=name)
    if isinstance(value, tuple):  # RFC 2231 form: (charset, language, text)
        return str(value[2])
    return None if value is None else str(value)


def parse_multipart(body: bytes, content_type: str) -> Upload | None:
    """The parts of a ``multipart/form-data`` body (None: it is not one)."""
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        return None
    boundary = _param(content_type, "content-type", "boundary")
    if not boundary:
        return None
    delimiter = b"--" + boundary.encode("latin-1")
    upload = Upload({}, None, None)
    chunks = body.split(delimiter)
    if len(chunks) < 3 or len(chunks) > FIELDS_MAX + 2:
        return None
    for chunk in chunks[1:-1]:
        head, sep, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep or not content.endswith(b"\r\n"):
            return None
        content = content[:-2]
        disposition = None
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _colon, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                disposition = value.strip()
        if disposition is None:
            return None
        name = _param(disposition, "content-disposition", "name")
        if name is None:
            return None
        filename = _param(disposition, "content-disposition", "filename")
        if filename is not None:
            upload.filename, upload.data = filename, content
        else:
            try:
                upload.fields[name] = content.decode("utf-8")
            except UnicodeDecodeError:
                return None
    return upload


async def signed_upload(request: Request) -> Upload:
    """The multipart form a signed-in person posted, once its ``csrf_token`` matches the
    session's (else :class:`FormRefused`, a 403 page); :class:`TooLarge` past
    :func:`upload_limit`. A body that is not a multipart form reads as no fields."""
    limit = upload_limit(request)
    body = bytearray()
    too_large = False
    try:
        async for chunk in request.stream():
            if not too_large:
                body += chunk
                if len(body) > limit:
                    too_large, body = True, bytearray()
    except BodyTooLargeError:  # the hub's edge stops the body at the same limit
        too_large, body = True, bytearray()
    upload = None if too_large else parse_multipart(bytes(body),
                                                    request.headers.get("content-type", ""))
    fields = {} if upload is None else upload.fields
    expected: str | None = getattr(request.state, "csrf", None)
    given = fields.get(CSRF_FORM_FIELD, "")
    if too_large:  # the token is in the body that was too large: the session's own page
        given = expected or ""  # asked, and nothing will be written; say it is too large
    if expected is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise FormRefused
    if too_large:
        raise TooLarge(limit)
    return upload or Upload({}, None, None)


# -- the words of an error -----------------------------------------------------------------------

def _words(_: Callable[..., str], message: str,
           rules: tuple[tuple[str, str], ...]) -> str | None:
    for pattern, words in rules:
        if re.search(pattern, message):
            return _(words)
    return None


@dataclass
class RowProblem:
    """One row error as the page shows it."""

    row: int
    column: str | None
    column_words: str | None
    words: str
    detail: str


def _problems(_: Callable[..., str], errors: list[dict[str, Any]]) -> list[RowProblem]:
    shown = []
    for e in errors:
        column = e.get("column")
        shown.append(RowProblem(
            row=int(e["row"]), column=column,
            column_words=None if column is None else _(COLUMN_NAMES.get(column, column)),
            words=_words(_, e["message"], ROW_RULES) or _("Check this cell."),
            detail=e["message"]))
    return shown


# -- files waiting for their "Import" -----------------------------------------------------------

def _pending_dir(request: Request) -> Path:
    return settings_of(request).data_dir / PENDING_DIR


def _owner(request: Request) -> str:
    return hashlib.sha256(gated_caller(request).name.encode()).hexdigest()[:16]


def _keep(request: Request, kind: str, data: bytes) -> str:
    """Keep a checked file for its person; the key the "Import" form sends back."""
    folder = _pending_dir(request)
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in folder.glob("*.csv"):  # what was never imported goes after an hour
        try:
            if now - old.stat().st_mtime > PENDING_MAX_AGE_S:
                old.unlink()
        except OSError:
            pass
    key = secrets.token_urlsafe(24)
    (folder / f"{_owner(request)}-{kind}-{key}.csv").write_bytes(data)
    return key


def _pending(request: Request, kind: str, key: str) -> Path | None:
    if _KEY.fullmatch(key) is None or kind not in KINDS:
        return None
    path = _pending_dir(request) / f"{_owner(request)}-{kind}-{key}.csv"
    if not path.exists() or time.time() - path.stat().st_mtime > PENDING_MAX_AGE_S:
        return None
    return path


# -- pages ----------------------------------------------------------------------------------

def _page(request: Request, *, status: int = 200, **values: Any) -> HTMLResponse:
    values.setdefault("errors", {})
    values.setdefault("kind", "assets")
    return pages.render(request, "imports.html", status=status, caller=gated_caller(request),
                        kinds=KINDS, limit_mb=round(upload_limit(request) / 1024 / 1024, 1),
                        limit_bytes=upload_limit(request), **values)


@router.get("/import", dependencies=[needs(P.INVENTORY_MANAGE)])
def import_page(request: Request) -> HTMLResponse:
    """The upload form, the templates; after an import, how many were written."""
    done = request.query_params.get("done")
    created = request.query_params.get("created", "")
    finished = None
    if done in KINDS and created.isdigit():
        finished = {"kind": done, "created": int(created)}
    return _page(request, finished=finished)


def _check(request: Request, hub: Any, kind: Kind, data: bytes, *, write: bool) -> Any:
    """The API's import route function: a dry run of every row, or the import itself."""
    opened = hub.engine.begin() if write else hub.engine.connect()
    with opened as conn:
        return inventory_io.import_csv(
            kind=kind, data=data, conn=conn, request=request, actor=actor_of(request),
            mode="all" if write else "valid", dry_run=not write, delimiter=None)


@router.post("/import", dependencies=[needs(P.INVENTORY_MANAGE)])
async def upload(request: Request, hub: HubDep) -> Response:
    """Check an uploaded file: every row's errors, nothing written."""
    _ = i18n.gettext_of(pages.language_of(request))
    try:
        form = await signed_upload(request)
    except TooLarge as big:
        return _page(request, status=413, errors={"file": _(
            "The file is larger than %(size)s MB, the most the hub takes: split it in parts.",
            size=round(big.limit / 1024 / 1024, 1))})
    kind = form.fields.get("kind", "")
    if kind not in KINDS:
        return _page(request, status=422, errors={"kind": _("Choose what the file holds.")})
    data = form.data
    if not data:
        said = (_("Choose a CSV file.") if not form.filename
                else _("The file is empty: it needs a header row."))
        return _page(request, status=422, kind=kind, errors={"file": said})
    if data.startswith(_BINARY_SIGNS) or b"\x00" in data[:4096]:
        return _page(request, status=415, kind=kind, errors={"file": _(
            "This is not a CSV file (it may be an Excel workbook): in the spreadsheet, save "
            "it as “CSV UTF-8” and upload that.")})
    try:
        report = await run_in_threadpool(_check, request, hub, cast(Kind, kind), data,
                                         write=False)
    except InvalidValueError as exc:
        words = _words(_, str(exc), FILE_RULES) or _("The file cannot be read as a CSV of "
                                                     "this kind.")
        return _page(request, status=422, kind=kind, errors={"file": words},
                     file_detail=str(exc), filename=form.filename)
    problems = _problems(_, [e.model_dump() for e in report.errors])
    values: dict[str, Any] = {"kind": kind, "report": report, "problems": problems,
                              "filename": form.filename}
    if problems or report.rows == 0:
        return _page(request, status=422, **values)
    key = await run_in_threadpool(_keep, request, kind, data)
    return _page(request, key=key, **values)


@router.post("/import/confirm", dependencies=[needs(P.INVENTORY_MANAGE)])
async def confirm(request: Request, hub: HubDep) -> Response:
    """Import a checked file: every row or none (the API's ``mode=all``)."""
    form = await pages.signed_form(request)
    _ = i18n.gettext_of(pages.language_of(request))
    kind = form.get("kind", "")
    path = _pending(request, kind, form.get("key", ""))
    if path is None:
        return _page(request, status=409, kind=kind if kind in KINDS else "assets", errors={
            "file": _("This file was imported already, or it waited more than an hour: "
                      "upload it again.")})
    data = path.read_bytes()
    try:
        report = await run_in_threadpool(_check, request, hub, cast(Kind, kind), data,
                                         write=True)
    except Problem as refused:
        if refused.status != 422 or not refused.errors:
            raise
        return _page(request, status=409, kind=kind, problems=_problems(_, refused.errors),
                     changed=True)
    path.unlink(missing_ok=True)
    return RedirectResponse(pages.root_of(request) + "/import?" + urlencode(
        {"done": kind, "created": report.created}), status_code=303)


# -- templates ----------------------------------------------------------------------------------

EXAMPLES: Final = {
    "sites": ("LAB-NUEVO", "Escuela Nueva", "site", "VL-R1", "lab_point", "yes", 3.45,
              -76.53, "I.E. Escuela Nueva", "planned"),
    "models": ("ESP32", "ESP32 DevKit", "microcontroller_board", "serialized", ""),
    "assets": ("UNO-0100", "UNO", "LAB-A", "SN-12345", "available", "good", ""),
}


@router.get("/import/template/{kind}.csv", dependencies=[needs(P.INVENTORY_MANAGE)])
def template(kind: str, request: Request) -> Response:
    """A template for ``kind``: the header the import takes and an example row, with the
    separator of the person's spreadsheets (semicolon in es and pt, as Excel writes)."""
    if kind not in KINDS:
        raise InvalidValueError(f"import kind {kind!r} is not one of {', '.join(KINDS)}")
    lang = pages.language_of(request)
    options = (csvio.CsvOptions(delimiter=",", decimal=".", bom=True) if lang == "en"
               else csvio.CsvOptions(delimiter=";", decimal=",", bom=True))
    text = "".join(csvio.iter_csv(csvio.COLUMNS[kind], [EXAMPLES[kind]], options))
    return Response(text.encode("utf-8"), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{kind}-template.csv"'})
