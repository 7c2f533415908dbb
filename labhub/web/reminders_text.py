"""Reminders in words: each kind's heading, each reminder's sentence and the daily
digest's e-mail, in a person's language (gettext, as the pages; the messages live here, in
the web app's catalogs, ``reminders.po``). Used by the reminders page, the API and the
digest alike, so a reminder reads the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from labhub.reminders.due import Kind, Reminder, by_kind
from labhub.web import i18n
from labhub.web.i18n import N_

# Each kind's heading, in the order pages and e-mails list them.
HEADINGS: Final[dict[Kind, str]] = {
    "loan_overdue": N_("Overdue loans"),
    "loan_due": N_("Loans due by tomorrow"),
    "audit_due": N_("Audits due"),
    "service_due": N_("Maintenance and calibration due"),
    "stock_low": N_("Stock to reorder"),
    "device_silent": N_("Silent devices"),
}


def describe(reminder: Reminder, lang: str, zone: str) -> str:
    """The reminder in words, in ``lang``, with dates in the lab's ``zone``."""
    _: Callable[..., str] = i18n.gettext_of(lang)
    fmt = i18n.Formats(lang, zone)
    f = reminder.facts

    def date(key: str) -> str:
        value = f.get(key)
        return fmt.date(value if isinstance(value, int) else None, "medium")

    def when(key: str) -> str:
        value = f.get(key)
        return fmt.datetime(value if isinstance(value, int) else None, "short")

    due = fmt.datetime(reminder.due_at, "short")
    match reminder.kind:
        case "loan_overdue":
            return _("Loan to %(borrower)s at %(site)s was due %(due)s; %(items)s items "
                     "still out.", borrower=f["borrower"], site=f["site"], due=due,
                     items=f["items"])
        case "loan_due":
            return _("Loan to %(borrower)s at %(site)s is due %(due)s; %(items)s items "
                     "still out.", borrower=f["borrower"], site=f["site"], due=due,
                     items=f["items"])
        case "audit_due":
            if f.get("last") is None:
                return _("%(site)s (%(code)s) has no finished audit yet: one is due.",
                         site=f["site_name"], code=f["site"])
            return _("%(site)s (%(code)s): an audit is due; the last one finished on "
                     "%(last)s.", site=f["site_name"], code=f["site"], last=date("last"))
        case "service_due":
            if f["service"] == "calibration":
                return _("Calibration of %(tag)s (%(model)s) at %(site)s is due since "
                         "%(due)s.", tag=f["tag"], model=f["model"], site=f["site"],
                         due=fmt.date(reminder.due_at))
            return _("Maintenance of %(tag)s (%(model)s) at %(site)s is due since %(due)s.",
                     tag=f["tag"], model=f["model"], site=f["site"],
                     due=fmt.date(reminder.due_at))
        case "stock_low":
            return _("%(model)s at %(site)s: %(on_hand)s %(unit)s left, below the reorder "
                     "level of %(threshold)s.", model=f["model"], site=f["site"],
                     on_hand=fmt.number(_int(f["on_hand"])), unit=f["unit"] or "",
                     threshold=fmt.number(_int(f["threshold"])))
        case "device_silent":
            return _("%(device)s (%(site)s) has sent nothing since %(last)s.",
                     device=f["device"], site=f["site"] or "–", last=when("last"))
    raise AssertionError(reminder.kind)  # pragma: no cover -- every kind is matched


def _int(value: str | int | None) -> int:
    return value if isinstance(value, int) else 0


def heading(kind: Kind, lang: str) -> str:
    """A kind's heading in ``lang``."""
    return i18n.gettext_of(lang)(HEADINGS[kind])


def digest_text(reminders: list[Reminder], *, name: str, hub: str, lang: str, zone: str
                ) -> tuple[str, str]:
    """The digest e-mail's subject and plain-text body for ``name``, in ``lang``."""
    _ = i18n.gettext_of(lang)
    lines = [_("Hello %(name)s,", name=name), "",
             _("These need your attention at %(hub)s:", hub=hub), ""]
    for kind, items in by_kind(reminders):
        title = heading(kind, lang)
        lines += [title, "-" * len(title)]
        for r in items:
            lines.append("- " + describe(r, lang, zone))
            lines.append("  " + _("Page: %(path)s", path=r.link))
        lines.append("")
    lines += [_("You also find them on the Reminders page of LabHub."),
              _("Each reminder comes by e-mail once. To stop these e-mails, clear the "
                "address or turn them off on your account page.")]
    subject = _("%(hub)s: %(count)s reminders", hub=hub, count=len(reminders))
    return subject, "\n".join(lines)
