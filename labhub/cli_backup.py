"""`labhub backup` and `labhub restore FILE` (docs/cli.md; docs/operations.md, "Backups and
restore").

``backup`` makes a checked copy of the hub's SQLite database now, while it runs, into the
backup folder (or ``--to DIR``). ``restore`` puts a copy back into a stopped hub: it
refuses while the database is open (the hub runs), refuses a damaged copy or one made by a
newer LabHub, keeps the current database aside, and migrates the copy forward. A
PostgreSQL database is backed up and restored with ``pg_dump``/``pg_restore`` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from labhub import backup as backups
from labhub.cli_common import choose_database, echo, secho, settings_or_exit
from labhub.settings import Settings

PG_NOTE = ("this hub's database is PostgreSQL: back it up with pg_dump and restore it with "
           "pg_restore (docs/operations.md, Backups and restore)")


def _refuse(command: str, message: str) -> typer.Exit:
    secho(f"labhub {command}: {message}", fg="red", err=True)
    return typer.Exit(1)


def _database_file(command: str, settings: Settings) -> Path:
    """The SQLite file of the hub's database, or a red line (PostgreSQL, in memory)."""
    chosen = choose_database(settings)
    file = chosen.sqlite_file
    if file is None:
        if chosen.url.startswith("postgresql"):
            raise _refuse(command, PG_NOTE)
        raise _refuse(command, f"the database {chosen.shown} is not a file")
    return file


def make_backup(settings: Settings, folder: Path | None) -> backups.Backup:
    """A checked copy of the hub's SQLite database in ``folder`` (the backup folder by
    default, made if it is the default one); a red line and exit 1 when it fails."""
    database = _database_file("backup", settings)
    target = folder if folder is not None else settings.resolved_backup_dir()
    if folder is not None or settings.backup_dir is None:
        try:
            target.mkdir(parents=folder is None, exist_ok=True)
        except OSError as exc:
            raise _refuse("backup", f"cannot make the folder {target}: {exc}") from None
    try:
        return backups.take_backup(database, target,
                                   keep_free_mb=settings.disk_min_free_mb)
    except (backups.BackupError, OSError) as exc:
        raise _refuse("backup", str(exc)) from None


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``labhub``."""

    @app.command("backup")
    def backup_command(
        to: Annotated[Path | None, typer.Option(
            "--to", help="folder to put the copy in (default: the backup_dir setting, "
                         "`backups` in data_dir)", file_okay=False)] = None,
    ) -> None:
        """Copy the hub's database now (the hub may be running), check the copy, and print
        where it is. The nightly job does the same and also rotates old copies."""
        settings = settings_or_exit()
        made = make_backup(settings, to)
        echo(f"backed up to {made.path}")
        echo(f"{made.size / 1_000_000:,.1f} MB, schema revision {made.revision}, integrity "
             f"ok, {made.seconds:.1f} s")

    @app.command("restore")
    def restore_command(
        file: Annotated[Path, typer.Argument(help="the backup to restore (a labhub-….db)",
                                             dir_okay=False)],
        yes: Annotated[bool, typer.Option(
            "--yes", help="do not ask before replacing the database")] = False,
    ) -> None:
        """Put a backup in place of the hub's database. Stop the hub first. The database
        that was there is kept beside it (renamed), and the copy is migrated forward."""
        settings = settings_or_exit()
        database = _database_file("restore", settings)
        try:
            if backups.database_in_use(database):
                raise backups.HubRunningError(
                    f"the database {database} is open in a running hub (or another LabHub "
                    "command): stop the hub first (sudo systemctl stop labhub), then restore")
            revision = backups.check_restorable(file)
        except backups.BackupError as exc:
            raise _refuse("restore", str(exc)) from None
        echo(f"{file}: integrity ok, schema revision {revision}")
        if database.exists():
            echo(f"the database {database} will be replaced; it is kept beside it as "
                 f"{database.name}.{backups.KEPT_ASIDE}-<date and time>")
        if not yes and not typer.confirm("restore this copy?", default=False):
            raise _refuse("restore", "nothing changed")
        try:
            restored = backups.restore(file, database)
        except (backups.BackupError, OSError) as exc:
            raise _refuse("restore", str(exc)) from None
        echo(f"restored into {restored.database} (schema revision {restored.copy_revision}"
             f", migrated to {restored.revision})")
        if restored.kept_aside is not None:
            echo(f"the database before is kept as {restored.kept_aside}")
        echo("start the hub again (sudo systemctl start labhub)")
