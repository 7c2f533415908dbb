"""Classes and their students: people without e-mail who sign in with their class's code,
their name and a PIN, or with a QR card. Keyword-only service functions on a connection,
used by the API, the CLI and the tests alike.

A class belongs to a lab site and has a teacher and a join code of
:data:`JOIN_CODE_LENGTH` characters from :data:`JOIN_ALPHABET` (no 0/O, 1/I: read aloud or
copied from a board, they are not mixed up). Each student is an account of their own
(``users``, named :func:`account_name`, e.g. ``class-3/María``, so two classes may both
have a María) with a student grant at the class's site and no password, and a
``class_members`` row with the name as the class knows it (unique within the class as
:func:`labhub.access.accounts.name_key` compares), the argon2id hash of the PIN and the
SHA-256 hash of the card's secret. PINs and card secrets are returned once, when made.

Who manages a class (:func:`may_manage`): its teacher, while they hold ``users.manage``
at its site, and anyone whose grant covering the site manages teachers (a coordinator
above, an admin).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from labhub.access import accounts, passwords
from labhub.access.audit import now_us
from labhub.access.caller import NETWORK, Caller, Forbidden, SiteTree
from labhub.access.permissions import MANAGES, ROLE_PERMISSIONS, Grant, Permission, Role
from labhub.access.tables import JOIN_CODE_LENGTH, NAME_MAX, class_members, classes, users

JOIN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, no 1/I
CARD_PREFIX = "lhc_"  # a card's secret: lhc_ and 32 random bytes, URL-safe base64
# Characters: "class-<id>/" (at most 17) and the name fit an account's NAME_MAX.
STUDENT_NAME_MAX = NAME_MAX - 40
CLASS_MAX_STUDENTS = 200  # self-join cannot fill the hub with accounts
JOINING_MAX_MINUTES = 7 * 24 * 60  # joining stays open a week at most
US_PER_MINUTE = 60_000_000
_CODE_TRIES = 20  # 32**6 codes: a clash is rare, twenty in a row never happens


class ClassError(accounts.AccountError):
    """Base of the classes' errors (all also :class:`AccountError`)::

        ClassError
        ├── UnknownClassError       no such class, or no such student in it (404)
        ├── JoiningClosedError      no class open for joining has this code (404)
        └── ClassFullError          the class has CLASS_MAX_STUDENTS students (409)
    """


class UnknownClassError(ClassError):
    pass


class JoiningClosedError(ClassError):
    pass


class ClassFullError(ClassError):
    pass


@dataclass(frozen=True, slots=True)
class Student:
    name: str
    user_id: int
    account: str  # the account's name: what the audit log shows
    joined_at: int
    card_issued_at: int | None
    active: bool  # False once removed (the account is disabled)


@dataclass(frozen=True, slots=True)
class Class:
    id: int
    site: str
    name: str
    teacher_id: int | None
    teacher: str | None
    join_code: str
    joining_until: int | None
    created_at: int

    def joining_open(self, now: int | None = None) -> bool:
        """Whether students may join by themselves now."""
        return self.joining_until is not None and (now or now_us()) < self.joining_until


def account_name(class_id: int, name: str) -> str:
    """The account name of the student ``name`` of class ``class_id``."""
    return f"class-{class_id}/{name}"


def normal_code(code: str) -> str:
    """A join code as typed (any case, spaces around) as stored."""
    return code.strip().upper()


def _new_code(conn: Connection) -> str:
    for _ in range(_CODE_TRIES):
        code = "".join(secrets.choice(JOIN_ALPHABET) for _ in range(JOIN_CODE_LENGTH))
        if conn.execute(select(classes.c.id).where(classes.c.join_code == code)).first() is None:
            return code
    raise RuntimeError("no free join code after twenty draws")  # pragma: no cover


def check_student_name(name: str) -> str:
    """``name`` trimmed, or InvalidAccountValueError (1 to STUDENT_NAME_MAX characters)."""
    name = accounts.check_name(name, "a student's name")
    if len(name) > STUDENT_NAME_MAX:
        raise accounts.InvalidAccountValueError(
            f"a student's name has at most {STUDENT_NAME_MAX} characters")
    return name


_CLASS_QUERY = (select(classes, users.c.name.label("teacher"))
                .select_from(classes.outerjoin(users, users.c.id == classes.c.teacher_id)))


def _class(row: object) -> Class:
    r = row._mapping  # type: ignore[attr-defined]
    return Class(id=r["id"], site=r["site"], name=r["name"], teacher_id=r["teacher_id"],
                 teacher=r["teacher"], join_code=r["join_code"],
                 joining_until=r["joining_until"], created_at=r["created_at"])


def get_class(conn: Connection, *, class_id: int) -> Class:
    """The class with id ``class_id``, or UnknownClassError."""
    row = conn.execute(_CLASS_QUERY.where(classes.c.id == class_id)).first()
    if row is None:
        raise UnknownClassError(f"no class with id {class_id}")
    return _class(row)


def find_class(conn: Connection, *, ref: str) -> Class:
    """A class by its id (digits) or its join code, or UnknownClassError (the CLI)."""
    if ref.isdigit():
        return get_class(conn, class_id=int(ref))
    row = conn.execute(_CLASS_QUERY.where(classes.c.join_code == normal_code(ref))).first()
    if row is None:
        raise UnknownClassError(f"no class with id or join code {ref!r}")
    return _class(row)


def list_classes(conn: Connection) -> list[Class]:
    """Every class, by site and name."""
    return [_class(r) for r in conn.execute(_CLASS_QUERY.order_by(classes.c.site,
                                                                  classes.c.name,
                                                                  classes.c.id))]


def student_counts(conn: Connection) -> dict[int, int]:
    """Active students per class id."""
    rows = conn.execute(
        select(class_members.c.class_id, func.count())
        .join(users, users.c.id == class_members.c.user_id)
        .where(users.c.disabled_at.is_(None)).group_by(class_members.c.class_id))
    return {class_id: int(n) for class_id, n in rows}


def is_teacher_at(person: accounts.User, site: str, tree: SiteTree) -> bool:
    """Whether ``person`` holds a role that manages accounts (a teacher or above) at
    ``site``: who may teach a class there."""
    above = set(tree.ancestors(site))
    return person.disabled_at is None and any(
        Permission.USERS_MANAGE in ROLE_PERMISSIONS[g.role]
        and (g.site == NETWORK or g.site in above) for g in person.grants)


def may_manage(caller: Caller, klass: Class, tree: SiteTree) -> bool:
    """Whether ``caller`` manages ``klass``: ``users.manage`` at its site, as its teacher
    or through a grant covering the site whose role manages teachers."""
    if not caller.can(Permission.USERS_MANAGE, klass.site, tree):
        return False
    if caller.user_id is not None and caller.user_id == klass.teacher_id:
        return True
    return manages_teachers(caller, klass.site, tree)


def manages_teachers(caller: Caller, site: str, tree: SiteTree) -> bool:
    """Whether a grant of ``caller`` covering ``site`` manages teachers there."""
    above = set(tree.ancestors(site))
    return caller.can(Permission.USERS_MANAGE, site, tree) and any(
        (g.site == NETWORK or g.site in above) and Role.TEACHER in MANAGES[g.role]
        for g in caller.grants)


def require_manage(caller: Caller, klass: Class, tree: SiteTree) -> None:
    """Raise Forbidden unless :func:`may_manage`."""
    if not may_manage(caller, klass, tree):
        raise Forbidden(Permission.USERS_MANAGE, klass.site)


def create_class(conn: Connection, *, site: str, name: str, teacher_id: int | None) -> Class:
    """A new class at ``site`` with a fresh join code, joining shut."""
    name = accounts.check_name(name, "a class's name")
    class_id = conn.execute(insert(classes).values(
        site=site, name=name, teacher_id=teacher_id, join_code=_new_code(conn),
        created_at=now_us()).returning(classes.c.id)).scalar_one()
    return get_class(conn, class_id=class_id)


def change_class(conn: Connection, *, class_id: int, name: str | None = None,
                 joining_minutes: int | None = None, new_join_code: bool = False) -> Class:
    """Rename, open joining for ``joining_minutes`` (0 shuts it), draw a new join code."""
    values: dict[str, object] = {}
    if name is not None:
        values["name"] = accounts.check_name(name, "a class's name")
    if joining_minutes is not None:
        if not 0 <= joining_minutes <= JOINING_MAX_MINUTES:
            raise accounts.InvalidAccountValueError(
                f"joining stays open 0 to {JOINING_MAX_MINUTES} minutes")
        values["joining_until"] = (None if joining_minutes == 0
                                   else now_us() + joining_minutes * US_PER_MINUTE)
    if new_join_code:
        values["join_code"] = _new_code(conn)
    get_class(conn, class_id=class_id)
    if values:
        conn.execute(update(classes).where(classes.c.id == class_id).values(**values))
    return get_class(conn, class_id=class_id)


# Students --------------------------------------------------------------------------------

def _student(row: object) -> Student:
    r = row._mapping  # type: ignore[attr-defined]
    return Student(name=r["name"], user_id=r["user_id"], account=r["account"],
                   joined_at=r["joined_at"], card_issued_at=r["card_issued_at"],
                   active=r["disabled_at"] is None)


_STUDENT_QUERY = (select(class_members.c.name, class_members.c.user_id,
                         class_members.c.joined_at, class_members.c.card_issued_at,
                         users.c.name.label("account"), users.c.disabled_at)
                  .join(users, users.c.id == class_members.c.user_id))


def students(conn: Connection, *, class_id: int, active_only: bool = False) -> list[Student]:
    """The students of a class, by name (removed ones too unless ``active_only``)."""
    query = _STUDENT_QUERY.where(class_members.c.class_id == class_id)
    if active_only:
        query = query.where(users.c.disabled_at.is_(None))
    return [_student(r) for r in conn.execute(query.order_by(class_members.c.name_key))]


def get_student(conn: Connection, *, class_id: int, name: str) -> Student:
    """One student of a class by name (as name_key compares), or UnknownClassError."""
    row = conn.execute(_STUDENT_QUERY.where(
        class_members.c.class_id == class_id,
        class_members.c.name_key == accounts.name_key(name))).first()
    if row is None:
        raise UnknownClassError(f"class {class_id} has no student named {name!r}")
    return _student(row)


def add_student(conn: Connection, *, class_id: int, name: str, pin: str | None = None
                ) -> tuple[Student, str]:
    """A new student (or a removed one back, with a new PIN and no card) with ``pin``
    (None: one drawn); the student and the PIN, returned this once. NameTakenError for a
    name an active student of the class has; ClassFullError past CLASS_MAX_STUDENTS."""
    klass = get_class(conn, class_id=class_id)
    name = check_student_name(name)
    pin = passwords.new_pin() if pin is None else pin
    pin_hash = passwords.hash_pin(pin)
    key = accounts.name_key(name)
    found = conn.execute(select(class_members.c.user_id, users.c.disabled_at)
                         .join(users, users.c.id == class_members.c.user_id)
                         .where(class_members.c.class_id == class_id,
                                class_members.c.name_key == key)).first()
    if found is not None and found.disabled_at is None:
        raise accounts.NameTakenError(f"class {klass.name!r} already has a student named "
                                      f"{name!r} (names differing only in case or accents "
                                      "written another way are one name)")
    if student_counts(conn).get(class_id, 0) >= CLASS_MAX_STUDENTS:
        raise ClassFullError(f"class {klass.name!r} has {CLASS_MAX_STUDENTS} students, "
                             "the most a class holds")
    now = now_us()
    if found is not None:  # removed before: the same account comes back
        accounts.set_disabled(conn, user_id=found.user_id, disabled=False)
        conn.execute(update(class_members).where(class_members.c.user_id == found.user_id)
                     .values(pin_hash=pin_hash, card_hash=None, card_issued_at=None,
                             joined_at=now))
        accounts.add_grant(conn, user_id=found.user_id, grant=Grant(Role.STUDENT, klass.site))
        return get_student(conn, class_id=class_id, name=name), pin
    user = accounts.create_user(conn, name=account_name(class_id, name), password_hash=None,
                                grants_given=[Grant(Role.STUDENT, klass.site)])
    try:
        with conn.begin_nested():
            conn.execute(insert(class_members).values(
                class_id=class_id, user_id=user.id, name=name, name_key=key,
                pin_hash=pin_hash, joined_at=now))
    except IntegrityError:  # another request added the same name a moment before
        raise accounts.NameTakenError(f"class {klass.name!r} already has a student named "
                                      f"{name!r}") from None
    return get_student(conn, class_id=class_id, name=name), pin


def join(conn: Connection, *, code: str, name: str, pin: str) -> tuple[Class, Student]:
    """A student joins by themselves with the class's join code and a PIN they chose:
    JoiningClosedError unless a class with that code has joining open now."""
    passwords.check_pin(pin)
    row = conn.execute(_CLASS_QUERY.where(classes.c.join_code == normal_code(code))).first()
    klass = None if row is None else _class(row)
    if klass is None or not klass.joining_open():
        raise JoiningClosedError("no class open for joining has this code: ask the teacher "
                                 "for the code, and to open joining")
    student, _ = add_student(conn, class_id=klass.id, name=name, pin=pin)
    return klass, student


def reset_pin(conn: Connection, *, class_id: int, name: str) -> tuple[Student, str]:
    """A new PIN for a student (returned once); every session of theirs ends."""
    student = get_student(conn, class_id=class_id, name=name)
    pin = passwords.new_pin()
    conn.execute(update(class_members).where(class_members.c.user_id == student.user_id)
                 .values(pin_hash=passwords.hash_pin(pin)))
    accounts.revoke_sessions(conn, user_id=student.user_id)
    return student, pin


def remove_student(conn: Connection, *, class_id: int, name: str) -> Student:
    """Disable a student's account (sessions end, the card stops working); the name
    stays with the class, so adding it again brings the same account back."""
    student = get_student(conn, class_id=class_id, name=name)
    accounts.set_disabled(conn, user_id=student.user_id, disabled=True)
    conn.execute(update(class_members).where(class_members.c.user_id == student.user_id)
                 .values(card_hash=None, card_issued_at=None))
    return get_student(conn, class_id=class_id, name=name)


# Sign-in -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SignInTarget:
    """An enabled student account a sign-in names: its id, account name, PIN hash."""

    user_id: int
    account: str
    pin_hash: str


def pin_target(conn: Connection, *, code: str, name: str) -> SignInTarget | None:
    """The enabled student ``name`` of the class with join code ``code``, or None."""
    row = conn.execute(
        select(class_members.c.user_id, class_members.c.pin_hash, users.c.name)
        .join(users, users.c.id == class_members.c.user_id)
        .join(classes, classes.c.id == class_members.c.class_id)
        .where(classes.c.join_code == normal_code(code),
               class_members.c.name_key == accounts.name_key(name),
               users.c.disabled_at.is_(None))).first()
    return None if row is None else SignInTarget(row.user_id, row.name, row.pin_hash)


def card_target(conn: Connection, *, card: str) -> SignInTarget | None:
    """The enabled student whose current card has the secret ``card``, or None."""
    row = conn.execute(
        select(class_members.c.user_id, class_members.c.pin_hash, users.c.name)
        .join(users, users.c.id == class_members.c.user_id)
        .where(class_members.c.card_hash == accounts.secret_hash(card),
               users.c.disabled_at.is_(None))).first()
    return None if row is None else SignInTarget(row.user_id, row.name, row.pin_hash)


# Cards -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NewCard:
    """A card just made: the student's name and the secret its QR code carries."""

    name: str
    secret: str


def card_url(base_url: str, secret: str) -> str:
    """What a card's QR code holds: the hub's sign-in page with the secret after ``#``
    (a browser never sends the part after ``#``, so no server log keeps it)."""
    return f"{base_url.rstrip('/')}/signin#card={secret}"


def issue_cards(conn: Connection, *, class_id: int, names: list[str] | None = None
                ) -> list[NewCard]:
    """New card secrets for the class's active students (or those ``names``), by name;
    each one's old card stops working."""
    get_class(conn, class_id=class_id)
    if names is None:
        chosen = students(conn, class_id=class_id, active_only=True)
    else:
        chosen = [get_student(conn, class_id=class_id, name=n) for n in dict.fromkeys(names)]
        for s in chosen:
            if not s.active:
                raise accounts.InvalidAccountValueError(
                    f"{s.name!r} was removed from the class: add them again first")
    now = now_us()
    made = []
    for s in chosen:
        secret = CARD_PREFIX + secrets.token_urlsafe(accounts.TOKEN_BYTES)
        conn.execute(update(class_members).where(class_members.c.user_id == s.user_id)
                     .values(card_hash=accounts.secret_hash(secret), card_issued_at=now))
        made.append(NewCard(s.name, secret))
    return made

