"""Without a Mosquitto binary the MQTT tests skip and say why; under ``CI=true`` they fail.

A small test file that needs a broker (through the ``broker`` fixture and by starting one
itself) runs in a pytest subprocess whose ``LABHUB_TEST_MOSQUITTO`` names a binary that is
not there, as on a machine without Mosquitto installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
NEEDS_A_BROKER = """
from pathlib import Path

from mqtt_broker import MosquittoBroker, broker_fixture  # noqa: F401


def test_through_the_fixture(broker: MosquittoBroker) -> None:
    raise AssertionError("ran without a broker")


def test_starting_one_itself(tmp_path: Path) -> None:
    with MosquittoBroker(tmp_path / "b"):
        raise AssertionError("ran without a broker")
"""


def run_without_mosquitto(tmp_path: Path, *, ci: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_needs_a_broker.py").write_text(NEEDS_A_BROKER)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["LABHUB_TEST_MOSQUITTO"] = str(tmp_path / "no-such-dir" / "mosquitto")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "test_needs_a_broker.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_without_mosquitto_the_mqtt_tests_skip_and_say_why(tmp_path: Path) -> None:
    result = run_without_mosquitto(tmp_path, ci=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 skipped" in result.stdout, result.stdout
    assert "no Mosquitto broker" in result.stdout and "install mosquitto" in result.stdout


def test_under_ci_a_missing_mosquitto_fails_the_mqtt_tests(tmp_path: Path) -> None:
    result = run_without_mosquitto(tmp_path, ci=True)
    assert result.returncode == 1, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert "1 failed" in summary and "1 error" in summary and "skipped" not in summary, summary
    assert result.stdout.count("under CI=true the MQTT suite may not be skipped") >= 2
