"""Every benchmark of ``bench/`` runs, at a smoke size, in the test suite.

A benchmark nothing runs rots: an API changes under it and the next person to measure finds
it broken. The convention: every ``bench/*.py`` script accepts ``--smoke`` (small sizes, a
few seconds). Each is run here as its own process (``python bench/<name>.py --smoke``, with
the suite's interpreter) and must exit with 0; its figures are printed, never asserted. A
new benchmark file is picked up by the glob, with no list to update.

A script's own folder comes first on ``sys.path``, so a ``bench/<name>.py`` named like a
package the benchmarks import (``inventory``, pyserial's ``serial``) shadows it, and every
script of the folder then fails at import. The second test keeps such names out.
"""

from __future__ import annotations

import importlib.machinery
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
# Modules whose name starts with "_" are what the scripts share (``bench/_common.py``), not
# benchmarks: they are imported, never run, but they too must shadow nothing.
MODULES = sorted(BENCH.glob("*.py"))
SCRIPTS = [p for p in MODULES if not p.name.startswith("_")]
SMOKE_TIMEOUT_S = 240  # a smoke run takes seconds; minutes means it hangs
PACKAGES = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))


def test_the_benchmarks_are_found() -> None:
    assert len(SCRIPTS) >= 8, [p.name for p in SCRIPTS]
    assert BENCH / "_common.py" in MODULES
    assert BENCH / "_common.py" not in SCRIPTS
    assert {"inventory", "labhub", "sensors", "firmware_bridge"} <= set(PACKAGES)


@pytest.mark.timeout(SMOKE_TIMEOUT_S + 30)
@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_benchmark_runs_at_smoke_size(script: Path) -> None:
    # Its own session, so that on a timeout the brokers and hubs it started go with it.
    process = subprocess.Popen(
        [sys.executable, str(script), "--smoke"], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        output, _ = process.communicate(timeout=SMOKE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{script.name} --smoke ran over {SMOKE_TIMEOUT_S} s:\n"
                    f"{output.decode(errors='replace')}")
    text = output.decode(errors="replace")
    print(text)
    assert process.returncode == 0, (
        f"{script.name} --smoke exited with {process.returncode}:\n{text}")


@pytest.mark.parametrize("script", MODULES, ids=[p.stem for p in MODULES])
def test_benchmark_name_shadows_no_package(script: Path) -> None:
    assert script.stem not in PACKAGES, (
        f"bench/{script.name} is named like LabHub's {script.stem!r} package: run as a "
        "script it comes first on sys.path and every benchmark's import of the package "
        "finds it instead; rename it")
    outside = [p for p in sys.path if p and Path(p).resolve() != BENCH]
    spec = importlib.machinery.PathFinder.find_spec(script.stem, outside)
    builtin = script.stem in sys.builtin_module_names
    assert spec is None and not builtin, (
        f"bench/{script.name} is named like the installed module {script.stem!r} "
        f"({spec.origin if spec else 'built in'}): run as a script it shadows that module "
        "for every import in the process; rename it")
