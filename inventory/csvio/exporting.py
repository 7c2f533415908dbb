"""Writing the inventory's CSV files: sites, models and assets, and the writer they share.

The same columns as the import takes (:mod:`inventory.csvio.columns`), so an export imports
back as it was, with the options of the readings export (delimiter, decimal comma, BOM,
``\\r\\n`` line ends) and the formula guard of :mod:`labtext.csvtext`: a text cell that
starts with ``=`` ``+`` ``-`` ``@``, a tab, a carriage return or ``'`` gets a leading
apostrophe, which the import takes off again. Numbers are never guarded. Exports stream
in chunks of rows; :func:`export_text` joins them for small files and tests.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, select

from inventory.assets import STATUSES
from inventory.csvio.columns import COLUMNS, CsvOptions
from inventory.errors import InvalidValueError
from inventory.sites import get_site, subtree
from inventory.tables import assets, models, sites
from labtext.csvtext import guard_formula


class _Sink:
    """A file-like target for ``csv.writer`` whose text is taken out chunk by chunk."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def take(self) -> str:
        text = "".join(self.parts)
        self.parts.clear()
        return text


def _cell(value: Any, options: CsvOptions) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text.replace(".", ",") if options.decimal == "," else text
    if isinstance(value, int):
        return str(value)
    return guard_formula(str(value))


def iter_csv(
    header: Sequence[str], rows: Iterable[Sequence[Any]], options: CsvOptions,
    chunk_rows: int = 1000,
) -> Iterator[str]:
    """CSV text in chunks: the header, then one line per row, ``\\r\\n`` line ends."""
    sink = _Sink()
    writer = csv.writer(sink, delimiter=options.delimiter, lineterminator="\r\n")
    if options.bom:
        sink.write("\ufeff")
    writer.writerow(header)
    for count, row in enumerate(rows, 1):
        writer.writerow([_cell(v, options) for v in row])
        if count % chunk_rows == 0:
            yield sink.take()
    yield sink.take()


def _tree_order(found: list[Any]) -> list[Any]:
    """Sites with every parent before its children (then by code), so the file imports."""
    codes = {r.code for r in found}
    children: dict[str | None, list[Any]] = {}
    for r in found:
        children.setdefault(r.parent_code if r.parent_code in codes else None, []).append(r)
    ordered: list[Any] = []
    stack = sorted(children.get(None, []), key=lambda r: r.code, reverse=True)
    while stack:
        r = stack.pop()
        ordered.append(r)
        stack.extend(sorted(children.get(r.code, []), key=lambda x: x.code, reverse=True))
    return ordered


def export_sites(
    *, conn: Connection, options: CsvOptions, under: str | None = None,
    only: Collection[str] | None = None,
) -> Iterator[str]:
    """The sites (all, or ``under`` and its subtree) as CSV, parents before children;
    only the sites in ``only``, when given (where the person asking may look)."""
    query = select(sites)
    if under is not None:
        get_site(conn=conn, code=under)
        query = query.where(sites.c.code.in_(select(subtree(under).c.code)))
    if only is not None:
        query = query.where(sites.c.code.in_(sorted(only)))
    ordered = _tree_order(list(conn.execute(query)))
    rows = ((r.code, r.name, r.kind, r.parent_code, r.tier,
             None if r.rural is None else bool(r.rural), r.latitude, r.longitude,
             r.institution, r.rollout_status) for r in ordered)
    return iter_csv(COLUMNS["sites"], rows, options)


def export_models(
    *, conn: Connection, options: CsvOptions, category: str | None = None
) -> Iterator[str]:
    """The catalog (optionally one category) as CSV, by code."""
    query = select(models).order_by(models.c.code)
    if category is not None:
        query = query.where(models.c.category == category)
    rows = ((r.code, r.name, r.category, r.tracking, r.unit) for r in conn.execute(query))
    return iter_csv(COLUMNS["models"], rows, options)


def export_assets(
    *,
    conn: Connection,
    options: CsvOptions,
    site_under: str | None = None,
    status: str | None = None,
    model_code: str | None = None,
    sites: Collection[str] | None = None,
) -> Iterator[str]:
    """Assets by tag as CSV: all, or those under a site's subtree, of a status, of a model;
    only those at ``sites``, when given (where the person asking may look)."""
    query = select(
        assets.c.tag, assets.c.model_code, assets.c.site_code, assets.c.serial_number,
        assets.c.status, assets.c.condition, assets.c.notes,
    ).order_by(assets.c.tag)
    if site_under is not None:
        get_site(conn=conn, code=site_under)
        query = query.where(assets.c.site_code.in_(select(subtree(site_under).c.code)))
    if sites is not None:
        query = query.where(assets.c.site_code.in_(sorted(sites)))
    if status is not None:
        if status not in STATUSES:
            raise InvalidValueError(f"asset status {status!r} is not one of: "
                                    f"{', '.join(STATUSES)}")
        query = query.where(assets.c.status == status)
    if model_code is not None:
        query = query.where(assets.c.model_code == model_code)
    return iter_csv(COLUMNS["assets"], conn.execute(query), options)


def export_text(chunks: Iterable[str]) -> str:
    """All of an export's chunks as one text (for tests and small files)."""
    return "".join(chunks)
