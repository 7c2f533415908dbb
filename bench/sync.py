"""The network's benchmark: the central's ingest, a week offline on a slow link, and 1,000
hubs against one central (docs/network.md, docs/scaling.md).

1. Central ingest (``bench/_sync_ingest.py``): hub batches applied by the central, against
   PostgreSQL's own ``COPY`` of the same rows in the same run; target ratio at least 0.5.
2. A week offline (``bench/_sync_week.py``): one lab's week (1M readings) sent over an
   emulated 256 kbit/s link; the bytes on the wire per reading (target: at most 6; a
   reading is about 20 bytes raw) and the time taken.
3. 1,000 hubs (``bench/_sync_hubs.py``): simulated hubs (asyncio clients, each with its
   own credential) against one central with 2 worker processes and PostgreSQL: sustained
   readings/s, p95 request latency, central CPU per 1,000 readings.
4. The ministry's dashboard at that size (``bench/_sync_dashboard.py``): p95 of its
   queries; target under 200 ms.

Run: ``python bench/sync.py``; ``--smoke`` runs each part at a small size.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("labhub") is None:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _sync_dashboard as sync_dashboard
import _sync_hubs as sync_hubs
import _sync_ingest as sync_ingest
import _sync_week as sync_week
from _common import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes, to check it runs")
    args = parser.parse_args()
    print(machine())
    for part in (sync_ingest, sync_week, sync_hubs, sync_dashboard):
        for line in part.measure(args.smoke):
            print(line, flush=True)


if __name__ == "__main__":
    main()
