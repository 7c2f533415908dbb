"""Accounts over HTTP: signing in and out, one's own API tokens, people and their roles,
device tokens and the audit log.

Every route declares what it needs (:func:`labhub.access.gate.needs`). A manager gives,
changes or resets only the roles their own role manages (``MANAGES``) and only at sites
within their own grant's subtree. Lists of people show only those with a grant in the
caller's scope.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, WithJsonSchema, model_validator
from sqlalchemy import Connection, select

from firmware_bridge.registry import devices
from labhub.access import accounts, audit, classes, own_password, passwords, trail
from labhub.access.caller import NETWORK, Caller, Forbidden
from labhub.access.gate import needs
from labhub.access.limits import SignInLimiter
from labhub.access.permissions import MANAGES, Grant, Permission, Role
from labhub.access.sites import Tree, tree_for
from labhub.access.who import SESSION_COOKIE, SIGN_IN_PATH, address_of
from labhub.api.common import (
    KEY_PATTERN,
    Offset,
    ReadConn,
    WriteConn,
    check_page,
    iso,
    limit_query,
    parse_query_time,
    time_query,
)
from labhub.api.deps import HubDep, settings_of
from labhub.problems import Problem, problem_responses
from labhub.web import i18n
from labtext.printable import FILLED_TEXT_PATTERN, FREE_TEXT_PATTERN, NAME_PATTERN

router = APIRouter(prefix="/api/v1", tags=["access"])
SIGNED_IN = Permission.SIGNED_IN
FAILED = "wrong name or password"  # the same whether the name exists or not
US_PER_DAY = 86_400_000_000
AUDIT_LIMIT_MAX = 1000
SITE_PATTERN = f"^(\\*|{KEY_PATTERN[1:-1]})$"  # a site code, or * for the network
TOKEN_ID_PATTERN = "^[0-9a-f]{1,32}$"  # noqa: S105 -- the id, not the token
ACTION_PATTERN = "^[a-z_]{1,40}$"
PersonName = Annotated[str, Field(min_length=1, max_length=100, pattern=NAME_PATTERN)]
Password = Annotated[str, Field(min_length=1, max_length=passwords.PASSWORD_MAX,
                                pattern=FREE_TEXT_PATTERN)]
NewPassword = Annotated[str, Field(min_length=passwords.PASSWORD_MIN,
                                   max_length=passwords.PASSWORD_MAX, pattern=FREE_TEXT_PATTERN)]
# What a token may carry: every permission a role gives (not public and signed_in, which
# need no role, nor network.sync, which only a hub's credential carries).
TOKEN_PERMISSIONS = [p.value for p in Permission
                     if p not in (Permission.PUBLIC, Permission.SIGNED_IN,
                                  Permission.NETWORK_SYNC)]
TokenPermissions = Annotated[list[Permission], Field(max_length=len(TOKEN_PERMISSIONS)),
                             WithJsonSchema({
    "type": "array", "maxItems": len(TOKEN_PERMISSIONS),
    "items": {"type": "string", "enum": TOKEN_PERMISSIONS}})]
TokenId = Annotated[str, Path(max_length=32, pattern=TOKEN_ID_PATTERN)]


def limiter_of(request: Request) -> SignInLimiter:
    """The app's sign-in limiter."""
    limiter: SignInLimiter = request.app.state.sign_in_limiter
    return limiter


def _person(caller: Caller) -> int:
    """The id of the person the caller is; a device (or the hub itself) is refused."""
    if caller.user_id is None:
        raise Problem(403, "Forbidden", "this is about one's own account: a device token "
                      "has none")
    return caller.user_id


class GrantIO(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Grant")

    role: Role
    site: str = Field(min_length=1, max_length=64, pattern=SITE_PATTERN,
                      description="a site code of the inventory tree, or `*`: the network")


_KEY_SITE = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": KEY_PATTERN}
# A grant as a request sends it: admin and ministry may hold "*", the others a site code.
GrantIn = Annotated[GrantIO, WithJsonSchema({"title": "GrantIn", "anyOf": [
    {"type": "object", "additionalProperties": False, "required": ["role", "site"],
     "properties": {"role": {"type": "string", "enum": ["admin", "ministry"]},
                    "site": {"type": "string", "minLength": 1, "maxLength": 64,
                             "pattern": SITE_PATTERN}}},
    {"type": "object", "additionalProperties": False, "required": ["role", "site"],
     "properties": {"role": {"type": "string",
                             "enum": ["coordinator", "teacher", "student"]},
                    "site": _KEY_SITE}},
]})]


def _grant_out(g: Grant) -> GrantIO:
    return GrantIO(role=g.role, site=g.site)


# Sign-in -----------------------------------------------------------------------------------

CLASS_CODE_PATTERN = "^[A-Za-z0-9]{6}$"  # a join code as typed (compared in upper case)
CARD_PATTERN = "^lhc_[A-Za-z0-9_-]{20,80}$"  # a QR card's secret (labhub.access.classes)
_SIGN_IN_NAME = {"type": "string", "minLength": 1, "maxLength": 100, "pattern": NAME_PATTERN}


class SignInIn(BaseModel):
    """One of three ways: ``name`` and ``password``; ``class_code``, ``name`` and
    ``pin`` (a student); ``card`` (the secret a student's QR card holds)."""

    model_config = ConfigDict(extra="forbid")

    name: PersonName | None = None
    password: Password | None = None
    class_code: str | None = Field(default=None, pattern=CLASS_CODE_PATTERN)
    pin: str | None = Field(default=None, pattern=passwords.PIN_PATTERN)
    card: str | None = Field(default=None, max_length=100, pattern=CARD_PATTERN)

    @model_validator(mode="after")
    def _one_way(self) -> SignInIn:
        given = {k for k in ("name", "password", "class_code", "pin", "card")
                 if getattr(self, k) is not None}
        if given not in ({"name", "password"}, {"class_code", "name", "pin"}, {"card"}):
            raise ValueError("sign in with name and password, with class_code, name and "
                             "pin, or with card")
        return self


SignInBody = Annotated[SignInIn, WithJsonSchema({"title": "SignInIn", "oneOf": [
    {"type": "object", "additionalProperties": False, "required": ["name", "password"],
     "properties": {"name": _SIGN_IN_NAME, "password": {
         "type": "string", "minLength": 1, "maxLength": passwords.PASSWORD_MAX,
         "pattern": FREE_TEXT_PATTERN}}},
    {"type": "object", "additionalProperties": False,
     "required": ["class_code", "name", "pin"],
     "properties": {"class_code": {"type": "string", "pattern": CLASS_CODE_PATTERN},
                    "name": _SIGN_IN_NAME,
                    "pin": {"type": "string", "pattern": passwords.PIN_PATTERN}}},
    {"type": "object", "additionalProperties": False, "required": ["card"],
     "properties": {"card": {"type": "string", "maxLength": 100, "pattern": CARD_PATTERN}}},
]})]


class SignedInOut(BaseModel):
    name: str
    grants: list[GrantIO]
    csrf_token: str = Field(description="send it as `X-CSRF-Token` with every write")
    expires_at: str


def _refused(request: Request, hub: HubDep, keys: list[str], actor: str, way: str) -> Problem:
    """Count a failed sign-in, log it, and the 401 that never says which part was wrong."""
    limiter_of(request).failed(keys)
    with hub.engine.begin() as conn:
        audit.record(conn, actor=actor[:100], action="sign_in_failed", outcome="refused",
                     address=address_of(request), detail={"with": way},
                     keep_days=settings_of(request).audit_log_days)
    return Problem(401, "Not signed in", FAILED)


@router.post("/auth/sign-in", response_model=SignedInOut, summary="Sign in",
             dependencies=[needs(Permission.PUBLIC)],
             responses=problem_responses(401, 422, 429, 503))
def sign_in(body: SignInBody, request: Request, response: Response, hub: HubDep
            ) -> SignedInOut:
    """Check a name and password, a student's class code, name and PIN, or a student's
    QR card; on success sets the session cookie (HttpOnly, SameSite=Lax) and answers the
    CSRF token the writes send. A failure answers the same whether or not the account
    exists. After repeated failures for an account or from an address, a 429 says when
    to try again."""
    settings = settings_of(request)
    address = address_of(request)
    if body.card is not None:
        way, actor = "card", "(card)"
        keys = [f"address:{address}"]
    elif body.class_code is not None:
        way, actor = "pin", f"{classes.normal_code(body.class_code)}/{body.name}"
        keys = [f"name:class:{accounts.name_key(actor)}", f"address:{address}"]
    else:
        way, actor = "password", body.name or ""
        keys = [f"name:{accounts.name_key(actor)}", f"address:{address}"]
    limiter = limiter_of(request)
    wait = limiter.wait_s(keys)
    if wait > 0:
        # A flood from one address writes one entry a minute, with how many were held back.
        held_back = trail.throttle_of(request).admit(f"{address}|429|{SIGN_IN_PATH}")
        if held_back is not None:
            with hub.engine.begin() as conn:
                audit.record(conn, actor=actor[:100], action="sign_in_failed",
                             outcome="rate_limited", address=address,
                             detail={"with": way} | ({"held_back": held_back}
                                                     if held_back else {}),
                             keep_days=settings.audit_log_days)
        raise Problem(429, "Too many failed sign-ins",
                      "too many failed sign-ins for this name or from this address: wait "
                      "and try again", retry_after_s=wait)
    stored: str | None = None
    secret = ""
    user_id: int | None = None
    with hub.engine.connect() as conn:
        if body.card is not None:
            target = classes.card_target(conn, card=body.card)
            if target is None:
                raise _refused(request, hub, keys, actor, way)
            user_id = target.user_id
        elif body.class_code is not None:
            assert body.name is not None and body.pin is not None  # the validator saw
            found_pin = classes.pin_target(conn, code=body.class_code, name=body.name)
            stored = None if found_pin is None else found_pin.pin_hash
            secret = body.pin
            user_id = None if found_pin is None else found_pin.user_id
        else:
            assert body.password is not None
            found = accounts.password_hash_of(conn, name=actor)
            stored = None if found is None else found[1]
            secret = body.password
            user_id = None if found is None else found[0]
    if body.card is None:
        try:
            matches = passwords.verify(stored, secret)
        except passwords.ChecksBusyError as exc:  # a spray of sign-ins holds every slot
            raise Problem(503, "Hub busy", str(exc),
                          retry_after_s=exc.retry_after_s) from None
        if not matches or user_id is None:
            raise _refused(request, hub, keys, actor, way)
    assert user_id is not None
    if way != "card":  # a card's only key is the address: a good card must not clear it
        limiter.succeeded(keys[0])
    with hub.engine.begin() as conn:
        if way == "password" and stored is not None and passwords.needs_rehash(stored):
            accounts.set_password_hash(conn, user_id=user_id,
                                       password_hash=passwords.hash_password(secret))
        session = accounts.start_session(conn, user_id=user_id, hours=settings.session_hours,
                                         address=address)
        user = accounts.get_user_by_id(conn, user_id=user_id)
        audit.record(conn, actor=user.name, action="sign_in", address=address,
                     detail=None if way == "password" else {"with": way},
                     keep_days=settings.audit_log_days)
    response.set_cookie(SESSION_COOKIE, session.secret, max_age=settings.session_hours * 3600,
                        path="/", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")
    return SignedInOut(name=user.name, grants=[_grant_out(g) for g in user.grants],
                       csrf_token=session.csrf, expires_at=iso(session.expires_at) or "")


@router.post("/auth/sign-out", status_code=204, summary="Sign out",
             responses=problem_responses(401, 403))
def sign_out(request: Request, response: Response, conn: WriteConn,
             caller: Annotated[Caller, needs(SIGNED_IN)]) -> Response:
    """End this session and clear its cookie (with a token: nothing to end)."""
    session_id = getattr(request.state, "session_id", None)
    if session_id is not None:
        accounts.revoke_session(conn, session_id=session_id)
    answer = Response(status_code=204)
    answer.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return answer


class SignedOutOut(BaseModel):
    sessions_ended: int


@router.post("/auth/sign-out-everywhere", response_model=SignedOutOut,
             summary="Sign out on every device", responses=problem_responses(401, 403))
def sign_out_everywhere(conn: WriteConn, caller: Annotated[Caller, needs(SIGNED_IN)]
                        ) -> SignedOutOut:
    """End every session of the signed-in person (tokens stay: revoke them apart)."""
    return SignedOutOut(sessions_ended=accounts.revoke_sessions(conn, user_id=_person(caller)))


# The title of a 409 for a person the network's central keeps (their password is changed
# there); the account page tells it from the other 409 by it.
KEPT_BY_CENTRAL = "Kept by the central"


class OwnPasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: Password
    new_password: NewPassword


@router.post("/auth/password", response_model=SignedOutOut, summary="Change my password",
             responses=problem_responses(401, 403, 409, 422, 429, 503))
def change_my_password(body: OwnPasswordIn, request: Request, hub: HubDep,
                       caller: Annotated[Caller, needs(SIGNED_IN)]) -> SignedOutOut:
    """Change one's own password, giving the current one again. Every other session of
    the person ends (this one stays; API tokens stay): ``sessions_ended`` says how many.
    A wrong current password is a 422 and counts as a failed sign-in for the name (a 429
    after too many); an account that signs in with a class PIN or a card has no password
    (409), and on a hub in a network a person the central sends is changed there (409)."""
    try:
        changed = own_password.change_own_password(
            hub.engine, limiter_of(request), user_id=_person(caller),
            current=body.current_password, new=body.new_password,
            keep_session=getattr(request.state, "session_id", None),
            address=address_of(request), keep_days=settings_of(request).audit_log_days)
    except own_password.OwnPasswordError as exc:
        raise _own_password_problem(exc) from None
    return SignedOutOut(sessions_ended=changed.sessions_ended)


def _own_password_problem(exc: own_password.OwnPasswordError) -> Problem:
    if exc.reason == "none":
        return Problem(409, "No password to change", str(exc))
    if exc.reason == "central":
        return Problem(409, KEPT_BY_CENTRAL, str(exc))
    if exc.reason == "wait":
        return Problem(429, "Too many failed sign-ins", str(exc), retry_after_s=exc.wait_s)
    if exc.reason == "busy":
        return Problem(503, "Hub busy", str(exc), retry_after_s=exc.wait_s)
    where, _, message = str(exc).partition(": ")
    title = "Wrong password" if exc.reason == "wrong" else "Invalid password"
    return Problem(422, title, str(exc),
                   errors=[{"where": f"body.{where}", "message": message}])


class MeOut(BaseModel):
    name: str
    via: Literal["session", "token", "device", "system", "hub"]
    grants: list[GrantIO]
    permissions: list[Permission] = Field(description="what the caller may, somewhere")
    csrf_token: str | None = Field(default=None, description="with a session: the value "
                                   "of `X-CSRF-Token` for writes")
    language: str | None = Field(default=None, description="the language the person chose "
                                 "for the web pages; null: their browser's, else the hub's")


@router.get("/auth/me", response_model=MeOut, summary="Who am I",
            responses=problem_responses(401))
def me(request: Request, caller: Annotated[Caller, needs(SIGNED_IN)]) -> MeOut:
    """The caller's name, grants, permissions and chosen language."""
    return _me_out(request, caller, caller.language)


def _me_out(request: Request, caller: Caller, language: str | None) -> MeOut:
    granted = accounts.permissions_of(caller.grants)
    if caller.token_permissions is not None:
        granted &= caller.token_permissions
    if caller.via == "device":
        granted = frozenset({Permission.READINGS_INGEST})
    return MeOut(name=caller.name, via=caller.via,
                 grants=[_grant_out(g) for g in caller.grants],
                 permissions=sorted(granted),
                 csrf_token=getattr(request.state, "csrf", None), language=language)


# A language code as the catalogs' folders are named (labhub.web.i18n.CODE). The document
# lists the languages the hub had catalogs for when it started; the route checks the
# catalogs it has now (a 422 names them).
LANGUAGE_PATTERN = "^[a-z]{2,3}(_[A-Z]{2})?$"
LanguageCode = Annotated[str | None, Field(max_length=16, pattern=LANGUAGE_PATTERN),
                         WithJsonSchema({"anyOf": [
                             {"type": "string", "enum": list(i18n.LANGUAGES)},
                             {"type": "null"}]})]


class MePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: LanguageCode = Field(
        default=None,
        description="one of the languages the hub has catalogs for (`es`, `pt`, `en`, ...); "
                    "null: none of one's own (the browser's, else the hub's)")


@router.patch("/auth/me", response_model=MeOut, summary="Change my settings",
              responses=problem_responses(401, 403, 422))
def change_me(body: MePatch, request: Request, conn: WriteConn,
              caller: Annotated[Caller, needs(SIGNED_IN)]) -> MeOut:
    """Set (or, with null, forget) the language of one's own web pages; a field left out
    stays as it is."""
    language = caller.language
    if "language" in body.model_fields_set:
        accounts.set_language(conn, user_id=_person(caller), language=body.language,
                              known=i18n.languages())
        language = body.language
    return _me_out(request, caller, language)


# API tokens --------------------------------------------------------------------------------

class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PersonName
    permissions: TokenPermissions | None = Field(
        default=None,
        description="a subset of the person's permissions; none: all of them")
    expires_days: int | None = Field(default=None, ge=1, le=3650)


class TokenOut(BaseModel):
    id: str
    name: str
    permissions: list[Permission] | None
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None


class NewTokenOut(TokenOut):
    token: str = Field(description="the token itself: shown this once only")


def _token_out(t: accounts.ApiToken) -> dict[str, Any]:
    return {"id": t.id, "name": t.name,
            "permissions": None if t.permissions is None else sorted(t.permissions),
            "created_at": iso(t.created_at), "expires_at": iso(t.expires_at),
            "last_used_at": iso(t.last_used_at), "revoked_at": iso(t.revoked_at)}


@router.get("/tokens", response_model=list[TokenOut], summary="My API tokens",
            responses=problem_responses(401, 403))
def list_tokens(conn: ReadConn, caller: Annotated[Caller, needs(SIGNED_IN)]
                ) -> list[TokenOut]:
    """The signed-in person's tokens, newest first (never the tokens themselves)."""
    return [TokenOut(**_token_out(t))
            for t in accounts.list_api_tokens(conn, user_id=_person(caller))]


@router.post("/tokens", response_model=NewTokenOut, status_code=201,
             summary="Make an API token", responses=problem_responses(401, 403, 422))
def create_token(body: TokenIn, request: Request, conn: WriteConn,
                 caller: Annotated[Caller, needs(SIGNED_IN)]) -> NewTokenOut:
    """A new token for scripts, with a subset of one's permissions and an expiry; the
    answer shows the token once."""
    user_id = _person(caller)
    mine = accounts.permissions_of(caller.grants)
    if caller.token_permissions is not None:
        mine &= caller.token_permissions
    wanted: frozenset[Permission] | None = accounts.token_permissions(
        accounts.check_permissions(
            None if body.permissions is None else [p.value for p in body.permissions]),
        mine)
    if body.permissions is None and caller.token_permissions is None:
        wanted = None  # all the person's, as their grants change
    expires = None if body.expires_days is None else audit.now_us() + body.expires_days * US_PER_DAY
    token, secret = accounts.create_api_token(conn, user_id=user_id, name=body.name,
                                              permissions=wanted, expires_at=expires)
    audit.record(conn, actor=caller.name, action="token_created", target=token.id,
                 address=address_of(request), detail={"name": token.name},
                 keep_days=settings_of(request).audit_log_days)
    return NewTokenOut(**_token_out(token), token=secret)


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke an API token",
               responses=problem_responses(401, 403, 404))
def revoke_token(token_id: TokenId, request: Request,
                 conn: WriteConn, caller: Annotated[Caller, needs(SIGNED_IN)]) -> Response:
    """Revoke one of one's own tokens: it stops working at once."""
    token = accounts.revoke_api_token(conn, token_id=token_id, user_id=_person(caller))
    audit.record(conn, actor=caller.name, action="token_revoked", target=token.id,
                 address=address_of(request), keep_days=settings_of(request).audit_log_days)
    return Response(status_code=204)


# People ------------------------------------------------------------------------------------

# Where a person's daily reminders go (labhub.reminders.digest); the accounts' own rule.
Email = Annotated[str, Field(min_length=3, max_length=accounts.EMAIL_MAX,
                             pattern=accounts.EMAIL_PATTERN, examples=["marta@colegio.edu.co"])]


class UserOut(BaseModel):
    name: str
    grants: list[GrantIO]
    created_at: str
    disabled: bool
    has_password: bool
    email: str | None = Field(default=None, description="where the daily reminders go")
    reminder_emails: bool = Field(default=True, description="whether they go there")


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PersonName
    password: NewPassword | None = None
    grants: list[GrantIn] = Field(min_length=1, max_length=50)
    email: Email | None = None


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grant: list[GrantIn] = Field(default_factory=list, max_length=50)
    ungrant: list[GrantIn] = Field(default_factory=list, max_length=50)
    disabled: StrictBool | None = None
    email: Email | None = Field(default=None, description="null: no e-mail")
    reminder_emails: StrictBool | None = None


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: NewPassword


def _user_out(u: accounts.User) -> UserOut:
    return UserOut(name=u.name, grants=[_grant_out(g) for g in u.grants],
                   created_at=iso(u.created_at) or "", disabled=u.disabled_at is not None,
                   has_password=u.has_password, email=u.email,
                   reminder_emails=u.reminder_emails)


def _may_manage(caller: Caller, grant: Grant, tree: Tree) -> None:
    """Forbidden unless the caller may give or take ``grant``: USERS_MANAGE at its site
    from a grant whose role manages ``grant.role``."""
    caller.require(Permission.USERS_MANAGE, grant.site, tree)
    above = set(tree.ancestors(grant.site))
    for mine in caller.grants:
        covers = mine.site == NETWORK or (grant.site != NETWORK and mine.site in above)
        if covers and grant.role in MANAGES[mine.role] and caller.can(
                Permission.USERS_MANAGE, grant.site, tree):
            return
    raise Forbidden(Permission.USERS_MANAGE, grant.site)


def _visible(caller: Caller, user: accounts.User, tree: Tree) -> bool:
    scope = caller.scope(Permission.USERS_MANAGE, tree)
    return scope is None or any(g.site in scope for g in user.grants)


def _checked(g: GrantIO) -> Grant:
    return accounts.check_grant(g.role.value, g.site)


@router.get("/users", response_model=list[UserOut], summary="People",
            responses=problem_responses(401, 403))
def list_people(request: Request, conn: ReadConn,
                caller: Annotated[Caller, needs(Permission.USERS_MANAGE)]) -> list[UserOut]:
    """People with a grant where the caller manages accounts, by name."""
    tree = tree_for(request)
    return [_user_out(u) for u in accounts.list_users(conn) if _visible(caller, u, tree)]


@router.post("/users", response_model=UserOut, status_code=201, summary="Add a person",
             responses=problem_responses(401, 403, 409, 422))
def add_person(body: UserIn, request: Request, conn: WriteConn,
               caller: Annotated[Caller, needs(Permission.USERS_MANAGE)]) -> UserOut:
    """A new account with its grants; each a role the caller manages, at a site within
    the caller's own."""
    tree = tree_for(request)
    given = [_checked(g) for g in body.grants]
    for g in given:
        _may_manage(caller, g, tree)
    hashed = None if body.password is None else passwords.hash_password(body.password)
    user = accounts.create_user(conn, name=body.name, password_hash=hashed, grants_given=given)
    if body.email is not None:
        accounts.set_email(conn, user_id=user.id, email=body.email)
        user = accounts.get_user(conn, name=user.name)
    for g in given:
        audit.record(conn, actor=caller.name, action="role_granted", target=user.name,
                     site=g.site, address=address_of(request), detail={"role": g.role},
                     keep_days=settings_of(request).audit_log_days)
    return _user_out(user)


def _visible_user(conn: Connection, caller: Caller, name: str, tree: Tree
                  ) -> accounts.User:
    user = accounts.get_user(conn, name=name)
    if not _visible(caller, user, tree):
        raise accounts.UnknownAccountError(f"no account named {name!r}")
    return user


UserName = Annotated[str, Path(min_length=1, max_length=100, pattern=NAME_PATTERN)]


@router.get("/users/{name}", response_model=UserOut, summary="One person",
            responses=problem_responses(401, 403, 404))
def get_person(name: UserName, request: Request, conn: ReadConn,
               caller: Annotated[Caller, needs(Permission.USERS_MANAGE)]) -> UserOut:
    """A person the caller manages."""
    return _user_out(_visible_user(conn, caller, name, tree_for(request)))


@router.patch("/users/{name}", response_model=UserOut, summary="Change a person's roles",
              responses=problem_responses(401, 403, 404, 422))
def change_person(name: UserName, body: UserPatch, request: Request, conn: WriteConn,
                  caller: Annotated[Caller, needs(Permission.USERS_MANAGE)]) -> UserOut:
    """Give and take grants; disable or enable the account (a disabled account's
    sessions end and its tokens stop working); set the address of the person's daily
    reminders (null: none) and whether they want them."""
    tree = tree_for(request)
    user = _visible_user(conn, caller, name, tree)
    keep = settings_of(request).audit_log_days
    address = address_of(request)
    changes = [(g, True) for g in map(_checked, body.grant)] + [
        (g, False) for g in map(_checked, body.ungrant)]
    for g, _ in changes:
        _may_manage(caller, g, tree)
    if body.disabled is not None:
        for g in user.grants:
            _may_manage(caller, g, tree)
    for g, give in changes:
        done = (accounts.add_grant if give else accounts.remove_grant)(
            conn, user_id=user.id, grant=g)
        if done:
            audit.record(conn, actor=caller.name, action="role_granted" if give else
                         "role_revoked", target=user.name, site=g.site, address=address,
                         detail={"role": g.role}, keep_days=keep)
    if body.disabled is not None:
        accounts.set_disabled(conn, user_id=user.id, disabled=body.disabled)
        audit.record(conn, actor=caller.name, action="user_disabled" if body.disabled
                     else "user_enabled", target=user.name, address=address, keep_days=keep)
    if {"email", "reminder_emails"} & body.model_fields_set:
        for g in user.grants:  # their address: only one who manages each of their roles
            _may_manage(caller, g, tree)
        accounts.set_email(
            conn, user_id=user.id,
            email=body.email if "email" in body.model_fields_set else user.email,
            reminder_emails=body.reminder_emails)
    return _user_out(accounts.get_user(conn, name=user.name))


@router.post("/users/{name}/password", status_code=204, summary="Reset a password",
             responses=problem_responses(401, 403, 404, 409, 422))
def reset_password(name: UserName, body: PasswordIn, request: Request, conn: WriteConn,
                   caller: Annotated[Caller, needs(Permission.USERS_MANAGE)]) -> Response:
    """Set a person's password (their sessions end): the caller must manage every role
    the person holds. On a hub in a network, a person the central sends down is reset on
    the central (409): the central's password would replace this one at a later sync."""
    tree = tree_for(request)
    user = _visible_user(conn, caller, name, tree)
    for g in user.grants:
        _may_manage(caller, g, tree)
    if own_password.kept_by_central(conn, user.name):
        raise Problem(409, KEPT_BY_CENTRAL, f"{user.name} comes from the network's "
                      "central: reset the password there (a reset on this hub would be "
                      "replaced at the next sync)")
    accounts.set_password_hash(conn, user_id=user.id,
                               password_hash=passwords.hash_password(body.password))
    accounts.revoke_sessions(conn, user_id=user.id)
    audit.record(conn, actor=caller.name, action="password_reset", target=user.name,
                 address=address_of(request), keep_days=settings_of(request).audit_log_days)
    return Response(status_code=204)


# Device tokens -----------------------------------------------------------------------------

class DeviceTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(min_length=1, max_length=64, pattern=FILLED_TEXT_PATTERN)
    name: PersonName


class DeviceTokenOut(BaseModel):
    id: str
    device_id: str
    site: str | None
    name: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class NewDeviceTokenOut(DeviceTokenOut):
    token: str = Field(description="the token itself: shown this once only")


def _device_token_out(t: accounts.DeviceToken) -> dict[str, Any]:
    return {"id": t.id, "device_id": t.device_id, "site": t.site, "name": t.name,
            "created_at": iso(t.created_at), "last_used_at": iso(t.last_used_at),
            "revoked_at": iso(t.revoked_at)}


def _device_site(conn: Connection, device_id: str, hub_site: str | None) -> str | None:
    row = conn.execute(select(devices.c.site).where(devices.c.id == device_id)).first()
    return hub_site if row is None or row.site is None else str(row.site)


@router.post("/device-tokens", response_model=NewDeviceTokenOut, status_code=201,
             summary="Make a device token", responses=problem_responses(401, 403, 422))
def create_device_token(body: DeviceTokenIn, request: Request, conn: WriteConn,
                        caller: Annotated[Caller, needs(Permission.DEVICES_CONFIGURE)]
                        ) -> NewDeviceTokenOut:
    """A token a sensor node uploads its own readings with (nothing else), at the
    device's site (the hub's own for a device not seen yet); shown once."""
    tree = tree_for(request)
    site = _device_site(conn, body.device_id, tree.hub_site)
    caller.require(Permission.DEVICES_CONFIGURE, site, tree)
    token, secret = accounts.create_device_token(conn, device_id=body.device_id, site=site,
                                                 name=body.name)
    audit.record(conn, actor=caller.name, action="token_created", target=token.id,
                 site=site, address=address_of(request),
                 detail={"device": body.device_id, "name": token.name},
                 keep_days=settings_of(request).audit_log_days)
    return NewDeviceTokenOut(**_device_token_out(token), token=secret)


@router.get("/device-tokens", response_model=list[DeviceTokenOut], summary="Device tokens",
            responses=problem_responses(401, 403))
def list_device_tokens(request: Request, conn: ReadConn,
                       caller: Annotated[Caller, needs(Permission.DEVICES_CONFIGURE)]
                       ) -> list[DeviceTokenOut]:
    """Device tokens at the sites where the caller configures devices."""
    tree = tree_for(request)
    scope = caller.scope(Permission.DEVICES_CONFIGURE, tree)
    return [DeviceTokenOut(**_device_token_out(t))
            for t in accounts.list_device_tokens(conn) if scope is None or t.site in scope]


@router.delete("/device-tokens/{token_id}", status_code=204, summary="Revoke a device token",
               responses=problem_responses(401, 403, 404))
def revoke_device_token(token_id: TokenId, request: Request,
                        conn: WriteConn,
                        caller: Annotated[Caller, needs(Permission.DEVICES_CONFIGURE)]
                        ) -> Response:
    """Revoke a device token: the node's uploads are refused at once."""
    tree = tree_for(request)
    token = accounts.get_device_token(conn, token_id=token_id)
    if not caller.can(Permission.DEVICES_CONFIGURE, token.site, tree):
        raise accounts.UnknownAccountError(f"no device token with id {token_id!r}")
    accounts.revoke_device_token(conn, token_id=token_id)
    audit.record(conn, actor=caller.name, action="token_revoked", target=token_id,
                 site=token.site, address=address_of(request),
                 keep_days=settings_of(request).audit_log_days)
    return Response(status_code=204)


# Audit log ---------------------------------------------------------------------------------

class AuditEntryOut(BaseModel):
    at: str
    actor: str
    on_behalf_of: str | None
    action: str
    target: str | None
    site: str | None
    address: str | None
    outcome: str
    detail: str | None


class AuditPage(BaseModel):
    total: int
    items: list[AuditEntryOut]


@router.get("/audit-log", response_model=AuditPage, summary="The audit log",
            responses=problem_responses(401, 403, 422))
def audit_log(
    request: Request, conn: ReadConn,
    caller: Annotated[Caller, needs(Permission.AUDIT_LOG_READ)],
    since: Annotated[str | None, time_query("entries from this time on")] = None,
    action: Annotated[str | None, Query(pattern=ACTION_PATTERN)] = None,
    actor: Annotated[str | None, Query(max_length=100, pattern=NAME_PATTERN)] = None,
    limit: Annotated[int, limit_query(AUDIT_LIMIT_MAX)] = 100,
    offset: Offset = 0,
) -> AuditPage:
    """Sign-ins, failures, tokens, roles and refusals, newest first."""
    check_page(limit, offset, min(settings_of(request).page_limit_max, AUDIT_LIMIT_MAX))
    scope = caller.scope(Permission.AUDIT_LOG_READ, tree_for(request))
    total, found = audit.entries(conn, since=parse_query_time(since, "since"),
                                 action=action, actor=actor, limit=limit, offset=offset,
                                 sites=scope)
    return AuditPage(total=total, items=[
        AuditEntryOut(at=iso(e.at) or "", actor=e.actor, on_behalf_of=e.on_behalf_of,
                      action=e.action, target=e.target, site=e.site, address=e.address,
                      outcome=e.outcome, detail=e.detail) for e in found])
