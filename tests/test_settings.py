"""Settings: defaults are safe, the TOML file and LABHUB_* variables apply in order."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from labhub.settings import Settings


def test_defaults_are_safe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    s = Settings()
    assert s.host == "127.0.0.1"
    assert s.data_dir == tmp_path / "xdg" / "labhub"
    assert s.resolved_database_url() == f"sqlite:///{tmp_path / 'xdg' / 'labhub' / 'labhub.db'}"


def test_the_file_applies_and_variables_win(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "labhub.toml"
    config.write_text('site = "VC-LP-014"\nport = 8100\nlanguage = "pt"\n', encoding="utf-8")
    monkeypatch.setenv("LABHUB_CONFIG", str(config))
    monkeypatch.setenv("LABHUB_PORT", "8200")
    s = Settings()
    assert (s.site, s.port, s.language) == ("VC-LP-014", 8200, "pt")


def test_a_local_labhub_toml_is_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LABHUB_CONFIG")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "labhub.toml").write_text('site = "GT-MILAB-03"\n', encoding="utf-8")
    assert Settings().site == "GT-MILAB-03"


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ('prot = 8000\n', "prot"),
        ('port = 70000\n', "port"),
        ('timezone = "Mars/Olympus"\n', "Mars/Olympus"),
        ('language = "fr"\n', "language"),
    ],
)
def test_bad_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str, complaint: str
) -> None:
    config = tmp_path / "labhub.toml"
    config.write_text(content, encoding="utf-8")
    monkeypatch.setenv("LABHUB_CONFIG", str(config))
    with pytest.raises(ValidationError, match=complaint):
        Settings()
