"""Inventory between hubs and the central: events and the lab's records up; the site tree,
catalog, people, kits, transfers and rollout down; one owner per record."""

from __future__ import annotations

from labhub.network.streams import DownStream, UpStream

UP: tuple[UpStream, ...] = ()
DOWN: tuple[DownStream, ...] = ()
