"""The order of MQTT acknowledgements (``firmware_bridge.mqtt_acks``), alone: no broker, no
client, no threads. PUBACKs go out in arrival order (MQTT-4.6.0-2), never past a message
still waiting, and only on the connection that delivered the message."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.mqtt_acks import ACK, SKIP, WAITING, AckOrder


def mids(entries: list) -> list[int]:  # type: ignore[type-arg]
    return [entry.mid for entry in entries]


def test_a_waiting_message_holds_back_every_later_acknowledgement() -> None:
    order = AckOrder()
    first, second, third = (order.add(mid, 1, 7) for mid in (10, 11, 12))
    third.state = ACK
    second.state = ACK
    assert order.due(7) == []  # 10 is not durable yet: 11 and 12 wait for it
    assert len(order) == 3
    first.state = ACK
    assert mids(order.due(7)) == [10, 11, 12]
    assert len(order) == 0
    assert order.due(7) == []  # each acknowledgement is due once


def test_skipped_and_qos0_messages_are_passed_but_never_acknowledged() -> None:
    order = AckOrder()
    skipped = order.add(1, 1, 1)
    qos0 = order.add(2, 0, 1)
    stored = order.add(3, 1, 1)
    waiting = order.add(4, 1, 1)
    skipped.state, qos0.state, stored.state = SKIP, ACK, ACK
    assert mids(order.due(1)) == [3]
    assert waiting.state == WAITING and len(order) == 1


def test_messages_of_another_connection_are_never_acknowledged() -> None:
    order = AckOrder()
    old = order.add(5, 1, generation=1)
    new = order.add(5, 1, generation=2)  # the broker reused packet id 5 on the new connection
    old.state = new.state = ACK
    assert order.due(2) == [new]


def test_without_a_connection_settled_messages_are_dropped_not_kept_for_later() -> None:
    order = AckOrder()
    order.add(1, 1, 3).state = ACK
    assert order.due(None) == []
    assert len(order) == 0  # a later connection must not send this PUBACK
    order.add(2, 1, 3).state = ACK
    order.clear()
    assert order.due(3) == [] and len(order) == 0


@settings(deadline=None, database=None)
@given(settle=st.permutations(range(12)), states=st.lists(st.sampled_from([ACK, SKIP]),
                                                           min_size=12, max_size=12))
def test_any_settling_order_acknowledges_in_arrival_order(settle: list[int],
                                                          states: list[int]) -> None:
    order = AckOrder()
    entries = [order.add(mid, 1, 1) for mid in range(12)]
    sent: list[int] = []
    for index in settle:
        entries[index].state = states[index]
        sent += mids(order.due(1))
        # Nothing after the first waiting message has been sent.
        waiting = [e.mid for e in entries if e.state == WAITING]
        assert all(mid < waiting[0] for mid in sent) if waiting else True
    assert sent == [mid for mid in range(12) if states[mid] == ACK]
