"""Who may do what on the hub: accounts, roles scoped to sites, and the gate every route
passes through.

- :mod:`labhub.access.permissions`: the permissions, the roles and what each role may.
- :mod:`labhub.access.caller`: the signed-in person (or device) of one request, and the
  checks ``can``/``require``/``scope`` against a site of the tree.
- :mod:`labhub.access.gate`: ``needs(permission, on=...)``, the one dependency every
  route declares; the enumeration test fails on a route without one.
"""
