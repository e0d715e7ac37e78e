"""The gateway's group commit on a real full disk (a tmpfs): what it drops, counts and keeps.

`Gateway.commit` is driven by hand (no broker, no event loop): readings go in
through the intake, acknowledgements through the publisher's ledger of row states.
"""

from __future__ import annotations

import os
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.registry import DRIVERS
from gateway.config.gateway_config import GatewayConfig, load_gateway_config
from gateway.core.outbox_states import RowEvent
from gateway.edge.service import Gateway
from gateway.store.outbox import NewReading, Outbox
from tests.adapters.test_store import query
from tests.support.tmpfs import Tmpfs, mounted_tmpfs

GW = "gw-disk"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Tmpfs]:
    with mounted_tmpfs(tmp_path / "state") as disk:
        yield disk


def config(tmp_path: Path) -> GatewayConfig:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        gateway:
          id: {GW}
          state_dir: {tmp_path / 'state'}
        broker:
          url: mqtt://127.0.0.1:1
        devices:
          - id: dev
            driver: simulator
            streams:
              - {{name: alo, field: counter, delivery: at-least-once}}
              - {{name: eo, field: counter, delivery: exactly-once}}
        """))
    return load_gateway_config(path, DRIVERS)


def readings(n: int) -> list[NewReading]:
    return [NewReading("dev", "alo" if i % 2 else "eo", 1 if i % 2 else 2, 1.7e9, i, None,
                       f"gw/{GW}/dev/x") for i in range(n)]


def open_store(cfg: GatewayConfig) -> Outbox:
    return Outbox.open(cfg.store_path, cfg.gateway_id, durability="normal",
                       max_bytes=cfg.store.max_bytes)


def test_a_commit_with_no_room_counts_its_readings_as_disk_full_and_keeps_the_acks(
        tmp_path: Path, disk: Tmpfs) -> None:
    cfg = config(tmp_path)
    box = open_store(cfg)
    box.commit(readings(2000), [], [], Counter())
    box.close(clean=True)  # the WAL is truncated: the next write must grow it

    box = open_store(cfg)
    gateway = Gateway(cfg, box)
    try:
        ids = [r.id for r in box.fetch(0, 5000)]
        disk.fill()
        os.unlink(box.reserve.path)
        disk.fill()  # no room, no reserve: not even the deletes fit
        for r in readings(6):
            gateway.intake.accept(r)
        for row_id in ids:  # sent and acknowledged: deleted at the next commit
            gateway.publisher.rows.move(row_id, RowEvent.SEND)
            gateway.publisher.rows.move(row_id, RowEvent.ACK_DELIVERED)
        gateway.commit()
        assert gateway.commit_failures == 1
        assert box.disk_full
        assert gateway.publisher.acked == ids  # kept for the next commit: nothing lost
        assert gateway.intake.drops == Counter({("disk_full", "dev", "alo"): 3,
                                                ("disk_full", "dev", "eo"): 3})
        assert box.pending_count() == 2000

        disk.free()
        for r in readings(4):  # refused until the probe back-off passes: counted too
            gateway.intake.accept(r)
        gateway.commit()
        assert box.pending_count() == 0  # the kept acks went through
        assert gateway.publisher.acked == []
        assert query(box.path, "SELECT stream, count FROM drops WHERE reason = 'disk_full' "
                     "ORDER BY stream") == [("alo", 5), ("eo", 5)]
        assert gateway.intake.dropped_total == 10
        assert gateway.stored == 0
    finally:
        box.close(clean=True)
