"""Equipment: sites, catalog, assets, kits, loans, transfers, audits and their history.

Independent of the readings and hardware domains: where a plugged-in board meets its
asset record, the app shell joins them through stable keys (asset tag, serial number).
Built so far: ``sites`` (the network tree), ``catalog`` (item models), ``assets`` and
``history`` (the append-only event log), ``transfers`` (between lab sites),
``rotations`` (a mobile lab's manifest and route) and ``audits`` (stocktakes);
``docs/inventory.md`` says what is still to come.
"""
