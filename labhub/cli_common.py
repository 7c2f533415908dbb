"""What every ``labhub`` command module shares: the hub's settings and its database.

The command modules (``cli``, ``cli_movements``, ``cli_transfers``, ``cli_inventory_io``)
all read the same settings as the server; an invalid setting is one red line and exit 2,
never a traceback.

They also open the database of the hub they belong to, chosen in this order:

1. the ``database_url`` setting (``LABHUB_DATABASE_URL`` or ``labhub.toml``), when set;
2. else the demo's database while ``labhub demo`` (``make run``) runs: the demo writes
   where its database is to ``<data_dir>/demo/hub.json`` (:data:`DEMO_STATE`) while it
   runs and removes it when it stops, and a command that uses it says so on stderr;
3. else the lab's own embedded database, ``<data_dir>/labhub.db``.

A command that reads never creates a database: a missing SQLite file, or a database with
no LabHub tables or an older schema, is one red line that names the database and says
what to do (``labhub db upgrade``), exit 1. A command that writes upgrades an embedded
SQLite database first, as ``labhub serve`` does; an outdated PostgreSQL schema is a red
line. A database error on the way is a red line too, never a traceback.

They print only through :func:`echo` and :func:`secho`, which show every control character
(ESC, NUL, C1, bidirectional overrides) of what they print as a visible escape (``\x1b``):
a device name, a dead letter's reason or a note that came from outside can never move the
cursor, clear the screen or reorder a line on the terminal. Files a command writes (a CSV
export) are data, written as they are.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from labhub import db
from labhub.settings import ConfigFileMissingError, Settings
from labtext.printable import escape_unprintable


def echo(message: str = "", **options: Any) -> None:
    """``typer.echo`` of ``message`` with its control characters escaped."""
    typer.echo(escape_unprintable(message), **options)


def secho(message: str = "", **options: Any) -> None:
    """``typer.secho`` (colours, ``err=True``) of ``message`` with its control characters
    escaped; the colour codes are added after."""
    typer.secho(escape_unprintable(message), **options)

DEMO_STATE = "hub.json"  # in <data_dir>/demo/ while a demo hub runs


def settings_or_exit() -> Settings:
    """The hub's settings (``labhub.toml`` and ``LABHUB_*``), or a red line and exit 2."""
    try:
        return Settings()
    except ConfigFileMissingError as exc:
        typer.secho(f"labhub: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # show what is wrong in the settings, not a traceback
        secho(f"labhub: settings are not valid: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None


def demo_state_file(settings: Settings) -> Path:
    """Where a running demo hub says which database it uses."""
    return settings.data_dir / "demo" / DEMO_STATE


def demo_database_url(settings: Settings) -> str:
    """The demo's own database, apart from the lab's."""
    return f"sqlite:///{settings.data_dir / 'demo' / 'labhub-demo.db'}"


def write_demo_state(settings: Settings, *, database_url: str, api: str) -> Path:
    """Tell the commands beside this demo hub (this process) which database it uses."""
    path = demo_state_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"pid": os.getpid(), "database_url": database_url,
                                     "api": api}), encoding="utf-8")
    temporary.replace(path)
    return path


def remove_demo_state(settings: Settings) -> None:
    """The demo hub stops: forget its state file, if it is still this process's."""
    path = demo_state_file(settings)
    state = _read_state(path)
    if state is not None and state.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def _read_state(path: Path) -> dict[str, object] | None:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it runs
        return True
    return True


@dataclass(frozen=True, slots=True)
class HubDatabase:
    """The database a command uses, and why that one (for messages)."""

    url: str
    why: str

    @property
    def shown(self) -> str:
        """The URL without its password, or the file of an SQLite database."""
        parsed = make_url(self.url)
        if parsed.get_backend_name() == "sqlite" and parsed.database:
            return parsed.database
        return parsed.render_as_string(hide_password=True)

    @property
    def sqlite_file(self) -> Path | None:
        """The file of an SQLite database on disk, else None."""
        parsed = make_url(self.url)
        if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
            return None
        return Path(parsed.database or "")


def choose_database(settings: Settings) -> HubDatabase:
    """The database of the hub the command belongs to (see the module docstring)."""
    if settings.database_url:
        return HubDatabase(settings.database_url, "the database_url setting")
    state = _read_state(demo_state_file(settings))
    if state is not None:
        pid, url = state.get("pid"), state.get("database_url")
        if isinstance(pid, int) and isinstance(url, str) and _alive(pid):
            return HubDatabase(url, f"the demo hub running now (pid {pid})")
    return HubDatabase(settings.resolved_database_url(), "the lab's database")


def database_of(command: str, settings: Settings) -> HubDatabase:
    """:func:`choose_database`, said on stderr when it is a running demo's."""
    chosen = choose_database(settings)
    if chosen.why.startswith("the demo hub"):
        typer.secho(f"labhub {command}: using the database of {chosen.why}: {chosen.shown} "
                    "(set LABHUB_DATABASE_URL to use another)", err=True)
    return chosen


def hub_database(command: str, settings: Settings, *, write: bool) -> HubDatabase:
    """:func:`choose_database`, said on stderr when it is a running demo's, and checked:
    a read needs the database to exist with LabHub's current schema (a red line and exit
    1 otherwise, nothing created); a write upgrades an embedded SQLite database."""
    chosen = database_of(command, settings)
    where = f"the database at {chosen.shown} ({chosen.why})"
    file = chosen.sqlite_file
    if not write and file is not None and not file.is_file():
        _refuse(command, f"there is no database at {chosen.shown} ({chosen.why}): start the "
                "hub (labhub serve) or run `labhub db upgrade` to create it, or set "
                "LABHUB_DATABASE_URL to the hub's database")
    engine = db.make_engine(chosen.url)
    try:
        if write and engine.dialect.name == "sqlite":
            db.upgrade(engine)
            return chosen
        current, head = db.current_revision(engine), db.head_revision(engine)
    except DBAPIError as exc:
        _refuse(command, f"cannot open {where}: {_first_line(exc)}")
    finally:
        engine.dispose()
    if current is None:
        _refuse(command, f"{where} has no LabHub tables: run `labhub db upgrade` to create "
                "them, or set LABHUB_DATABASE_URL to the hub's database")
    if current != head:
        _refuse(command, f"{where} is at schema revision {current}, this LabHub needs {head}:"
                " run `labhub db upgrade` first")
    return chosen


@contextmanager
def hub_engine(command: str, *, write: bool, settings: Settings | None = None
               ) -> Iterator[Engine]:
    """An engine on the hub's database (:func:`hub_database`), disposed of afterwards; a
    database error while it is used is a red line naming the command, exit 1."""
    chosen = hub_database(command, settings or settings_or_exit(), write=write)
    engine = db.make_engine(chosen.url)
    try:
        yield engine
    except DBAPIError as exc:
        _refuse(command, f"the database at {chosen.shown} ({chosen.why}) failed: "
                f"{_first_line(exc)}")
    finally:
        engine.dispose()


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc).splitlines()[0]


def _refuse(command: str, message: str) -> NoReturn:
    typer.secho(f"labhub {command}: {message}", fg="red", err=True)
    raise typer.Exit(1)


def cli_actor() -> str:
    """Who the history records as making a change with the CLI: the CLI on the hub's own
    machine and the login that ran it (``labhub CLI (ana)``). A command works on the
    database itself, past any sign-in, so it names the login the machine checked, never a
    name typed on the command line."""
    return f"labhub CLI ({getpass.getuser()})"


# The person a change is recorded for (the history's ``on_behalf_of``), on the commands
# where recording for someone else makes sense: lend, return, consume, audit scan/count.
ForWhom = Annotated[str | None, typer.Option(
    "--by", help="the person this was done for, kept in the history as on_behalf_of "
                 "(the change itself is recorded as made by 'labhub CLI (<your login>)')")]
