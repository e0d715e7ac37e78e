"""A full disk under a running gateway: its state dir on a small tmpfs, filled and freed.

Every part is real (mosquitto, gateway and consumer processes, a pty device);
the disk is a 6 MiB tmpfs mounted on `<workdir>/state` before the gateway
starts (the tests run as root; a mount that is not permitted fails the test).
While the broker is unreachable the gateway keeps reading and storing until
the disk is full, then drops new durable readings and counts them as
`disk_full`; with the broker back the stored rows are sent and deleted while
the disk is still full; once the ballast goes, storing resumes with no
restart. The proof, per durable class: every reading the device sent is
delivered exactly once or counted as disk_full, never both, never neither.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.rig import DURABLE, Rig
from tests.support.tmpfs import Tmpfs, mounted_tmpfs
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FULL = "disk full, new durable readings are dropped"
BACK = "disk space is back"


@pytest.fixture
def state_disk(tmp_path: Path) -> Iterator[Tmpfs]:
    """A 6 MiB tmpfs on the rig's state dir, unmounted after the rig's gateway stopped."""
    with mounted_tmpfs(tmp_path / "state") as disk:
        yield disk


def disk_full(rig: Rig, stream: str) -> int:
    rows = rig.store_query("SELECT coalesce(sum(count), 0) FROM drops "
                           "WHERE reason = 'disk_full' AND stream = ?", (stream,))
    return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]


def pending(rig: Rig) -> int:
    rows = rig.store_query("SELECT count(*) FROM outbox")
    return int(rows[0][0]) if rows else -1  # type: ignore[call-overload]


def accounted(rig: Rig) -> bool:
    """Every durable reading sent so far is stored (given a seq) or counted as disk_full."""
    return all(rig.gateway_stored(s) + disk_full(rig, s) >= len(rig.sent) for s in DURABLE)


def test_a_full_disk_drops_and_counts_new_readings_sends_stored_ones_and_recovers(
        rig_factory: type[Rig], state_disk: Tmpfs) -> None:
    rig = rig_factory(via_proxy=True)
    assert rig.proxy is not None
    try:
        rig.start_consumer()
        rig.start_gateway()
        rig.gateway.wait_log(r"connected to broker")
        rig.send(100)
        rig.wait_delivered()

        # The broker out of reach: rows pile up; then the disk is filled.
        rig.proxy.refuse()
        rig.gateway.wait_log(r"connection to .* lost|cannot reach", timeout=15)
        rig.send(200)
        rig.wait_stored()
        state_disk.fill()
        for _ in range(40):
            rig.send(100, per_second=2000)
            wait_for(lambda: accounted(rig), timeout=15, what="readings committed or counted")
            if FULL in rig.gateway.log_text():
                break
        rig.gateway.wait_log(FULL, timeout=5)
        rig.send(50)  # read while the disk is full
        wait_for(lambda: accounted(rig), timeout=15, what="readings committed or counted")
        assert all(disk_full(rig, s) > 0 for s in DURABLE)
        stored_while_full = pending(rig)
        assert stored_while_full >= 2 * 200

        # The broker back, the disk still full: what is stored is sent, and deleted.
        rig.proxy.allow()
        wait_for(lambda: pending(rig) == 0, timeout=60, what="the stored rows sent and deleted")
        assert state_disk.ballast.exists()

        # Room again: storing resumes by itself (a commit with readings finds the room).
        state_disk.free()
        wait_for(lambda: (rig.send(5), BACK in rig.gateway.log_text())[1], timeout=30,
                 interval=0.2, what="the gateway storing again")
        rig.send(100)
        tail = set(rig.sent[-100:])
        wait_for(lambda: all(tail <= set(rig.values(s)) for s in DURABLE), timeout=30,
                 what="readings sent after the recovery delivered")
        wait_for(lambda: all(rig.counts(s).delivered + disk_full(rig, s) >= len(rig.sent)
                             for s in DURABLE), timeout=30, what="every reading accounted for")
        table = rig.report("disk full while the broker was unreachable, then freed")
        for stream in DURABLE:
            c, dropped = table[stream], disk_full(rig, stream)
            print(f"  {stream}: disk_full {dropped}, stored while full {stored_while_full} rows")
            assert dropped > 0, c.line()
            assert c.duplicates_in_readings == 0, c.line()
            assert c.delivered + dropped == c.produced, c.line()  # delivered or counted, not both
            assert c.lost == dropped == c.gateway_drops, c.line()
            assert c.stored_by_gateway == c.produced - dropped, c.line()  # no seq for a drop
            assert c.consumer_gaps == 0, c.line()
        assert table["amo"].duplicates_in_readings == 0, table["amo"].line()
        status = rig.status()
        assert status["drops"]["disk_full"] == sum(  # type: ignore[index]
            disk_full(rig, s) for s in DURABLE)

        assert rig.gateway.terminate() == 0
        log = rig.gateway.log_text()
        assert "Traceback" not in log
        assert log.count(FULL) == log.count(BACK) >= 1  # each episode logged once, each ended
    finally:
        rig.gateway.ensure_stopped()
