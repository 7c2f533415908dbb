"""``labhub users``, ``labhub tokens``, ``labhub classes`` and ``labhub audit-log``:
accounts from the hub's own machine.

These commands act as the hub itself (:meth:`Caller.system`): anyone with a shell on the
hub's machine and access to its database is its admin. That is how the first admin is
made (``labhub users add NAME --role admin``).
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine

from labhub.access import accounts, audit, cards, classes, own_password, passwords
from labhub.access.caller import NETWORK
from labhub.access.permissions import Grant, Role
from labhub.cli_common import echo, hub_engine, secho

users_app = typer.Typer(help="People who may sign in, and their roles.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens of people.", no_args_is_help=True)
classes_app = typer.Typer(help="Classes: students who sign in with a PIN or a QR card.",
                          no_args_is_help=True)
students_app = typer.Typer(help="The students of a class.", no_args_is_help=True)
ACTOR = "labhub (hub's machine)"  # who the audit log names for these commands
US_PER_DAY = 86_400_000_000
# The account the CLI calls the running hub as: admin at '*', no password (it cannot sign
# in); its tokens are made for one command and deleted after it.
CLI_ACCOUNT = "labhub-cli"
CLI_TOKEN_S = 60  # a command's calls time out after 10 s each; a leaked token dies soon
HUB_AUTH_HELP = ("an API token for the hub (also LABHUB_TOKEN); without one, the "
                     "command makes a one-minute token in the hub's database")


def _fail(command: str, message: str) -> None:
    secho(f"labhub {command}: {message}", fg="red", err=True)
    raise typer.Exit(1)


def _password(command: str, from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        passwords.check_rules(password)
    except passwords.PasswordRuleError as exc:
        _fail(command, str(exc))
    return password


def _site_for(role: Role, site: str | None) -> str:
    return site if site is not None else (NETWORK if role is Role.ADMIN else "")


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="the name the person signs in with")],
    role: Annotated[Role, typer.Option(help="admin, ministry, coordinator, teacher, student")],
    site: Annotated[str | None, typer.Option(help="site code, or * for the network "
                                             "(admin without --site: *)")] = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="read the password from the first line of stdin")] = False,
    no_password: Annotated[bool, typer.Option(
        "--no-password", help="an account that signs in only with tokens")] = False,
    email: Annotated[str | None, typer.Option(
        help="where the person's daily reminders go")] = None,
) -> None:
    """Add a person with a role at a site (the password is asked twice)."""
    command = "users add"
    try:
        grant = accounts.check_grant(role.value, _site_for(role, site))
        checked = accounts.check_name(name)
        if email is not None:
            email = accounts.check_email(email)
    except accounts.AccountError as exc:
        _fail(command, str(exc))
    hashed = None if no_password else passwords.hash_password(_password(command,
                                                                        password_stdin))
    with hub_engine(command, write=True) as engine, engine.begin() as conn:
        try:
            user = accounts.create_user(conn, name=checked, password_hash=hashed,
                                        grants_given=[grant])
        except accounts.AccountError as exc:
            _fail(command, str(exc))
        if email is not None:
            accounts.set_email(conn, user_id=user.id, email=email)
        audit.record(conn, actor=ACTOR, action="role_granted", target=user.name,
                     site=grant.site, detail={"role": grant.role})
    echo(f"added {user.name}: {grant.role} at {grant.site}")


@users_app.command("list")
def users_list() -> None:
    """Every person, with their roles."""
    with hub_engine("users list", write=False) as engine, engine.connect() as conn:
        people = accounts.list_users(conn)
    for u in people:
        roles = ", ".join(f"{g.role} at {g.site}" for g in u.grants) or "no roles"
        state = "  (disabled)" if u.disabled_at is not None else ""
        echo(f"{u.name}: {roles}{state}")
    echo(f"{len(people)} people")


def _change_grant(command: str, name: str, role: Role, site: str | None, give: bool) -> None:
    with hub_engine(command, write=True) as engine, engine.begin() as conn:
        try:
            grant = accounts.check_grant(role.value, _site_for(role, site))
            user = accounts.get_user(conn, name=name)
        except accounts.AccountError as exc:
            _fail(command, str(exc))
        change = accounts.add_grant if give else accounts.remove_grant
        done = change(conn, user_id=user.id, grant=grant)
        if done:
            audit.record(conn, actor=ACTOR, action="role_granted" if give else "role_revoked",
                         target=user.name, site=grant.site, detail={"role": grant.role})
    echo(f"{user.name}: {grant.role} at {grant.site} "
         f"{('given' if give else 'taken away') if done else 'unchanged'}")


@users_app.command("grant")
def users_grant(name: str, role: Annotated[Role, typer.Option()],
                site: Annotated[str | None, typer.Option()] = None) -> None:
    """Give a person a role at a site."""
    _change_grant("users grant", name, role, site, True)


@users_app.command("ungrant")
def users_ungrant(name: str, role: Annotated[Role, typer.Option()],
                  site: Annotated[str | None, typer.Option()] = None) -> None:
    """Take a role at a site away from a person."""
    _change_grant("users ungrant", name, role, site, False)


@users_app.command("reset-password")
def users_reset_password(
    name: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
) -> None:
    """Set a person's password (their sessions end)."""
    command = "users reset-password"
    hashed = passwords.hash_password(_password(command, password_stdin))
    with hub_engine(command, write=True) as engine, engine.begin() as conn:
        try:
            user = accounts.get_user(conn, name=name)
        except accounts.AccountError as exc:
            _fail(command, str(exc))
        accounts.set_password_hash(conn, user_id=user.id, password_hash=hashed)
        accounts.revoke_sessions(conn, user_id=user.id)
        audit.record(conn, actor=ACTOR, action="password_reset", target=user.name)
        central = own_password.kept_by_central(conn, user.name)
    echo(f"password of {user.name} reset")
    if central:  # a way back in while offline; the central's password returns with a sync
        secho(f"labhub {command}: {user.name} comes from the network's central, which "
              "sends the password again when the people change there: reset it on the "
              "central too", fg="yellow", err=True)


@users_app.command("edit")
def users_edit(
    name: str,
    email: Annotated[str | None, typer.Option(
        help="where the person's daily reminders go; '' for none")] = None,
    reminder_emails: Annotated[bool | None, typer.Option(
        "--reminder-emails/--no-reminder-emails",
        help="whether the daily reminders go to that address")] = None,
) -> None:
    """Change a person's e-mail address and whether they get the daily reminders."""
    command = "users edit"
    if email is None and reminder_emails is None:
        _fail(command, "nothing to change: give --email and/or --reminder-emails")
    with hub_engine(command, write=True) as engine, engine.begin() as conn:
        try:
            user = accounts.get_user(conn, name=name)
            accounts.set_email(conn, user_id=user.id,
                               email=user.email if email is None else email,
                               reminder_emails=reminder_emails)
            user = accounts.get_user(conn, name=name)
        except accounts.AccountError as exc:
            _fail(command, str(exc))
    wants = "on" if user.reminder_emails else "off"
    echo(f"{user.name}: e-mail {user.email or 'none'}, daily reminders {wants}")


@users_app.command("disable")
def users_disable(name: str) -> None:
    """Disable an account: its sessions end and its tokens stop working."""
    command = "users disable"
    with hub_engine(command, write=True) as engine, engine.begin() as conn:
        try:
            user = accounts.get_user(conn, name=name)
        except accounts.AccountError as exc:
            _fail(command, str(exc))
        accounts.set_disabled(conn, user_id=user.id, disabled=True)
        audit.record(conn, actor=ACTOR, action="user_disabled", target=user.name)
    echo(f"{user.name} disabled")


@tokens_app.command("add")
def tokens_add(
    user: Annotated[str, typer.Option(help="whose token")],
    name: Annotated[str, typer.Option(help="what it is for: 'data logger', 'export'")],
    permission: Annotated[list[str] | None, typer.Option(
        help="a permission it carries (repeat); none: all of the person's")] = None,
    expires_days: Annotated[int | None, typer.Option(min=1, max=3650)] = None,
) -> None:
    """Make an API token for a person; it is printed once."""
    command = "tokens add"
    with hub_engine(command, write=True) as engine, engine.begin() as conn:
        try:
            person = accounts.get_user(conn, name=user)
            wanted = accounts.check_permissions(permission or None)
            if wanted is not None:  # none: all the person's, as their grants change
                wanted = accounts.token_permissions(
                    wanted, accounts.permissions_of(person.grants))
            expires = (None if expires_days is None
                       else audit.now_us() + expires_days * US_PER_DAY)
            token, secret = accounts.create_api_token(
                conn, user_id=person.id, name=name, permissions=wanted, expires_at=expires)
        except accounts.AccountError as exc:
            _fail(command, str(exc))
        audit.record(conn, actor=ACTOR, on_behalf_of=person.name, action="token_created",
                     target=token.id, detail={"name": token.name})
    echo(f"token {token.id} for {person.name} ({token.name}); shown this once:")
    echo(secret)


@tokens_app.command("list")
def tokens_list() -> None:
    """Every API token (never the tokens themselves)."""
    from labhub.api.common import iso

    with hub_engine("tokens list", write=False) as engine, engine.connect() as conn:
        names = {u.id: u.name for u in accounts.list_users(conn)}
        tokens = accounts.list_api_tokens(conn)
    for t in tokens:
        perms = "all" if t.permissions is None else ",".join(sorted(t.permissions))
        state = f"revoked {iso(t.revoked_at)}" if t.revoked_at else (
            f"last used {iso(t.last_used_at)}" if t.last_used_at else "never used")
        echo(f"{t.id}  {names.get(t.user_id, '?')}  {t.name}  [{perms}]  {state}")
    echo(f"{len(tokens)} tokens")


@tokens_app.command("revoke")
def tokens_revoke(token_id: str) -> None:
    """Revoke an API token: it stops working at once."""
    command = "tokens revoke"
    with hub_engine(command, write=True) as engine, engine.begin() as conn:
        try:
            token = accounts.revoke_api_token(conn, token_id=token_id)
        except accounts.AccountError as exc:
            _fail(command, str(exc))
        audit.record(conn, actor=ACTOR, action="token_revoked", target=token.id)
    echo(f"token {token.id} ({token.name}) revoked")


@contextmanager
def hub_bearer(command: str, token: str | None, hub: str) -> Iterator[dict[str, str]]:
    """The ``Authorization`` header for a command that calls the running hub at ``hub``
    over HTTP. With ``token`` (``--token``, ``LABHUB_TOKEN``: a hub on another machine) it
    is sent as given. Without, the command acts as the hub's admin, as every command on
    the hub's machine does: it makes a token of the account ``labhub-cli`` (admin at
    ``*``, no password; made when missing) in the hub's database, valid for
    ``CLI_TOKEN_S``, audit-logged, and deletes it when the command ends. Disabling that
    account (``labhub users disable labhub-cli``) turns this off."""
    if token:
        yield {"Authorization": f"Bearer {token}"}
        return
    # A read's checks: the hub's database must exist already (none is made for a token).
    with hub_engine(command, write=False) as engine:
        with engine.begin() as conn:
            user = accounts.find_user(conn, name=CLI_ACCOUNT)
            if user is None:
                user = accounts.create_user(conn, name=CLI_ACCOUNT, password_hash=None,
                                            grants_given=[Grant(Role.ADMIN, NETWORK)])
            if user.disabled_at is not None:
                _fail(command, f"the account {CLI_ACCOUNT} is disabled: give --token (or "
                      "LABHUB_TOKEN) with an API token of yours")
            now = audit.now_us()
            accounts.forget_api_tokens(conn, user_id=user.id, now=now)  # left by a kill
            made, secret = accounts.create_api_token(
                conn, user_id=user.id, name=f"labhub {command}",
                expires_at=now + CLI_TOKEN_S * 1_000_000)
            audit.record(conn, actor=ACTOR, on_behalf_of=CLI_ACCOUNT, action="token_created",
                         target=made.id, detail={"name": made.name, "hub": hub})
        try:
            yield {"Authorization": f"Bearer {secret}"}
        finally:
            with engine.begin() as conn:
                accounts.forget_api_tokens(conn, user_id=user.id, token_id=made.id)


def audit_log_command(
    since: Annotated[str | None, typer.Option(help="from this time: -1d, -2h, RFC 3339")]
    = None,
    action: Annotated[str | None, typer.Option(help="sign_in, sign_in_failed, ...")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
) -> None:
    """The audit log, newest first."""
    from labhub.api.common import iso
    from labtext import times

    try:
        start = None if since is None else times.parse_query_time(since)
    except times.TimeTextError as exc:
        _fail("audit-log", f"--since: {exc}")
    with hub_engine("audit-log", write=False) as engine, engine.connect() as conn:
        total, found = audit.entries(conn, since=start, action=action, limit=limit)
    for e in found:
        where = f" at {e.site}" if e.site else ""
        frm = f" from {e.address}" if e.address else ""
        target = f" {e.target}" if e.target else ""
        echo(f"{iso(e.at)}  {e.action:<15} {e.outcome:<12} {e.actor}{target}{where}{frm}")
    echo(f"{len(found)} of {total} entries")


# Classes ---------------------------------------------------------------------------------

ClassRef = Annotated[str, typer.Argument(help="the class's id or join code")]


@classes_app.command("add")
def classes_add(
    name: Annotated[str, typer.Argument(help="the class's name: '7°B Ciencias'")],
    site: Annotated[str, typer.Option(help="the lab site's code")],
    teacher: Annotated[str, typer.Option(help="the teacher's account")],
) -> None:
    """Make a class at a lab site with its teacher; prints its id and join code."""
    from inventory.sites import find_site
    from labhub.access.sites import load_tree

    command = "classes add"
    with hub_engine(command, write=True) as engine, engine.begin() as conn:
        try:
            if find_site(conn=conn, code=site) is None:
                raise accounts.InvalidAccountValueError(f"no site with code {site!r}")
            person = accounts.get_user(conn, name=teacher)
            if not classes.is_teacher_at(person, site, load_tree(conn, None)):
                raise accounts.InvalidAccountValueError(
                    f"{person.name} does not teach at site {site!r} (no role there that "
                    "manages accounts)")
            klass = classes.create_class(conn, site=site, name=name, teacher_id=person.id)
        except accounts.AccountError as exc:
            _fail(command, str(exc))
        audit.record(conn, actor=ACTOR, action="class_created", target=f"class {klass.id}",
                     site=site, detail={"name": klass.name, "teacher": person.name})
    echo(f"class {klass.id}: {klass.name} at {klass.site}, teacher {person.name}, "
         f"join code {klass.join_code}")


@classes_app.command("list")
def classes_list() -> None:
    """Every class: id, join code, site, name, teacher, students, joining."""
    from labhub.api.common import iso

    with hub_engine("classes list", write=False) as engine, engine.connect() as conn:
        found = classes.list_classes(conn)
        counts = classes.student_counts(conn)
    for k in found:
        joining = (f"  joining open until {iso(k.joining_until)}" if k.joining_open()
                   else "")
        echo(f"{k.id}  {k.join_code}  {k.site}  {k.name}  teacher {k.teacher or '-'}  "
             f"{counts.get(k.id, 0)} students{joining}")
    echo(f"{len(found)} classes")


@students_app.command("add")
def students_add(
    class_ref: ClassRef,
    names: Annotated[list[str], typer.Argument(help="the students' names")],
) -> None:
    """Add students to a class; prints each one's PIN (shown this once)."""
    command = "classes students add"
    with hub_engine(command, write=True) as engine, engine.begin() as conn:
        try:
            klass = classes.find_class(conn, ref=class_ref)
            made = [classes.add_student(conn, class_id=klass.id, name=n) for n in names]
        except (accounts.AccountError, passwords.PasswordRuleError) as exc:
            _fail(command, str(exc))
        for student, _ in made:
            audit.record(conn, actor=ACTOR, action="student_added", target=student.account,
                         site=klass.site)
    for student, pin in made:
        echo(f"{student.name}\tPIN {pin}")
    echo(f"{len(made)} students added to {klass.name} (join code {klass.join_code})")


@classes_app.command("pin-reset")
def classes_pin_reset(class_ref: ClassRef, name: str) -> None:
    """A new PIN for a student (printed once); the old one stops working and the
    student's sessions end."""
    command = "classes pin-reset"
    with hub_engine(command, write=True) as engine, engine.begin() as conn:
        try:
            klass = classes.find_class(conn, ref=class_ref)
            student, pin = classes.reset_pin(conn, class_id=klass.id, name=name)
        except accounts.AccountError as exc:
            _fail(command, str(exc))
        audit.record(conn, actor=ACTOR, action="pin_reset", target=student.account,
                     site=klass.site)
    echo(f"{student.name}\tPIN {pin}")


@classes_app.command("cards")
def classes_cards(
    class_ref: ClassRef,
    output: Annotated[Path, typer.Option("-o", "--output", help="the PDF to write")],
    base_url: Annotated[str | None, typer.Option(
        help="the hub's address as students' phones reach it, e.g. http://labhub.local:8000 "
        "(default: http://HOST:PORT from the settings)")] = None,
    student: Annotated[list[str] | None, typer.Option(
        help="only this student's card (repeat); default: every active student's")] = None,
) -> None:
    """Print new QR cards for a class (A4 PDF); every card printed before for those
    students stops working."""
    from inventory.sites import find_site
    from labhub.cli_common import settings_or_exit

    command = "classes cards"
    settings = settings_or_exit()
    base = base_url or f"http://{settings.host}:{settings.port}"
    with hub_engine(command, write=True, settings=settings) as engine, engine.begin() as conn:
        try:
            klass = classes.find_class(conn, ref=class_ref)
            made = classes.issue_cards(conn, class_id=klass.id, names=student or None)
            site = find_site(conn=conn, code=klass.site)
            pdf = cards.render_pdf([cards.Card(
                name=c.name, class_name=klass.name, join_code=klass.join_code,
                site_code=klass.site, site_name=site.name if site is not None else "",
                url=classes.card_url(base, c.secret)) for c in made], title=klass.name)
        except accounts.AccountError as exc:
            _fail(command, str(exc))
        audit.record(conn, actor=ACTOR, action="cards_issued", target=f"class {klass.id}",
                     site=klass.site, detail={"cards": len(made)})
        output.write_bytes(pdf)  # in the transaction: no file, no new cards
    echo(f"{len(made)} cards of {klass.name} written to {output}; earlier cards of these "
         "students no longer sign in")


def register(app: typer.Typer) -> None:
    """Hang ``users``, ``tokens``, ``classes`` and ``audit-log`` under ``labhub``."""
    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")
    classes_app.add_typer(students_app, name="students")
    app.add_typer(classes_app, name="classes")
    app.command("audit-log")(audit_log_command)


DEMO_ADMIN = "admin"


def demo_admin(engine: Engine, api: str) -> list[str]:
    """Make the demo's admin ``admin`` at ``*`` (when missing, with a random password) and
    a new API token; the lines that tell how to sign in: the web app's address in a
    browser (``api``, the hub's base URL), the password, and the token for scripts."""
    password = None
    with engine.begin() as conn:
        user = accounts.find_user(conn, name=DEMO_ADMIN)
        if user is None:
            password = secrets.token_urlsafe(12)
            user = accounts.create_user(conn, name=DEMO_ADMIN,
                                        password_hash=passwords.hash_password(password),
                                        grants_given=[Grant(Role.ADMIN, NETWORK)])
        _, token = accounts.create_api_token(conn, user_id=user.id, name="demo")
        audit.record(conn, actor=ACTOR, on_behalf_of=user.name, action="token_created",
                     detail={"name": "demo"})
    said = (f"password {password}" if password is not None
            else "password as before (labhub users reset-password admin)")
    return [f"web app: {api}/ (open it in a browser; sign in with the name and password "
            "below)",
            f"sign in as {DEMO_ADMIN}, {said}",
            f"token: curl -H 'Authorization: Bearer {token}' {api}/api/v1/auth/me"]
