"""The daily digest through a real SMTP server (aiosmtpd on a free loopback port), read
back as it arrived: one message a person, in their language, with their reminders only;
never the same reminder twice, a new one the next day; a mail server down fails the job
(nothing marked sent) and the next run sends; a person the server refuses is retried
while the others are not sent twice; with no mail server the job only reports. The job is
run as the scheduler runs it: its JobSpec's ``run`` with a JobContext."""

from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from reminders_world import (  # noqa: F401  (the lab_* fixtures)
    DAY_US,
    expected_keys,
    lab_engine_fixture,
    lab_settings_fixture,
    lab_url_fixture,
    make_world,
)
from sqlalchemy import Engine, select, update

from inventory import stock
from inventory.tables import loans as loan_table
from labhub.jobs import reminders as reminders_job
from labhub.reminders.digest import DigestError, send_digests
from labhub.reminders.tables import reminders_sent
from labhub.scheduler.jobs import JobContext
from labhub.settings import Settings
from labhub.wiring import Hub


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Inbox:
    """What the SMTP server accepted; ``refuse`` are addresses it answers 550 for."""

    messages: list[EmailMessage] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: Any) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def by_recipient(self) -> dict[str, EmailMessage]:
        return {str(m["To"].addresses[0].addr_spec): m for m in self.messages}

    def take(self) -> dict[str, EmailMessage]:
        got = self.by_recipient()
        assert len(got) == len(self.messages), "one message a person"
        self.messages.clear()
        return got


class SmtpServer:
    """aiosmtpd on 127.0.0.1:``port``, started and stopped at will (a server down)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(_free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _mailing(settings: Settings, smtp: SmtpServer) -> Settings:
    return settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp.port,
                                       "smtp_security": "none",
                                       "smtp_from": "LabHub <labhub@valle.edu.co>"})


@pytest.fixture
def mailing(settings: Settings, smtp: SmtpServer) -> Settings:
    """The hub's settings on ``database_url`` (both backends), mailing to ``smtp``."""
    return _mailing(settings, smtp)


@pytest.fixture
def lab_mailing(lab_settings: Settings, smtp: SmtpServer) -> Settings:
    """The same on a SQLite file only."""
    return _mailing(lab_settings, smtp)


def _run_job(settings: Settings, engine: Engine) -> str:
    """The reminders job as the scheduler runs it: its spec's body with a context."""
    [spec] = reminders_job.specs(settings)
    assert spec.id == "reminders" and spec.coalesce and spec.misfire_grace_s >= 3 * 3600
    assert spec.retries >= 1
    return spec.run(JobContext(hub=Hub(settings, engine=engine), job_id=spec.id))


def _sent(engine: Engine) -> set[tuple[int, str]]:
    with engine.connect() as conn:
        return {(r.account, r.reminder_key) for r in conn.execute(select(reminders_sent))}


def _body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def test_one_digest_a_person_in_their_language_never_twice(
        engine: Engine, mailing: Settings, smtp: SmtpServer) -> None:
    world = make_world(engine)
    wanted = expected_keys(world)
    result = _run_job(mailing, engine)
    assert result == "7 reminders; 3 digests sent of 3"
    got = smtp.inbox.take()
    # Coord, Tere, Tito have addresses and reminders; Estu has none to see, Admin no address
    assert set(got) == {"coord@valle.edu.co", "tere@escola.edu.br", "tito@cauca.edu.co"}
    tere, tito, coord = (got[a] for a in ("tere@escola.edu.br", "tito@cauca.edu.co",
                                          "coord@valle.edu.co"))
    assert tere["Subject"] == "LabHub: 4 lembretes" and tere["Content-Language"] == "pt"
    assert tere["From"] == "LabHub <labhub@valle.edu.co>"
    text = _body(tere)
    assert text.startswith("Olá, Tere,")
    for words in ("Empréstimos atrasados", "Empréstimos que vencem até amanhã",
                  "A calibração de A-3", "Estación de clima (LAB-A) não envia nada",
                  "Página: /assets/A-3"):
        assert words in text, words
    assert "Estoque a repor" not in text  # stock is the coordinator's
    assert tito["Subject"] == "LabHub: 1 recordatorios" and tito["Content-Language"] == "es"
    assert "Hola, Tito:" in _body(tito) and f"/loans/{world.overdue_c}" in _body(tito)
    assert "LAB-A" not in _body(tito)
    assert coord["Subject"] == "LabHub: 6 recordatorios"  # the hub's language: Spanish
    assert "Jumper wire en LAB-B: quedan 3 pcs" in _body(coord)
    ids = world.user_ids
    assert _sent(engine) == {(ids[name], key) for name in ("Coord", "Tere", "Tito")
                             for key in wanted[name]}

    # the next run: the same reminders are still true, nothing goes again
    assert _run_job(mailing, engine) == "7 reminders; 0 digests sent of 0"
    assert smtp.inbox.messages == []

    # the next day: the loan due tomorrow is overdue now, and LAB-A runs low on wires:
    # two new reminders, sent (only those) to those who see them
    with engine.begin() as conn:
        stock.receive(conn=conn, site_code="LAB-A", model_code="JMP", quantity=1, by="Ana")
        stock.set_reorder_threshold(conn=conn, site_code="LAB-A", model_code="JMP",
                                    threshold=5, by="Ana")
    result = send_digests(engine, mailing, now=world.now + DAY_US)
    assert result.summary() == "8 reminders; 2 digests sent of 2"
    got = smtp.inbox.take()
    assert set(got) == {"coord@valle.edu.co", "tere@escola.edu.br"}
    assert got["tere@escola.edu.br"]["Subject"] == "LabHub: 1 lembretes"
    assert "Empréstimos atrasados" in _body(got["tere@escola.edu.br"])
    coord_text = _body(got["coord@valle.edu.co"])
    assert "LAB-A: quedan 1 pcs" in coord_text and "Préstamos vencidos" in coord_text
    assert "LAB-B" not in coord_text  # already sent yesterday
    # yesterday's "due tomorrow" key is no longer true: dropped from what was sent
    assert not any(k.startswith(f"loan-due:{world.due_a}") for _, k in _sent(engine))


def test_a_mail_server_down_fails_the_job_and_the_next_run_sends(
        engine: Engine, mailing: Settings, smtp: SmtpServer) -> None:
    world = make_world(engine)
    smtp.stop()
    with pytest.raises(DigestError, match=r"mail server 127.0.0.1:\d+ \(none\).*0 of 3"):
        _run_job(mailing, engine)
    assert _sent(engine) == set()
    smtp.start()
    assert _run_job(mailing, engine) == "7 reminders; 3 digests sent of 3"
    assert len(smtp.inbox.take()) == 3
    assert len(_sent(engine)) == sum(len(expected_keys(world)[n])
                                     for n in ("Coord", "Tere", "Tito"))


def test_a_refused_address_is_retried_and_the_others_are_not_sent_twice(
        engine: Engine, mailing: Settings, smtp: SmtpServer) -> None:
    make_world(engine)
    smtp.inbox.refuse.add("tito@cauca.edu.co")
    with pytest.raises(DigestError, match=r"refused tito@cauca\.edu\.co"):
        _run_job(mailing, engine)
    assert set(smtp.inbox.take()) == {"coord@valle.edu.co", "tere@escola.edu.br"}
    smtp.inbox.refuse.clear()
    assert _run_job(mailing, engine) == "7 reminders; 1 digests sent of 1"
    assert set(smtp.inbox.take()) == {"tito@cauca.edu.co"}


def test_without_a_mail_server_the_job_reports_and_sends_nothing(
        lab_engine: Engine, lab_settings: Settings, smtp: SmtpServer) -> None:
    engine, settings = lab_engine, lab_settings
    make_world(engine)
    assert settings.smtp_host is None
    assert _run_job(settings, engine) == (
        "7 reminders; 3 people would get a digest; no mail server set (smtp_host): "
        "nothing sent")
    assert _sent(engine) == set() and smtp.inbox.messages == []


def test_starttls_that_the_server_does_not_offer_fails_and_marks_nothing(
        lab_engine: Engine, lab_mailing: Settings, smtp: SmtpServer) -> None:
    engine, mailing = lab_engine, lab_mailing
    make_world(engine)
    with pytest.raises(DigestError, match="starttls"):
        _run_job(mailing.model_copy(update={"smtp_security": "starttls"}), engine)
    assert _sent(engine) == set() and smtp.inbox.messages == []


def test_people_who_turned_them_off_get_none(
        lab_engine: Engine, lab_mailing: Settings, smtp: SmtpServer) -> None:
    engine, mailing = lab_engine, lab_mailing
    world = make_world(engine)
    from labhub.access.tables import users

    with engine.begin() as conn:
        conn.execute(update(users).where(users.c.id == world.user_ids["Coord"])
                     .values(reminder_emails=False))
        conn.execute(update(users).where(users.c.id == world.user_ids["Tito"])
                     .values(disabled_at=1))
        conn.execute(update(loan_table).values(closed_at=world.now))  # all back
    assert _run_job(mailing, engine) == "4 reminders; 1 digests sent of 1"
    assert set(smtp.inbox.take()) == {"tere@escola.edu.br"}
