"""The equipment pages' shared parts: the ``/equipment`` index (every inventory page the
person may use), and the scan contract the scanning pages share.

Each equipment page lives in its own module (``sites``, ``stock``, ``assets``, ``kits``,
``scan``, ``loans``, ``audits``, ``transfers``, ``rotations``, ``labels``, ``imports``),
with its own templates, static files and catalog (``locale/<lang>/LC_MESSAGES/<part>.po``).

Scanning (``templates/_scan.html``, ``static/scan.js``). A scan form holds one field,
``code``, that a person types into, a USB barcode scanner types into (keystrokes ending
in Enter) or the camera fills. Each scan carries its own idempotency key, ``scan_id`` (a
UUID: the page's script makes one per scan; without JavaScript the form holds one made
when the page was drawn). The script keeps every scan in the browser's storage until the
hub has answered it, so a lost network, a closed tab or a session that ended loses none;
the hub records each key once (:func:`inventory.receipts.first_time`), so a scan sent
twice is done once. The route reads the scan with :func:`scan_fields` and answers with
:func:`scan_answer`: to the script (header ``X-Scan: 1``) a fragment of the page (the
results, which replace the form's ``data-scan-result`` element) with the outcome and the
words to say in headers; to a form without JavaScript, a 303 back to the page. The
script marks each form it has taken over with ``data-scan-ready``; until then (a page
still loading) Enter posts the form as it would without JavaScript, and the page answer
says the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote, unquote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from inventory.errors import InvalidValueError
from inventory.receipts import check_scan_key
from inventory.values import check_key
from labhub.access.gate import gated_caller, needs
from labhub.access.permissions import Permission
from labhub.web import i18n, pages
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

# The equipment pages: (path, title, what it is for, permission anywhere in the grants).
PARTS: Final = (
    ("/sites", N_("Sites"), N_("The network's labs and what each holds."),
     Permission.INVENTORY_READ),
    ("/assets", N_("Assets"), N_("Find any board, kit or printer; its history."),
     Permission.INVENTORY_READ),
    ("/kits", N_("Kits"), N_("What each kit holds, and whether it is complete."),
     Permission.INVENTORY_READ),
    ("/stock", N_("Stock"), N_("Counted parts per site; what is running low."),
     Permission.INVENTORY_READ),
    ("/scan", N_("Scan"), N_("Lend and take back a kit or an asset by its label."),
     Permission.LOANS_WRITE),
    ("/loans", N_("Loans"), N_("Who has what, until when; what is overdue."),
     Permission.INVENTORY_READ),
    ("/transfers", N_("Transfers"), N_("Ship equipment to another lab; receive it."),
     Permission.INVENTORY_READ),
    ("/rotations", N_("Mobile labs"), N_("A mobile lab's route and what travels with it."),
     Permission.INVENTORY_READ),
    ("/audits", N_("Audits"), N_("Count what is on the shelves with a phone."),
     Permission.INVENTORY_READ),
    ("/labels", N_("Labels"), N_("Print QR labels for assets and kits."),
     Permission.INVENTORY_READ),
    ("/import", N_("Import"), N_("Add sites, models or assets from a spreadsheet."),
     Permission.INVENTORY_MANAGE),
)
# The paths under which the main menu's "Equipment" shows as the current page.
PATHS: Final = tuple(path for path, *_ in PARTS if path != "/scan")


@router.get("/equipment", dependencies=[needs(Permission.INVENTORY_READ)])
def equipment_page(request: Request) -> HTMLResponse:
    """Every equipment page the person may use, with what it is for."""
    caller = gated_caller(request)
    parts = [(pages.root_of(request) + path, title, what)
             for path, title, what, permission in PARTS if caller.has(permission)]
    return pages.render(request, "equipment.html", caller=caller, parts=parts)


# -- the scan contract -----------------------------------------------------------------------

SCAN_HEADER: Final = "x-scan"  # sent by static/scan.js: answer with a fragment
Outcome = Literal["ok", "again", "warn", "refused"]


@dataclass(frozen=True)
class Scan:
    """One scan: the tag as read (trimmed), its idempotency key, and the form's other fields."""

    code: str
    key: str
    fields: dict[str, str]


class ScanRefused(Exception):
    """A scan that can never be taken as sent (not a tag, no key): ``said`` tells why."""

    def __init__(self, said: str) -> None:
        super().__init__(said)
        self.said = said


async def scan_fields(request: Request) -> Scan:
    """The scan a form posted (its CSRF value checked, as every page form's): the tag in
    ``code`` and the key in ``scan_id``. :class:`ScanRefused` (in the person's words) when
    the tag is not one or the key is not a UUID."""
    form = await pages.signed_form(request)
    _ = i18n.gettext_of(pages.language_of(request))
    code = form.get("code", "").strip()
    if not code:
        raise ScanRefused(_("Scan a label or write a tag."))
    try:
        code = check_key(code, what="tag")
    except InvalidValueError:
        raise ScanRefused(_("“%(code)s” is not a tag: a tag has letters, digits and . _ / - "
                            "only, up to 64.", code=code[:80])) from None
    try:
        key = check_scan_key(form.get("scan_id", ""))
    except InvalidValueError:
        raise ScanRefused(_("The form did not arrive whole: try again.")) from None
    return Scan(code=code, key=key,
                fields={k: v for k, v in form.items() if k not in ("csrf_token", "scan_id")})


def wants_fragment(request: Request) -> bool:
    """Whether the page's script sent the form (it takes a fragment, not a page)."""
    return request.headers.get(SCAN_HEADER) == "1"


def scan_answer(request: Request, *, outcome: Outcome, said: str, back: str,
                template: str | None = None, status: int | None = None,
                **values: Any) -> Response:
    """The answer to a scan. To the script: ``template`` (the page's results fragment,
    rendered with ``values``) with headers ``X-Scan-Outcome`` and ``X-Scan-Said`` (the
    words, percent-encoded); status 200, or 422 for a refused scan (the script drops it
    from its outbox and shows why). To a form without JavaScript: 303 to ``back`` (a path
    of this hub), the words kept for a minute in a cookie that the page shows once
    (:func:`said_of`, then :func:`forget_said`); never in the address, where a link made
    elsewhere could put words of its own."""
    headers = {"X-Scan-Outcome": outcome, "X-Scan-Said": quote(said, safe=""),
               "Cache-Control": "no-store"}
    if wants_fragment(request):
        code = status or (422 if outcome == "refused" else 200)
        if template is None:
            return Response(status_code=code, headers=headers)
        page = pages.render(request, template, status=code,
                            caller=gated_caller(request), **values)
        page.headers.update(headers)
        return page
    answer = RedirectResponse(pages.root_of(request) + pages.safe_next(back), status_code=303)
    answer.set_cookie(SAID_COOKIE, f"{outcome}|{quote(said, safe='')}", max_age=60, path="/",
                      httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return answer


SAID_COOKIE: Final = "labhub_said"
OUTCOMES: Final = ("ok", "again", "warn", "refused")


def said_of(request: Request) -> tuple[str, str] | None:
    """What the last scan sent without JavaScript said: (outcome, words), or None."""
    kept = request.cookies.get(SAID_COOKIE, "")
    outcome, _, words = kept.partition("|")
    if outcome not in OUTCOMES or not words:
        return None
    return outcome, unquote(words)[:500]


def forget_said(response: Response) -> Response:
    """The page showed the words: the cookie goes."""
    response.delete_cookie(SAID_COOKIE, path="/", httponly=True, samesite="strict")
    return response
