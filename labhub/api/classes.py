"""Classes over HTTP: a teacher makes a class at their lab, adds students (each gets a PIN,
shown once) or opens joining for a while so students join with the class's code, resets
PINs, removes students and prints QR cards.

Every route needs ``users.manage``; a class is managed by its teacher and by anyone whose
grant above its site manages teachers (:func:`labhub.access.classes.may_manage`). A class
the caller does not manage is a 403 (its id names nothing secret). Joining with a code is
public and counts its failures in the sign-in rate limit. ``docs/security.md`` ("Students:
classes, PINs and cards") says why it is built so.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from sqlalchemy import Connection

from inventory.sites import find_site, get_site
from labhub.access import accounts, audit, cards, classes, passwords
from labhub.access.caller import Caller, Forbidden
from labhub.access.gate import On, needs
from labhub.access.permissions import Permission
from labhub.access.sites import tree_for
from labhub.access.who import address_of
from labhub.api.access import CLASS_CODE_PATTERN, limiter_of
from labhub.api.common import KEY_PATTERN, ReadConn, WriteConn, iso
from labhub.api.deps import HubDep, settings_of
from labhub.api.document import file_response
from labhub.problems import Problem, problem_responses
from labtext.printable import NAME_PATTERN

router = APIRouter(prefix="/api/v1", tags=["classes"])
# Paths take ``{class_id:int}``: ``/classes/join`` is then never a class's path, so a
# method it does not take is a 405, not a 422 about an id.
MANAGE = Permission.USERS_MANAGE
ClassId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the class's id")]
StudentName = Annotated[str, Field(min_length=1, max_length=classes.STUDENT_NAME_MAX,
                                   pattern=NAME_PATTERN)]
StudentPath = Annotated[str, Path(min_length=1, max_length=classes.STUDENT_NAME_MAX,
                                  pattern=NAME_PATTERN)]
ClassName = Annotated[str, Field(min_length=1, max_length=100, pattern=NAME_PATTERN)]


class ClassIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site: str = Field(min_length=1, max_length=64, pattern=KEY_PATTERN,
                      description="the lab site's code")
    name: ClassName
    teacher: str | None = Field(default=None, min_length=1, max_length=100,
                                pattern=NAME_PATTERN,
                                description="the teacher's account; none: the caller")


class ClassPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ClassName | None = None
    joining_minutes: int | None = Field(
        default=None, ge=0, le=classes.JOINING_MAX_MINUTES,
        description="open joining with the code for this many minutes from now; 0 shuts it")
    new_join_code: StrictBool = Field(default=False, description="draw a new join code "
                                      "(the old one stops working for sign-in and joining)")


class ClassOut(BaseModel):
    id: int
    site: str
    name: str
    teacher: str | None
    join_code: str
    joining_open: bool
    joining_until: str | None
    students: int = Field(description="active students")
    created_at: str


class StudentOut(BaseModel):
    name: str
    account: str = Field(description="the account's name, as the audit log shows it")
    active: bool
    joined_at: str
    card_issued_at: str | None


class ClassDetailOut(ClassOut):
    members: list[StudentOut]


class StudentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StudentName


class PinOut(BaseModel):
    name: str
    account: str
    pin: str = Field(description="the PIN: shown this once only")


class JoinIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CLASS_CODE_PATTERN, description="the class's join code")
    name: StudentName
    pin: str = Field(pattern=passwords.PIN_PATTERN, description="the PIN the student chose")


class JoinedOut(BaseModel):
    name: str
    class_name: str
    site: str


class CardsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    students: list[StudentName] | None = Field(
        default=None, max_length=classes.CLASS_MAX_STUDENTS,
        description="only these students' cards; none: every active student's")


class CardOut(BaseModel):
    name: str
    card: str = Field(description="the card's secret: shown this once only")
    url: str = Field(description="what the card's QR code holds")


class CardsOut(BaseModel):
    cards: list[CardOut]


def _out(klass: classes.Class, counts: dict[int, int]) -> ClassOut:
    return ClassOut(id=klass.id, site=klass.site, name=klass.name, teacher=klass.teacher,
                    join_code=klass.join_code, joining_open=klass.joining_open(),
                    joining_until=iso(klass.joining_until) if klass.joining_open() else None,
                    students=counts.get(klass.id, 0), created_at=iso(klass.created_at) or "")


def _student_out(s: classes.Student) -> StudentOut:
    return StudentOut(name=s.name, account=s.account, active=s.active,
                      joined_at=iso(s.joined_at) or "", card_issued_at=iso(s.card_issued_at))


def _managed(request: Request, conn: Connection, caller: Caller, class_id: int
             ) -> classes.Class:
    klass = classes.get_class(conn, class_id=class_id)
    classes.require_manage(caller, klass, tree_for(request))
    return klass


def _log(request: Request, conn: Connection, caller: Caller, action: str,
         klass: classes.Class, target: str | None = None, detail: object = None) -> None:
    audit.record(conn, actor=caller.name, action=action,
                 target=target if target is not None else f"class {klass.id}",
                 site=klass.site, address=address_of(request), detail=detail,
                 keep_days=settings_of(request).audit_log_days)


@router.post("/classes", response_model=ClassOut, status_code=201, summary="Make a class",
             responses=problem_responses(401, 403, 404, 422))
def create_class(body: ClassIn, request: Request, conn: WriteConn,
                 caller: Annotated[Caller, needs(MANAGE, On.ROUTE)]) -> ClassOut:
    """A class at a lab site where the caller manages accounts; its teacher is the
    caller unless ``teacher`` names another (then the caller must manage teachers
    there). Joining is shut until opened (PATCH)."""
    tree = tree_for(request)
    get_site(conn=conn, code=body.site)  # 404 for a site the tree does not have
    caller.require(MANAGE, body.site, tree)
    if body.teacher is None:
        if caller.user_id is None:
            raise accounts.InvalidAccountValueError("name the class's teacher")
        teacher = accounts.get_user_by_id(conn, user_id=caller.user_id)
    else:
        teacher = accounts.get_user(conn, name=body.teacher)
        if teacher.id != caller.user_id and not classes.manages_teachers(caller, body.site,
                                                                         tree):
            raise Forbidden(MANAGE, body.site)
    if not classes.is_teacher_at(teacher, body.site, tree):
        raise accounts.InvalidAccountValueError(
            f"{teacher.name} does not teach at site {body.site!r} (no role there that "
            "manages accounts)")
    klass = classes.create_class(conn, site=body.site, name=body.name, teacher_id=teacher.id)
    _log(request, conn, caller, "class_created", klass, detail={"name": klass.name,
                                                                 "teacher": teacher.name})
    return _out(klass, {})


@router.get("/classes", response_model=list[ClassOut], summary="Classes",
            responses=problem_responses(401, 403))
def list_classes(request: Request, conn: ReadConn,
                 caller: Annotated[Caller, needs(MANAGE)]) -> list[ClassOut]:
    """The classes the caller manages: a teacher's own, every class in a coordinator's
    sites."""
    tree = tree_for(request)
    counts = classes.student_counts(conn)
    return [_out(k, counts) for k in classes.list_classes(conn)
            if classes.may_manage(caller, k, tree)]


@router.get("/classes/{class_id:int}", response_model=ClassDetailOut, summary="One class",
            responses=problem_responses(401, 403, 404))
def get_class(class_id: ClassId, request: Request, conn: ReadConn,
              caller: Annotated[Caller, needs(MANAGE, On.ROUTE)]) -> ClassDetailOut:
    """A class with its students (removed ones too, marked inactive)."""
    klass = _managed(request, conn, caller, class_id)
    return ClassDetailOut(**_out(klass, classes.student_counts(conn)).model_dump(),
                          members=[_student_out(s)
                                   for s in classes.students(conn, class_id=class_id)])


@router.patch("/classes/{class_id:int}", response_model=ClassOut, summary="Change a class",
              responses=problem_responses(401, 403, 404, 422))
def change_class(class_id: ClassId, body: ClassPatch, request: Request, conn: WriteConn,
                 caller: Annotated[Caller, needs(MANAGE, On.ROUTE)]) -> ClassOut:
    """Rename it, open joining for some minutes (0 shuts it), or draw a new join code."""
    _managed(request, conn, caller, class_id)
    klass = classes.change_class(conn, class_id=class_id, name=body.name,
                                 joining_minutes=body.joining_minutes,
                                 new_join_code=body.new_join_code)
    _log(request, conn, caller, "class_changed", klass,
         detail=body.model_dump(exclude_defaults=True))
    return _out(klass, classes.student_counts(conn))


@router.post("/classes/{class_id:int}/students", response_model=PinOut, status_code=201,
             summary="Add a student", responses=problem_responses(401, 403, 404, 409, 422))
def add_student(class_id: ClassId, body: StudentIn, request: Request, conn: WriteConn,
                caller: Annotated[Caller, needs(MANAGE, On.ROUTE)]) -> PinOut:
    """A new student (or a removed one back) with a PIN the hub draws, answered this
    once; a name is unique within the class (as accounts compare names)."""
    klass = _managed(request, conn, caller, class_id)
    student, pin = classes.add_student(conn, class_id=class_id, name=body.name)
    _log(request, conn, caller, "student_added", klass, target=student.account)
    return PinOut(name=student.name, account=student.account, pin=pin)


@router.post("/classes/{class_id:int}/students/{name}/pin", response_model=PinOut,
             summary="Reset a student's PIN", responses=problem_responses(401, 403, 404))
def reset_pin(class_id: ClassId, name: StudentPath, request: Request, conn: WriteConn,
              caller: Annotated[Caller, needs(MANAGE, On.ROUTE)]) -> PinOut:
    """A new PIN, answered this once; the old one stops working and the student's
    sessions end."""
    klass = _managed(request, conn, caller, class_id)
    student, pin = classes.reset_pin(conn, class_id=class_id, name=name)
    _log(request, conn, caller, "pin_reset", klass, target=student.account)
    return PinOut(name=student.name, account=student.account, pin=pin)


@router.delete("/classes/{class_id:int}/students/{name}", status_code=204,
               summary="Remove a student", responses=problem_responses(401, 403, 404))
def remove_student(class_id: ClassId, name: StudentPath, request: Request, conn: WriteConn,
                   caller: Annotated[Caller, needs(MANAGE, On.ROUTE)]) -> Response:
    """Disable the student's account: sessions end, PIN and card stop working. Adding
    the name again brings the account back with a new PIN."""
    klass = _managed(request, conn, caller, class_id)
    student = classes.remove_student(conn, class_id=class_id, name=name)
    _log(request, conn, caller, "user_disabled", klass, target=student.account)
    return Response(status_code=204)


def _new_cards(request: Request, conn: Connection, caller: Caller, class_id: int,
               body: CardsIn | None) -> tuple[classes.Class, list[classes.NewCard]]:
    klass = _managed(request, conn, caller, class_id)
    made = classes.issue_cards(conn, class_id=class_id,
                               names=None if body is None else body.students)
    _log(request, conn, caller, "cards_issued", klass, detail={"cards": len(made)})
    return klass, made


def _base_url(request: Request) -> str:
    return str(request.base_url)


@router.post("/classes/{class_id:int}/cards", response_model=CardsOut,
             summary="Make new QR cards", responses=problem_responses(401, 403, 404, 422))
def new_cards(class_id: ClassId, request: Request, conn: WriteConn,
              caller: Annotated[Caller, needs(MANAGE, On.ROUTE)],
              body: CardsIn | None = None) -> CardsOut:
    """New card secrets for every active student (or those named), answered this once
    with what each QR code holds; the old cards stop working. For printing cards
    elsewhere: ``cards.pdf`` prints them itself."""
    _, made = _new_cards(request, conn, caller, class_id, body)
    base = _base_url(request)
    return CardsOut(cards=[CardOut(name=c.name, card=c.secret,
                                   url=classes.card_url(base, c.secret)) for c in made])


@router.post("/classes/{class_id:int}/cards.pdf", summary="Print new QR cards (PDF)",
             responses={**file_response("application/pdf", "A4 sheets of cards"),
                        **problem_responses(401, 403, 404, 422)})
def cards_pdf(class_id: ClassId, request: Request, conn: WriteConn,
              caller: Annotated[Caller, needs(MANAGE, On.ROUTE)],
              body: CardsIn | None = None) -> Response:
    """An A4 PDF of cards, one per active student (or those named): name, class, join
    code, lab and a QR code that signs the student in. Each print makes new cards, as
    only hashes of the old ones are kept: the old cards stop working."""
    klass, made = _new_cards(request, conn, caller, class_id, body)
    site = find_site(conn=conn, code=klass.site)
    base = _base_url(request)
    pdf = cards.render_pdf([cards.Card(
        name=c.name, class_name=klass.name, join_code=klass.join_code,
        site_code=klass.site, site_name=site.name if site is not None else "",
        url=classes.card_url(base, c.secret)) for c in made], title=klass.name)
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="class-{klass.id}-cards.pdf"',
        "Cache-Control": "no-store"})


@router.post("/classes/join", response_model=JoinedOut, status_code=201,
             summary="Join a class with its code", dependencies=[needs(Permission.PUBLIC)],
             responses=problem_responses(404, 409, 422, 429))
def join_class(body: JoinIn, request: Request, hub: HubDep) -> JoinedOut:
    """A student joins while the teacher has joining open: the class's code, their name
    and a PIN they choose (4 to 6 digits); then they sign in with the three. A wrong or
    shut code counts as a failed sign-in from the address (429 after too many)."""
    address = address_of(request)
    keys = [f"address:{address}"]
    limiter = limiter_of(request)
    wait = limiter.wait_s(keys)
    keep = settings_of(request).audit_log_days
    if wait > 0:
        raise Problem(429, "Too many failed sign-ins",
                      "too many failed tries from this address: wait and try again",
                      retry_after_s=wait)
    try:
        with hub.engine.begin() as conn:
            klass, student = classes.join(conn, code=body.code, name=body.name, pin=body.pin)
            audit.record(conn, actor=student.account, action="student_joined",
                         target=f"class {klass.id}", site=klass.site, address=address,
                         keep_days=keep)
    except classes.JoiningClosedError:
        limiter.failed(keys)
        with hub.engine.begin() as conn:
            audit.record(conn, actor=body.name[:100], action="student_join_failed",
                         outcome="refused", address=address,
                         detail={"code": classes.normal_code(body.code)}, keep_days=keep)
        raise
    return JoinedOut(name=student.name, class_name=klass.name, site=klass.site)
