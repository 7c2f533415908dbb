"""Installing a hub as docs/install.md says: the systemd unit passes ``systemd-analyze
verify`` (a wrong key fails it) with a hardened exposure score, the udev rule for Arduino
boards is well formed, and the wheel built from a clean copy of the tree installs into a
clean virtual environment where ``labhub --version`` and ``labhub demo`` run: the API
answers, pages render and the web assets load, which proves that the migrations, the
templates, the catalogs and the vendored browser files are in the wheel."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "systemd" / "labhub.service"
RULES = ROOT / "deploy" / "udev" / "99-labhub-arduino.rules"
VENDOR = ROOT / "labhub" / "web" / "static" / "vendor"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
IN_CI = os.environ.get("CI") == "true"
MAX_EXPOSURE = 2.5  # systemd-analyze security: 0 is locked down, 10 is nothing restricted
DEMO_S = 10.0  # the demo runs this long, at least


# -- the systemd unit ------------------------------------------------------------------

def _verify(unit: Path) -> tuple[int, str]:
    """``systemd-analyze verify`` of ``unit``: its exit code and what it said of the unit."""
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, done.stdout + done.stderr


def _runnable_copy(tmp_path: Path, text: str) -> Path:
    """The unit with ExecStart pointing at this environment's labhub (the unit's
    /opt/labhub/venv is not on a test machine), so verify judges everything else."""
    labhub = Path(sys.executable).parent / "labhub"
    assert labhub.exists()
    runnable, count = re.subn(r"^ExecStart=/opt/labhub/venv/bin/labhub ",
                              f"ExecStart={labhub} ", text, flags=re.MULTILINE)
    assert count == 1, "ExecStart must run /opt/labhub/venv/bin/labhub serve"
    path = tmp_path / "labhub.service"
    path.write_text(runnable)
    return path


@pytest.fixture
def analyze() -> None:
    if SYSTEMD_ANALYZE is None:
        if IN_CI:
            pytest.fail("systemd-analyze is missing (Debian: apt-get install systemd)")
        pytest.skip("systemd-analyze is missing (Debian: apt-get install systemd)")


@pytest.mark.usefixtures("analyze")
def test_the_unit_passes_systemd_analyze_verify_and_a_wrong_key_fails_it(
        tmp_path: Path) -> None:
    text = UNIT.read_text()
    for line in ("User=labhub", "SupplementaryGroups=dialout", "Restart=on-failure",
                 "ProtectSystem=strict", "ProtectHome=true", "PrivateTmp=true",
                 "NoNewPrivileges=true", "ReadWritePaths=/var/lib/labhub",
                 "Environment=LABHUB_CONFIG=/etc/labhub/labhub.toml",
                 "ExecStart=/opt/labhub/venv/bin/labhub serve"):
        assert re.search(rf"^{re.escape(line)}$", text, re.MULTILINE), line
    code, said = _verify(_runnable_copy(tmp_path, text))
    complaints = [x for x in said.splitlines() if "labhub.service" in x]
    assert code == 0 and not complaints, said
    # verify only warns on a key it does not know or a value it cannot parse (exit 0):
    # the test reads what it says, so a typo in the shipped unit fails here.
    for wrong in ("ProtectSystem=strict\nProtectSytem=strict",
                  "PrivateTmp=true\nPrivateTmp=maybe"):
        bad = _runnable_copy(tmp_path, text.replace(wrong.split("\n")[0], wrong, 1))
        code, said = _verify(bad)
        assert code != 0 or "labhub.service" in said, (wrong, said)


@pytest.mark.usefixtures("analyze")
def test_the_unit_is_hardened(tmp_path: Path) -> None:
    unit = _runnable_copy(tmp_path, UNIT.read_text())
    done = subprocess.run([SYSTEMD_ANALYZE or "", "security", "--offline=true", str(unit)],
                          capture_output=True, text=True, timeout=60, check=False)
    found = re.search(r"Overall exposure level for labhub\.service: ([0-9.]+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, done.stdout


# -- the udev rule -----------------------------------------------------------------------

# What a udev rule line may hold (udev(7)): match keys (==, !=) and assignment keys.
_RULE_TOKEN = re.compile(
    r'\s*(?P<key>[A-Z_]+)(\{(?P<attr>[^}]+)\})?\s*(?P<op>==|!=|\+=|-=|:=|=)\s*'
    r'"(?P<value>[^"]*)"\s*(,|$)')
_MATCH_KEYS = {"ACTION", "SUBSYSTEM", "KERNEL", "ATTRS", "ENV", "DRIVERS", "SUBSYSTEMS"}
_ASSIGN_KEYS = {"GROUP", "MODE", "SYMLINK", "ENV", "GOTO", "LABEL", "OWNER", "TAG"}
USB_IDS = ["2341", "2a03", "1a86:7523", "10c4:ea60", "0403:6001"]


def _rule_lines() -> Iterator[list[tuple[str, str | None, str, str]]]:
    for line in RULES.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        tokens, at = [], 0
        while at < len(line):
            found = _RULE_TOKEN.match(line, at)
            assert found, f"not a udev rule at column {at}: {line}"
            tokens.append((found["key"], found["attr"], found["op"], found["value"]))
            at = found.end()
        yield tokens


def test_the_udev_rule_is_well_formed_and_covers_the_boards() -> None:
    if shutil.which("udevadm") and "verify" in subprocess.run(
            ["udevadm", "--help"], capture_output=True, text=True, check=False).stdout:
        done = subprocess.run(["udevadm", "verify", str(RULES)], capture_output=True,
                              text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    gotos, labels, ids = set(), set(), []
    assigned: dict[str, str] = {}
    for tokens in _rule_lines():
        for key, _attr, op, value in tokens:
            if op in ("==", "!="):
                assert key in _MATCH_KEYS, key
            else:
                assert key in _ASSIGN_KEYS, key
                assigned.setdefault(key, value)
            if key == "GOTO":
                gotos.add(value)
            if key == "LABEL":
                labels.add(value)
        vid = next((v for k, a, _, v in tokens if a == "idVendor"), None)
        pid = next((v for k, a, _, v in tokens if a == "idProduct"), None)
        if vid is not None:
            ids.append(vid if pid is None else f"{vid}:{pid}")
    assert gotos == labels == {"labhub_arduino_end"}
    assert set(USB_IDS) <= set(ids), ids
    assert assigned["GROUP"] == "dialout" and assigned["MODE"] == "0660"
    assert assigned["SYMLINK"] == "arduino-%k"


# -- the wheel, in a clean virtual environment -------------------------------------------

def _clean_copy(dst: Path) -> None:
    """The files git knows (committed or not yet), and the vendored browser files that
    ``make`` builds (not in git): what a release build starts from."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    shutil.copytree(VENDOR, dst / VENDOR.relative_to(ROOT), dirs_exist_ok=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read(), answer.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("content-type", "")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the clean virtual environment it is installed in)."""
    vendored = sorted(p.name for p in VENDOR.glob("*") if not p.name.startswith("."))
    if not vendored:
        pytest.fail(f"{VENDOR} is empty: run make (it builds the vendored browser files)")
    work = tmp_path_factory.mktemp("wheel")
    tree, dist, venv = work / "tree", work / "dist", work / "venv"
    _clean_copy(tree)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--quiet", "-w", str(dist), str(tree)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("labhub-*.whl"))
    # A venv without pip of its own: this environment's pip installs into it (faster than
    # bootstrapping one); the dependencies come from the package index or pip's cache.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    subprocess.run([*pip, "--python", str(venv / "bin" / "python"), "install", "--quiet",
                    str(wheel)], check=True, capture_output=True, timeout=600)
    return wheel, venv


def test_the_wheel_holds_every_file_the_hub_reads(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = []
    for package in ("labhub", "sensors", "inventory", "firmware_bridge", "labtext"):
        for path in (ROOT / package).rglob("*"):
            relative = path.relative_to(ROOT)
            if (not path.is_file() or "__pycache__" in relative.parts
                    or path.suffix == ".pyc" or path.name.startswith(".")
                    or relative.parts[:3] == ("labhub", "web", "frontend")
                    or path.name == "babel.cfg"):
                continue
            wanted.append(relative.as_posix())
    missing = sorted(set(wanted) - names)
    assert not missing, f"not in the wheel: {missing}"
    assert any(n.startswith("labhub/web/static/vendor/htmx") for n in names)
    assert any(n.startswith("labhub/migrations/versions/") for n in names)


@pytest.mark.timeout(120)
def test_the_installed_wheel_runs_the_version_and_the_demo(
        installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, venv = installed
    labhub = venv / "bin" / "labhub"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABHUB_")}
    env.update(LABHUB_CONFIG="/dev/null", LABHUB_DATA_DIR=str(tmp_path / "data"),
               HOME=str(tmp_path), PYTHONDONTWRITEBYTECODE="1")
    # Run outside the source tree, so that nothing of it can be imported instead.
    version = subprocess.run([str(labhub), "--version"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60, check=True)
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*\n", version.stdout), version.stdout
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import labhub; print(labhub.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60, check=True)
    assert where.stdout.startswith(str(venv)), where.stdout

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    demo = subprocess.Popen([str(labhub), "demo", "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = started + 60
        while True:
            assert demo.poll() is None, demo.stdout.read().decode() if demo.stdout else ""
            try:
                status, body, _ = _get(f"{base}/api/v1/health")
            except OSError:
                status = 0
            if status == 200:
                break
            assert time.monotonic() < deadline, "the demo's API did not answer in 60 s"
            time.sleep(0.2)
        assert b'"status":"ok"' in body.replace(b" ", b"")
        for page in ("/signin", "/docs"):
            status, body, kind = _get(base + page)
            assert status == 200 and kind.startswith("text/html"), (page, status, body[:300])
        status, body, _ = _get(f"{base}/signin")
        assert b"/static/vendor/htmx" in body or b"/static/app.css" in body
        for asset in ("/static/app.css", "/static/app.js"):
            assert _get(base + asset)[0] == 200, asset
        for name in (p.name for p in VENDOR.glob("*") if not p.name.startswith(".")):
            status, body, _ = _get(f"{base}/static/vendor/{name}")
            assert status == 200 and body, name
        # The demo runs its time (the kits' readings are counted after it stopped).
        time.sleep(max(0.0, started + DEMO_S - time.monotonic()))
        assert demo.poll() is None, "the demo stopped by itself"
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            out, _ = demo.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            out, _ = demo.communicate()
    text = out.decode(errors="replace")
    # uvicorn stops cleanly, then ends by the signal it was sent (systemd counts a SIGTERM
    # exit as a clean stop).
    assert demo.returncode in (0, -signal.SIGTERM), text
    assert "Application shutdown complete" in text and "Traceback" not in text, text
    # The virtual kits' readings were stored: the migrations and the pipeline work.
    with sqlite3.connect(tmp_path / "data" / "demo" / "labhub-demo.db") as conn:
        (stored,) = conn.execute("SELECT count(*) FROM readings").fetchone()
    assert stored > 0, text


# -- what a served hub loads -------------------------------------------------------------

# Loaded only when a label sheet or a QR card is printed, or by a central (psycopg): a
# served hub on SQLite is about 30 MB and a second smaller without them (docs/performance.md).
NOT_AT_START = ("fpdf", "fontTools", "PIL", "fontpkg", "psycopg", "schemathesis",
                "playwright", "hypothesis")


def test_the_served_app_loads_no_heavy_module_and_hashes_nothing(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from labhub.app import create_app\n"
        "from labhub.access import passwords\n"
        "from labhub.settings import Settings\n"
        f"create_app(Settings(data_dir=Path({str(tmp_path)!r}),"
        f" database_url='sqlite:///{tmp_path}/x.db'))\n"
        f"print(sorted(m for m in {NOT_AT_START!r} if m in sys.modules))\n"
        "print(passwords._DUMMY_HASH is passwords._SHIPPED_DUMMY_HASH)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, check=True, cwd=tmp_path,
                          env={**os.environ, "LABHUB_CONFIG": "/dev/null"})
    # The shipped dummy hash matches ARGON2_PARAMETERS (else every start hashes one).
    assert done.stdout.split("\n")[:2] == ["[]", "True"], done.stdout + done.stderr
