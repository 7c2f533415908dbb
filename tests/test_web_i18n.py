"""The pages' catalogs: every message the templates and ``labhub/web/*.py`` use (as
``labhub/web/babel.cfg`` extracts them) has a translation in es, pt and en that is neither
empty nor fuzzy, and no catalog holds a message nobody uses. A language added by dropping
in a catalog (Quechua, with two messages, in a temporary folder) shows those on a real
page, the rest in Spanish, and the header's switch offers it by its own name."""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.catalog import Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from inventory import replica
from labhub.app import create_app
from labhub.settings import Settings
from labhub.web import i18n
from labhub.web.network import RULE_WORDS, rule_words

WEB = Path(i18n.__file__).parent
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _extracted() -> set[str]:
    with (WEB / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg, str(WEB / "babel.cfg"))
    found = {message for _, _, message, _, _ in extract_from_dir(
        str(WEB), method_map, options_map)}
    assert all(isinstance(m, str) for m in found)  # no plural forms yet
    return {str(m) for m in found}


def test_extraction_finds_the_templates_and_the_routes_messages() -> None:
    found = _extracted()
    assert "Sign in" in found  # templates
    assert "Wrong name or password." in found  # labhub/web/pages.py
    assert len(found) >= 40


def test_the_hubs_languages_are_its_catalogs_folders_spanish_first() -> None:
    assert i18n.languages()[:3] == ("es", "pt", "en")
    assert set(i18n.languages()) == {p.parent.parent.name for p in (WEB / "locale").glob(
        "*/LC_MESSAGES/*.po")}
    assert i18n.language_names()["es"] == "Español"
    assert i18n.language_names()["pt"] == "Português"


@pytest.mark.parametrize("lang", i18n.languages())
def test_each_catalog_translates_every_message(lang: str) -> None:
    held: dict[str, Message] = {}
    files = i18n.catalog_files(lang)
    assert {f.name for f in files} <= {f.name for f in i18n.catalog_files("es")}
    if lang in i18n.SHIPPED:
        assert [f.name for f in files] == [f.name for f in i18n.catalog_files("es")]
    for path in files:  # messages.po and one file a part of the web app, read as one
        with path.open("rb") as po:
            catalog = read_po(po, locale=lang)
        for message in catalog:
            if message.id:
                assert str(message.id) not in held, f"{path.name}: {message.id!r} twice"
                held[str(message.id)] = message
    wanted = _extracted()
    complete = lang in i18n.SHIPPED  # an added language may lack (or leave empty) some:
    if complete:                     # those show in Spanish
        assert not wanted - set(held), f"{lang} lacks: {sorted(wanted - set(held))}"
    assert not set(held) - wanted, f"{lang} holds unused: {sorted(set(held) - wanted)}"
    empty = sorted(k for k, m in held.items() if not m.string)
    fuzzy = sorted(k for k, m in held.items() if m.fuzzy)
    assert not (empty and complete), f"{lang}: empty: {empty}"
    assert not fuzzy, f"{lang}: fuzzy: {fuzzy}"
    for key, message in held.items():  # the same %(names)s in the translation
        if message.string:
            assert sorted(PLACEHOLDER.findall(str(message.string))) == sorted(
                PLACEHOLDER.findall(key)), (lang, key)


def test_a_message_missing_in_another_language_shows_in_spanish(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for lang, text in (("es", "Iniciar sesión"), ("pt", "")):  # pt lacks it (empty)
        folder = tmp_path / lang / "LC_MESSAGES"
        folder.mkdir(parents=True)
        (folder / "messages.po").write_text(
            f'msgid "Sign in"\nmsgstr "{text}"\n\nmsgid "Name"\nmsgstr "Nome-{lang}"\n')
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    i18n.translations.cache_clear()
    try:
        portuguese = i18n.gettext_of("pt")
        assert portuguese("Sign in") == "Iniciar sesión"
        assert portuguese("Name") == "Nome-pt"
        assert portuguese("Not in any catalog") == "Not in any catalog"
    finally:
        monkeypatch.undo()
        i18n.translations.cache_clear()
    assert i18n.gettext_of("es")("Hello, %(name)s", name="Ana") == "Hola, Ana"


QUECHUA = """msgid ""
msgstr ""
"Language: qu\\n"
"Content-Type: text/plain; charset=utf-8\\n"

msgid "Sign in"
msgstr "Yaykuy"

msgid "Name"
msgstr "Suti"
"""


@pytest.fixture
def added_languages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The hub's own catalogs, plus Quechua (2 messages) and Nasa Yuwe (whose name Babel
    does not know: its catalog's X-Language-Name header says it), in a temporary folder."""
    for lang in i18n.SHIPPED:
        (tmp_path / lang).symlink_to(WEB / "locale" / lang)
    quechua = tmp_path / "qu" / "LC_MESSAGES"
    quechua.mkdir(parents=True)
    (quechua / "messages.po").write_text(QUECHUA, encoding="utf-8")
    nasa = tmp_path / "pbb" / "LC_MESSAGES"
    nasa.mkdir(parents=True)
    (nasa / "messages.po").write_text(QUECHUA.replace("Yaykuy", "Ũus").replace(
        '"Language: qu\\n"', '"Language: pbb\\n"\n"X-Language-Name: Nasa Yuwe\\n"'),
        encoding="utf-8")
    (tmp_path / "notes").mkdir()  # a folder without a catalog is no language
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    i18n.reload()
    try:
        yield tmp_path
    finally:
        monkeypatch.undo()
        i18n.reload()


def test_a_dropped_in_catalog_adds_a_language_that_falls_back_to_spanish(
        added_languages: Path, settings: Settings) -> None:
    assert i18n.languages() == ("es", "pt", "en", "pbb", "qu")
    assert i18n.language_names()["qu"] == "Runasimi"  # Babel's own name
    assert i18n.language_names()["pbb"] == "Nasa Yuwe"  # its catalog's header
    with TestClient(create_app(settings)) as client:
        page = client.get("/signin?lang=qu").text
        assert '<html lang="qu">' in page
        assert "<h1>Yaykuy</h1>" in page and '<label for="pw-name">Suti</label>' in page
        assert '<label for="pw-password">Contraseña</label>' in page  # Spanish, not in qu
        # The switch offers every language by its own name, in the hub's order.
        offered = re.findall(r'hreflang="([a-z]+)" lang="[a-z]+"[^>]*>([^<]+)</a>', page)
        assert offered == [("es", "Español"), ("pt", "Português"), ("en", "English"),
                           ("pbb", "Nasa Yuwe"), ("qu", "Runasimi")]
        # The choice is remembered (cookie) and a browser asking for it gets it too.
        assert '<html lang="qu">' in client.get("/signin").text
        client.cookies.clear()
        asked = client.get("/signin", headers={"Accept-Language": "qu-PE,es;q=0.5"})
        assert '<html lang="qu">' in asked.text


def test_numbers_and_dates_of_an_added_language_use_a_locale_babel_has(
        added_languages: Path) -> None:
    noon = 1_780_000_000_000_000
    quechua = i18n.Formats("qu", "America/Lima")
    assert str(quechua.locale) == "qu_PE" and quechua.number(1234.5, 1) == "1,234.5"
    assert quechua.date(noon)  # Babel's Quechua dates
    nasa = i18n.Formats("pbb", "America/Bogota")
    assert str(nasa.locale) == "es_CO" and nasa.number(1234.5, 1) == "1.234,5"
    other = i18n.Formats("zz", "UTC")  # a code Babel lacks and the table does not name
    assert str(other.locale) == i18n.FALLBACK_LOCALE


def test_every_conflict_rule_is_said_in_each_language() -> None:
    """Each rule replica settles conflicts by has its words in the web app, read back
    from the stored English with its values; words no rule gives are shown as stored."""
    assert set(RULE_WORDS) == set(replica.RULES)
    for lang in ("es", "pt", "en"):
        _ = i18n.gettext_of(lang)
        for rule_id, template in replica.RULES.items():
            names = [f[1] for f in string.Formatter().parse(template) if f[1]]
            stored = replica.rule_text(rule_id, **{n: f"<{n}>" for n in names})
            said = rule_words(_, stored)
            assert said != stored or lang == "en", (lang, rule_id)
            assert all(f"<{n}>" in said for n in names if n != "what"), (lang, rule_id)
        cut = replica.rule_text("owner_wins", site="LAB-A")[:40] + "…"
        assert rule_words(_, cut) == cut
