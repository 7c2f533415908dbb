"""The README's run command: ``labhub demo`` serves the API with both virtual kits, and a
servo command sent through the API reaches the virtual robot."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def test_the_demo_shows_both_kits_and_moves_the_servo(tmp_path: Path) -> None:
    port = _free_port()
    labhub = Path(sys.executable).parent / "labhub"
    env = {**os.environ, "LABHUB_DATA_DIR": str(tmp_path), "LABHUB_SERIAL_SCAN": "false",
           "LABHUB_CONFIG": os.devnull}
    proc = subprocess.Popen([str(labhub), "demo", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 60
        devices: list[dict[str, Any]] = []
        series: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                devices = _get(f"{base}/devices")
                series = _get(f"{base}/series")
            except OSError:
                pass
            kinds = {d["kind"] for d in devices if d["online"]}
            channels = {s["channel"] for s in series if s["latest_value"] is not None}
            if kinds == {"lines", "firmata"} and {"temp", "A0"} <= channels:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"demo not ready: devices={devices} series={series}")
        robot = next(d for d in devices if d["kind"] == "firmata")
        request = urllib.request.Request(
            f"{base}/devices/{robot['id']}/commands", method="POST",
            data=json.dumps({"command": "servo", "pin": 9, "value": 135}).encode(),
            headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as r:
            answer = json.load(r)
        assert answer["outputs"]["9"] == 135.0
        assert _get(f"{base}/devices/{robot['id']}/outputs")["9"] == 135.0
        assert (tmp_path / "demo" / "labhub-demo.db").is_file()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
