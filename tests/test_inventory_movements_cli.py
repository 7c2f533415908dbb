"""``labhub inventory`` commands that write, on every backend: lend a kit to a class and
take it back short, loan lists, kit contents, stock and the reorder report, repairs, and
refusals as a red line with exit 1 and nothing written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from movements_world import build, snapshot
from sqlalchemy import Engine
from typer.testing import CliRunner

from labhub import db
from labhub.cli import app


@pytest.fixture
def lab(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("LABHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("LABHUB_DATA_DIR", str(tmp_path / "data"))
    engine = db.make_engine(database_url)
    with engine.begin() as conn:
        build(conn)
    try:
        yield engine
    finally:
        engine.dispose()


def _run(*args: str, code: int = 0) -> list[str]:
    result = CliRunner().invoke(app, ["inventory", *args])
    assert result.exit_code == code, result.output
    return [line.rstrip() for line in result.output.splitlines()]


def _due(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def test_lend_a_kit_and_take_it_back_short(lab: Engine) -> None:
    (line,) = _run("lend", "KIT-1", "UNO-2", "--to", "Prof. Marta, 7B", "--kind", "group",
                   "--due", _due(1), "--purpose", "robótica", "--by", "Ana")
    loan_id = line.split()[1].rstrip(":")
    assert line.endswith("Z") and "KIT-1, UNO-2 to Prof. Marta, 7B (group), due " in line
    listed = _run("loans", "--borrower", "marta")
    assert listed[0].startswith(f"{loan_id}  due ") and "open" in listed[0]
    assert listed[0].endswith("group  Prof. Marta, 7B: KIT-1 (kit), UNO-2")
    assert listed[-1] == "1 of 1 loans"
    assert _run("overdue") == ["0 of 0 loans"]
    assert _run("overdue", "--soon")[-1] == "1 of 1 loans"
    assert _run("return", "UNO-2", "--condition", "fair") == [
        f"UNO-2 back from loan {loan_id}", "still out: KIT-1"]
    assert _run("return", "KIT-1", "--asset", "UNO-1", "--part", "JMP=38", "--part",
                "LED=10", "--part", "HC-SR04", "--damaged", "LED=1") == [
        f"KIT-1 back from loan {loan_id}", "  lost 2 x JMP", "  damaged 1 x LED", "loan closed"]
    assert _run("loans") == ["0 of 0 loans"]
    assert _run("loans", "--all")[0].endswith("closed   group  Prof. Marta, 7B: 2 items back")
    assert _run("stock", "--site", "R1") == [
        "LC-1             HC-SR04                 5 pcs    reorder below 5",
        "LC-1             JMP                    98 pcs    reorder below 60",
        "LC-1             LED                    49 pcs    reorder below 20",
        "3 of 3 stock levels",
    ]
    history = _run("history", "KIT-1")
    assert any("KitPartMissing" in x and "part JMP" in x for x in history)


def test_kit_contents_stock_reorder_and_repairs(lab: Engine) -> None:
    assert _run("kit-contents", "KIT-1") == [
        "  asset UNO-1", "      1 x HC-SR04", "     40 x JMP", "     10 x LED",
        "kit KIT-1 (version 2): 1 assets, 3 counted parts"]
    assert _run("kit-contents", "KIT-1", "--asset", "UNO-1", "--asset", "UNO-2",
                "--part", "JMP=20")[-1] == "kit KIT-1 (version 3): 2 assets, 1 counted parts"
    assert _run("consume", "LC-1", "JMP", "45", "--note", "taller") == ["LC-1 JMP: 55 pcs"]
    assert _run("receive", "LP-2", "LED", "7") == ["LP-2 LED: 7 pcs"]
    assert _run("threshold", "LP-2", "LED", "10") == ["LP-2 LED: reorder below 10"]
    assert _run("recount", "LC-1", "JMP", "50") == ["LC-1 JMP: 50 pcs"]
    assert _run("reorder") == [
        "LC-1             JMP              on hand 50 pcs, threshold 60, short 10",
        "LP-2             LED              on hand 7 pcs, threshold 10, short 3",
        "2 of 2 to reorder",
    ]
    assert _run("reorder", "--site", "LP-2")[-1] == "1 of 1 to reorder"
    (line,) = _run("repair", "UNO-3", "--fault", "no enciende", "--condition", "broken")
    assert line.startswith("repair ") and line.endswith(": UNO-3 in_repair (no enciende)")
    assert _run("repaired", "UNO-3", "--done", "regulador nuevo", "--condition", "fair") == [
        "UNO-3 back in service (fair): regulador nuevo"]
    assert _run("assets", "--search", "UNO-3")[0].split()[2:4] == ["available", "fair"]


def test_refusals_are_one_red_line_and_write_nothing(lab: Engine) -> None:
    before = snapshot(lab)
    cases = [
        (["return", "UNO-2"], "labhub inventory return: asset 'UNO-2' is not on loan"),
        (["lend", "UNO-1", "--to", "x", "--due", _due(1)], "is part of kit 'KIT-1'"),
        (["lend", "UNO-2", "--to", "x", "--due", "2026-12-24T10:00:00"], "no time zone"),
        (["lend", "UNO-2", "--to", "x", "--due", _due(-1)], "must be in the future"),
        (["lend", "UNO-2", "--to", "x", "--kind", "dog", "--due", _due(1)],
         "borrower kind 'dog'"),
        (["consume", "LC-1", "JMP", "101"], "holds 100 pcs of JMP"),
        (["repaired", "UNO-2", "--done", "x"], "asset 'UNO-2' has no open repair"),
        (["kit-contents", "KIT-1", "--asset", "UNO-9"], "'UNO-9' is at LP-2"),
        (["stock", "--site", "NOPE"], "no site with code 'NOPE'"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(app, ["inventory", *args])
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)
    result = CliRunner().invoke(app, ["inventory", "lend", "KIT-1", "--to", "x", "--due",
                                      _due(1)])
    assert result.exit_code == 0
    result = CliRunner().invoke(app, ["inventory", "return", "KIT-1", "--part", "JMP=41"])
    assert result.exit_code == 1 and "41 of part 'JMP' came back" in result.output
    result = CliRunner().invoke(app, ["inventory", "return", "KIT-1", "--part", "JMP=lots"])
    assert result.exit_code == 2 and "--part 'JMP=lots' is not MODEL=COUNT" in result.output
    after = snapshot(lab)
    assert after["loans"] != before["loans"]  # the one good lend
    assert {k: v for k, v in after.items() if k not in ("loans", "loan_items", "assets",
                                                         "events")} == {
        k: v for k, v in before.items() if k not in ("loans", "loan_items", "assets",
                                                      "events")}
