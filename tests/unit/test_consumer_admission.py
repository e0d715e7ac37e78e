"""What the consumer lets in (pure parts): the topic template, the checks of one message,
the seq bound, the batch held once per identity, and what counts as a refused row."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.cloud.admission import Refusal, admit, excerpt
from gateway.cloud.inbox import Ack, Inbox
from gateway.cloud.isolation import reading_excerpt, refused_row
from gateway.config.common import ConfigError
from gateway.config.consumer_config import load_consumer_config
from gateway.core.dedup import seq_jumps
from gateway.core.envelope import MAX_DEPTH, Envelope, decode, encode
from gateway.core.strict_json import nesting_exceeds
from gateway.core.topics import READING_TOPIC_DEFAULT, ReadingTopic, TopicTemplate

DEFAULT = ReadingTopic.compile(READING_TOPIC_DEFAULT)
TOPIC = "gw/gw-1/climate/temperature"
LIMIT = 256 * 1024


def env(seq: int = 1, **fields: object) -> Envelope:
    base: dict[str, object] = {"gateway": "gw-1", "epoch": "20261204T020000Z-0a1b2c3d",
                               "device": "climate", "stream": "temperature", "seq": seq,
                               "ts": 1_796_000_000.0, "value": 21.5, "unit": "°C"}
    base.update(fields)
    return Envelope(**base)  # type: ignore[arg-type]


# -- the topic template ----------------------------------------------------------
def test_the_default_template_matches_the_gateways_default_prefix() -> None:
    prefix = TopicTemplate.compile("gw/{gateway}", "gw-1")  # the gateway's default
    assert DEFAULT.identity(prefix.topic("climate", "temperature")) == (
        "gw-1", "climate", "temperature")


@pytest.mark.parametrize("topic", ["gw/gw-1/climate", "gw/gw-1/climate/temperature/x",
                                   "xx/gw-1/climate/temperature", "gw//climate/temperature",
                                   "gw/gw-1/_confirm"])
def test_a_topic_of_another_shape_names_no_identity(topic: str) -> None:
    assert DEFAULT.identity(topic) is None


def test_a_template_with_the_gateway_inside_a_level() -> None:
    rule = ReadingTopic.compile("plant/site-{gateway}/v1/{device}/{stream}")
    assert rule.identity("plant/site-gw-7/v1/meter/power") == ("gw-7", "meter", "power")
    assert rule.identity("plant/gw-7/v1/meter/power") is None


@pytest.mark.parametrize(("template", "why"), [
    ("gw/{device}/{stream}", "{gateway} exactly once"),
    ("gw/{gateway}/{gateway}/{device}/{stream}", "{gateway} exactly once"),
    ("gw/{gateway}/{stream}/{device}", "must end with"),
    ("gw/{gateway}", "must end with"),
    ("gw/+/{gateway}/{device}/{stream}", "'+'"),
    ("gw/{site}/{gateway}/{device}/{stream}", "unknown placeholder"),
])
def test_a_template_that_cannot_name_an_identity_is_refused(template: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("+", r"\+").replace("{", r"\{")
                       .replace("}", r"\}")):
        ReadingTopic.compile(template)


# -- one message -------------------------------------------------------------------
def test_a_good_reading_is_admitted() -> None:
    assert admit(TOPIC, encode(env()), DEFAULT, LIMIT) == env()


def test_size_is_checked_before_anything_is_decoded() -> None:
    payload = b"\xff" * (LIMIT + 1)  # not even UTF-8: still too_large, never decoded
    refusal = admit(TOPIC, payload, DEFAULT, LIMIT)
    assert isinstance(refusal, Refusal)
    assert (refusal.reason, len(refusal.excerpt) <= 512) == ("too_large", True)
    assert str(LIMIT + 1) in refusal.detail
    assert isinstance(admit(TOPIC, encode(env(value="x" * 1000)), DEFAULT, 1200), Envelope)


def test_nesting_is_bounded_before_parsing() -> None:
    value: object = 1
    for _ in range(MAX_DEPTH):
        value = [value]
    payload = encode(env(value=value))
    refusal = admit(TOPIC, payload, DEFAULT, LIMIT)
    assert isinstance(refusal, Refusal) and refusal.reason == "too_deep", refusal
    # The envelope itself is one level: a value nested MAX_DEPTH - 1 deep is fine.
    value = 1
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    assert isinstance(admit(TOPIC, encode(env(value=value)), DEFAULT, LIMIT), Envelope)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"v": 1, "value": "[" * 100 + '\\"{' * 50})
    assert not nesting_exceeds(text, 2)
    assert nesting_exceeds("[" * 3 + "]" * 3, 2)
    assert not nesting_exceeds("[" * 3 + "]" * 3, 3)


@pytest.mark.parametrize(("fields", "topic", "field"), [
    ({"device": "d" * 8000}, "gw/gw-1/" + "d" * 8000 + "/temperature", "device"),
    ({"gateway": "gw 1"}, "gw/gw 1/climate/temperature", "gateway"),
    ({"gateway": "g" * 65}, f"gw/{'g' * 65}/climate/temperature", "gateway"),
    ({"stream": "temp\tx"}, "gw/gw-1/climate/temp\tx", "stream"),
    ({"epoch": "e" * 65}, TOPIC, "epoch"),
    ({"epoch": "a/b"}, TOPIC, "epoch"),
])
def test_names_follow_the_gateways_config_rules(fields: dict[str, object], topic: str,
                                                field: str) -> None:
    refusal = admit(topic, encode(env(**fields)), DEFAULT, LIMIT)
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "bad_name" and refusal.detail.startswith(field), refusal.detail
    assert len(refusal.detail) < 200 and len(refusal.excerpt) <= 512


@pytest.mark.parametrize(("topic", "fields"), [
    ("gw/attacker-gw/climate/temperature", {"gateway": "victim-gw"}),
    ("gw/gw-1/other/temperature", {}),
    ("gw/gw-1/climate/other", {}),
    ("gw/gw-1/climate", {}),
    ("elsewhere/gw-1/climate/temperature", {}),
])
def test_a_payload_must_carry_the_identity_its_topic_names(topic: str,
                                                           fields: dict[str, object]) -> None:
    refusal = admit(topic, encode(env(**fields)), DEFAULT, LIMIT)
    assert isinstance(refusal, Refusal) and refusal.reason == "topic_mismatch"
    assert refusal.topic == topic
    assert "the payload says gateway=" in refusal.detail


def test_undecodable_payloads_keep_their_reasons() -> None:
    refusal = admit(TOPIC, b"not json", DEFAULT, LIMIT)
    assert isinstance(refusal, Refusal) and refusal.reason == "bad_json"
    assert refusal.excerpt == "not json"


def test_excerpts_are_ascii_and_bounded() -> None:
    text = excerpt(b"\x00\xff" + "°".encode() * 1000)
    assert text.isascii() and len(text) <= 512 and "\x00" not in text
    odd = reading_excerpt(env(value="\ud800\x00" * 1000, device="\udc80"))
    assert odd.isascii() and len(odd) <= 512


# -- the seq bound -------------------------------------------------------------------
S = ("gw-1", "E1", "climate", "temperature")
H = ("gw-1", "E1", "climate", "humidity")


def jumps(items: list[tuple[tuple[str, str, str, str], int]], stored: dict[Any, int],
          bound: int, last: dict[Any, int] | None = None) -> set[int]:
    return seq_jumps(items, stored, bound, last)[0]


def test_a_seq_more_than_the_bound_beyond_max_seq_is_a_jump() -> None:
    assert jumps([(S, 11), (S, 23)], {S: 1}, 10) == {1}
    assert jumps([(S, 12)], {S: 1}, 10) == {0}
    assert seq_jumps([(S, 2**63 - 1), (S, 3)], {S: 2}, 1_000_000) == ({0}, {S: 2**63 - 1})


def test_first_contact_has_no_bound_and_starts_at_the_lowest_seq() -> None:
    assert jumps([(S, 2**63 - 1)], {}, 10) == set()
    assert jumps([(S, 2**63 - 1), (S, 1), (S, 2)], {}, 10) == {0}
    assert jumps([(S, 50), (H, 5)], {H: 1}, 10) == set()


def test_the_seq_bound_does_not_depend_on_arrival_order() -> None:
    seqs = [1, 8, 15, 22, 40]
    forward = jumps([(S, s) for s in seqs], {}, 10)
    backward = jumps([(S, s) for s in reversed(seqs)], {}, 10)
    assert forward == {4} and backward == {0}  # seq 40 either way


def test_a_stream_that_goes_on_after_a_jump_is_let_in() -> None:
    """More than `bound` at-most-once readings lost must not stop the stream for good:
    the first reading past the jump is refused, the next one near it lets the stream on."""
    assert seq_jumps([(S, 500)], {S: 10}, 100) == ({0}, {S: 500})
    assert seq_jumps([(S, 501), (S, 502)], {S: 10}, 100, {S: 500}) == (set(), {S: None})
    assert seq_jumps([(S, 500), (S, 501)], {S: 10}, 100) == ({0}, {S: None}), "in one batch"


def test_a_redelivered_jump_does_not_let_itself_in() -> None:
    assert seq_jumps([(S, 2**63 - 1)], {S: 10}, 100, {S: 2**63 - 1}) == ({0}, {S: 2**63 - 1})
    assert seq_jumps([(S, 5000)], {S: 10}, 100, {S: 500}) == ({0}, {S: 5000}), "too far"


# -- the batch held once per identity -----------------------------------------------
def test_redelivered_copies_are_held_once_and_every_copy_is_acknowledged() -> None:
    inbox = Inbox()
    for connection in (1, 1, 2, 2):
        for seq in (1, 2, 3):
            inbox.add(Ack(seq * 10 + connection, 1, connection), TOPIC, env(seq))
    assert (len(inbox), inbox.copies) == (3, 12)
    assert [e.seq for e in inbox.envelopes()] == [1, 2, 3]
    acks = inbox.acks(2)
    assert sorted(a.mid for a in acks) == [12, 12, 22, 22, 32, 32], "only the current connection"
    assert inbox.acks(1) == []


def test_copies_sent_again_are_counted_and_redeliveries_after_a_reconnect_are_not() -> None:
    inbox = Inbox()
    for connection in (1, 1, 2, 2):  # the second copy on a connection: the sender's re-send
        for seq in (1, 2, 3):
            inbox.add(Ack(seq * 10 + connection, 1, connection), TOPIC, env(seq))
    assert sorted(e.seq for e in inbox.repeats()) == [1, 1, 2, 2, 3, 3]
    qos0 = Inbox()
    for _ in range(3):
        qos0.add(None, TOPIC, env(7))
    assert [e.seq for e in qos0.repeats()] == [7, 7]


def test_the_first_copy_is_kept_as_the_database_would() -> None:
    inbox = Inbox()
    inbox.add(None, TOPIC, env(1, value=1))
    inbox.add(None, TOPIC, env(1, value=2))
    assert [e.value for e in inbox.envelopes()] == [1]
    assert inbox.acks(0) == [], "QoS 0 has nothing to acknowledge"


def test_refusals_are_held_once_per_payload() -> None:
    inbox = Inbox()
    for payload in (b"junk", b"junk", b"other junk"):
        refusal = admit(TOPIC, payload, DEFAULT, LIMIT)
        inbox.add(Ack(1, 1, 1), TOPIC, refusal)
    assert len(inbox) == 2 and inbox.reject_counts() == {"bad_json": 2}
    assert len(inbox.acks(1)) == 3


# -- refused rows and outages ---------------------------------------------------------
class _ServerError(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__("from the server")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("exc", "refused"), [
    (OverflowError("Python int too large to convert to SQLite INTEGER"), True),
    (sqlite3.IntegrityError("CHECK constraint failed"), True),
    (sqlite3.DataError("string or blob too big"), True),
    (_ServerError("54000"), True),  # index row size exceeds btree maximum
    (_ServerError("22001"), True),  # string data right truncation
    (_ServerError("23514"), True),  # check violation
    (sqlite3.OperationalError("database is locked"), False),
    (sqlite3.OperationalError("database or disk is full"), False),
    (_ServerError("53100"), False),  # disk full
    (_ServerError("08006"), False),  # connection failure
    (_ServerError("57P01"), False),  # admin shutdown
    (_ServerError(None), False),
    (ConnectionResetError(), False),
])
def test_a_refused_row_is_told_from_an_outage(exc: BaseException, refused: bool) -> None:
    assert refused_row(exc) is refused


# -- the config keys ----------------------------------------------------------------
GOOD = """\
version: 1
broker:
  url: mqtt://127.0.0.1:1883
  client_id: consumer-1
"""


def test_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "consumer.yaml"
    path.write_text(GOOD)
    config = load_consumer_config(path)
    assert config.topics.template == "gw/{gateway}/{device}/{stream}"
    assert (config.max_payload, config.max_seq_jump) == (256 * 1024, 1_000_000)


def test_the_keys_are_read(tmp_path: Path) -> None:
    path = tmp_path / "consumer.yaml"
    path.write_text(GOOD + "  topic_template: 'plant/{gateway}/{device}/{stream}'\n"
                    "max_payload: 64KiB\nmax_seq_jump: 1000\n")
    config = load_consumer_config(path)
    assert config.topics.identity("plant/g/d/s") == ("g", "d", "s")
    assert (config.max_payload, config.max_seq_jump) == (64 * 1024, 1000)


@pytest.mark.parametrize(("extra", "key"), [
    ("  topic_template: 'gw/{device}/{stream}'\n", "broker.topic_template"),
    ("max_payload: 10\n", "max_payload"),
    ("max_seq_jump: 0\n", "max_seq_jump"),
])
def test_bad_values_are_config_errors(tmp_path: Path, extra: str, key: str) -> None:
    path = tmp_path / "consumer.yaml"
    path.write_text(GOOD + extra)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_consumer_config(path)


def test_decode_alone_still_reads_a_reading() -> None:
    assert decode(encode(env())) == env()


def test_a_topic_is_shown_on_one_line() -> None:
    refusal = admit("gw/x\nFAKE LOG LINE/d/s", b"junk", DEFAULT, LIMIT)
    assert isinstance(refusal, Refusal) and "\n" not in refusal.topic


@pytest.mark.parametrize(("topic", "fields"), [
    ("gw/gw-1/climate/temperature", {"device": "cli\ud83dmate"}),
    ("gw/gw-1/climate/temperature", {"gateway": "gw-1", "stream": "temperature\udfff"}),
])
def test_details_of_a_refusal_can_be_logged_and_stored(topic: str,
                                                       fields: dict[str, object]) -> None:
    refusal = admit(topic, json.dumps({**json.loads(encode(env())), **fields}).encode(),
                    DEFAULT, LIMIT)
    assert isinstance(refusal, Refusal)
    refusal.detail.encode("utf-8")  # no lone surrogate left
    assert "\x00" not in refusal.detail and "\n" not in refusal.detail
