"""The rules both sides share, pure and standard library only: the wire format (`Envelope`),
stream identity and sequences, deduplication, delivery classes, the in-flight window, topics,
units, backoff, packet sizes, confirmation ranges and report by exception."""

from typing import TYPE_CHECKING

from gateway.core.lazy import lazy_exports

if TYPE_CHECKING:
    from gateway.core.backoff import Backoff
    from gateway.core.confirmation import (
        CONFIRM_LEVEL,
        Mark,
        confirm_topic,
        decode_marks,
        encode_marks,
        is_confirm_topic,
        prefix_of,
        ranges,
        trusted_range,
    )
    from gateway.core.dedup import StreamId, fold
    from gateway.core.delivery import DELIVERY_NAMES, DeliveryClass
    from gateway.core.envelope import (
        MAX_SEQ,
        Envelope,
        JsonValue,
        Undecodable,
        decode,
        encode,
        format_ts,
        json_safe,
    )
    from gateway.core.identity import SequenceCounters, StreamKey, new_epoch
    from gateway.core.inflight import (
        NO_MATCHING_SUBSCRIBERS,
        AckOutcome,
        InflightWindow,
        classify_ack,
    )
    from gateway.core.packet_size import publish_packet_size
    from gateway.core.report_by_exception import ExceptionFilter, ReportPolicy, parse_deadband
    from gateway.core.strict_json import NonFiniteNumberError, loads_strict
    from gateway.core.topics import GATEWAY_ID, SEGMENT_EXPECTED, TopicTemplate, segment_problem
    from gateway.core.units import format_bytes, parse_duration, parse_size

__all__ = [
    "CONFIRM_LEVEL",
    "DELIVERY_NAMES",
    "GATEWAY_ID",
    "MAX_SEQ",
    "NO_MATCHING_SUBSCRIBERS",
    "SEGMENT_EXPECTED",
    "AckOutcome",
    "Backoff",
    "DeliveryClass",
    "Envelope",
    "ExceptionFilter",
    "InflightWindow",
    "JsonValue",
    "Mark",
    "NonFiniteNumberError",
    "ReportPolicy",
    "SequenceCounters",
    "StreamId",
    "StreamKey",
    "TopicTemplate",
    "Undecodable",
    "classify_ack",
    "confirm_topic",
    "decode",
    "decode_marks",
    "encode",
    "encode_marks",
    "fold",
    "format_bytes",
    "format_ts",
    "is_confirm_topic",
    "json_safe",
    "lazy_exports",
    "loads_strict",
    "new_epoch",
    "parse_deadband",
    "parse_duration",
    "parse_size",
    "prefix_of",
    "publish_packet_size",
    "ranges",
    "segment_problem",
    "trusted_range",
]

# Each name is imported from its module when first used (gateway.core.lazy); type checkers
# see the imports above instead, so that a name not exported is an error.
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(__name__, {
        "gateway.core.backoff": ("Backoff",),
        "gateway.core.confirmation": (
            "CONFIRM_LEVEL", "Mark", "confirm_topic", "decode_marks", "encode_marks",
            "is_confirm_topic", "prefix_of", "ranges", "trusted_range",
        ),
        "gateway.core.dedup": ("StreamId", "fold"),
        "gateway.core.delivery": ("DELIVERY_NAMES", "DeliveryClass"),
        "gateway.core.envelope": (
            "MAX_SEQ", "Envelope", "JsonValue", "Undecodable", "decode", "encode", "format_ts",
            "json_safe",
        ),
        "gateway.core.identity": ("SequenceCounters", "StreamKey", "new_epoch"),
        "gateway.core.inflight": (
            "NO_MATCHING_SUBSCRIBERS", "AckOutcome", "InflightWindow", "classify_ack",
        ),
        "gateway.core.packet_size": ("publish_packet_size",),
        "gateway.core.report_by_exception": ("ExceptionFilter", "ReportPolicy", "parse_deadband"),
        "gateway.core.strict_json": ("NonFiniteNumberError", "loads_strict"),
        "gateway.core.topics": ("GATEWAY_ID", "SEGMENT_EXPECTED", "TopicTemplate", "segment_problem"),
        "gateway.core.units": ("format_bytes", "parse_duration", "parse_size"),
    })
