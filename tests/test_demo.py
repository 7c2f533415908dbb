"""The README's run command: ``labhub demo`` serves the API with both virtual kits, and a
servo command sent through the API reaches the virtual robot."""

from __future__ import annotations

import contextlib
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

from waiting import wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The demo's admin token, read from what the demo prints (``token: curl -H ...``).
AUTH: dict[str, str] = {}


def _sign_in_from_output(proc: subprocess.Popen[bytes]) -> list[bytes]:
    """Read the demo's first lines up to its token line; use the token from then on."""
    assert proc.stdout is not None
    lines: list[bytes] = []
    for line in iter(proc.stdout.readline, b""):
        lines.append(line)
        if line.startswith(b"token: "):
            token = line.split(b"Bearer ")[1].split(b"'")[0].decode()
            AUTH["Authorization"] = f"Bearer {token}"
            return lines
    raise AssertionError(b"".join(lines).decode(errors="replace"))


def _get(url: str) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, headers=AUTH), timeout=5) as r:
        return json.load(r)


def test_the_demo_shows_both_kits_and_moves_the_servo(tmp_path: Path) -> None:
    port = _free_port()
    labhub = Path(sys.executable).parent / "labhub"
    env = {**os.environ, "LABHUB_DATA_DIR": str(tmp_path), "LABHUB_SERIAL_SCAN": "false",
           "LABHUB_CONFIG": os.devnull}
    proc = subprocess.Popen([str(labhub), "demo", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    printed = b"".join(_sign_in_from_output(proc)).decode()
    assert "sign in as admin, password " in printed  # the demo says how to sign in
    # ... and where the web app is, first (make run's reader opens it in a browser).
    assert f"web app: http://127.0.0.1:{port}/ (open it in a browser" in printed
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
            headers={"content-type": "application/json", **AUTH})
        with urllib.request.urlopen(request, timeout=5) as r:
            answer = json.load(r)
        assert answer["outputs"]["9"] == 135.0
        # The README's upload names the demo's lab, a site of the demo's own tree.
        assert "lab site VC-LP-014" in printed
        request = urllib.request.Request(
            f"{base}/readings", method="POST",
            headers={"content-type": "application/json", **AUTH},
            data=json.dumps({"device": "station-1", "site": "VC-LP-014", "readings": [
                {"channel": "temp", "value": 21.5, "ts": "2026-03-01T14:05:00Z"}]}).encode())
        with urllib.request.urlopen(request, timeout=5) as r:
            assert json.load(r)["accepted"] == 1
        assert {s["site"] for s in _get(f"{base}/series")} == {"VC-LP-014"}
        assert _get(f"{base}/devices/{robot['id']}/outputs")["9"] == 135.0
        # The demo lab's equipment, for the equipment pages: 4 kits, 10 boards, a printer;
        # one counted part below its reorder level.
        assert _get(f"{base}/assets?site=VC-LP-014&limit=100")["total"] == 15
        assert _get(f"{base}/kits/KIT-001/contents")["assets"] == ["UNO-001"]
        low = _get(f"{base}/reorder")
        assert [r["model"] for r in low["items"]] == ["HC-SR04"], low
        assert (tmp_path / "demo" / "labhub-demo.db").is_file()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]


def _labhub(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    labhub = Path(sys.executable).parent / "labhub"
    return subprocess.run([str(labhub), *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_commands_beside_the_demo_use_its_database(tmp_path: Path) -> None:
    """While `make run` (labhub demo) runs, `labhub inventory`, `labhub readings` and
    `labhub export --run` in another terminal read the demo's database, say so, and never
    create the lab's; once the demo stops they say there is no database."""
    port = _free_port()
    labhub = Path(sys.executable).parent / "labhub"
    env = {k: v for k, v in os.environ.items() if k != "LABHUB_DATABASE_URL"}
    env.update({"LABHUB_DATA_DIR": str(tmp_path), "LABHUB_SERIAL_SCAN": "false",
                "LABHUB_CONFIG": os.devnull})
    proc = subprocess.Popen([str(labhub), "demo", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _sign_in_from_output(proc)
    base = f"http://127.0.0.1:{port}/api/v1"
    lab_db = tmp_path / "labhub.db"
    demo_db = tmp_path / "demo" / "labhub-demo.db"
    try:
        series: list[dict[str, Any]] = []

        def temperature_stored() -> bool:
            nonlocal series
            with contextlib.suppress(OSError):
                series = _get(f"{base}/series")
            return any(s["channel"] == "temp" and s["latest_value"] is not None
                       for s in series)

        wait_for(temperature_stored, timeout=60, what="the demo's first temperature",
                 state=lambda: series)
        station = next(s["device"] for s in series if s["channel"] == "temp")
        request = urllib.request.Request(
            f"{base}/runs", method="POST",
            headers={"content-type": "application/json", **AUTH},
            data=json.dumps({"title": "Sombra", "channels": [{"device": station}],
                             "started_at": time.time() - 120}).encode())
        with urllib.request.urlopen(request, timeout=5) as r:
            run_id = json.load(r)["id"]
        request = urllib.request.Request(
            f"{base}/runs/{run_id}/notes", method="POST",
            headers={"content-type": "application/json", **AUTH},
            data=json.dumps({"text": "a la sombra"}).encode())
        urllib.request.urlopen(request, timeout=5).close()

        said = f"using the database of the demo hub running now (pid {proc.pid}): {demo_db}"
        sites = _labhub(env, "inventory", "sites")
        assert sites.returncode == 0, sites.stderr
        assert said in sites.stderr and "Traceback" not in sites.stderr
        assert sites.stdout.strip().endswith("sites")
        readings = _labhub(env, "readings", f"{station}/temp", "--start", "-10m",
                           "--format", "csv")
        assert readings.returncode == 0, readings.stderr
        rows = readings.stdout.splitlines()
        assert rows[0].startswith("fecha y hora (America/Bogota),") and "(°C)" in rows[0]
        assert len(rows) > 1 and rows[1][19:25] == "-05:00"  # whole seconds, lab's zone
        exported = _labhub(env, "export", "--run", run_id)
        assert exported.returncode == 0, exported.stderr
        assert exported.stdout.splitlines()[0].endswith(",nota")
        assert "a la sombra" in exported.stdout
        assert not lab_db.exists()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    assert not (tmp_path / "demo" / "hub.json").exists()
    after = _labhub(env, "inventory", "sites")
    assert after.returncode == 1
    assert f"there is no database at {lab_db} (the lab's database)" in after.stderr
    assert "Traceback" not in after.stderr and not lab_db.exists()


def test_commands_that_call_the_hub_pass_its_gates(tmp_path: Path) -> None:
    """`labhub command` and `labhub ports` call the running hub over HTTP, where every
    route needs a signed-in caller: on the hub's machine they make a one-minute token of
    the account labhub-cli (audit-logged, gone afterwards); --token or LABHUB_TOKEN sends
    one's own; a disabled labhub-cli account turns the first way off."""
    from sqlalchemy import select

    from labhub import db
    from labhub.access.tables import api_tokens, audit_log, users

    port = _free_port()
    labhub = Path(sys.executable).parent / "labhub"
    env = {k: v for k, v in os.environ.items()
           if k not in ("LABHUB_DATABASE_URL", "LABHUB_TOKEN")}
    env.update({"LABHUB_DATA_DIR": str(tmp_path), "LABHUB_SERIAL_SCAN": "false",
                "LABHUB_CONFIG": os.devnull})
    proc = subprocess.Popen([str(labhub), "demo", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _sign_in_from_output(proc)
    hub = f"http://127.0.0.1:{port}"
    engine = db.make_engine(f"sqlite:///{tmp_path / 'demo' / 'labhub-demo.db'}")
    try:
        devices: list[dict[str, Any]] = []

        def robot_online() -> bool:
            nonlocal devices
            with contextlib.suppress(OSError):
                devices = _get(f"{hub}/api/v1/devices")
            return any(d["kind"] == "firmata" and d["online"] for d in devices)

        wait_for(robot_online, timeout=60, what="the demo's robot", state=lambda: devices)
        robot = next(d["id"] for d in devices if d["kind"] == "firmata")

        moved = _labhub(env, "command", robot, "servo", "9", "120", "--hub", hub)
        assert moved.returncode == 0, moved.stderr
        assert "pin 9 (servo) = 120" in moved.stdout
        assert _get(f"{hub}/api/v1/devices/{robot}/outputs")["9"] == 120.0
        shown = _labhub(env, "ports", "show", "--hub", hub)
        assert shown.returncode == 0, shown.stderr
        assert "no serial ports named" in shown.stdout
        with engine.connect() as conn:
            cli_id = conn.execute(select(users.c.id).where(users.c.name == "labhub-cli")
                                  ).scalar_one()
            left = conn.execute(select(api_tokens.c.id)
                                .where(api_tokens.c.user_id == cli_id)).all()
            made = conn.execute(select(audit_log.c.detail).where(
                audit_log.c.action == "token_created",
                audit_log.c.on_behalf_of == "labhub-cli")).scalars().all()
        assert left == []  # each command's token is deleted when it ends
        assert [json.loads(d)["name"] for d in made] == ["labhub command", "labhub ports"]

        # One's own token, as from another machine; a wrong one is the hub's 401.
        own = _labhub({**env, "LABHUB_TOKEN": AUTH["Authorization"].split()[1]},
                      "command", robot, "servo", "9", "60", "--hub", hub)
        assert own.returncode == 0, own.stderr
        assert _get(f"{hub}/api/v1/devices/{robot}/outputs")["9"] == 60.0
        wrong = _labhub(env, "command", robot, "servo", "9", "30", "--hub", hub,
                        "--token", "lhp_not-a-token")
        assert wrong.returncode == 1
        assert "signed-in person or a token" in wrong.stderr
        assert _get(f"{hub}/api/v1/devices/{robot}/outputs")["9"] == 60.0

        assert _labhub(env, "users", "disable", "labhub-cli").returncode == 0
        off = _labhub(env, "ports", "show", "--hub", hub)
        assert off.returncode == 1
        assert "the account labhub-cli is disabled" in off.stderr
        assert "Traceback" not in moved.stderr + shown.stderr + off.stderr
    finally:
        engine.dispose()
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
