"""The daily digest: one e-mail to each person with the reminders they have not had yet.

:func:`send_digests` gathers the hub's reminders once (``labhub.reminders.due``), then for
each enabled account with an e-mail address that wants reminders
(``users.email``, ``users.reminder_emails``) keeps those the person may see (their
grants, as the web app does) minus the keys already sent to them (``reminders_sent``),
and builds ONE plain-text message in the person's language (their account's, else the
hub's ``language``). All messages of a run go through one SMTP connection
(``smtp_host``, ``smtp_port``, ``smtp_security`` starttls/tls/none, ``smtp_user`` and
``smtp_password`` if the server asks, :data:`SMTP_TIMEOUT_S`); a message's keys are
recorded only once the server accepted it, in their own transaction. So:

- a server that cannot be reached, or that fails mid-run, raises :class:`DigestError`
  (the job fails and is retried) and what it did not accept stays unsent, to go next time;
- a person the server refuses is counted, the others are sent, and the run fails at the
  end so the job retries for them;
- with no ``smtp_host`` the run works out who would get what and sends nothing.

Rows of keys no longer among the hub's reminders are dropped first: a loan returned, a
stock refilled, a device back. If the same thing comes back later, it is a new reminder.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from typing import Final

from sqlalchemy import Engine, delete, insert, select

from labhub.access import accounts
from labhub.access.caller import Caller
from labhub.access.sites import load_tree
from labhub.reminders import due
from labhub.reminders.tables import reminders_sent
from labhub.settings import Settings
from labhub.web import i18n, reminders_text

SMTP_TIMEOUT_S: Final = 30  # a school's mail server on a slow link answers in seconds
PRUNE_CHUNK: Final = 500  # keys per DELETE ... IN (...), far below SQLite's limit


class DigestError(Exception):
    """The mail server could not be reached, or did not take every digest."""


@dataclass
class DigestResult:
    """What a run did: reminders of the hub, people with new ones, messages accepted,
    people refused, and whether a mail server was set."""

    reminders: int = 0
    people: int = 0
    sent: int = 0
    refused: list[str] = field(default_factory=list)
    mail_server: bool = True

    def summary(self) -> str:
        """One line for people (the job's result, the CLI's output)."""
        if not self.mail_server:
            return (f"{self.reminders} reminders; {self.people} people would get a digest; "
                    "no mail server set (smtp_host): nothing sent")
        refused = f", {len(self.refused)} refused" if self.refused else ""
        return f"{self.reminders} reminders; {self.sent} digests sent of {self.people}{refused}"


@dataclass(frozen=True, slots=True)
class Digest:
    """One person's new reminders, and the message that carries them."""

    user_id: int
    name: str
    email: str
    lang: str
    keys: tuple[str, ...]
    message: EmailMessage


def build_message(*, settings: Settings, name: str, email: str, lang: str,
                  reminders: list[due.Reminder]) -> EmailMessage:
    """The digest of ``reminders`` for one person, in ``lang``: plain text, grouped by
    kind, each with the path of its page."""
    hub = f"LabHub {settings.site}" if settings.site else "LabHub"
    subject, body = reminders_text.digest_text(reminders, name=name, hub=hub, lang=lang,
                                               zone=settings.timezone)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.smtp_from
    message["To"] = formataddr((name, email))
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="labhub")
    message["Auto-Submitted"] = "auto-generated"  # no out-of-office replies to a robot
    message.set_content(body, charset="utf-8")
    message["Content-Language"] = lang  # after set_content, which drops Content-* headers
    return message


def _shown(name: str) -> str:
    from labhub.web.pages import shown_name

    return shown_name(name)


def plan_digests(engine: Engine, settings: Settings, *, now: int
                 ) -> tuple[list[due.Reminder], list[Digest]]:
    """The hub's reminders at ``now`` and each person's digest of the ones new to them
    (sent keys of reminders no longer true are dropped first, in their own transaction)."""
    with engine.begin() as conn:
        found = due.gather(conn, settings, now=now)
        active = {r.key for r in found}
        stale = sorted(set(conn.execute(select(reminders_sent.c.reminder_key).distinct())
                           .scalars()) - active)
        for i in range(0, len(stale), PRUNE_CHUNK):
            conn.execute(delete(reminders_sent).where(
                reminders_sent.c.reminder_key.in_(stale[i:i + PRUNE_CHUNK])))
    with engine.connect() as conn:
        tree = load_tree(conn, settings.site)
        people = [u for u in accounts.list_users(conn)
                  if u.email and u.reminder_emails and u.disabled_at is None]
        sent: dict[int, set[str]] = {}
        for account, key in conn.execute(select(reminders_sent.c.account,
                                                reminders_sent.c.reminder_key)):
            sent.setdefault(account, set()).add(key)
    known = i18n.languages()
    digests = []
    for user in people:
        assert user.email is not None
        caller = Caller(name=user.name, via="session", grants=user.grants, user_id=user.id)
        new = [r for r in due.visible_to(found, caller, tree)
               if r.key not in sent.get(user.id, set())]
        if not new:
            continue
        lang = user.language if user.language in known else (
            settings.language if settings.language in known else i18n.FIRST)
        name = _shown(user.name)
        digests.append(Digest(user.id, name, user.email, lang, tuple(r.key for r in new),
                              build_message(settings=settings, name=name, email=user.email,
                                            lang=lang, reminders=new)))
    return found, digests


@contextmanager
def smtp_connection(settings: Settings) -> Iterator[smtplib.SMTP]:
    """A connection to the mail server of the settings, signed in if it asks for it."""
    assert settings.smtp_host is not None
    context = ssl.create_default_context()
    server: smtplib.SMTP
    if settings.smtp_security == "tls":
        server = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port,
                                  timeout=SMTP_TIMEOUT_S, context=context)
    else:
        server = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_S)
    try:
        server.ehlo()
        if settings.smtp_security == "starttls":
            server.starttls(context=context)
            server.ehlo()
        if settings.smtp_user:
            server.login(settings.smtp_user, settings.smtp_password or "")
        yield server
    finally:
        try:
            server.quit()
        except (smtplib.SMTPException, OSError):
            server.close()


def _record(engine: Engine, digest: Digest, now: int) -> None:
    with engine.begin() as conn:
        conn.execute(insert(reminders_sent), [
            {"account": digest.user_id, "reminder_key": key, "sent_at": now}
            for key in digest.keys])


def send_digests(engine: Engine, settings: Settings, *, now: int) -> DigestResult:
    """Work out and send today's digests (see the module's words); DigestError when the
    mail server could not be reached or did not take every message."""
    found, digests = plan_digests(engine, settings, now=now)
    result = DigestResult(reminders=len(found), people=len(digests))
    if settings.smtp_host is None:
        result.mail_server = False
        return result
    if not digests:
        return result
    try:
        with smtp_connection(settings) as server:
            for digest in digests:
                try:
                    server.send_message(digest.message, to_addrs=[digest.email])
                except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError,
                        smtplib.SMTPSenderRefused) as exc:
                    if isinstance(exc, smtplib.SMTPSenderRefused):
                        raise
                    result.refused.append(digest.email)
                    continue
                _record(engine, digest, now)
                result.sent += 1
    except (smtplib.SMTPException, OSError) as exc:
        raise DigestError(
            f"mail server {settings.smtp_host}:{settings.smtp_port} "
            f"({settings.smtp_security}): {type(exc).__name__}: {exc}; {result.sent} of "
            f"{result.people} digests sent, the rest go on the next run") from exc
    if result.refused:
        raise DigestError(f"the mail server refused {', '.join(result.refused)}; "
                          + result.summary())
    return result
