"""The order of MQTT acknowledgements: which received messages may be acknowledged now.

A client must send its PUBACKs in the order the messages arrived (MQTT-4.6.0-2), but the
hub's messages become durable out of that order (a burst's dead letters after its
readings, one site's batch before another's). :class:`AckOrder` keeps one :class:`Ack` per
received message, in arrival order; each is settled later, to acknowledge (durable) or to
skip (not stored: the broker delivers it again), and :meth:`AckOrder.due` hands out the
acknowledgements that are due, never past a message still waiting. A PUBACK belongs to the
connection that delivered the message (the broker may reuse its packet id on the next), so
each entry carries its connection's generation and only those of the current one are ever
due. Pure bookkeeping: no locks, no client, no clock; the bridge holds its lock around it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

WAITING: Final = 0  # not settled yet: holds back every later acknowledgement
ACK: Final = 1  # durable: acknowledge (QoS 1 only; a QoS 0 message has nothing to send)
SKIP: Final = 2  # not durable, or nothing to say: never acknowledged by this entry


@dataclass(slots=True)
class Ack:
    """A received message in arrival order: waiting, to acknowledge, or to skip. QoS 0
    messages have one too, acknowledged by nobody, so that a drain waits for them."""

    mid: int  # the packet id the broker gave it
    qos: int
    generation: int  # the connection that delivered it
    state: int = WAITING
    record: bool = False  # a row in mqtt_deliveries remembers its arrival time


class AckOrder:
    """Received messages waiting for their acknowledgement, oldest first."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: deque[Ack] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, mid: int, qos: int, generation: int) -> Ack:
        """A message arrived (after every message already added); its entry, waiting."""
        entry = Ack(mid, qos, generation)
        self._entries.append(entry)
        return entry

    def clear(self) -> None:
        """A connection began or ended: what it delivered is never acknowledged now."""
        self._entries.clear()

    def due(self, generation: int | None) -> list[Ack]:
        """Take the settled entries at the head, in arrival order, up to the first one still
        waiting; return those to acknowledge on connection ``generation`` now: settled to
        acknowledge, QoS 1 or 2, and delivered by that connection. ``None``: no connection
        to send on; the settled entries are taken and nothing is due."""
        entries = self._entries
        out: list[Ack] = []
        while entries and entries[0].state != WAITING:
            entry = entries.popleft()
            if (generation is not None and entry.state == ACK and entry.qos
                    and entry.generation == generation):
                out.append(entry)
        return out


__all__ = ["ACK", "SKIP", "WAITING", "Ack", "AckOrder"]
