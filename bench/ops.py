"""Running a hub for years: long ranges from rollups, rollup upkeep during ingest, the
served hub's footprint, and a backup during ingest (docs/operations.md).

1. Long ranges (``bench/_ops_rollups.py``): one year of one channel at 1 Hz (31.5M
   readings), 500 buckets from the rollups against the same query on raw readings;
   target under 50 ms.
2. Rollup upkeep (``bench/_ops_rollups.py``): the ingest ratio of ``bench/ingest.py`` with
   the rollups kept up to date against without; it drops by at most 10 %.
3. Footprint (``bench/_ops_footprint.py``): idle RSS of ``labhub serve`` with the web app
   and the scheduler, and the time from start to API ready; targets under 120 MB and 3 s.
4. Backup (``bench/_ops_backup.py``): a 2 GB database backed up while ingest runs: its
   time, and the ingest ratio during it.
5. Reminders (``bench/_ops_reminders.py``): every reminder of 50 labs with a history of a
   million entries, as each home page load works them out, against the history read by
   kind.

Run: ``python bench/ops.py``; ``--smoke`` runs each part at a small size.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("labhub") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _ops_backup as ops_backup
import _ops_footprint as ops_footprint
import _ops_reminders as ops_reminders
import _ops_rollups as ops_rollups
from _common import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes, to check it runs")
    args = parser.parse_args()
    print(machine())
    for part in (ops_rollups, ops_footprint, ops_backup, ops_reminders):
        for line in part.measure(args.smoke):
            print(line, flush=True)


if __name__ == "__main__":
    main()
