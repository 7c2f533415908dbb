"""The network of hubs: each lab's hub syncs to a central LabHub (``docs/network.md``).

One package runs both roles (``Settings.role``):

- a **hub** keeps working alone and, whenever the central can be reached, sends up what it
  has not sent yet (readings by a position in their journal; inventory events, runs, notes
  by a position in the outbox; the device registry and its health as they are now), and
  takes down what the central owns for its lab (the site tree, the catalog, its people,
  kit definitions, transfers addressed to it, rollout status);
- the **central** (PostgreSQL only) takes every hub's batches exactly once, keeps each
  hub's acknowledged position per stream, and shows the ministry the whole rollout.

Modules:

- :mod:`labhub.network.protocol`: the wire format (batch container, positions, records),
  the HTTP paths and headers; pure, shared by both sides.
- :mod:`labhub.network.tables`: the tables of both roles.
- :mod:`labhub.network.outbox`: the hub's outbox of changed records, read in order.
- :mod:`labhub.network.streams`: which streams go up and come down, in order.
"""
