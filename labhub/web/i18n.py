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
from collections.abc import Callable
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Final

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE_DIR: Final = Path(__file__).parent / "locale"
LANGUAGES: Final = ("es", "pt", "en")  # the first is every other's fallback
LANGUAGE_NAMES: Final = {"es": "Español", "pt": "Português", "en": "English"}
LANG_COOKIE: Final = "labhub_lang"


def _compiled(lang: str) -> gettext.NullTranslations:
    path = LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po:
        catalog = read_po(po, locale=lang)
    mo = BytesIO()
    write_mo(mo, catalog)  # leaves out empty and fuzzy messages
    mo.seek(0)
    return Translations(mo)


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


def gettext_of(lang: str) -> Callable[..., str]:
    """``_(message, **values)``: the message in ``lang``, with ``%(name)s`` filled in."""
    found = translations(lang)

    def _(message: str, **values: object) -> str:
        text = found.gettext(message)
        return text % values if values else text

    return _
