"""The signed-in person's own page, ``/account``: their name and roles, the language of
their pages, the e-mail address of their daily reminders (and whether they want them),
and their open sessions with "sign out everywhere".

The language is kept in the account (:func:`labhub.access.accounts.set_language`, as
``PATCH /api/v1/auth/me`` does), so every page after is in it, on any device, whatever the
browser asks for. Signing out everywhere ends every session of the person, this one too
(:func:`labhub.access.accounts.revoke_sessions`, as ``POST /api/v1/auth/sign-out-everywhere``
does). A person with a password changes it here, giving the current one again
(:mod:`labhub.access.own_password`, as ``POST /api/v1/auth/password`` does): their other
sessions end, this one stays. A student who signs in with a class PIN or a card has no
password; the page tells them to ask their teacher.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from labhub.access import accounts, own_password, passwords
from labhub.access.caller import Forbidden
from labhub.access.gate import gated_caller, needs
from labhub.access.permissions import Permission
from labhub.access.tables import EMAIL_MAX
from labhub.access.who import SESSION_COOKIE
from labhub.api import access as access_api
from labhub.api.deps import HubDep
from labhub.problems import Problem
from labhub.web import i18n, pages
from labhub.web.pages import PageRoute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

BROWSER: Final = ""  # the language choice "as my browser says": none of one's own
ACTIONS: Final = ("language", "email", "password", "sign_out_everywhere")


def _page(request: Request, hub: HubDep, *, status: int = 200,
          errors: dict[str, str] | None = None, done: str | None = None,
          typed: dict[str, str] | None = None) -> HTMLResponse:
    caller = gated_caller(request)
    assert caller.user_id is not None  # the routes refuse a caller without an account
    with hub.engine.connect() as conn:
        sessions = accounts.open_sessions(conn, user_id=caller.user_id)
        own = accounts.language_of(conn, user_id=caller.user_id)
        me = accounts.get_user_by_id(conn, user_id=caller.user_id)
        from_central = own_password.kept_by_central(conn, me.name)
    return pages.render(request, "account.html", status=status, caller=caller,
                        role_names=pages.ROLE_NAMES, sessions=sessions,
                        own_language=own or BROWSER, email_max=EMAIL_MAX,
                        email=(typed or {}).get("email", me.email or ""),
                        reminder_emails=me.reminder_emails if typed is None
                        else typed.get("reminder_emails") == "on",
                        this_session=getattr(request.state, "session_id", None),
                        has_password=me.has_password, from_central=from_central,
                        password_min=passwords.PASSWORD_MIN,
                        password_max=passwords.PASSWORD_MAX, errors=errors or {}, done=done)


def _person(request: Request) -> int:
    """The account of the caller; a device token (no account) gets a 403 page."""
    user_id = gated_caller(request).user_id
    if user_id is None:
        raise Forbidden(Permission.SIGNED_IN)
    return user_id


@router.get("/account", dependencies=[needs(Permission.SIGNED_IN)])
def account_page(request: Request, hub: HubDep) -> HTMLResponse:
    """Name, roles, the language of one's pages, one's sessions."""
    _person(request)
    return _page(request, hub, done=request.query_params.get("done"))


@router.post("/account", dependencies=[needs(Permission.SIGNED_IN)])
async def account_form(request: Request, hub: HubDep) -> Response:
    """The page's two forms: keep a language; sign out everywhere."""
    form = await pages.signed_form(request)
    user_id = _person(request)
    _ = i18n.gettext_of(pages.language_of(request))
    action = form.get("action", "")
    if action not in ACTIONS:
        return await run_in_threadpool(_page, request, hub, status=422, errors={
            "form": _("The form did not arrive whole: try again.")})
    root: str = request.scope.get("root_path", "")
    if action == "email":
        return await _email_form(request, hub, user_id, form, root)
    if action == "password":
        return await _password_form(request, hub, form, root)
    if action == "sign_out_everywhere":
        def end_all() -> None:
            with hub.engine.begin() as conn:
                accounts.revoke_sessions(conn, user_id=user_id)

        await run_in_threadpool(end_all)
        answer = RedirectResponse(root + "/signin", status_code=303)
        answer.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
        return answer
    chosen = form.get("language", BROWSER)
    known = i18n.languages()
    if chosen != BROWSER and chosen not in known:
        return await run_in_threadpool(_page, request, hub, status=422, errors={
            "language": _("Choose one of the languages shown.")})

    def keep() -> None:
        with hub.engine.begin() as conn:
            accounts.set_language(conn, user_id=user_id,
                                  language=None if chosen == BROWSER else chosen, known=known)

    await run_in_threadpool(keep)
    answer = RedirectResponse(root + "/account?done=language", status_code=303)
    if chosen == BROWSER:
        answer.delete_cookie(i18n.LANG_COOKIE, path="/")
    else:  # signed out on this browser, the pages stay in it
        answer.set_cookie(i18n.LANG_COOKIE, chosen, max_age=365 * 86400, path="/",
                          samesite="lax", secure=request.url.scheme == "https")
    return answer


async def _email_form(request: Request, hub: HubDep, user_id: int, form: dict[str, str],
                      root: str) -> Response:
    """Keep the address of one's reminders (blank: none) and whether they come."""
    _ = i18n.gettext_of(pages.language_of(request))
    typed = {"email": form.get("email", "").strip(),
             "reminder_emails": form.get("reminder_emails", "")}
    if typed["email"]:
        try:
            accounts.check_email(typed["email"])
        except accounts.InvalidAccountValueError:
            return await run_in_threadpool(_page, request, hub, status=422, typed=typed, errors={
                "email": _("Write an e-mail address such as name@school.edu.co, or leave it "
                           "empty for no e-mail (at most %(count)s characters).",
                           count=EMAIL_MAX)})

    def keep() -> None:
        with hub.engine.begin() as conn:
            accounts.set_email(conn, user_id=user_id, email=typed["email"] or None,
                               reminder_emails=typed["reminder_emails"] == "on")

    await run_in_threadpool(keep)
    return RedirectResponse(root + "/account?done=email", status_code=303)


async def _password_form(request: Request, hub: HubDep, form: dict[str, str], root: str
                         ) -> Response:
    """Change one's own password: the current one, then the new one twice."""
    _ = i18n.gettext_of(pages.language_of(request))
    current, new = form.get("current_password", ""), form.get("new_password", "")
    errors: dict[str, str] = {}
    if not current:
        errors["current_password"] = _("Write the password you sign in with now.")
    try:
        passwords.check_rules(new)
    except passwords.PasswordRuleError:
        errors["new_password"] = _("The new password needs at least %(count)s characters "
                                   "(and at most %(most)s).", count=passwords.PASSWORD_MIN,
                                   most=passwords.PASSWORD_MAX)
    if "new_password" not in errors and form.get("new_password_again", "") != new:
        errors["new_password_again"] = _("The two new passwords are not the same: write "
                                         "it again in both fields.")
    if errors:
        return await run_in_threadpool(_page, request, hub, status=422, errors=errors)
    try:
        body = access_api.OwnPasswordIn(current_password=current, new_password=new)
    except ValidationError as exc:  # a control character (the API's rule for free text)
        field = str(exc.errors()[0]["loc"][0])
        return await run_in_threadpool(_page, request, hub, status=422, errors={field: _(
            "Passwords cannot hold control characters: type it again.")})
    try:
        changed = await run_in_threadpool(access_api.change_my_password, body, request, hub,
                                          gated_caller(request))
    except Problem as problem:
        field, message = {
            409: ("form", _("Your account has no password: you sign in with a PIN or a "
                            "card. Ask your teacher to change it.")
                  if problem.title != access_api.KEPT_BY_CENTRAL else
                  _("Your account comes from the network's central: change your password "
                    "there. A change on this hub would be undone at the next sync.")),
            429: ("form", _("Too many failed attempts: wait %(minutes)s minutes and try "
                            "again.", minutes=max(1, round((problem.retry_after_s or 60) / 60)))),
            503: ("form", _("The hub is busy: try again in a few seconds.")),
        }.get(problem.status, ("current_password", _("That is not your current password.")))
        answer = await run_in_threadpool(_page, request, hub, status=problem.status,
                                         errors={field: message})
        if problem.retry_after_s is not None:
            answer.headers["Retry-After"] = str(round(problem.retry_after_s))
        return answer
    done = "password-others" if changed.sessions_ended else "password"
    return RedirectResponse(root + f"/account?done={done}", status_code=303)
