"""The `batching:` block of the gateway config, and the RowBatcher's splitting to fit."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.registry import DRIVERS
from gateway.config.common import ConfigError
from gateway.config.gateway_config import load_gateway_config
from gateway.core.batch import BatchPolicy
from gateway.core.batch_wire import BATCH_LEVEL, decode_message
from gateway.core.envelope import Envelope, encode
from gateway.core.packet_size import publish_packet_size
from gateway.edge.batching import RowBatcher
from gateway.store.outbox import OutboxRow
from tests.unit.test_config_errors import BASE, edit


def _load(tmp_path: Path, text: str) -> BatchPolicy | None:
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    return load_gateway_config(path, DRIVERS).batching


def test_absent_means_one_reading_per_message(tmp_path: Path) -> None:
    assert _load(tmp_path, BASE) is None


def test_the_block_is_read(tmp_path: Path) -> None:
    text = BASE + "batching:\n  max_readings: 100\n  max_delay: 2s\n  compression: zlib\n"
    assert _load(tmp_path, text) == BatchPolicy(100, 2.0, "zlib")
    assert _load(tmp_path, BASE + "batching: {}\n") == BatchPolicy(100, 2.0, "none")


@pytest.mark.parametrize(("block", "key"), [
    ("batching:\n  max_readings: 0\n", "batching.max_readings"),
    ("batching:\n  max_readings: 1001\n", "batching.max_readings"),
    ("batching:\n  max_delay: soon\n", "batching.max_delay"),
    ("batching:\n  compression: gzip\n", "batching.compression"),
    ("batching:\n  max_reading: 5\n", "batching.max_reading"),
    ("batching: 5\n", "batching"),
])
def test_bad_blocks_name_the_key(tmp_path: Path, block: str, key: str) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(BASE + block)
    with pytest.raises(ConfigError) as caught:
        load_gateway_config(path, DRIVERS)
    assert [p.path for p in caught.value.problems] == [key]


def test_a_stream_may_not_be_named_like_the_batch_level(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(edit("name: temperature", f"name: {BATCH_LEVEL}"))
    with pytest.raises(ConfigError, match="reserved for batches"):
        load_gateway_config(path, DRIVERS)


def _row(row_id: int, value: object, qos: int = 1) -> OutboxRow:
    env = Envelope("g1", "e1", "dev", "s", row_id, 1.7e9 + row_id, value, None)
    return OutboxRow(row_id, "dev", "s", row_id, qos, "gw/g1/dev/s", encode(env), False, False)


def test_row_batcher_splits_to_the_broker_packet_size() -> None:
    max_packet = 600

    def fits(topic: str, payload: bytes, qos: int) -> bool:
        return publish_packet_size(topic, len(payload), qos) <= max_packet

    now = [0.0]
    batcher = RowBatcher(BatchPolicy(50, 1.0, "none"), fits, clock=lambda: now[0])
    for i in range(1, 21):
        assert batcher.add(_row(i, i)) is None
    assert batcher.add(_row(3, 3)) is None and len(batcher) == 20  # already waiting
    assert batcher.add(_row(30, "x" * 700)) is None
    assert batcher.add(_row(31, 5, qos=2)) is None
    assert batcher.take(10) == ([], [])  # nothing due yet
    now[0] = 1.0
    batches, alone = batcher.take(10)
    assert [row.id for row in alone] == [30]
    assert all(publish_packet_size(b.topic, len(b.payload), b.qos) <= max_packet for b in batches)
    assert {b.topic for b in batches} == {"gw/g1/dev/_batch"}
    sent = [row.id for b in batches for row in b.rows]
    assert sorted(sent) == [*range(1, 21), 31] and len(batcher) == 0
    assert [b.qos for b in batches if any(r.id == 31 for r in b.rows)] == [2]
    assert batcher.splits >= 1
    decoded = [e for b in batches for e in decode_message(b.topic, b.payload)]
    assert sorted(e.seq for e in decoded if isinstance(e, Envelope)) == sorted(sent)


def test_row_batcher_counts_the_bytes_it_holds() -> None:
    batcher = RowBatcher(BatchPolicy(10, 0.0, "none"), lambda *_: True)
    rows = [_row(i, "x" * 1000) for i in range(1, 4)]
    for row in rows:
        batcher.add(row)
    assert batcher.waiting_bytes == sum(len(r.payload) for r in rows) and not batcher.full
    batcher.take(10)
    assert batcher.waiting_bytes == 0 and len(batcher) == 0
