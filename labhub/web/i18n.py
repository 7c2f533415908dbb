"""The pages' languages: gettext catalogs (``locale/<lang>/LC_MESSAGES/*.po``, each part's
file read as one catalog) read with Babel and compiled in memory when a language is first
used, so the ``.po`` files in the repository are all a wheel needs (no ``.mo`` build step).

The hub's languages are the folders under ``locale/`` that hold a catalog: Spanish first
(every other's fallback), then Portuguese and English, then any other (Quechua ``qu``,
Nasa Yuwe ``pbb``...) by code. Adding a language is dropping in its folder (docs/web.md,
"Adding a language"). Each shows by its own name, Babel's (``Locale(lang)
.get_display_name(lang)``), or its catalog's ``X-Language-Name`` header for a language
Babel does not know. Message ids are English; a message a catalog lacks (or holds empty
or fuzzy) shows in Spanish. A test keeps es, pt and en complete.

The language of a request (:func:`choose`): ``?lang=``, else the signed-in person's own
(their account's), else the ``labhub_lang`` cookie that a choice sets, else the browser's
``Accept-Language``, else the hub's ``language`` setting.
"""

from __future__ import annotations

import gettext
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_time, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

LOCALE_DIR: Final = Path(__file__).parent / "locale"
FIRST: Final = "es"  # the hub's first language: every other's fallback
SHIPPED: Final = ("es", "pt", "en")  # complete catalogs (a test checks), in this order
LANG_COOKIE: Final = "labhub_lang"
# A catalog's header that names its language in its own words, for one Babel does not
# know (the .po file ships in the wheel; gettext keeps "X-" headers as they are).
NAME_HEADER: Final = re.compile(r'^"X-Language-Name:[ \t]*(.+?)(?:\\n)?"[ \t]*$', re.M)
# A folder's name is a language code: ISO 639 (2 or 3 letters), maybe a region (pt_BR).
CODE: Final = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")
# The locale whose numbers and dates a language uses (Babel's data): the region of the
# labs that speak it. A language not here uses its own when Babel knows it, else
# Colombia's Spanish (a Nasa Yuwe class reads numbers as its Spanish class does).
LOCALES: Final = {"es": "es_CO", "pt": "pt_BR", "en": "en_US", "qu": "qu_PE",
                  "pbb": "es_CO"}
FALLBACK_LOCALE: Final = "es_CO"


@cache
def languages() -> tuple[str, ...]:
    """The languages the hub has catalogs for: es, pt, en, then the others by code."""
    found = {folder.name for folder in LOCALE_DIR.iterdir()
             if CODE.fullmatch(folder.name) and any((folder / "LC_MESSAGES").glob("*.po"))
             } if LOCALE_DIR.is_dir() else set()
    found.add(FIRST)
    return tuple([lang for lang in SHIPPED if lang in found]
                 + sorted(found - set(SHIPPED)))


@cache
def language_name(lang: str) -> str:
    """``lang`` in its own words, first letter up (``Español``, ``Runasimi``): a catalog's
    ``X-Language-Name`` header when one has it, else Babel's name, else the code."""
    for path in catalog_files(lang):
        head = path.read_text(encoding="utf-8", errors="replace")[:4000]
        found = NAME_HEADER.search(head)
        if found and found.group(1).strip():
            return found.group(1).strip()[:40]
    try:
        name = Locale.parse(lang).get_display_name(lang)
    except (UnknownLocaleError, ValueError):
        return lang
    return name[:1].upper() + name[1:] if name else lang


def language_names() -> dict[str, str]:
    """Each language of :func:`languages` with its own name, in that order."""
    return {lang: language_name(lang) for lang in languages()}


@cache
def number_locale(lang: str) -> Locale:
    """The Babel locale of ``lang``'s numbers and dates (:data:`LOCALES`)."""
    for tag in (LOCALES.get(lang), lang):
        if tag is None:
            continue
        try:
            return Locale.parse(tag)
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse(FALLBACK_LOCALE)


def reload() -> None:
    """Read the catalog folders again (tests that point :data:`LOCALE_DIR` elsewhere)."""
    languages.cache_clear()
    language_name.cache_clear()
    translations.cache_clear()


def catalog_files(lang: str) -> list[Path]:
    """The ``.po`` files of ``lang``: ``messages.po`` (the layout, sign-in, home) and one
    for each part of the web app (``live.po``, ``devices.po``...), read as one catalog."""
    return sorted((LOCALE_DIR / lang / "LC_MESSAGES").glob("*.po"))


# The languages and their names as the hub started: for code that wants a fixed list.
LANGUAGES: Final = languages()
LANGUAGE_NAMES: Final = language_names()


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
    """The catalog of ``lang`` (one of :func:`languages`), falling back to Spanish."""
    found = _compiled(lang)
    if lang != FIRST:
        found.add_fallback(translations(FIRST))
    return found


def from_accept_language(header: str | None) -> str | None:
    """The first of :func:`languages` the browser asks for (by its ``q`` order)."""
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
    known = languages()
    for q, _, lang in sorted(wanted):
        if q < 0 and lang in known:
            return lang
    return None


def choose(asked: str | None, own: str | None, cookie: str | None, accept: str | None,
           default: str) -> str:
    """The language of a request: the first of ``asked`` (``?lang=``), the person's
    ``own``, the ``cookie``'s, the browser's (``accept``) that the hub has, else
    ``default`` (the hub's setting), else Spanish."""
    known = languages()
    for lang in (asked, own, cookie):
        if lang in known:
            return lang
    return from_accept_language(accept) or (default if default in known else FIRST)


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
        self.locale = number_locale(lang)
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
