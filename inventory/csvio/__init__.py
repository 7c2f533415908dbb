"""The inventory's CSV files: what ministries keep in spreadsheets, in and out.

Three rooms, each with its own module: :mod:`~inventory.csvio.importing` reads and checks
sites, models and assets and writes the valid ones; :mod:`~inventory.csvio.exporting`
writes the same columns back (so an export imports as it was); :mod:`~inventory.csvio.reports`
writes an item's history and an audit's count lines, which have no import. The columns
and the export options both sides share are in :mod:`~inventory.csvio.columns`, and the CSV
dialect itself (delimiters, decimal commas, the formula guard) is :mod:`labtext.csvtext`'s,
shared with the readings export. This package re-exports what callers use, so they write
``csvio.import_csv`` and ``csvio.export_assets``.
"""

from __future__ import annotations

from inventory.csvio.columns import (
    ALIASES,
    COLUMNS,
    DECIMALS,
    DELIMITERS,
    KINDS,
    REQUIRED,
    CsvOptions,
    Kind,
)
from inventory.csvio.exporting import (
    export_assets,
    export_models,
    export_sites,
    export_text,
    iter_csv,
)
from inventory.csvio.importing import ImportReport, Mode, RowError, decode, import_csv, read_rows
from inventory.csvio.reports import (
    AUDIT_COUNT_COLUMNS,
    HISTORY_COLUMNS,
    export_audit_counts,
    export_history,
)
from labtext.csvtext import detect_delimiter

__all__ = [
    "ALIASES",
    "AUDIT_COUNT_COLUMNS",
    "COLUMNS",
    "DECIMALS",
    "DELIMITERS",
    "HISTORY_COLUMNS",
    "KINDS",
    "REQUIRED",
    "CsvOptions",
    "ImportReport",
    "Kind",
    "Mode",
    "RowError",
    "decode",
    "detect_delimiter",
    "export_assets",
    "export_audit_counts",
    "export_history",
    "export_models",
    "export_sites",
    "export_text",
    "import_csv",
    "iter_csv",
    "read_rows",
]
