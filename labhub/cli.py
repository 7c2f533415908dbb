"""The ``labhub`` command: serve the hub, migrate its database, import, export, rejects.

Each command reads the same settings as the server (``labhub.toml`` and ``LABHUB_*``), so
what a coordinator configures once holds for all of them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url

from labhub import (
    __version__,
    cli_access,
    cli_backup,
    cli_inventory_io,
    cli_jobs,
    cli_movements,
    cli_mqtt,
    cli_network,
    cli_records,
    cli_reminders,
    cli_schedules,
    cli_transfers,
    db,
)
from labhub import backup as backups
from labhub.cli_access import HUB_AUTH_HELP, hub_bearer
from labhub.cli_common import (
    choose_database,
    database_of,
    demo_database_url,
    echo,
    hub_engine,
    remove_demo_state,
    secho,
    settings_or_exit,
    write_demo_state,
)
from sensors.errors import SensorsError, UnknownSiteError
from sensors.importer import ImportSummary

if TYPE_CHECKING:
    from fastapi import FastAPI

    from labhub.settings import Settings
    from sensors import export

app = typer.Typer(
    name="labhub",
    help="LabHub: sensor readings, Arduino kits and lab inventory for STEAM innovation labs.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="The hub's database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
inventory_app = typer.Typer(
    help="What the labs own: sites, assets, kits, loans, stock, transfers, audits, history; "
    "CSV import and export; labels.",
    no_args_is_help=True,
)
app.add_typer(inventory_app, name="inventory")
rejects_app = typer.Typer(
    help="What the hub could not store (dead letters): list them, or replay those refused "
    "for a site the inventory lacked.",
    invoke_without_command=True,
)
app.add_typer(rejects_app, name="rejects")


_settings = settings_or_exit

# `labhub serve --workers N`: the most worker processes, and how the settings reach them.
MAX_WORKERS = 64
WORKER_SETTINGS_ENV = "LABHUB_SERVE_WORKER_SETTINGS"
# How long uvicorn's supervisor waits for a worker's answer before it restarts it: its
# default (5 s) is less than a worker takes to import LabHub on a loaded 2-core machine,
# and it would restart the workers forever.
WORKER_HEALTHCHECK_S = 60


@app.command()
def version() -> None:
    """Print LabHub's version."""
    echo(__version__)


def _print_version(asked: bool) -> None:
    if asked:
        echo(__version__)
        raise typer.Exit()


@app.callback()
def _options(
    _version: Annotated[bool, typer.Option(
        "--version", help="Print LabHub's version and exit.", is_eager=True,
        callback=_print_version)] = False,
) -> None:
    """LabHub: sensor readings, Arduino kits and lab inventory for STEAM innovation labs."""


def _server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for the hub: where it listens, HTTPS when a certificate is set
    (``tls_certfile``, ``tls_keyfile``), and which reverse proxies it believes about the
    scheme and the client (``forwarded_allow_ips``; none by default, so no one can claim a
    request came over HTTPS). A missing file or half a pair is a clear exit, not a
    traceback."""
    if (settings.tls_certfile is None) != (settings.tls_keyfile is None):
        secho("labhub: tls_certfile and tls_keyfile go together (--certfile and --keyfile): "
              "set both, or neither", fg="red", err=True)
        raise typer.Exit(2)
    for name, path in (("tls_certfile", settings.tls_certfile),
                       ("tls_keyfile", settings.tls_keyfile)):
        if path is not None and not path.is_file():
            secho(f"labhub: {name} is {str(path)!r}, but there is no such file", fg="red",
                  err=True)
            raise typer.Exit(2)
    # log_config None: uvicorn's loggers keep the hub's handlers and format (labhub.logs).
    options: dict[str, Any] = {"host": settings.host, "port": settings.port,
                               "log_level": settings.log_level, "log_config": None}
    if settings.tls_certfile is not None and settings.tls_keyfile is not None:
        options |= {"ssl_certfile": str(settings.tls_certfile),
                    "ssl_keyfile": str(settings.tls_keyfile)}
    if settings.forwarded_allow_ips:
        options |= {"proxy_headers": True,
                    "forwarded_allow_ips": list(settings.forwarded_allow_ips)}
    else:
        options["proxy_headers"] = False
    return options


def _configure_logs(settings: Settings) -> None:
    """The hub's log as the settings say (text or JSON, a rotated file): labhub.logs. A log
    file that cannot be opened is a clear exit."""
    from labhub import logs

    try:
        logs.configure(settings)
    except OSError as exc:
        secho(f"labhub: {exc.strerror}", fg="red", err=True)
        raise typer.Exit(2) from None


def _base_url(settings: Settings) -> str:
    scheme = "https" if settings.tls_certfile is not None else "http"
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{scheme}://{host}:{settings.port}"


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    certfile: Annotated[Path | None, typer.Option(
        help="PEM certificate to serve HTTPS with (setting tls_certfile)")] = None,
    keyfile: Annotated[Path | None, typer.Option(
        help="PEM private key of the certificate (setting tls_keyfile)")] = None,
    workers: Annotated[int, typer.Option(
        min=1, max=MAX_WORKERS,
        help="worker processes sharing one PostgreSQL: a central only "
             "(docs/scaling.md)")] = 1,
) -> None:
    """Run the hub: API on http://127.0.0.1:8000 (docs at /docs); HTTPS with --certfile
    and --keyfile. A central may run several worker processes (--workers N)."""
    import uvicorn

    from labhub.app import create_app

    settings = _settings()
    if host is not None:
        settings.host = host
    if port is not None:
        settings.port = port
    if certfile is not None:
        settings.tls_certfile = certfile
    if keyfile is not None:
        settings.tls_keyfile = keyfile
    if workers > 1:
        refusal = workers_refusal(settings)
        if refusal is not None:
            secho(f"labhub: --workers {workers}: {refusal}", fg="red", err=True)
            raise typer.Exit(2)
    options = _server_options(settings)
    _configure_logs(settings)
    base = _base_url(settings)
    echo(f"LabHub {__version__}: database {settings.resolved_database_url()}")
    echo(f"API on {base}/api/v1 (docs: {base}/docs)")
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    # Each worker is a process of its own (uvicorn spawns them, no fork): it reads these
    # settings, builds its app, and in it its own engine and connection pool.
    echo(f"{workers} worker processes serve the API and pages; no hardware, MQTT or sync")
    os.environ[WORKER_SETTINGS_ENV] = settings.model_dump_json()
    uvicorn.run("labhub.cli:worker_app", factory=True, workers=workers,
                timeout_worker_healthcheck=WORKER_HEALTHCHECK_S, **options)


def workers_refusal(settings: Settings) -> str | None:
    """Why ``settings`` cannot be served by several worker processes; None when it can.

    Only a central can: its API is stateless (every request reads what it needs from
    PostgreSQL, uploads' pieces included), so any worker answers any request. A hub runs
    its serial ports, MQTT bridge and sync in one process, which must not run N times,
    and its SQLite file takes one writer at a time."""
    url = settings.resolved_database_url()
    if settings.role != "central":
        database = ("SQLite takes one writer at a time, and " if url.startswith("sqlite")
                    else "")
        return (f"a hub runs as one process ({database}its serial ports, MQTT and sync "
                "must run once); several workers are for a central (role = \"central\", "
                "on PostgreSQL)")
    if not url.startswith("postgresql"):
        return ("a central's workers share one PostgreSQL database, and database_url is "
                f"is {make_url(url).get_backend_name()}, not PostgreSQL")
    return None


def worker_app() -> FastAPI:
    """The app of one worker process of ``labhub serve --workers N`` (uvicorn calls it in
    each worker): the settings ``serve`` passed on, the API and pages, and no hardware,
    MQTT or sync threads."""
    from labhub.app import create_app
    from labhub.settings import Settings

    settings = Settings.model_validate_json(os.environ[WORKER_SETTINGS_ENV])
    _configure_logs(settings)  # a worker is a process of its own: its log too
    return create_app(settings, hardware=False, jobs=True)


@app.command()
def demo(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
) -> None:
    """Run the hub with a virtual climate station and a virtual Firmata robot kit attached,
    on a demo database."""
    import uvicorn

    from firmware_bridge.actuators import OutputSetting
    from firmware_bridge.registry import ChannelSetting, DeviceSettings, FirmataSettings
    from firmware_bridge.sim.climate import VirtualClimateStation
    from firmware_bridge.sim.firmata_board import VirtualFirmataBoard
    from labhub.app import create_app
    from labhub.wiring import Kit

    settings = _settings()
    if host is not None:
        settings.host = host
    if port is not None:
        settings.port = port
    own_database = not settings.database_url
    if own_database:
        # Demo readings stay out of the lab's real database; the commands beside the demo
        # find this one through its state file while it runs (labhub.cli_common).
        settings.database_url = demo_database_url(settings)
    _configure_logs(settings)
    with VirtualClimateStation(interval_s=1.0) as station, VirtualFirmataBoard() as robot:
        # The station's LDR prints raw counts: the channel map says so (not lux).
        station_settings = DeviceSettings(protocol="lines", baudrate=settings.serial_baudrate,
                                          channels={"light": ChannelSetting(quantity="analog")})
        robot_settings = DeviceSettings(protocol="firmata", firmata=FirmataSettings(
            sampling_ms=100, analog_pins=[0, 1], reset_wait_s=0.5,
            outputs={
                13: OutputSetting(kind="digital", label="LED"),
                5: OutputSetting(kind="pwm", label="motor"),
                9: OutputSetting(kind="servo", min_angle=0, max_angle=180, safe=90,
                                 label="arm"),
            }))
        echo(f"LabHub {__version__} demo: virtual climate station on {station.url}, "
                   f"virtual Firmata robot kit on {robot.url}")
        echo(f"database {settings.resolved_database_url()}")
        echo(f"readings: http://{settings.host}:{settings.port}/api/v1/series, "
                   f"devices: /api/v1/devices (docs: /docs)")
        demo_engine = db.make_engine(settings.resolved_database_url())
        try:
            if demo_engine.dialect.name == "sqlite":
                db.upgrade(demo_engine)
            if own_database:
                _demo_sites(demo_engine)
                if settings.site is None:
                    settings.site = DEMO_LAB  # the virtual kits are this lab's
                echo(f"lab site {DEMO_LAB} (uploads and MQTT topics may name it)")
            for line in cli_access.demo_admin(demo_engine, _browser_base(settings)):
                echo(line)
        finally:
            demo_engine.dispose()
        if own_database:
            write_demo_state(settings, database_url=settings.resolved_database_url(),
                             api=f"http://{settings.host}:{settings.port}")
        try:
            kits = [Kit(station.url, station_settings, station.kit_id, station.name),
                    Kit(robot.url, robot_settings, robot.kit_id, robot.name)]
            uvicorn.run(create_app(settings, kits=kits), **_server_options(settings))
        finally:
            if own_database:
                remove_demo_state(settings)


def _browser_base(settings: Settings) -> str:
    """:func:`_base_url` as a browser on this machine opens it (listening on every
    address, ``0.0.0.0`` or ``::``: the loopback one)."""
    if settings.host in ("0.0.0.0", "::", ""):  # noqa: S104 -- compared, not bound
        settings = settings.model_copy(update={"host": "127.0.0.1"})
    return _base_url(settings)


# The demo's own small tree, so uploads naming a site, scoped roles and the inventory have
# somewhere real to point: a network, a region, the demo's Lab Point, a second Lab Point to
# ship equipment to and a mobile lab.
DEMO_LAB = "VC-LP-014"
_DEMO_TREE: list[tuple[str, str, str, str | None, str | None]] = [
    ("VC", "Red de laboratorios (demo)", "network", None, None),
    ("VC-R1", "Región 1 (demo)", "region", "VC", None),
    (DEMO_LAB, "Lab Point 014 (demo)", "site", "VC-R1", "lab_point"),
    ("VC-LP-020", "Lab Point 020 (demo)", "site", "VC-R1", "lab_point"),
    ("VC-ML-1", "Laboratorio móvil 1 (demo)", "site", "VC-R1", "mobile_lab"),
]
# The demo lab's equipment: (model code, name, category, counted).
_DEMO_MODELS: list[tuple[str, str, str, bool]] = [
    ("KIT-ROBOT", "Kit de robótica", "robotics_kit", False),
    ("UNO", "Arduino Uno R3", "microcontroller_board", False),
    ("PRN-3D", "Impresora 3D", "3d_printer", False),
    ("HC-SR04", "Sensor ultrasónico", "sensor_module", True),
    ("JMP", "Cable de puente", "consumable", True),
]
DEMO_KITS = 4  # KIT-001..KIT-004, each holding its board UNO-00n and counted parts


def _demo_sites(engine: Engine) -> None:
    """Give the demo's database its tree the first time (a demo database that has sites
    keeps them as they are)."""
    from inventory import sites as inventory_sites

    with engine.begin() as conn:
        if inventory_sites.list_sites(conn=conn):
            return
        for code, name, kind, parent, tier in _DEMO_TREE:
            inventory_sites.create_site(
                conn=conn, code=code, name=name, kind=kind,  # type: ignore[arg-type]
                by="labhub demo", parent_code=parent, tier=tier,  # type: ignore[arg-type]
                rollout_status="active" if code == DEMO_LAB else "planned")
        _demo_equipment(conn)


def _demo_equipment(conn: Connection) -> None:
    """The demo lab's kits, boards, a 3D printer and counted parts (one of them low), so
    the equipment pages have something to show and scan."""
    from inventory import assets, catalog, kits, stock

    by = "labhub demo"
    for code, name, category, counted in _DEMO_MODELS:
        catalog.create_model(conn=conn, code=code, name=name,
                             category=category,  # type: ignore[arg-type]
                             tracking="counted" if counted else "serialized",
                             unit="pcs" if counted else None, by=by)
    boards = [f"UNO-{n:03}" for n in range(1, 11)]
    for tag in boards:
        assets.register_asset(conn=conn, tag=tag, model_code="UNO", site_code=DEMO_LAB, by=by)
    assets.register_asset(conn=conn, tag="PRN-001", model_code="PRN-3D", site_code=DEMO_LAB,
                          by=by)
    for n in range(1, DEMO_KITS + 1):
        kit = f"KIT-{n:03}"
        assets.register_asset(conn=conn, tag=kit, model_code="KIT-ROBOT", site_code=DEMO_LAB,
                              by=by)
        kits.define_contents(conn=conn, kit_tag=kit, assets=[boards[n - 1]],
                             parts={"HC-SR04": 1, "JMP": 20}, by=by)
    for code, quantity, threshold in (("JMP", 200, 100), ("HC-SR04", 6, 8)):
        stock.receive(conn=conn, site_code=DEMO_LAB, model_code=code, quantity=quantity, by=by)
        stock.set_reorder_threshold(conn=conn, site_code=DEMO_LAB, model_code=code,
                                    threshold=threshold, by=by)


@app.command("command")
def command_cli(
    device: Annotated[str, typer.Argument(help="device id")],
    action: Annotated[str, typer.Argument(help="digital_write, pwm, servo or stop_all")],
    pin: Annotated[int | None, typer.Argument(help="output pin")] = None,
    value: Annotated[float | None, typer.Argument(help="0/1, 0..1 of full power, or degrees")]
    = None,
    hub: Annotated[str | None, typer.Option(help="the running hub's URL")] = None,
    token: Annotated[str | None, typer.Option(envvar="LABHUB_TOKEN",
                                              help=HUB_AUTH_HELP)] = None,
) -> None:
    """Drive a robotics kit's output through the running hub (same rules as the API)."""
    import json
    import urllib.error
    import urllib.request

    settings = _settings()
    base = hub or f"http://{settings.host}:{settings.port}"
    body = json.dumps({"command": action, "pin": pin, "value": value}).encode()
    try:
        with hub_bearer("command", token, base) as auth:
            request = urllib.request.Request(  # noqa: S310 -- the hub's own http URL
                f"{base}/api/v1/devices/{device}/commands", data=body, method="POST",
                headers={"content-type": "application/json", **auth},
            )
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                answer = json.load(response)
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("detail", exc.reason)
        secho(f"labhub command: {detail}", fg="red", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        secho(f"labhub command: no hub answers at {base} ({exc})", fg="red", err=True)
        raise typer.Exit(2) from None
    for write in answer["writes"]:
        note = " (clamped to the declared range)" if write["clamped"] else ""
        echo(f"pin {write['pin']} ({write['kind']}) = {write['value']:g}{note}")


@app.command("ports")
def ports_cli(
    action: Annotated[str, typer.Argument(help="show, set, add or remove")] = "show",
    urls: Annotated[list[str] | None, typer.Argument(help="ports: /dev/ttyUSB0, "
                                                     "socket://host:port, ...")] = None,
    hub: Annotated[str | None, typer.Option(help="the running hub's URL")] = None,
    token: Annotated[str | None, typer.Option(envvar="LABHUB_TOKEN",
                                              help=HUB_AUTH_HELP)] = None,
) -> None:
    """Show or change the serial ports the running hub reads (``serial_ports``), without
    restarting it: ``set`` replaces the list, ``add`` and ``remove`` change it."""
    import json
    import urllib.error
    import urllib.request

    if action not in ("show", "set", "add", "remove"):
        secho(f"labhub ports: unknown action {action!r}: use show, set, add or remove",
                    fg="red", err=True)
        raise typer.Exit(2)
    settings = _settings()
    base = hub or f"http://{settings.host}:{settings.port}"

    auth: dict[str, str] = {}

    def call(method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 -- the hub's own http URL
            f"{base}/api/v1/ports", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"content-type": "application/json", **auth},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                answer: dict[str, Any] = json.load(response)
                return answer
        except urllib.error.HTTPError as exc:
            detail = json.loads(exc.read() or b"{}").get("detail", exc.reason)
            secho(f"labhub ports: {detail}", fg="red", err=True)
            raise typer.Exit(1) from None
        except OSError as exc:
            secho(f"labhub ports: no hub answers at {base} ({exc})", fg="red", err=True)
            raise typer.Exit(2) from None

    given = list(urls or [])
    with hub_bearer("ports", token, base) as bearer:
        auth.update(bearer)
        ports = call("GET")["serial_ports"]
        if action == "set":
            ports = call("PUT", {"serial_ports": given})["serial_ports"]
        elif action == "add":
            ports = call("PUT", {"serial_ports": [*ports, *given]})["serial_ports"]
        elif action == "remove":
            ports = call("PUT", {"serial_ports": [p for p in ports if p not in given]})[
                "serial_ports"]
    for port in ports:
        echo(port)
    if not ports:
        echo("no serial ports named (USB boards are found without)")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    backup: Annotated[bool, typer.Option(
        "--backup/--no-backup",
        help="copy an SQLite database into the backup folder first (a copy that cannot "
             "be made stops the upgrade; --no-backup skips it)")] = True,
) -> None:
    """Bring the database schema up to date (creates an empty database). An SQLite
    database that has a schema and is not at the target yet is backed up first."""
    settings = _settings()
    chosen = choose_database(settings)
    echo(f"database {chosen.shown} ({chosen.why})")
    engine = db.make_engine(chosen.url)
    try:
        if backup:
            try:
                made = backups.backup_before_upgrade(
                    engine, settings.resolved_backup_dir(),
                    target=None if revision == "head" else revision,
                    make_folder=settings.backup_dir is None,
                    keep_free_mb=settings.disk_min_free_mb)
            except (backups.BackupError, OSError) as exc:
                secho(f"labhub db upgrade: {exc}", fg="red", err=True)
                raise typer.Exit(1) from None
            if made is not None:
                echo(f"backed up first to {made.path}")
        db.upgrade(engine, revision)
        echo(f"database at revision {db.current_revision(engine)}")
    finally:
        engine.dispose()


@db_app.command("current")
def db_current() -> None:
    """Print which database the commands use, its schema revision and the newest one this
    LabHub knows (a database that does not exist is not created)."""
    chosen = choose_database(_settings())
    echo(f"database: {chosen.shown} ({chosen.why})")
    file = chosen.sqlite_file
    if file is not None and not file.is_file():
        echo("current: none (no database there yet: `labhub db upgrade` creates it)")
        return
    engine = db.make_engine(chosen.url)
    try:
        echo(f"current: {db.current_revision(engine) or 'empty'}")
        echo(f"newest:  {db.head_revision(engine)}")
    finally:
        engine.dispose()


@app.command("import")
def import_command(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="CSV or text file logged offline (SD card)")],
    device: Annotated[str, typer.Option(help="device id the readings belong to")],
    fmt: Annotated[str, typer.Option("--format", help="auto, plotter, csv or smartcitizen")]
    = "auto",
    site: Annotated[str | None, typer.Option(help="site code")] = None,
    start: Annotated[str | None, typer.Option(
        help="time of the first line, for logs without times (RFC 3339)")] = None,
    interval: Annotated[float | None, typer.Option(
        help="seconds between lines, for logs without times")] = None,
    tz: Annotated[str | None, typer.Option(
        help="IANA zone of times written without one, as the logger's clock kept them "
             "(default: the timezone setting)")] = None,
) -> None:
    """Import readings logged offline; prints what was imported, duplicate and rejected.

    The readings go through the same hub as the server's (its database checks, pipeline
    and channel resolution), with no serial ports or MQTT opened."""
    from labhub.api.common import parse_time
    from labhub.problems import Problem
    from labhub.wiring import Hub, SchemaOutdatedError

    settings = _settings()
    try:
        first = parse_time(start, "--start")
    except Problem as exc:
        secho(f"labhub import: {exc.detail}", fg="red", err=True)
        raise typer.Exit(2) from None
    zone_name = tz or settings.timezone
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        secho(f"labhub import: --tz {zone_name!r} is not a time zone; use an IANA "
                    "name such as America/Lima or UTC", fg="red", err=True)
        raise typer.Exit(2) from None
    # The hub migrates an embedded database and refuses an outdated PostgreSQL schema.
    settings.database_url = database_of("import", settings).url
    hub = Hub(settings)
    try:
        hub.start(hardware=False)
        size = path.stat().st_size
        with typer.progressbar(length=size, label=f"importing {path.name}",
                               file=sys.stderr) as bar:
            summary: ImportSummary = hub.import_file(
                path, device=device, fmt=fmt, site=site, start=first, interval_s=interval,
                progress=bar.update, zone=zone,
            )
    except (ValueError, SchemaOutdatedError, UnknownSiteError) as exc:
        secho(f"labhub import: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    finally:
        hub.close()
    echo(
        f"{summary.lines} lines: {summary.accepted} readings imported, "
        f"{summary.duplicate} already stored, {summary.suspect} suspect, "
        f"{summary.rejected} rejected"
    )
    for reason in summary.first_errors:
        echo(f"  rejected: {reason}")
    if summary.rejected:
        echo("  every rejected line is kept: see `labhub rejects`")


@rejects_app.callback()
def rejects(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="how many to show")] = 20,
    source: Annotated[str | None, typer.Option(help="only from this source")] = None,
    topic: Annotated[str | None, typer.Option(help="only from this MQTT topic")] = None,
) -> None:
    """Show what the hub could not store, newest first, with the reason."""
    from labhub.api.common import iso
    from sensors import queries

    if ctx.invoked_subcommand is not None:
        return

    with hub_engine("rejects", write=False) as engine, engine.connect() as conn:
        total = queries.count_dead_letters(conn=conn, source=source, topic=topic)
        for d in queries.list_dead_letters(conn=conn, limit=limit, source=source,
                                           topic=topic):
            payload = d.payload[:200].decode("utf-8", "backslashreplace")
            where = "" if d.topic is None else f"  on {d.topic}"
            # The whole body's size and digest: a dead letter keeps only its first 64 KiB.
            whole = f"  ({d.size:,} bytes" + (f", sha256 {d.sha256[:16]}…)" if d.sha256
                                              else ")")
            replayed = "" if d.replayed_at is None else f"  replayed {iso(d.replayed_at)}"
            echo(f"{iso(d.received_at)}  {d.source:<8} {d.device or '-':<20} "
                 f"{d.reason}\n    {payload!r}{whole}{where}{replayed}")
    echo(f"{total} rejected in all")


@rejects_app.command("replay")
def rejects_replay(
    site: Annotated[str | None, typer.Option(help="only those naming this site")] = None,
    source: Annotated[str | None, typer.Option(help="only from this source: http or mqtt")]
    = None,
) -> None:
    """Store the readings refused for naming a site the inventory did not have, once the
    site exists (add it first: POST /api/v1/sites or `labhub inventory import sites`).
    Each replayed dead letter is marked; readings stored already are stored once. Exit
    code 1 if any could not be replayed or still names an unknown site."""
    from labhub.wiring import Hub, SchemaOutdatedError

    if source not in (None, "http", "mqtt"):
        secho(f"labhub rejects replay: --source {source!r} is not http or mqtt", fg="red",
              err=True)
        raise typer.Exit(2)
    settings = _settings()
    settings.database_url = database_of("rejects replay", settings).url
    hub = Hub(settings)
    try:
        hub.start(hardware=False)
        done = hub.replay_rejects(source=source, site=site)
    except (SchemaOutdatedError, SensorsError) as exc:
        secho(f"labhub rejects replay: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    finally:
        hub.close()
    for letter in done.letters:
        echo(f"{letter.id}  {letter.source:<5} {letter.site or '-':<16} "
             f"{letter.outcome}: {letter.detail}")
    stored, refused = done.count("stored"), done.count("still_refused")
    unusable = done.count("not_replayable")
    echo(f"{stored} replayed, {refused} still naming a site the inventory lacks, "
         f"{unusable} not replayable")
    if refused or unusable:
        raise typer.Exit(1)


@app.command("export")
def export_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="file to write ('-' = stdout)")]
    = Path("-"),
    device: Annotated[list[str] | None, typer.Option(help="device (repeatable)")] = None,
    channel: Annotated[list[str] | None, typer.Option(help="channel (repeatable)")] = None,
    site: Annotated[str | None, typer.Option(help="site code")] = None,
    run: Annotated[str | None, typer.Option(help="export one run's readings")] = None,
    start: Annotated[str | None, typer.Option(
        help="from this time: RFC 3339, now, or before now (-30m, -1h, -2d, -1w)")] = None,
    end: Annotated[str | None, typer.Option(
        help="until this time: RFC 3339, now, or before now (-30m, -1h, -2d, -1w)")] = None,
    delimiter: Annotated[str, typer.Option(help="comma, semicolon or tab")] = "comma",
    decimal: Annotated[str, typer.Option(help="point or comma")] = "point",
    bom: Annotated[bool, typer.Option(help="start with a UTF-8 BOM (Excel)")] = False,
    split: Annotated[bool, typer.Option(help="separate date and time columns")] = False,
    tz: Annotated[str | None, typer.Option(
        help="time zone of the time column: local (the timezone setting, the default), "
             "UTC or an IANA name")] = None,
    lang: Annotated[str | None, typer.Option(help="es, en or pt")] = None,
    precision: Annotated[str, typer.Option(
        help="precision of the times: auto (seconds, or ms for readings faster than 1 a "
             "second), s, ms or us")] = "auto",
) -> None:
    """Export readings as a wide CSV that opens in a spreadsheet (a run's with its notes)."""
    from labhub.api.common import parse_query_time, zone_of
    from labhub.problems import Problem
    from labtext import times
    from labtext.csvtext import DELIMITER_NAMES
    from sensors import export

    settings = _settings()
    try:
        options = export.CsvOptions(
            delimiter=DELIMITER_NAMES.get(delimiter, delimiter),
            decimal="," if decimal == "comma" else ".",
            bom=bom, split_datetime=split, timezone=zone_of(tz, settings.timezone, "--tz"),
            lang=lang or settings.language,
        )
        t0, t1 = parse_query_time(start, "--start"), parse_query_time(end, "--end")
        times.step_named(precision, None)
    except (ValueError, Problem) as exc:
        secho(f"labhub export: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    with hub_engine("export", write=False, settings=settings) as engine:
        _export(engine, output, options, run=run, site=site, device=device, channel=channel,
                start=t0, end=t1, precision=precision)


def _export(engine: Engine, output: Path, options: export.CsvOptions, *, run: str | None,
            site: str | None, device: list[str] | None, channel: list[str] | None,
            start: int | None, end: int | None, precision: str) -> None:
    """Write the export of ``labhub export`` (its options checked) to ``output``."""
    from labtext import times
    from sensors import export, queries, runs

    t0, t1 = start, end
    try:
        with engine.connect() as conn:
            notes = None
            if run is not None:
                the_run = runs.get_run(conn=conn, run_id=run)
                rows = runs.run_series(conn=conn, run=the_run)
                t0, t1 = runs.run_window(the_run)
                notes = [(n.ts, n.text) for n in the_run.notes]
            else:
                rows = queries.list_series(conn=conn, site=site)
                rows = [r for r in rows if (not device or r.device in device)
                        and (not channel or r.channel in channel)]
            if not rows:
                secho("labhub export: no stored series match", fg="red", err=True)
                raise typer.Exit(1)
            columns = export.columns_for(rows, options.lang)
            ids = [r.id for r in rows]
            interval = queries.typical_interval(conn=conn, series_ids=ids, start=t0, end=t1)
            step = times.step_named(precision, interval)
            wide = export.shared_rows(
                queries.iter_wide(conn=conn, series_ids=ids, start=t0, end=t1),
                width=len(ids), step_us=step, window_us=export.row_window(step, interval),
                notes=notes)
            out = (sys.stdout if str(output) == "-"
                   else output.open("w", encoding="utf-8", newline=""))
            try:
                for chunk in export.iter_csv(columns, wide, options, notes=notes is not None):
                    out.write(chunk)
            finally:
                if out is not sys.stdout:
                    out.close()
    except (SensorsError, OSError, ValueError) as exc:
        secho(f"labhub export: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None


@app.command("readings")
def readings_command(
    series: Annotated[str, typer.Argument(
        metavar="DEVICE[/CHANNEL]", help="a device id, or device/channel for one series")],
    channel: Annotated[list[str] | None, typer.Argument(
        help="channels of the device (default: every channel)")] = None,
    start: Annotated[str, typer.Option(
        help="from this time: RFC 3339, now, or before now (-30m, -1h, -2d, -1w)")] = "-1h",
    end: Annotated[str | None, typer.Option(
        help="until this time (default: now), in the same forms")] = None,
    tz: Annotated[str | None, typer.Option(
        help="time zone of the times: local (the timezone setting, the default), UTC or an "
             "IANA name")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    precision: Annotated[str, typer.Option(help="auto, s, ms or us")] = "auto",
    lang: Annotated[str | None, typer.Option(help="es, en or pt")] = None,
) -> None:
    """Show the readings of a device's channels (the last hour by default), one row per
    time, in the lab's time zone: as a table, or as CSV or JSON like the export."""
    from labhub.api.common import parse_query_time, zone_of
    from labhub.problems import Problem
    from labtext import times
    from sensors import export

    settings = _settings()
    try:
        if fmt not in ("table", "csv", "json"):
            raise ValueError(f"--format {fmt!r} is not table, csv or json")
        zone = zone_of(tz, settings.timezone, "--tz")
        t0, t1 = parse_query_time(start, "--start"), parse_query_time(end, "--end")
        times.step_named(precision, None)
        options = export.CsvOptions(timezone=zone, lang=lang or settings.language)
    except (ValueError, Problem) as exc:
        secho(f"labhub readings: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    with hub_engine("readings", write=False, settings=settings) as engine, \
            engine.connect() as conn:
        _readings(conn, series, channel or [], options, fmt=fmt, start=t0, end=t1,
                  precision=precision)


def _readings(conn: Connection, series: str, channels: list[str],
              options: export.CsvOptions, *, fmt: str, start: int | None, end: int | None,
              precision: str) -> None:
    """Write what ``labhub readings`` asked for (its options checked) to stdout."""
    from labtext import times
    from sensors import export, queries
    device = series
    rows = queries.list_series(conn=conn, device=device)
    if not rows and "/" in series and not channels:
        device, _, one = series.rpartition("/")
        channels = [one]
        rows = queries.list_series(conn=conn, device=device)
    if channels:
        rows = [r for r in rows if r.channel in channels]
    if not rows:
        wanted = f"channel {', '.join(channels)} of " if channels else ""
        secho(f"labhub readings: no stored series for {wanted}device {device!r} "
                    "(see GET /api/v1/series for what is stored)", fg="red", err=True)
        raise typer.Exit(1)
    ids = [r.id for r in rows]
    interval = queries.typical_interval(conn=conn, series_ids=ids, start=start, end=end)
    step = times.step_named(precision, interval)
    wide = export.shared_rows(queries.iter_wide(conn=conn, series_ids=ids, start=start, end=end),
                              width=len(ids), step_us=step,
                              window_us=export.row_window(step, interval))
    columns = export.columns_for(rows, options.lang)
    if fmt == "csv":
        for chunk in export.iter_csv(columns, wide, options):
            sys.stdout.write(chunk)
        return
    if fmt == "json":
        for chunk in export.iter_json(columns, wide, timezone=options.timezone):
            sys.stdout.write(chunk)
        return
    # The export's own header, in the person's language ("fecha y hora", "Temperatura
    # (°C)"), less the device's name when there is one device.
    time_head, *heads = export.csv_header(columns, replace(options, split_datetime=False))
    if len({r.device for r in rows}) == 1:
        heads = [h.removeprefix(f"{rows[0].device} ") for h in heads]
    widths = [max(len(h), 10) for h in heads]
    zone = options.timezone
    echo("  ".join([f"{time_head:<25}",
                    *(h.rjust(w) for h, w in zip(heads, widths, strict=True))]))
    count = 0
    for ts, values, *_ in wide:
        cells = ["-" if v is None else f"{v:g}" for v in values]
        echo("  ".join([f"{times.format_local(ts, zone, step_us=step):<25}",
                              *(c.rjust(w) for c, w in zip(cells, widths, strict=True))]))
        count += 1
    echo(f"{count} rows", err=True)


# -- inventory ----------------------------------------------------------------------------


@contextmanager
def _inventory_conn(command: str) -> Iterator[Connection]:
    """A read connection on the hub's database; an inventory error is a red line, exit 1."""
    from inventory.errors import InventoryError

    with hub_engine(f"inventory {command}", write=False) as engine:
        try:
            with engine.connect() as conn:
                yield conn
        except InventoryError as exc:
            secho(f"labhub inventory {command}: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None


@inventory_app.command("history")
def inventory_history(
    subject: Annotated[str, typer.Argument(metavar="TAG_OR_CODE",
                                           help="an asset tag, site code or model code")],
) -> None:
    """Show everything that happened to an asset or site, oldest first."""
    from inventory import history
    from labhub.api.common import iso

    with _inventory_conn("history") as conn:
        events = history.history_of(conn=conn, subject=subject)
    if not events:
        secho(f"labhub inventory history: nothing has the key {subject!r}", fg="red",
                    err=True)
        raise typer.Exit(1)
    for e in events:
        before, after = e.from_state or {}, e.to_state or {}
        changes = ", ".join(
            f"{k} {before[k]} -> {after.get(k)}" if k in before else f"{k} {after[k]}"
            for k in sorted(before.keys() | after.keys())
        )
        note = f"  ({e.note})" if e.note else ""
        echo(f"{iso(e.at)}  {e.kind:<20} by {e.by}: {changes}{note}")
    echo(f"{len(events)} events")


cli_access.register(app)  # labhub users | tokens | audit-log
cli_records.register(inventory_app)  # sites, models, assets: list, edit, delete, retire
cli_movements.register(inventory_app)  # lend, return, loans, stock, reorder, repair...
cli_transfers.register(inventory_app)  # transfer ..., audit ..., rotation ...
cli_inventory_io.register(inventory_app)  # labhub inventory import | export | labels
cli_mqtt.register(app)  # labhub mqtt users add | add-hub | list | remove
cli_network.register(app)  # labhub network join | status | sync | token | hubs
cli_jobs.register(app)  # labhub jobs list | run
cli_backup.register(app)  # labhub backup | restore FILE
cli_reminders.register(app)  # labhub reminders list | send
cli_schedules.register(app)  # labhub schedules list | add | remove


def main() -> None:
    """Entry point of the ``labhub`` script."""
    app()
