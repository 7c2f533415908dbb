"""Real firmware, read by the hub: our climate sketch (``firmware/climate``) runs on a
simulated Arduino Uno (simavr, driven by ``firmware/harness/uno_pty.c``) whose serial port
is a pseudo-terminal, and the hub reads it with the same :class:`LineReader`, decoders and
ingest pipeline as a board on ``/dev/ttyACM0``.

The toolchain (avr-gcc, the Arduino core, simavr) comes from ``scripts/install-avr-toolchain``;
the core, the sketch and the harness are built once per session into a temporary
directory. The simulated board runs in real time and resets when its port is opened, as
an Uno does; its analog inputs are set in millivolts and changed while it runs.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import shutil
import signal
import statistics
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import serial
from sqlalchemy import Engine
from sqlalchemy import select as sql_select
from waiting import wait_for

from firmware_bridge.serial_lines import LineReader
from sensors import queries
from sensors.pipeline import IngestPipeline
from sensors.storage import dead_letters

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware"
INSTALL_SCRIPT = REPO / "scripts" / "install-avr-toolchain"
TOOLS = ("avr-gcc", "avr-g++", "avr-ar", "avr-objcopy", "make", "cc")
TOOL_FILES = (
    Path("/usr/share/arduino/hardware/arduino/avr/cores/arduino/Arduino.h"),
    Path("/usr/include/simavr/parts/uart_pty.h"),
)
BUILD_TIMEOUT_S = 300  # the core takes a few seconds; a loaded CI machine, longer
START_TIMEOUT_S = 10  # from exec to "pty: ..." is ~10 ms here
STOP_TIMEOUT_S = 5  # the harness stops within one 1 ms slice of SIGTERM

DEVICE = "uno-simavr"
BANNER = b"# LabHub climate sketch v1"  # the sketch's first line after every reset
SUPPLY_MV = 5000
ADC_MV_PER_COUNT = SUPPLY_MV / 1023  # simavr scales by 1023/Vref, as the sketch converts
INTERVAL_S = 0.1  # the sketch prints every 100 ms of millis()
CHANNELS = {"temp", "light", "soil"}



# -- what the sketch must print for given voltages ----------------------------------------


def temp_for(mv: int) -> float:
    """TMP36: 500 mV at 0 degC, 10 mV per degC."""
    return (mv - 500) / 10


def light_for(mv: int) -> float:
    """The LDR's divider as raw ADC counts."""
    return mv / ADC_MV_PER_COUNT


def soil_for(mv: int) -> float:
    """The soil probe as 0..100 % of the supply."""
    return mv * 100 / SUPPLY_MV


# The ADC truncates to whole counts; the sketch's map() truncates to whole percent.
TEMP_TOLERANCE = ADC_MV_PER_COUNT / 10  # one count: ~0.49 degC
LIGHT_TOLERANCE = 1.0
SOIL_TOLERANCE = 1.0 + 100 / 1023


# -- the toolchain and the build ------------------------------------------------------------


def _missing_tools() -> list[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    return missing + [str(path) for path in TOOL_FILES if not path.exists()]


@dataclass(frozen=True)
class FirmwareBuild:
    """The harness program and the sketch it runs."""

    harness: Path
    elf: Path


@pytest.fixture(scope="session")
def firmware_build(tmp_path_factory: pytest.TempPathFactory) -> FirmwareBuild:
    """The climate sketch and the harness, built once per session (installing the tools)."""
    if _missing_tools():
        done = subprocess.run([str(INSTALL_SCRIPT)], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S, check=False)
        still = _missing_tools()
        if done.returncode != 0 or still:
            pytest.skip(f"no AVR toolchain/simavr (missing {', '.join(still) or 'packages'}); "
                        f"{INSTALL_SCRIPT.name} said: {(done.stdout + done.stderr).strip()}")
    build = tmp_path_factory.mktemp("firmware")
    made = subprocess.run(
        ["make", "-C", str(FIRMWARE), f"BUILD={build}", f"-j{os.cpu_count() or 2}", "all"],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
    )
    if made.returncode != 0:
        pytest.fail(f"building the firmware failed:\n{made.stdout}\n{made.stderr}")
    return FirmwareBuild(build / "uno_pty", build / "climate.elf")


# -- the simulated board --------------------------------------------------------------------


class SimulatedUno:
    """One run of the harness: a board plugged in until it is stopped or killed."""

    def __init__(self, build: FirmwareBuild, log: Path, *, adc: dict[int, int],
                 link: Path | None = None, reset_on_open: bool = True) -> None:
        args = [str(build.harness)]
        for pin, mv in adc.items():
            args += ["--adc", f"{pin}={mv}"]
        if link is not None:
            args += ["--link", str(link)]
        if reset_on_open:
            args.append("--reset-on-open")
        args.append(str(build.elf))
        self.log = log
        self.killed = False
        with log.open("wb") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err)
        try:
            self.pty = self._read_pty()
        except BaseException:
            self.kill()
            raise

    def _read_pty(self) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT_S)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("pty: "):
            raise AssertionError(f"the harness did not say its pty (got {line!r}):\n"
                                 f"{self.log.read_text(errors='replace')}")
        return line.split(" ", 1)[1].strip()

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def adc(self, pin: int, mv: int) -> None:
        """Set analog input ``A<pin>`` to ``mv`` millivolts while the board runs."""
        self.send(f"adc {pin} {mv}")

    def reset(self) -> None:
        """Press the board's reset button."""
        self.send("reset")

    def kill(self) -> None:
        """Pull the cable: the board gets no say (SIGKILL)."""
        self.killed = True
        if self.proc.poll() is None:
            self.proc.kill()
        self._reap()

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after a timeout; the exit status (0 when it stopped cleanly)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self._reap()

    def _reap(self) -> int:
        code = self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                # BrokenPipeError: it died with bytes we had sent still unread.
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()
        return code


StartUno = Callable[..., SimulatedUno]


@pytest.fixture
def start_uno(firmware_build: FirmwareBuild, tmp_path: Path) -> Iterator[StartUno]:
    """Plugs in simulated boards; each must stop cleanly on SIGTERM at the end of the test."""
    boards: list[SimulatedUno] = []

    def start(*, adc: dict[int, int], **kw: object) -> SimulatedUno:
        log = tmp_path / f"uno_pty-{len(boards)}.log"
        board = SimulatedUno(firmware_build, log, adc=adc, **kw)  # type: ignore[arg-type]
        boards.append(board)
        return board

    yield start
    unclean = []
    for board in boards:
        code = board.stop()
        if not board.killed and code != 0:
            unclean.append(f"exit status {code}:\n{board.log.read_text(errors='replace')}")
    assert not unclean, f"the harness did not stop cleanly: {unclean}"


ROOM = {0: 750, 1: 2500, 2: 1850}  # 25.0 degC, light at half scale, damp soil


@pytest.fixture
def uno(start_uno: StartUno) -> SimulatedUno:
    """A board in a 25 degC room, half light, damp soil."""
    return start_uno(adc=ROOM)


def _reader(pipeline: IngestPipeline, url: str) -> LineReader:
    return LineReader(url=url, device_id=DEVICE, pipeline=pipeline, baudrate=115200)


def _stored(engine: Engine) -> dict[str, list[tuple[int, float]]]:
    with engine.connect() as conn:
        series = queries.list_series(conn=conn, device=DEVICE)
        return {s.channel: [(ts, value) for ts, value, _ in
                            queries.read_range(conn=conn, series_id=s.id)] for s in series}


def _more_lines(reader: LineReader, lines: int, what: str) -> None:
    """Wait until ``lines`` more climate lines (three readings each) have been read."""
    target = reader.status.stats.readings + 3 * lines
    wait_for(lambda: reader.status.stats.readings >= target, what=what)


# -- the tests ------------------------------------------------------------------------------


def test_the_hub_reads_the_real_sketch_as_it_reads_a_board(
    uno: SimulatedUno, pipeline: IngestPipeline, engine: Engine
) -> None:
    with _reader(pipeline, uno.pty) as reader:
        _more_lines(reader, 20, "20 lines from the simulated Uno")
        pipeline.flush(10)
        before = _stored(engine)
        assert set(before) == CHANNELS
        # Every line carries what the voltages imply, within the ADC's resolution.
        for _, value in before["temp"]:
            assert value == pytest.approx(temp_for(ROOM[0]), abs=TEMP_TOLERANCE)
        for _, value in before["light"]:
            assert value == pytest.approx(light_for(ROOM[1]), abs=LIGHT_TOLERANCE)
        for _, value in before["soil"]:
            assert value == pytest.approx(soil_for(ROOM[2]), abs=SOIL_TOLERANCE)

        uno.adc(0, 1000)  # someone holds the TMP36 between two fingers: 50 degC
        _more_lines(reader, 3, "lines after A0 changed")
    pipeline.flush(10)  # after the reader stopped: nothing is submitted behind the flush
    # At most the boot banner, when the reset on open came late (see the next test).
    assert reader.status.stats.rejects <= 1
    temps = [value for _, value in _stored(engine)["temp"]]
    assert temps[-1] == pytest.approx(temp_for(1000), abs=TEMP_TOLERANCE)
    # The room's temperature until the change, the hand's after it: nothing in between.
    changed = next(i for i, value in enumerate(temps) if value > 40)
    assert all(abs(v - temp_for(ROOM[0])) <= TEMP_TOLERANCE for v in temps[:changed])
    assert all(abs(v - temp_for(1000)) <= TEMP_TOLERANCE for v in temps[changed:])
    with engine.connect() as conn:
        series = {s.channel: s for s in queries.list_series(conn=conn, device=DEVICE)}
    assert series["temp"].quantity == "temperature" and series["temp"].unit == "degC"
    # The sketch prints soil as % but the line says no unit: a plain number until mapped.
    assert (series["soil"].quantity, series["soil"].unit) == (None, None)
    # The simulation runs in real time: lines arrive every 100 ms of the wall clock, not
    # 3-6x faster as an unthrottled simavr would print them. Arrival times are the hub's.
    times = [ts for ts, _ in before["temp"]]
    gaps = [(b - a) / 1e6 for a, b in itertools.pairwise(times)]
    assert statistics.median(gaps) >= 0.8 * INTERVAL_S


def test_the_format_is_plotter_and_the_boot_banner_costs_at_most_one_line(
    uno: SimulatedUno, pipeline: IngestPipeline, engine: Engine
) -> None:
    with _reader(pipeline, uno.pty) as reader:
        _more_lines(reader, 10, "10 lines")
        assert reader.status.fmt == "plotter"
        # Opening the port resets the board (as an Uno's DTR line does), so the banner is
        # the first line the reader sees, and the reader drops the first line after an
        # open. It can cost one dead letter only if the reset came late, after a line was
        # read: then the banner arrives glued to the line the reset cut. Once per boot.
        assert reader.status.stats.rejects <= 1
        opened_with = reader.status.stats.rejects

        uno.reset()  # the reset button, while the hub reads: the banner is a whole line now
        wait_for(lambda: reader.status.stats.rejects == opened_with + 1, what="the banner")
        _more_lines(reader, 5, "lines after the reset")
        assert reader.status.stats.rejects == opened_with + 1
        assert "baud rate" not in reader.status.message
    pipeline.flush(10)
    with engine.connect() as conn:
        rows = conn.execute(sql_select(dead_letters.c.payload, dead_letters.c.device)
                            .order_by(dead_letters.c.id)).all()
    assert len(rows) == opened_with + 1
    payload, device = rows[-1]
    assert device == DEVICE
    # The line the reset cut (if any) and the banner: one line, one dead letter.
    assert bytes(payload).endswith(BANNER)


def test_a_replugged_board_is_read_again_and_nothing_cut_is_stored(
    start_uno: StartUno, pipeline: IngestPipeline, engine: Engine, tmp_path: Path
) -> None:
    port = tmp_path / "ttyACM0"  # where udev would put the board each time it is plugged in
    first = start_uno(adc=ROOM, link=port)
    with _reader(pipeline, str(port)) as reader:
        _more_lines(reader, 5, "lines from the first board")
        first.kill()  # injected: the cable is pulled mid-stream, probably mid-line,
        port.unlink()  # and udev removes the board's device node
        wait_for(lambda: not reader.status.online, what="the reader to notice")
        start_uno(adc={**ROOM, 0: 1000}, link=port)  # plugged in again, in a warmer room
        wait_for(lambda: reader.status.stats.connects == 2 and reader.status.online,
                 what="the reader to reconnect")
        _more_lines(reader, 5, "lines from the second board")
    pipeline.flush(10)
    stats = reader.status.stats
    stored = _stored(engine)
    temps = [value for _, value in stored["temp"]]
    # Kept: whole lines of both boards, in order, all of them; nothing cut by the pull.
    assert sum(len(rows) for rows in stored.values()) == stats.readings
    assert len(stored["light"]) == len(stored["soil"]) == len(temps) >= 10, stored
    changed = next(i for i, value in enumerate(temps) if value > 40)
    assert changed >= 5
    assert all(abs(v - temp_for(ROOM[0])) <= TEMP_TOLERANCE for v in temps[:changed])
    assert all(abs(v - temp_for(1000)) <= TEMP_TOLERANCE for v in temps[changed:])
    assert stats.rejects <= 1  # the second board's banner, as in the test above


def test_the_harness_stops_cleanly_on_stdin_eof_and_removes_its_link(
    start_uno: StartUno, tmp_path: Path
) -> None:
    port = tmp_path / "ttyACM0"
    board = start_uno(adc=ROOM, link=port)
    assert os.readlink(port) == board.pty
    assert board.proc.stdin is not None
    board.proc.stdin.close()
    assert board.proc.wait(STOP_TIMEOUT_S) == 0
    assert not port.exists() and not port.is_symlink()
    # uart_pty's shared /tmp/simavr-uart0 link is not left pointing at our pty either.
    assert not (os.path.islink("/tmp/simavr-uart0")
                and os.readlink("/tmp/simavr-uart0") == board.pty)


def test_the_harness_says_when_the_port_is_read_at_another_baud_rate(
    start_uno: StartUno,
) -> None:
    # A pty carries bytes at any speed, so the hub would read this sketch fine at 9600
    # baud where a real Uno would give garbage: the harness compares the two and says so.
    board = start_uno(adc=ROOM, reset_on_open=False)
    with serial.Serial(board.pty, 9600, timeout=0):
        wait_for(lambda: b"MISMATCH" in board.log.read_bytes(), what="the mismatch note")
    with serial.Serial(board.pty, 115200, timeout=0):
        wait_for(lambda: b"read at 115200 baud, the sketch sends at 117647 baud\n"
                 in board.log.read_bytes(), what="the match note")
