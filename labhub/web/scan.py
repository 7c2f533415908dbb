"""Check-out and check-in of a kit or an asset by its QR label: ``/scan``.

A tag comes in three ways, one flow: typed by hand, typed by a USB barcode scanner
(keystrokes ending in Enter in the focused field) or read by the phone's camera
(``static/camera.js``). The scan form (``templates/_scan.html``, the contract in
:mod:`labhub.web.equipment`) posts the tag to ``POST /scan``, which answers what it is and
whether it is out: the panel of ``/scan/{tag}``, with the one action the item allows.

- In: lend it (``POST /scan/{tag}/check-out``) to a person, a group or class, or a room,
  until a due date, as the API's ``POST /assets/by-tag/{tag}/check-out`` does
  (:func:`inventory.loans.check_out`).
- Out: take it back (``POST /scan/{tag}/check-in``), as the API's
  ``POST /assets/by-tag/{tag}/check-in`` (:func:`inventory.loans.check_in_tag`). For a
  kit, the person scans the boards that came back and counts the counted parts; each
  step draws the page again with what is missing and what is extra side by side (a board
  that is not on the kit's list, more of a part than it holds), and only the confirm
  button writes. What is extra is set aside, not sent: the domain's kit check
  (:func:`inventory.kits.check_return`) refuses anything not on the list.

Every scan and both writes carry their own key (``scan_id``), recorded by
:func:`inventory.receipts.first_time` in the transaction of the scan's work: a scan sent
twice (an answer lost, the device's outbox sending again, a form posted twice) is done
once and answered "again" with the item as it is now. The person needs ``loans.write`` at
the item's site, as for the API.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Final, cast
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy import Connection

from inventory import catalog, kits, loans, receipts
from inventory.assets import CONDITIONS, Asset, Condition, find_asset
from inventory.errors import InvalidValueError, NotFoundError
from inventory.loans import BORROWER_KINDS, BorrowerKind, Loan
from inventory.sites import find_site
from inventory.values import check_key, check_text, now_us
from labhub.access.caller import Forbidden
from labhub.access.gate import gated_caller, needs, require_at
from labhub.access.permissions import Permission
from labhub.api.common import actor_of
from labhub.api.deps import settings_of
from labhub.web import equipment, i18n, pages
from labhub.web.equipment import Scan, ScanRefused
from labhub.web.i18n import N_
from labhub.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

DUE_DAYS: Final = 7  # the due date a check-out form proposes: a week, a class's next meeting
BOARDS_MAX: Final = kits.KIT_LINES_MAX  # boards scanned into one kit check-in
RESULT: Final = "#scan-result"  # the element a scan's answer replaces
OUTBOX: Final = "scan"  # the device's outbox of the /scan page's scans

BORROWER_WORDS: Final = {"person": N_("A person"), "group": N_("A group or class"),
                         "room": N_("A room")}
STATUS_WORDS: Final = {"available": N_("In the lab: it may be lent."),
                       "on_loan": N_("Out on loan."),
                       "in_transit": N_("On its way to another lab."),
                       "in_repair": N_("In repair."), "lost": N_("Lost."),
                       "retired": N_("Retired.")}
CONDITION_WORDS: Final = {"good": N_("Good"), "fair": N_("Fair"), "poor": N_("Poor"),
                          "broken": N_("Broken")}
assert set(BORROWER_WORDS) == set(BORROWER_KINDS)
assert set(CONDITION_WORDS) == set(CONDITIONS)


@dataclass(frozen=True)
class Item:
    """A scanned asset or kit as the page shows it."""

    asset: Asset
    model: str
    site: str
    loan: Loan | None
    contents: kits.KitContents
    part_names: dict[str, str]  # of the kit's counted parts, by model code

    @property
    def is_kit(self) -> bool:
        return not self.contents.empty


@dataclass
class Form:
    """A form's values as sent and the errors beside its fields (``form``: the whole)."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class KitCount:
    """A kit check-in as the page counts it: the boards scanned, the parts counted, and
    what is missing and extra of each."""

    boards: tuple[str, ...]
    missing_boards: tuple[str, ...]
    extra_boards: tuple[str, ...]
    parts: dict[str, int | None]  # as counted (None: not a count)
    missing_parts: dict[str, int]
    extra_parts: dict[str, int]

    @property
    def complete(self) -> bool:
        return not (self.missing_boards or self.extra_boards or self.missing_parts
                    or self.extra_parts)

    def sent(self) -> kits.KitReturn:
        """What the check-in sends: the kit's own boards and at most the parts it holds."""
        return kits.KitReturn(
            tags=frozenset(self.boards) - frozenset(self.extra_boards),
            parts={code: count - self.extra_parts.get(code, 0)
                   for code, count in self.parts.items() if count is not None})


def _item(conn: Connection, asset: Asset) -> Item:
    """What the page shows of ``asset``: its model's and site's names, its open loan, and
    its contents list (empty: not a kit)."""
    model = catalog.find_model(conn=conn, code=asset.model_code)
    site = find_site(conn=conn, code=asset.site_code)
    contents = kits.contents_of(conn=conn, kit=asset)
    names = {code: catalog.find_model(conn=conn, code=code) for code in contents.parts}
    return Item(asset=asset, model=model.name if model else asset.model_code,
                site=f"{site.name} ({site.code})" if site else asset.site_code,
                loan=loans.open_loan_of(conn=conn, asset_tag=asset.tag), contents=contents,
                part_names={code: m.name if m else code for code, m in names.items()})


def _read(request: Request, tag: str) -> Item | None:
    """The item with ``tag`` (None: no such asset); Forbidden outside the person's sites."""
    with request.app.state.hub.engine.connect() as conn:
        asset = find_asset(conn=conn, tag=tag)
        if asset is None:
            return None
        require_at(request, Permission.LOANS_WRITE, asset.site_code)
        return _item(conn, asset)


def _tag_of(tag: str) -> str:
    """A tag of the address; not a tag: not found (a 404 page)."""
    try:
        return check_key(tag, what="tag")
    except InvalidValueError:
        raise _not_found(tag) from None


def _not_found(tag: str) -> NotFoundError:
    return NotFoundError(f"no asset with tag {tag[:80]!r}", what="asset", key=tag[:80])


def _due_default(request: Request) -> str:
    zone = ZoneInfo(settings_of(request).timezone)
    return (datetime.now(zone).date() + timedelta(days=DUE_DAYS)).isoformat()


def _page(request: Request, item: Item | None, *, status: int = 200,
          out: Form | None = None, back: Form | None = None,
          count: KitCount | None = None) -> Response:
    """The scan page (with the item's panel), and what a scan sent without JavaScript
    said, shown once."""
    said = equipment.said_of(request)
    answer = pages.render(request, "scan.html", status=status, caller=gated_caller(request),
                          **_values(request, item, out=out, back=back, count=count),
                          said=said, scan_id=str(uuid.uuid4()))
    return equipment.forget_said(answer) if said else answer


def _values(request: Request, item: Item | None, *, out: Form | None = None,
            back: Form | None = None, count: KitCount | None = None) -> dict[str, Any]:
    if item is not None and item.is_kit and item.loan is not None and count is None:
        count = _count(item, [], {})
    return {"item": item, "lending": out or Form({"due": _due_default(request),
                                                  "borrower_kind": "group"}),
            "returning": back or Form(), "count": count, "action_id": str(uuid.uuid4()),
            "borrower_words": BORROWER_WORDS, "status_words": STATUS_WORDS,
            "condition_words": CONDITION_WORDS, "outbox": OUTBOX, "result": RESULT}


# -- the page and a scan ---------------------------------------------------------------------

@router.get("/scan", dependencies=[needs(Permission.LOANS_WRITE)])
def scan_page(request: Request) -> Response:
    """The scan form: a tag typed, from a USB scanner or the camera."""
    return _page(request, None)


@router.get("/scan/{tag:path}", dependencies=[needs(Permission.LOANS_WRITE)])
def item_page(request: Request, tag: str) -> Response:
    """One item: what it is, whether it is out, and its check-out or check-in."""
    item = _read(request, _tag_of(tag))
    if item is None:
        raise _not_found(tag)
    return _page(request, item)


def _words(request: Request) -> Any:
    return i18n.gettext_of(pages.language_of(request))


def _state_words(request: Request, item: Item) -> str:
    _ = _words(request)
    fmt = i18n.Formats(pages.language_of(request), settings_of(request).timezone)
    if item.loan is not None:
        return cast(str, _("%(tag)s (%(model)s) is out: lent to %(who)s until %(due)s.",
                           tag=item.asset.tag, model=item.model, who=item.loan.borrower,
                           due=fmt.date(item.loan.due_at)))
    if item.asset.status == "available":
        return cast(str, _("%(tag)s (%(model)s) is in the lab: it may be lent.",
                           tag=item.asset.tag, model=item.model))
    return cast(str, _("%(tag)s (%(model)s): %(status)s", tag=item.asset.tag,
                       model=item.model, status=_(STATUS_WORDS[item.asset.status])))


def _look(request: Request, scan: Scan) -> tuple[str, Item | None, str]:
    """A scanned tag looked up, its key recorded: (outcome, item, words)."""
    _ = _words(request)
    caller = gated_caller(request)
    with request.app.state.hub.engine.begin() as conn:
        asset = find_asset(conn=conn, tag=scan.code)
        if asset is None:
            return "refused", None, _("No asset or kit has the tag %(tag)s.", tag=scan.code)
        try:
            require_at(request, Permission.LOANS_WRITE, asset.site_code)
        except Forbidden:
            return "refused", None, _("%(tag)s belongs to %(site)s: you may not lend it or "
                                      "take it back.", tag=scan.code, site=asset.site_code)
        first = receipts.first_time(conn=conn, key=scan.key, subject=f"scan:{asset.site_code}",
                                    tag=asset.tag, by=caller.name)
        item = _item(conn, asset)
    return ("ok" if first else "again"), item, _state_words(request, item)


@router.post("/scan", dependencies=[needs(Permission.LOANS_WRITE)])
async def scan_post(request: Request) -> Response:
    """A scan: the item's panel (to the page's script) or its page (a form without it)."""
    try:
        scan = await equipment.scan_fields(request)
    except ScanRefused as refused:
        return equipment.scan_answer(request, outcome="refused", said=refused.said,
                                     back="/scan")
    outcome, item, said = await run_in_threadpool(_look, request, scan)
    if item is None:
        return equipment.scan_answer(request, outcome="refused", said=said, back="/scan")
    return equipment.scan_answer(
        request, outcome=cast(equipment.Outcome, outcome), said=said,
        back=f"/scan/{item.asset.tag}", template="scan_item.html",
        **_values(request, item))


# -- check-out -------------------------------------------------------------------------------

def _due_us(request: Request, text: str) -> int | None:
    """The end of the due date (23:59 in the lab's zone), or None if it is not a date."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return None
    zone = ZoneInfo(settings_of(request).timezone)
    end = datetime.combine(day, time(23, 59), tzinfo=zone)
    return int(end.timestamp()) * 1_000_000


def _check_out_form(request: Request, fields: dict[str, str]) -> tuple[Form, int | None]:
    _ = _words(request)
    form = Form({k: fields.get(k, "") for k in ("borrower", "borrower_kind", "due",
                                                 "purpose")})
    for name, what in (("borrower", "the borrower"), ("purpose", "the purpose")):
        value = form.values[name]
        if name == "purpose" and not value.strip():
            continue
        try:
            check_text(value, what=what)
        except InvalidValueError:
            form.errors[name] = (_("Write who borrows it.") if not value.strip() and
                                 name == "borrower" else
                                 _("Up to 200 letters, without control characters."))
    if form.values["borrower_kind"] not in BORROWER_KINDS:
        form.errors["borrower_kind"] = _("Choose who borrows it.")
    due = _due_us(request, form.values["due"])
    if due is None:
        form.errors["due"] = _("Choose the day it must come back.")
    elif due <= now_us():
        form.errors["due"] = _("The day it comes back must be today or later.")
    elif due > now_us() + loans.LOAN_MAX_US:
        form.errors["due"] = _("A loan lasts at most %(days)s days; a longer stay is a "
                               "transfer.", days=loans.LOAN_MAX_US // 86_400_000_000)
    return form, due


def _version(fields: dict[str, str]) -> int | None:
    value = fields.get("version", "")
    return int(value) if value.isdigit() and len(value) < 12 else None


@router.post("/scan/{tag:path}/check-out", dependencies=[needs(Permission.LOANS_WRITE)])
async def check_out(request: Request, tag: str) -> Response:
    """Lend the item to a person, a group or class, or a room, until a due date."""
    tag = _tag_of(tag)
    try:
        scan = await equipment.scan_fields(request)
    except ScanRefused as refused:
        return equipment.scan_answer(request, outcome="refused", said=refused.said,
                                     back=f"/scan/{tag}")
    return await run_in_threadpool(_check_out, request, tag, scan)


def _check_out(request: Request, tag: str, scan: Scan) -> Response:
    _ = _words(request)
    if scan.code != tag:
        raise InvalidValueError("the form names another tag than its address")
    item = _read(request, tag)
    if item is None:
        raise _not_found(tag)
    form, due = _check_out_form(request, scan.fields)
    if form.errors or due is None:
        return _page(request, item, status=422, out=form)
    purpose = form.values["purpose"].strip() or None
    version = _version(scan.fields)
    with request.app.state.hub.engine.begin() as conn:
        if not receipts.first_time(conn=conn, key=scan.key, subject=f"check-out:{tag}",
                                   tag=tag, by=actor_of(request)):
            again = _item(conn, item.asset)
        else:
            again = None
            loans.check_out(conn=conn, asset_tags=[tag], borrower=form.values["borrower"],
                            borrower_kind=cast(BorrowerKind, form.values["borrower_kind"]),
                            due_at=due, by=actor_of(request), purpose=purpose,
                            expected_versions=None if version is None else {tag: version})
    if again is not None:
        return equipment.scan_answer(request, outcome="again", back=f"/scan/{tag}",
                                     said=_("This check-out was already done. %(state)s",
                                            state=_state_words(request, again)))
    fmt = i18n.Formats(pages.language_of(request), settings_of(request).timezone)
    return equipment.scan_answer(
        request, outcome="ok", back=f"/scan/{tag}",
        said=_("%(tag)s is lent to %(who)s until %(due)s.", tag=tag,
               who=form.values["borrower"].strip(), due=fmt.date(due)))


# -- check-in --------------------------------------------------------------------------------

_SPLIT = re.compile(r"\s+")


def _count(item: Item, boards: list[str], counted: dict[str, int | None]) -> KitCount:
    """What is missing and extra of a kit, from the boards scanned and the parts counted
    (a part not counted yet counts as all of it: the person changes only what is short)."""
    listed = item.contents.assets
    parts = {code: counted.get(code, expected) for code, expected in item.contents.parts.items()}
    return KitCount(
        boards=tuple(boards),
        missing_boards=tuple(t for t in listed if t not in boards),
        extra_boards=tuple(t for t in boards if t not in listed),
        parts=parts,
        missing_parts={code: expected - cast(int, parts[code])
                       for code, expected in item.contents.parts.items()
                       if parts[code] is not None and cast(int, parts[code]) < expected},
        extra_parts={code: cast(int, parts[code]) - expected
                     for code, expected in item.contents.parts.items()
                     if parts[code] is not None and cast(int, parts[code]) > expected})


def _check_in_form(request: Request, item: Item, fields: dict[str, str]
                   ) -> tuple[Form, KitCount | None]:
    _ = _words(request)
    form = Form({k: fields.get(k, "") for k in ("condition", "board", "boards")})
    if form.values["condition"] and form.values["condition"] not in CONDITIONS:
        form.errors["condition"] = _("Choose a condition from the list.")
    if not item.is_kit:
        return form, None
    boards: list[str] = []
    for tag in _SPLIT.split(form.values["boards"].strip()):
        if tag and tag not in boards and len(boards) < BOARDS_MAX:
            try:
                boards.append(check_key(tag, what="tag"))
            except InvalidValueError:
                continue  # a hidden field changed by hand: what is not a tag is dropped
    board = form.values["board"].strip()
    if board and fields.get("step") == "add":  # an empty one (Enter in a count): count again
        try:
            board = check_key(board, what="tag")
        except InvalidValueError:
            form.errors["board"] = _("“%(code)s” is not a tag: a tag has letters, digits and "
                                     ". _ / - only, up to 64.", code=board[:80])
        else:
            if board in boards:
                form.errors["board"] = _("%(tag)s is already on the list.", tag=board)
            elif len(boards) >= BOARDS_MAX:
                form.errors["board"] = _("The list is full.")
            else:
                boards.append(board)
                form.values["board"] = ""
    counted: dict[str, int | None] = {}
    for code in item.contents.parts:
        text = fields.get(f"part:{code}", "").strip()
        form.values[f"part:{code}"] = text
        if not text:
            continue
        if not text.isdigit() or int(text) > kits.PART_QUANTITY_MAX:
            form.errors[f"part:{code}"] = _("Write how many came back: a whole number, 0 "
                                            "or more.")
            counted[code] = None
        else:
            counted[code] = int(text)
    form.values["boards"] = " ".join(boards)
    return form, _count(item, boards, counted)


@router.post("/scan/{tag:path}/check-in", dependencies=[needs(Permission.LOANS_WRITE)])
async def check_in(request: Request, tag: str) -> Response:
    """Take the item back. A kit: ``step=add`` adds a scanned board, ``step=count`` counts
    again, each showing what is missing and extra; ``step=confirm`` takes it back."""
    tag = _tag_of(tag)
    try:
        scan = await equipment.scan_fields(request)
    except ScanRefused as refused:
        return equipment.scan_answer(request, outcome="refused", said=refused.said,
                                     back=f"/scan/{tag}")
    return await run_in_threadpool(_check_in, request, tag, scan)


def _check_in(request: Request, tag: str, scan: Scan) -> Response:
    _ = _words(request)
    if scan.code != tag:
        raise InvalidValueError("the form names another tag than its address")
    item = _read(request, tag)
    if item is None:
        raise _not_found(tag)
    form, count = _check_in_form(request, item, scan.fields)
    step = scan.fields.get("step", "confirm")
    if form.errors:
        return _page(request, item, status=422, back=form, count=count)
    if step != "confirm":
        return _page(request, item, back=form, count=count)
    condition = cast(Condition, form.values["condition"]) if form.values["condition"] else None
    with request.app.state.hub.engine.begin() as conn:
        if not receipts.first_time(conn=conn, key=scan.key, subject=f"check-in:{tag}",
                                   tag=tag, by=actor_of(request)):
            again = _item(conn, item.asset)
        else:
            again = None
            loans.check_in_tag(conn=conn, tag=tag, by=actor_of(request), condition=condition,
                               kit=None if count is None else count.sent(),
                               expected_version=_version(scan.fields))
    if again is not None:
        return equipment.scan_answer(request, outcome="again", back=f"/scan/{tag}",
                                     said=_("This check-in was already done. %(state)s",
                                            state=_state_words(request, again)))
    if count is not None and not count.complete:
        return equipment.scan_answer(
            request, outcome="warn", back=f"/scan/{tag}",
            said=_("%(tag)s is back, with %(missing)s missing and %(extra)s extra: the "
                   "kit's history keeps what is missing.", tag=tag,
                   missing=len(count.missing_boards) + sum(count.missing_parts.values()),
                   extra=len(count.extra_boards) + sum(count.extra_parts.values())))
    return equipment.scan_answer(request, outcome="ok", back=f"/scan/{tag}",
                                 said=_("%(tag)s is back.", tag=tag))
