"""Docs are tested: every setting, CLI command and API route is documented."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer.main

from labhub.app import create_app
from labhub.cli import app as cli_app
from labhub.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_setting_is_in_configuration_md() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    missing = [
        name for name in Settings.model_fields
        if f"`{name}`" not in text or f"`LABHUB_{name.upper()}`" not in text
    ]
    assert not missing, f"settings missing from docs/configuration.md: {missing}"


def _commands(group: Any, prefix: str = "labhub") -> list[str]:
    names = []
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (typer may bring its own click)
            names += _commands(command, f"{prefix} {name}")
        else:
            names.append(f"{prefix} {name}")
    return names


def test_every_cli_command_is_in_cli_md() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    commands = _commands(typer.main.get_command(cli_app))
    assert "labhub db upgrade" in commands and "labhub export" in commands
    missing = [c for c in commands if f"`{c}" not in text]
    assert not missing, f"commands missing from docs/cli.md: {missing}"


def test_every_api_route_is_in_api_md() -> None:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    routes = [
        (method, path)
        for path, item in create_app(Settings()).openapi()["paths"].items()
        for method in item
    ]
    assert len(routes) > 15
    missing = [
        f"{m.upper()} {p}" for m, p in routes
        if not re.search("`" + re.escape(f"{m.upper()} {p}") + "[`?]", text)
    ]
    assert not missing, f"routes missing from docs/api.md: {missing}"


def test_every_mqtt_topic_is_in_mqtt_md() -> None:
    from firmware_bridge.mqtt import IGNORED_LEAVES

    text = (DOCS / "mqtt.md").read_text(encoding="utf-8")
    leaves = {"telemetry", "influx", "<channel>", *IGNORED_LEAVES}
    missing = [leaf for leaf in sorted(leaves) if f"/<device>/{leaf}`" not in text
               and f"/{leaf}`" not in text]
    assert not missing, f"MQTT topics missing from docs/mqtt.md: {missing}"


def test_every_relative_link_and_picture_of_the_docs_exists() -> None:
    """A link or image in README.md or docs/*.md that names a file of the repository
    (not a URL, not an anchor) points at one that is there (a screenshot of the pages
    in docs/images/, another doc)."""
    link = re.compile(r"\]\(([^)\s]+)\)")
    missing = []
    for page in [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]:
        for target in link.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                missing.append(f"{page.name}: {target}")
    assert not missing, missing
