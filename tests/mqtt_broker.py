"""A real Mosquitto broker for tests: its own process, port, config and persistence directory.

:class:`MosquittoBroker` writes a config into a temporary directory, starts
``/usr/sbin/mosquitto`` on a free loopback port and waits until it accepts connections.
It can be stopped (SIGTERM: the broker saves its persistence file), killed (SIGKILL: it
keeps only what it had saved) and started again on the same port with the same
persistence directory, so persistent sessions and queued messages outlive a restart the
way they do on a real hub.

The config avoids two traps noted in ``library-notes.md``: Mosquitto's default
``max_queued_messages 1000`` silently drops messages for a subscriber that falls behind
(so the queue and in-flight limits are the ones LabHub ships in
``deploy/mosquitto/labhub.conf``, read from that file), and a root-started broker drops to
user ``mosquitto``, which cannot write the test's directory (so it keeps the current user).
The log goes to a file, line by line, so it survives a SIGKILL (stdout to a file is block-buffered).

Persistence is saved after every change (``autosave_on_changes``), but Mosquitto 2.0
counts only subscriptions, retained messages and messages *queued* for an absent client
as changes: a message sent straight to a connected client's in-flight window is not, so a
SIGKILL forgets it unless :meth:`MosquittoBroker.save` ran first. It also acknowledges a
publisher's message before saving it. A hub cannot make up for either; see test_mqtt.py.

Without the ``mosquitto`` binary (``LABHUB_TEST_MOSQUITTO``, else ``mosquitto`` on ``PATH``
or in ``/usr/sbin``) every test that needs a broker is skipped and says why, as
``scripts/test-services`` promises, except under ``CI=true``, where it fails: CI must run
the MQTT suite (the same rule as the PostgreSQL fixture in ``conftest.py``).

The ``broker`` fixture gives each test its own broker; a test module imports it with
``from mqtt_broker import broker_fixture`` (pytest puts ``tests/`` on ``sys.path``; the
function has another name so that test parameters called ``broker`` do not shadow it).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin")  # Debian installs the broker here, often off PATH


def find_mosquitto() -> str | None:
    """The broker binary: ``LABHUB_TEST_MOSQUITTO`` if set, else ``mosquitto`` on ``PATH``
    or in the sbin directories; ``None`` when there is none."""
    chosen = os.environ.get("LABHUB_TEST_MOSQUITTO")
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN_DIRS])
    return shutil.which("mosquitto", path=search)


def require_mosquitto() -> str:
    """The broker binary, or skip the test (fail it under ``CI=true``) saying why."""
    found = find_mosquitto()
    if found is not None:
        return found
    from conftest import IN_CI  # the suite's one reading of CI=true

    wanted = os.environ.get("LABHUB_TEST_MOSQUITTO") or "mosquitto on PATH or in /usr/sbin"
    reason = (f"no Mosquitto broker ({wanted} not found): install mosquitto "
              "(scripts/test-services does) to run the MQTT tests")
    if IN_CI:
        pytest.fail(f"{reason}; under CI=true the MQTT suite may not be skipped")
    pytest.skip(reason)


MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
START_TIMEOUT_S = 10.0  # Mosquitto listens within ~50 ms; a loaded CI machine gets room
STOP_TIMEOUT_S = 10.0  # SIGTERM: it saves its persistence file first, then exits
SHIPPED_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto" / "labhub.conf"


def shipped_limits() -> list[str]:
    """The ``max_*`` lines of the broker config LabHub ships: queue and in-flight limits."""
    return [line.strip() for line in SHIPPED_CONFIG.read_text().splitlines()
            if line.startswith("max_")]


def _proc_state(pid: int) -> str:
    """The one-letter state of a process from ``/proc`` (``T``: stopped by a signal)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MosquittoBroker:
    """One Mosquitto process on ``host:port``; see the module docstring.

    ``users`` (name -> password) turns anonymous access off and writes a password file.
    ``extra`` lines are appended to the config. ``autosave_interval`` is how many
    changes trigger a save; 1 (every change) suits the small queues of the tests, while a
    benchmark queueing 200,000 messages needs a larger one (each save rewrites the file).
    """

    host = "127.0.0.1"

    def __init__(
        self,
        directory: Path,
        *,
        users: dict[str, str] | None = None,
        extra: tuple[str, ...] = (),
        autosave_interval: int = 1,
    ) -> None:
        self.mosquitto = require_mosquitto()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.data_dir = directory / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.config_path = directory / "mosquitto.conf"
        self.log_path = directory / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        lines = [
            f"listener {self.port} {self.host}",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            # Save after every change, not every 30 min, so a SIGKILL keeps queued messages.
            "autosave_on_changes true",
            f"autosave_interval {autosave_interval}",
            *shipped_limits(),  # the default max_queued_messages 1000 drops silently
            f"log_dest file {directory / 'mosquitto.log'}",
            "log_type all",
            "connection_messages true",
            # Started as root, Mosquitto would switch to user "mosquitto", which cannot
            # write this directory; as any other user this line has no effect.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
        ]
        if users:
            password_file = directory / "passwords"
            for number, (name, password) in enumerate(users.items()):
                flags = ["-b", "-c"] if number == 0 else ["-b"]
                subprocess.run(
                    [MOSQUITTO_PASSWD, *flags, str(password_file), name, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        lines.extend(extra)
        self.config_path.write_text("\n".join(lines) + "\n")

    # -- life cycle ---------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (a benchmark reads its CPU time)."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> MosquittoBroker:
        """Start the broker (again: same port, same persistence) and wait until it listens."""
        if self.running:
            return self
        output = self.log_path.with_suffix(".out").open("ab")  # what it says before logging
        try:
            self._process = subprocess.Popen(
                [self.mosquitto, "-c", str(self.config_path)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            output.close()
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self._process.returncode}:\n{self.log()[-2000:]}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(
                        f"mosquitto did not listen on port {self.port} within "
                        f"{START_TIMEOUT_S} s:\n{self.log()[-2000:]}"
                    ) from None
                time.sleep(0.01)

    def stop(self) -> None:
        """SIGTERM and wait: the broker saves its persistence file and exits."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL and wait: the broker keeps only what it had already saved."""
        self._end(signal.SIGKILL)

    def save(self) -> None:
        """Make the broker write its persistence file now (SIGUSR1) and wait until it has.

        Needed before a :meth:`kill` that should find messages in flight to a connected
        client on restart: ``autosave_on_changes`` does not count those as changes.
        """
        process = self._process
        assert process is not None and process.poll() is None, "the broker is not running"
        before = self._db_version()
        process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self._db_version() == before:
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not save on SIGUSR1")
            time.sleep(0.005)

    def _db_version(self) -> tuple[int, int] | None:
        try:
            stat = (self.data_dir / "mosquitto.db").stat()  # replaced by a rename on save
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def freeze(self) -> None:
        """SIGSTOP, and wait until the process is stopped: connections stay open, but
        nothing is read, acknowledged or saved until :meth:`kill` (or :meth:`thaw`)."""
        process = self._process
        assert process is not None and process.poll() is None, "the broker is not running"
        process.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _proc_state(process.pid) not in ("T", "t"):
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not stop on SIGSTOP")
            time.sleep(0.001)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def reload(self) -> None:
        """SIGHUP: the broker reads its config, password and ACL files again."""
        assert self._process is not None and self._process.poll() is None, "not running"
        self._process.send_signal(signal.SIGHUP)

    def _end(self, sig: signal.Signals) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def log(self) -> str:
        """Everything the broker logged so far (for failure messages)."""
        text = ""
        for path in (self.log_path.with_suffix(".out"), self.log_path):
            with contextlib.suppress(FileNotFoundError):
                text += path.read_text(errors="replace")
        return text

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


@pytest.fixture(name="broker")
def broker_fixture(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A fresh Mosquitto on a free loopback port, anonymous access, persistent sessions."""
    with MosquittoBroker(tmp_path / "mosquitto") as running:
        yield running


# -- the shipped config, with LabHub's accounts -------------------------------------------

SHIPPED_PATHS = ("persistence_location", "password_file", "acl_file")


def shipped_config(broker: MosquittoBroker, passwd_file: Path, acl_file: Path) -> str:
    """``deploy/mosquitto/labhub.conf`` as shipped, every line of it, with only what must
    differ in a test rewritten: the listener (this broker's loopback port), the paths
    (the test's directory), and the log and user lines of :class:`MosquittoBroker`."""
    paths = {"persistence_location": f"{broker.data_dir}/",
             "password_file": str(passwd_file), "acl_file": str(acl_file)}
    lines = []
    seen = set()
    for line in SHIPPED_CONFIG.read_text().splitlines():
        key = line.split(" ", 1)[0]
        if key == "listener":
            line = f"listener {broker.port} {broker.host}"
        elif key in paths:
            line = f"{key} {paths[key]}"
        elif key == "autosave_interval":
            line = "autosave_interval 1"  # every change, as the other test brokers
        seen.add(key)
        lines.append(line)
    missing = {"listener", "allow_anonymous", *SHIPPED_PATHS} - seen
    assert not missing, f"the shipped config lacks {sorted(missing)}"
    lines += [f"log_dest file {broker.log_path}", "log_type all",
              "connection_messages true", f"user {pwd.getpwuid(os.getuid()).pw_name}"]
    return "\n".join(lines) + "\n"


class LabHubBroker:
    """A broker running the shipped config, its accounts written by ``labhub mqtt users``.

    :meth:`add` runs the real command (in-process, through Typer's runner) and returns
    the password it printed; :attr:`passwords` keeps them by user name.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.passwd_file = directory / "etc" / "passwd"
        self.acl_file = directory / "etc" / "acl"
        self.passwords: dict[str, str] = {}
        self.broker = MosquittoBroker(directory / "mosquitto")
        self.broker.config_path.write_text(
            shipped_config(self.broker, self.passwd_file, self.acl_file))

    def users(self, *args: str, stdin: str | None = None) -> str:
        """``labhub mqtt users <args>`` on this broker's files; its output (exit 0 asserted)."""
        from typer.testing import CliRunner

        from labhub.cli import app

        result = CliRunner().invoke(app, ["mqtt", "users", *args, "--passwd-file",
                                          str(self.passwd_file), "--acl-file",
                                          str(self.acl_file)], input=stdin,
                                    env={"LABHUB_CONFIG": "/dev/null"})
        assert result.exit_code == 0, result.output
        return result.output

    def add(self, *args: str) -> str:
        """``users add ...`` or ``users add-hub ...``: the generated password."""
        output = self.users(*args)
        passwords = [ln.split(": ", 1)[1] for ln in output.splitlines()
                     if ln.startswith("password: ")]
        assert len(passwords) == 1, output
        named = len(args) > 1 and not args[1].startswith("-")
        self.passwords[args[1] if named else "labhub-hub"] = passwords[0]
        return passwords[0]


@pytest.fixture(name="labhub_broker")
def labhub_broker_fixture(tmp_path: Path) -> Iterator[LabHubBroker]:
    """A broker with the shipped config (anonymous access off, LabHub's password and ACL
    files), not started: add the accounts with :meth:`LabHubBroker.add`, then
    ``labhub_broker.broker.start()`` (Mosquitto refuses to start without its files)."""
    made = LabHubBroker(tmp_path / "labhub-broker")
    try:
        yield made
    finally:
        made.broker.kill()
