"""``labhub inventory import | export | labels``: spreadsheets and label sheets from a terminal.

Registered on the ``inventory`` group of ``labhub.cli`` by :func:`register`, so the main
CLI module stays small. Each command opens the hub's database from the same settings as
the server; an import is one transaction (committed only when it is accepted), shows a
progress bar while it checks the rows, then a table of the row errors.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, cast

import typer
from sqlalchemy import Connection

from labhub.cli_common import cli_actor, echo, hub_engine, secho, settings_or_exit
from labtext.csvtext import DELIMITER_NAMES as _DELIMITERS

ERROR_ROWS_SHOWN = 50  # row errors printed in the table; the count says how many in all


_settings = settings_or_exit


def _fail(command: str, message: str, code: int = 1) -> typer.Exit:
    secho(f"labhub inventory {command}: {message}", fg="red", err=True)
    return typer.Exit(code)


@contextmanager
def _connection(command: str, *, write: bool) -> Iterator[Connection]:
    """A connection on the hub's database (in a transaction when ``write``); an inventory
    error is a red line and exit code 1."""
    from inventory.errors import InventoryError

    with hub_engine(f"inventory {command}", write=write, settings=_settings()) as engine:
        try:
            with engine.begin() if write else engine.connect() as conn:
                yield conn
        except InventoryError as exc:
            raise _fail(command, str(exc)) from None


def import_command(
    kind: Annotated[str, typer.Argument(metavar="sites|models|assets",
                                        help="what the file holds")],
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         metavar="FILE", help="the CSV file")],
    only_valid: Annotated[bool, typer.Option(
        "--only-valid", help="import the valid rows even when others have errors")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check only; write nothing")]
    = False,
    delimiter: Annotated[str | None, typer.Option(
        help="comma, semicolon or tab (detected from the header when not given)")] = None,
) -> None:
    """Import sites, models or assets from a CSV file; every row is checked first."""
    from inventory import csvio
    from inventory.errors import InvalidValueError

    if kind not in csvio.KINDS:
        raise _fail("import", f"{kind!r} is not one of: sites, models, assets", 2)
    if delimiter is not None and delimiter not in _DELIMITERS:
        raise _fail("import", f"--delimiter {delimiter!r} is not comma, semicolon or tab", 2)
    data = path.read_bytes()
    lines = max(1, data.count(b"\n"))
    with (_connection("import", write=True) as conn,
          typer.progressbar(length=lines, label=f"checking {path.name}",
                            file=sys.stderr) as bar):
        try:
            report = csvio.import_csv(
                conn=conn, kind=cast("csvio.Kind", kind), data=data, by=cli_actor(),
                mode="valid" if only_valid else "all", dry_run=dry_run,
                delimiter=None if delimiter is None else _DELIMITERS[delimiter],
                progress=bar.update,
            )
        except InvalidValueError as exc:
            raise _fail("import", f"{path.name}: {exc}") from None
        bar.update(max(0, lines - bar.pos))
    # A refused import or a dry run wrote nothing: the commit on leaving is empty.
    accepted = not report.errors or only_valid
    if report.errors:
        echo(f"{'row':>6}  {'column':<16} problem")
        for e in report.errors[:ERROR_ROWS_SHOWN]:
            echo(f"{e.row:>6}  {e.column or '-':<16} {e.problem}")
        if len(report.errors) > ERROR_ROWS_SHOWN:
            echo(f"  ... and {len(report.errors) - ERROR_ROWS_SHOWN} more")
    bad_rows = len({e.row for e in report.errors})
    if dry_run:
        echo(f"{report.rows} rows: {report.valid} valid, {bad_rows} with errors; "
                   "dry run, nothing imported")
    elif not accepted:
        echo(f"{report.rows} rows: {bad_rows} with errors; nothing imported "
                   "(fix them, or use --only-valid to import the valid rows)")
    else:
        echo(f"{report.rows} rows: {report.created} {kind} imported"
                   + (f", {bad_rows} rows with errors skipped" if bad_rows else ""))
    if report.errors and not only_valid:
        raise typer.Exit(1)


def export_command(
    kind: Annotated[str, typer.Argument(metavar="sites|models|assets|history|audit-counts",
                                        help="what to export")],
    output: Annotated[Path, typer.Option("--output", "-o",
                                         help="file to write ('-' = stdout)")] = Path("-"),
    site: Annotated[str | None, typer.Option(
        help="sites and assets: only this site and its subtree")] = None,
    status: Annotated[str | None, typer.Option(help="assets: only this status")] = None,
    model: Annotated[str | None, typer.Option(help="assets: only this model")] = None,
    category: Annotated[str | None, typer.Option(help="models: only this category")] = None,
    subject: Annotated[str | None, typer.Option(
        help="history: the asset tag, site or model code")] = None,
    audit: Annotated[str | None, typer.Option(
        help="audit-counts: the id of a finished audit")] = None,
    delimiter: Annotated[str, typer.Option(help="comma, semicolon or tab")] = "comma",
    decimal: Annotated[str, typer.Option(help="point or comma")] = "point",
    bom: Annotated[bool, typer.Option(help="start with a UTF-8 BOM (Excel)")] = False,
) -> None:
    """Export sites, models, assets (they import back), an item's history or an audit's
    count lines as CSV."""
    from inventory import csvio

    if delimiter not in _DELIMITERS or decimal not in ("point", "comma"):
        raise _fail("export", "--delimiter is comma, semicolon or tab; --decimal point or comma",
                    2)
    options = csvio.CsvOptions(delimiter=_DELIMITERS[delimiter],
                               decimal="," if decimal == "comma" else ".", bom=bom)
    with _connection("export", write=False) as conn:
        if kind == "sites":
            chunks = csvio.export_sites(conn=conn, options=options, under=site)
        elif kind == "models":
            chunks = csvio.export_models(conn=conn, options=options, category=category)
        elif kind == "assets":
            chunks = csvio.export_assets(conn=conn, options=options, site_under=site,
                                         status=status, model_code=model)
        elif kind == "history":
            if subject is None:
                raise _fail("export", "history needs --subject TAG_OR_CODE", 2)
            chunks = csvio.export_history(conn=conn, subject=subject, options=options)
        elif kind == "audit-counts":
            if audit is None:
                raise _fail("export", "audit-counts needs --audit AUDIT_ID", 2)
            chunks = csvio.export_audit_counts(conn=conn, audit_uuid=audit, options=options)
        else:
            raise _fail("export", f"{kind!r} is not one of: sites, models, assets, history, "
                        "audit-counts", 2)
        text = csvio.export_text(chunks)
    if str(output) == "-":
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8", newline="")
        echo(f"wrote {output} ({text.count(chr(10)) - 1} rows)", err=True)


def labels_command(
    output: Annotated[Path, typer.Option("--output", "-o",
                                         help="labels.pdf, or labels.svg (one file a page)")],
    site: Annotated[str | None, typer.Option(help="every asset at this site's subtree")]
    = None,
    tag: Annotated[list[str] | None, typer.Option(help="an asset tag (repeatable)")] = None,
    columns: Annotated[int, typer.Option(help="labels across an A4 page")] = 3,
    rows: Annotated[int, typer.Option(help="labels down an A4 page")] = 8,
    margin: Annotated[float, typer.Option(help="page margin, in mm")] = 10.0,
    include_lost_in_transit: Annotated[bool, typer.Option(
        help="print lost and in-transit assets too (left out by default)")] = False,
) -> None:
    """Print QR labels (asset tag, model, site) on A4 sheets as PDF or SVG; lost and
    in-transit assets are left out unless asked, and the count says how many."""
    from inventory import labels

    fmt = output.suffix.lower()
    if fmt not in (".pdf", ".svg"):
        raise _fail("labels", f"{output.name}: the file must end in .pdf or .svg", 2)
    with _connection("labels", write=False) as conn:
        selection = labels.select_labels(
            conn=conn, tags=tag, site_under=site,
            leave_out=() if include_lost_in_transit else labels.AWAY_STATUSES)
        found = selection.labels
        grid = labels.Grid(columns=columns, rows=rows, margin_mm=margin)
        if fmt == ".pdf":
            output.write_bytes(labels.render_pdf(found, grid))
            written = [output]
        else:
            pages = labels.render_svg(found, grid)
            written = [output if i == 0 else output.with_name(f"{output.stem}-{i + 1}.svg")
                       for i in range(len(pages))]
            for path, page in zip(written, pages, strict=True):
                path.write_text(page, encoding="utf-8")
    pages_count = -(-len(found) // grid.per_page)
    echo(f"{len(found)} labels on {pages_count} page(s): "
               + ", ".join(str(p) for p in written))
    if selection.left_out:
        echo(f"{selection.left_out_total} left out ("
                   + ", ".join(f"{n} {status.replace('_', ' ')}"
                               for status, n in sorted(selection.left_out.items()))
                   + "): --include-lost-in-transit prints them too")


def register(group: typer.Typer) -> None:
    """Add ``import``, ``export`` and ``labels`` to the ``labhub inventory`` group."""
    group.command("import")(import_command)
    group.command("export")(export_command)
    group.command("labels")(labels_command)

