"""The web pages: HTML rendered on the hub (Jinja2), gated like every API route.

Every page declares its gate with :func:`labhub.access.gate.needs`. A page that needs a
signed-in person sends a browser without a session to ``/signin?next=<the page>`` (a 303)
instead of the API's 401: :class:`PageRoute` catches :class:`NotSignedIn`. Pages are not
in the OpenAPI document (``include_in_schema=False``).

Forms work without JavaScript. The sign-in form posts to ``/signin``, which runs the API's
own sign-in (:func:`labhub.api.access.sign_in`: the same checks, rate limits, audit log
and cookie); it carries no CSRF token (there is no session yet) but refuses a post another
site makes (``Sec-Fetch-Site`` or ``Origin`` not this hub's). The sign-out form carries
the session's CSRF value in a hidden field, which ``/signout`` checks (a form cannot send
the ``X-CSRF-Token`` header). Every form a signed-in person posts to a page does the same:
its route reads the form with :func:`signed_form`, which refuses a missing or wrong value
(or ``X-CSRF-Token`` header, for htmx) with a page (403); the API's own CSRF check leaves
page paths to it (:func:`labhub.access.who.is_page_path`).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from labhub.access import accounts, passwords, trail, who
from labhub.access.caller import Caller
from labhub.access.gate import NotSignedIn, gated_caller, needs
from labhub.access.permissions import Permission
from labhub.access.who import CSRF_FORM_FIELD, CSRF_HEADER, SESSION_COOKIE, is_page_path
from labhub.api import access as access_api
from labhub.api.deps import HubDep, settings_of
from labhub.disk import page_warning
from labhub.problems import Problem
from labhub.web import i18n
from labhub.web.i18n import N_
from labtext.printable import NAME_PATTERN

HERE: Final = Path(__file__).parent
STATIC_DIR: Final = HERE / "static"
STATIC_URL: Final = "/static"
FORM_TYPE: Final = "application/x-www-form-urlencoded"
FORM_FIELDS_MAX: Final = 200  # a run of many channels, a device with many outputs
_STUDENT_ACCOUNT: Final = re.compile(r"class-[0-9]+/(.+)")

_env = Environment(loader=FileSystemLoader(HERE / "templates"),
                   autoescape=select_autoescape(("html",)), trim_blocks=True,
                   lstrip_blocks=True)


class FormRefused(Exception):
    """A page's form post without the session's CSRF value: answered with a 403 page."""


class PageRoute(APIRoute):
    """A page's route: no session sends the browser to the sign-in page; a form without
    the session's CSRF value gets a page that says so."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except NotSignedIn:
                return RedirectResponse(_root(request) + "/signin?" + urlencode(
                    {"next": _here(request)}), status_code=303)
            except FormRefused:
                _ = i18n.gettext_of(language_of(request))
                await run_in_threadpool(_refusal, request,
                                        f"missing or wrong {CSRF_FORM_FIELD}")
                return render(request, "refused.html", status=403, title=_STATUS_TITLES[403],
                              caller=getattr(request.state, "caller", None),
                              reason=_("This form is out of date: go back, reload the "
                                       "page and try again."))
            except Exception as exc:  # the page of its status, never a traceback or JSON
                return await _error_page(request, exc)

        return page_handler


router = APIRouter(route_class=PageRoute, include_in_schema=False)

# What a person is told for each status a page can end with (the API's detail is English
# and for developers; the page says what to do, in the person's language).
_STATUS_WORDS: Final = {
    400: N_("The hub did not understand this request."),
    403: N_("You may not do this here. If you need to, ask your lab's coordinator."),
    404: N_("Not found: this page, or what it names, is not on this hub."),
    405: N_("This page cannot be used this way."),
    409: N_("Something changed meanwhile: reload the page and try again."),
    413: N_("What you sent is too large."),
    415: N_("The hub did not understand this request."),
    422: N_("Something in the address or the form is not valid."),
    429: N_("The hub is busy: try again in a few seconds."),
    503: N_("The hub is busy: try again in a few seconds."),
}
# The error page's heading for each status (the words above say what to do).
_STATUS_TITLES: Final = {
    400: N_("Not understood"), 403: N_("Not allowed"), 404: N_("Not found"),
    405: N_("Not understood"), 409: N_("Changed meanwhile"), 413: N_("Too large"),
    415: N_("Not understood"), 422: N_("Not valid"), 429: N_("The hub is busy"),
    503: N_("The hub is busy"),
}
_SERVER_WORDS: Final = N_("The hub hit a problem. Try again; if it stays, tell your lab's "
                          "coordinator.")


async def _error_page(request: Request, exc: Exception) -> Response:
    """The page for an error a page's route raised: the status the API's handler of that
    error gives (it also logs and audits, as for the API), with words for a person."""
    handler = None
    for kind in type(exc).__mro__:
        handler = request.app.exception_handlers.get(kind)
        if handler is not None:
            break
    if handler is None:
        raise exc
    if isinstance(exc, StarletteHTTPException):  # the API's handler, not the pages' own
        handler = request.app.state.api_http_error
    answer = await handler(request, exc)
    status = answer.status_code
    _ = i18n.gettext_of(language_of(request))
    reason = _(_STATUS_WORDS.get(status, _SERVER_WORDS))
    response = render(request, "refused.html", status=status, reason=reason,
                      title=_STATUS_TITLES.get(status, _("Not done") if status < 500
                                               else _("A problem on the hub")),
                      caller=_caller_or_session(request))
    if "retry-after" in answer.headers:
        response.headers["Retry-After"] = answer.headers["retry-after"]
    return response


def root_of(request: Request) -> str:
    """The path the hub is served under (``""``, or a proxy's prefix): links start with it."""
    root: str = request.scope.get("root_path", "")
    return root


_root = root_of


def _here(request: Request) -> str:
    path = request.url.path
    return path + ("?" + request.url.query if request.url.query else "")


def safe_next(target: str | None) -> str:
    """A page of this hub to go to after signing in (a path; never another site)."""
    if (not target or not target.startswith("/") or target.startswith("//")
            or "\\" in target or len(target) > 500 or any(ord(c) < 32 for c in target)):
        return "/"
    return target


def shown_name(account: str) -> str:
    """The name a page greets: a student's own (``class-7/Sofía``: Sofía), else the
    account's (:func:`labhub.access.classes.account_name` makes students' names)."""
    found = _STUDENT_ACCOUNT.fullmatch(account)
    return found.group(1) if found else account


def _caller_or_session(request: Request) -> Caller | None:
    """The caller a route's gate let through, else (a path no route takes) the person of
    the request's session, so an error page still shows their menu; None if nobody."""
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is None:
        try:
            caller = who.identify(request)
        except (Problem, SQLAlchemyError):
            return None
    return caller


def _own_language(request: Request) -> str | None:
    """The signed-in person's language (their account's), if any: the caller the gate
    identified, or (a page of a public gate, an error page) the request's session."""
    caller = _caller_or_session(request)
    return None if caller is None else caller.language


def language_of(request: Request) -> str:
    """The request's language: ``?lang=`` (the header's switch), else the person's own
    (their account's), else the ``labhub_lang`` cookie (someone not signed in who chose),
    else the browser's ``Accept-Language``, else the hub's ``language`` setting."""
    return i18n.choose(request.query_params.get("lang"), _own_language(request),
                       request.cookies.get(i18n.LANG_COOKIE),
                       request.headers.get("accept-language"), settings_of(request).language)


def _keep_language(request: Request, lang: str) -> None:
    """A signed-in person who picks a language in the header keeps it in their account
    (every page after, on any device, is in it); a write that fails changes nothing."""
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is None or caller.user_id is None or caller.language == lang:
        return
    try:
        with request.app.state.hub.engine.begin() as conn:
            accounts.set_language(conn, user_id=caller.user_id, language=lang,
                                  known=i18n.languages())
    except (SQLAlchemyError, accounts.AccountError):
        pass  # the page still shows in the language asked for; the cookie remembers it


def render(request: Request, template: str, *, status: int = 200,
           caller: Caller | None = None, **values: Any) -> HTMLResponse:
    """``template`` in the request's language, with the base layout's values."""
    lang = language_of(request)
    settings = settings_of(request)
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    names = i18n.language_names()
    lang_links = {code: request.url.path + "?" + urlencode([*kept, ("lang", code)])
                  for code in names}
    page = _env.get_template(template).render(
        lang_links=lang_links,
        _=i18n.gettext_of(lang), lang=lang, languages=names,
        root=_root(request), static=_root(request) + STATIC_URL, path=request.url.path,
        hub_name=f"LabHub · {settings.site}" if settings.site else "LabHub", caller=caller,
        person=None if caller is None else shown_name(caller.name),
        csrf=getattr(request.state, "csrf", None),
        fmt=i18n.Formats(lang, settings.timezone), nav=_nav(request, caller),
        zone=settings.timezone,
        disk=page_warning(getattr(getattr(request.app.state, "hub", None), "disk", None),
                          caller),  # the low-disk banner (labhub.disk)
        **values)
    response = HTMLResponse(page, status_code=status,
                            headers={"Cache-Control": "no-store"})
    if request.query_params.get("lang") == lang:  # a language the hub has, just chosen
        _keep_language(request, lang)
        response.set_cookie(i18n.LANG_COOKIE, lang, max_age=365 * 86400, path="/",
                            samesite="lax", secure=request.url.scheme == "https")
    return response


# The menu: (path, message, permission anywhere in the caller's grants). Each part of the
# web app lives in its own module (labhub/web/<part>.py, its own router of PageRoutes,
# included by install()).
NAV: Final = (
    ("/live", N_("Live"), Permission.READINGS_READ),
    ("/charts", N_("Charts"), Permission.READINGS_READ),
    ("/runs", N_("Runs"), Permission.READINGS_READ),
    ("/devices", N_("Devices"), Permission.DEVICES_READ),
    ("/rejects", N_("Dead letters"), Permission.REJECTS_READ),
    ("/equipment", N_("Equipment"), Permission.INVENTORY_READ),
    ("/scan", N_("Scan"), Permission.LOANS_WRITE),
    ("/reminders", N_("Reminders"), Permission.LOANS_WRITE),  # those who act on them
    ("/network", N_("Network"), Permission.NETWORK_READ),  # on a central only
    ("/jobs", N_("Jobs"), Permission.JOBS_READ),
    ("/account", N_("My account"), Permission.SIGNED_IN),
)


def _nav(request: Request, caller: Caller | None) -> list[tuple[str, str, bool]]:
    """The menu's links this caller may follow: (href, message id, is this page)."""
    if caller is None:
        return []
    from labhub.web.equipment import PATHS as EQUIPMENT_PATHS

    here = request.url.path

    def under(path: str) -> bool:
        return here == path or here.startswith(path + "/") or here.startswith(path + ".")

    central = settings_of(request).role == "central"
    return [(_root(request) + path, label,
             under(path) or (path == "/equipment" and any(map(under, EQUIPMENT_PATHS))))
            for path, label, permission in NAV
            if caller.has(permission) and (central or path != "/network")]


async def signed_form(request: Request) -> dict[str, str]:
    """The fields of a signed-in person's form post, once its ``csrf_token`` field (or
    ``X-CSRF-Token`` header) matches the session's; else :class:`FormRefused` (a 403
    page). A form that is not url-encoded reads as no fields."""
    expected: str | None = getattr(request.state, "csrf", None)
    form = await _form(request) or {}
    given = form.get(CSRF_FORM_FIELD) or request.headers.get(CSRF_HEADER, "")
    if expected is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise FormRefused
    return form


async def _form(request: Request) -> dict[str, str] | None:
    """The fields of a url-encoded form post (None: the body is not one)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
        return None
    try:
        pairs = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True,
                          max_num_fields=FORM_FIELDS_MAX, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None
    return dict(pairs)


def cross_site(request: Request) -> bool:
    """Whether a form post comes from a page of another site (the browser says so with
    ``Sec-Fetch-Site``, or, older ones, with ``Origin``)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return origin != own


def _refusal(request: Request, why: str) -> None:
    try:
        caller = getattr(request.state, "caller", None)
        trail.record_refusal(request, status=403, permission=None,
                             actor=None if caller is None else caller.name, why=why)
    except SQLAlchemyError:
        pass  # a database that cannot take it does not change the answer


# -- sign-in ---------------------------------------------------------------------------------

WAYS: Final = ("password", "pin")


def _sign_in_page(request: Request, *, status: int = 200, way: str = "password",
                  values: Mapping[str, str] | None = None,
                  errors: Mapping[str, str] | None = None) -> HTMLResponse:
    return render(request, "signin.html", status=status, way=way, values=values or {},
                  errors=errors or {}, next=safe_next(request.query_params.get("next")))


@router.get("/signin", dependencies=[needs(Permission.PUBLIC)])
def sign_in_page(request: Request) -> HTMLResponse:
    """The sign-in page: name and password; class code, name and PIN; a QR card."""
    return _sign_in_page(request)


def _check_fields(_: Callable[..., str], way: str, form: Mapping[str, str]
                  ) -> dict[str, str]:
    """What is wrong with each field, before any account is looked at."""
    errors: dict[str, str] = {}
    name = form.get("name", "")
    if not name.strip():
        errors["name"] = _("Write your name.")
    elif len(name) > 100 or re.fullmatch(NAME_PATTERN, name) is None:
        errors["name"] = _("A name has at most 100 letters, without control characters.")
    if way == "password":
        password = form.get("password", "")
        if not password:
            errors["password"] = _("Write your password.")
        elif len(password) > passwords.PASSWORD_MAX:
            errors["password"] = _("This password is too long.")
    else:
        if re.fullmatch(access_api.CLASS_CODE_PATTERN, form.get("class_code", "")) is None:
            errors["class_code"] = _("The class code is 6 letters or digits.")
        if re.fullmatch(passwords.PIN_PATTERN, form.get("pin", "")) is None:
            errors["pin"] = _("The PIN is %(low)s to %(high)s digits.",
                              low=passwords.PIN_MIN, high=passwords.PIN_MAX)
    return errors


@router.post("/signin", dependencies=[needs(Permission.PUBLIC)])
async def sign_in_form(request: Request, hub: HubDep) -> Response:
    """The sign-in form without JavaScript: the API's sign-in, then the page asked for."""
    _ = i18n.gettext_of(language_of(request))
    if cross_site(request):
        await run_in_threadpool(_refusal, request, "a sign-in form posted from another site")
        return render(request, "refused.html", status=403, title=_STATUS_TITLES[403],
                      reason=_("This form was sent from another site."))
    form = await _form(request)
    if form is None:
        return _sign_in_page(request, status=400, errors={
            "form": _("The form did not arrive whole: try again.")})
    way = form.get("way", "password")
    if way not in WAYS:
        way = "password"
    shown = {k: form.get(k, "") for k in ("name", "class_code")}
    errors = _check_fields(_, way, form)
    if errors:
        return _sign_in_page(request, status=422, way=way, values=shown, errors=errors)
    try:
        if way == "password":
            body = access_api.SignInIn(name=form["name"], password=form["password"])
        else:
            body = access_api.SignInIn(class_code=form["class_code"], name=form["name"],
                                       pin=form["pin"])
    except ValidationError:
        return _sign_in_page(request, status=422, way=way, values=shown,
                             errors={"form": _("Check what you wrote.")})
    target = _root(request) + safe_next(request.query_params.get("next"))
    answer = RedirectResponse(target, status_code=303)
    try:
        await run_in_threadpool(access_api.sign_in, body, request, answer, hub)
    except Problem as problem:
        if problem.status == 429:
            minutes = max(1, round((problem.retry_after_s or 60) / 60))
            message = _("Too many failed attempts: wait %(minutes)s minutes and try again.",
                        minutes=minutes)
            response = _sign_in_page(request, status=429, way=way, values=shown,
                                     errors={"form": message})
            response.headers["Retry-After"] = str(round(problem.retry_after_s or 60))
            return response
        if problem.status == 503:  # every password check slot busy: a moment, not a lock
            response = _sign_in_page(request, status=503, way=way, values=shown, errors={
                "form": _("The hub is busy: try again in a few seconds.")})
            response.headers["Retry-After"] = str(round(problem.retry_after_s or 5))
            return response
        if problem.status != 401:
            raise
        wrong = (_("Wrong name or password.") if way == "password"
                 else _("Wrong class code, name or PIN."))
        return _sign_in_page(request, status=401, way=way, values=shown,
                             errors={"form": wrong})
    return answer


# -- sign-out --------------------------------------------------------------------------------

@router.post("/signout")
async def sign_out_form(request: Request, hub: HubDep,
                        caller: Annotated[Caller, needs(Permission.SIGNED_IN)]) -> Response:
    """End this session (the form's hidden field must hold the session's CSRF value)."""
    await signed_form(request)
    session_id: str | None = getattr(request.state, "session_id", None)
    if session_id is None:  # an API token, not a session: nothing to end here
        raise FormRefused

    def end() -> None:
        with hub.engine.begin() as conn:
            accounts.revoke_session(conn, session_id=session_id)

    await run_in_threadpool(end)
    answer = RedirectResponse(_root(request) + "/signin", status_code=303)
    answer.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return answer


# A role in the person's words (the home and account pages name them).
ROLE_NAMES: Final = {"admin": N_("Administrator"), "ministry": N_("Ministry"),
                     "coordinator": N_("Coordinator"), "teacher": N_("Teacher"),
                     "student": N_("Student")}


# -- home ------------------------------------------------------------------------------------

@router.get("/", dependencies=[needs(Permission.SIGNED_IN)])
def home(request: Request, hub: HubDep) -> HTMLResponse:
    """Hello, the person's roles and sites, and their lab's devices live (the Live
    page's panel)."""
    from labhub.web import live, reminders

    caller = gated_caller(request)
    return render(request, "home.html", caller=caller, role_names=ROLE_NAMES, level=3,
                  reminders_count=reminders.count_for(request, hub, caller),
                  **live.panel_values(request, hub, caller))


def install(app: FastAPI) -> None:
    """The pages and their files (``/static``: the hub's own and the vendored libraries)."""
    from labhub.web import (
        account,
        assets,
        audits,
        charts,
        control,
        devices,
        equipment,
        imports,
        jobs,
        kits,
        labels,
        live,
        loans,
        network,
        reminders,
        rotations,
        runs,
        scan,
        schedules,
        sites,
        stock,
        transfers,
    )

    app.include_router(router)
    json_answer = app.state.api_http_error = app.exception_handlers[StarletteHTTPException]

    async def http_error(request: Request, exc: Exception) -> Response:
        """A path no route takes (404), a method no route of the path takes (405): the
        page of that status on the pages' paths, the API's problem+json elsewhere."""
        if not is_page_path(request.url.path) or request.url.path.startswith(STATIC_URL):
            answer: Response = await json_answer(request, exc)  # type: ignore[misc]
            return answer
        return await _error_page(request, exc)

    app.add_exception_handler(StarletteHTTPException, http_error)
    for part in (live, charts, runs, devices, control, account, equipment, sites, stock,
                 assets, kits, scan, loans, transfers, rotations, audits, labels, imports,
                 network, jobs, reminders, schedules):
        app.include_router(part.router)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
