"""Equipment: sites, catalog, assets, kits, loans, transfers, audits and their history.

Independent of the readings and hardware domains: where a plugged-in board meets its
asset record, the app shell joins them through stable keys (asset tag, serial number).
"""
