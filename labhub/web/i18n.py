"""The pages' languages: gettext catalogs (``locale/<lang>/LC_MESSAGES/messages.po``) read
with Babel and compiled in memory when this module is first imported, so the ``.po`` files
in the repository are all a wheel needs (no ``.mo`` build step).

Message ids are English. A message that Portuguese or English lacks (or holds empty or
fuzzy) shows in Spanish, the hub's first language; a test keeps every catalog complete.
The language of a request: ``?lang=``, else the ``labhub_lang`` cookie that choice sets,
else the browser's ``Accept-Language``, else the hub's ``language`` setting.
"""

from __future__ import annotations

import gettext
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime, format_time, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

LOCALE_DIR: Final = Path(__file__).parent / "locale"
LANGUAGES: Final = ("es", "pt", "en")  # the first is every other's fallback
LANGUAGE_NAMES: Final = {"es": "Español", "pt": "Português", "en": "English"}
LANG_COOKIE: Final = "labhub_lang"
# The locale whose numbers and dates each language uses (Babel's data).
LOCALES: Final = {"es": "es_CO", "pt": "pt_BR", "en": "en_US"}


def catalog_files(lang: str) -> list[Path]:
    """The ``.po`` files of ``lang``: ``messages.po`` (the layout, sign-in, home) and one
    for each part of the web app (``live.po``, ``devices.po``...), read as one catalog."""
    return sorted((LOCALE_DIR / lang / "LC_MESSAGES").glob("*.po"))


def _compiled(lang: str) -> gettext.NullTranslations:
    merged: Translations | None = None
    for path in catalog_files(lang):
        with path.open("rb") as po:
            catalog = read_po(po, locale=lang)
        mo = BytesIO()
        write_mo(mo, catalog)  # leaves out empty and fuzzy messages
        mo.seek(0)
        part = Translations(mo)
        if merged is None:
            merged = part
        else:
            merged.merge(part)
    return merged if merged is not None else gettext.NullTranslations()


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The catalog of ``lang`` (one of :data:`LANGUAGES`), falling back to Spanish."""
    found = _compiled(lang)
    if lang != LANGUAGES[0]:
        found.add_fallback(translations(LANGUAGES[0]))
    return found


def from_accept_language(header: str | None) -> str | None:
    """The first of :data:`LANGUAGES` the browser asks for (by its ``q`` order)."""
    if not header:
        return None
    wanted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        wanted.append((-q, index, tag.strip().lower().split("-")[0]))
    for q, _, lang in sorted(wanted):
        if q < 0 and lang in LANGUAGES:
            return lang
    return None


def choose(asked: str | None, cookie: str | None, accept: str | None, default: str) -> str:
    """The language of a request (see the module's docstring)."""
    for lang in (asked, cookie, from_accept_language(accept)):
        if lang in LANGUAGES:
            return lang
    return default if default in LANGUAGES else LANGUAGES[0]


def N_(message: str) -> str:
    """Mark ``message`` for the catalogs where it is defined; it is translated where it
    is shown (``_(label)`` in a template)."""
    return message


def gettext_of(lang: str) -> Callable[..., str]:
    """``_(message, **values)``: the message in ``lang``, with ``%(name)s`` filled in."""
    found = translations(lang)

    def _(message: str, **values: object) -> str:
        text = found.gettext(message)
        return text % values if values else text

    return _


class Formats:
    """Numbers, times and quantities as a person of ``lang`` reads them (Babel's locale
    data), times in the lab's ``zone``. Pages get one as ``fmt``; scripts get the same
    choices through ``data-`` attributes (``lang``, the zone) and ``Intl``."""

    def __init__(self, lang: str, zone: str) -> None:
        self.lang = lang
        self.locale = Locale.parse(LOCALES.get(lang, lang))
        self.zone = ZoneInfo(zone)

    def number(self, value: float | int | None, digits: int | None = None) -> str:
        """``1234.5`` as ``1.234,5`` (es), ``1,234.5`` (en); ``digits`` after the mark."""
        if value is None:
            return "–"
        if digits is None:
            return format_decimal(value, locale=self.locale)
        return format_decimal(value, format=f"#,##0.{'0' * digits}" if digits else "#,##0",
                              locale=self.locale)

    def quantity(self, value: float | None, unit: str | None, digits: int = 1) -> str:
        """A value with its unit (``21,5 °C``); no unit: the number alone."""
        shown = self.number(value, digits)
        return f"{shown}\u00a0{unit}" if unit and value is not None else shown

    def _at(self, ts_us: int) -> datetime:
        return datetime.fromtimestamp(ts_us / 1_000_000, tz=UTC).astimezone(
            self.zone)

    def datetime(self, ts_us: int | None, width: str = "medium") -> str:
        """A reading's time (microseconds since 1970) in the lab's zone."""
        if ts_us is None:
            return "–"
        return format_datetime(self._at(ts_us), format=width, locale=self.locale)

    def time(self, ts_us: int | None, width: str = "medium") -> str:
        if ts_us is None:
            return "–"
        return format_time(self._at(ts_us), format=width, locale=self.locale)

    def date(self, ts_us: int | None, width: str = "medium") -> str:
        if ts_us is None:
            return "–"
        return format_date(self._at(ts_us), format=width, locale=self.locale)

    def ago(self, ts_us: int | None, now_us: int | None = None) -> str:
        """How long ago, in words (``hace 3 minutos``)."""
        if ts_us is None:
            return "–"
        now = time.time() * 1_000_000 if now_us is None else now_us
        delta = timedelta(microseconds=ts_us - now)
        return format_timedelta(delta, add_direction=True, locale=self.locale)
