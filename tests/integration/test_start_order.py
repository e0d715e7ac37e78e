"""With the shipped defaults (no `confirmation:` key) the start order does not matter.

Each test runs the real parts (a mosquitto of its own, a gateway and a
consumer as processes, a pty sensor) with no wire tap, so the consumer is the
broker's only subscriber, and states its proof as counts per delivery class:
for at-least-once and exactly-once, 0 lost and 0 duplicates in `readings`.
Without end-to-end confirmation, mosquitto's silent drop of QoS 2 messages
that have no subscriber lost the exactly-once readings of the first two runs.
"""

from __future__ import annotations

from tests.support.rig import Rig, assert_durable_exact
from tests.support.waiting import wait_for

DELIVERY = 120.0  # held rows are sent again once a consumer confirms anything


def _no_gaps_above_first_contact(rig: Rig) -> None:
    for stream in ("alo", "eo"):
        assert rig.counts(stream).consumer_gaps == 0, rig.counts(stream).line()


def test_gateway_first_consumer_seconds_later(rig_factory: type[Rig]) -> None:
    rig = rig_factory(tap=False)
    rig.start_gateway()
    rig.gateway.wait_log(r"connected to broker")
    rig.send(100)
    rig.wait_stored()
    # The broker has taken readings nobody subscribed to: QoS 1 answered 0x10 (kept),
    # QoS 2 accepted and dropped by mosquitto (held for the consumer's confirmation).
    rig.gateway.wait_log(r"No matching subscribers \(0x10\)", timeout=20)
    rig.gateway.wait_log(r"broker acknowledged the first stored reading", timeout=20)
    rig.start_consumer()
    rig.send(100)
    rig.wait_delivered(timeout=DELIVERY)
    table = rig.report("gateway first, consumer later (shipped defaults)")
    assert_durable_exact(table)
    _no_gaps_above_first_contact(rig)
    wait_for(lambda: rig.status()["backlog"]["exactly-once"]["pending"] == 0,  # type: ignore[index]
             timeout=30, what="every exactly-once row confirmed and deleted")


def test_consumer_first(rig_factory: type[Rig]) -> None:
    rig = rig_factory(tap=False)
    rig.start_consumer()
    rig.start_gateway()
    rig.send(150)
    rig.wait_delivered(timeout=DELIVERY)
    table = rig.report("consumer first (shipped defaults)")
    assert_durable_exact(table)
    _no_gaps_above_first_contact(rig)


def test_broker_restart_without_persistence_while_the_consumer_is_away(
        rig_factory: type[Rig]) -> None:
    rig = rig_factory(broker_persistent=False, tap=False)
    rig.restart_broker_while_consumer_away()
    rig.wait_delivered(timeout=DELIVERY)
    table = rig.report("broker restarted without persistence, consumer away meanwhile")
    assert_durable_exact(table)
    _no_gaps_above_first_contact(rig)


def test_broker_sigkill_without_persistence_and_consumer_sigkill(rig_factory: type[Rig]) -> None:
    rig = rig_factory(broker_persistent=False, tap=False)
    rig.start_consumer()
    rig.start_gateway()
    for round_ in range(2):
        rig.send(100)
        rig.broker.kill()
        rig.restart_broker()
        rig.send(50)
        rig.consumer.kill()
        rig.start_consumer()
        rig.gateway.wait_log(r"connected to broker", timeout=40, count=round_ + 2)
    rig.send(50)
    rig.wait_delivered(timeout=DELIVERY)
    table = rig.report("broker SIGKILL x2 (no persistence) and consumer SIGKILL x2")
    assert_durable_exact(table)
