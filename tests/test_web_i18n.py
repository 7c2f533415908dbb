"""The pages' catalogs: every message the templates and ``labhub/web/*.py`` use (as
``labhub/web/babel.cfg`` extracts them) has a translation in es, pt and en that is neither
empty nor fuzzy, and no catalog holds a message nobody uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from labhub.web import i18n

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


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_each_catalog_translates_every_message(lang: str) -> None:
    held: dict[str, Message] = {}
    files = i18n.catalog_files(lang)
    assert [f.name for f in files] == [f.name for f in i18n.catalog_files("es")]
    for path in files:  # messages.po and one file a part of the web app, read as one
        with path.open("rb") as po:
            catalog = read_po(po, locale=lang)
        for message in catalog:
            if message.id:
                assert str(message.id) not in held, f"{path.name}: {message.id!r} twice"
                held[str(message.id)] = message
    wanted = _extracted()
    assert not wanted - set(held), f"{lang} lacks: {sorted(wanted - set(held))}"
    assert not set(held) - wanted, f"{lang} holds unused: {sorted(set(held) - wanted)}"
    empty = sorted(k for k, m in held.items() if not m.string)
    fuzzy = sorted(k for k, m in held.items() if m.fuzzy)
    assert not empty, f"{lang}: empty: {empty}"
    assert not fuzzy, f"{lang}: fuzzy: {fuzzy}"
    for key, message in held.items():  # the same %(names)s in the translation
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
