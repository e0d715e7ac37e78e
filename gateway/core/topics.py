"""Topic segments, the topic template `{topic_prefix}/{device}/{stream}`, and the
consumer's reading of it (`ReadingTopic`: which identity a topic names).

Checked once at config time so the publisher never hands the broker a topic
that would make it drop the connection (a NUL or a wildcard in a topic name
makes paho reconnect and resend forever).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GATEWAY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FORBIDDEN = ("/", "+", "#", "\x00")
_SPACE = re.compile(r"\s")  # str.isspace's characters
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
MAX_TOPIC_BYTES = 65535
SEGMENT_EXPECTED = "a topic segment: 1-64 characters without '/', '+', '#', NUL or spaces"


def segment_problem(value: str) -> str | None:
    """Why `value` cannot be one level of a topic, or None when it can."""
    if not value:
        return "it is empty"
    if len(value) > 64:
        return "it is longer than 64 characters"
    for bad in _FORBIDDEN:
        if bad in value:
            return f"it contains {bad!r}"
    if _SPACE.search(value):
        return "it contains white space"
    return None


@dataclass(frozen=True)
class TopicTemplate:
    """A compiled topic prefix; `topic(device, stream)` builds a publish topic."""

    prefix: str

    @classmethod
    def compile(cls, template: str, gateway: str) -> TopicTemplate:
        """Substitute `{gateway}` and check the result.

        Raises:
            ValueError: with a message saying what is wrong with the template.
        """
        names = _PLACEHOLDER.findall(template)
        for name in names:
            if name != "gateway":
                raise ValueError(f"unknown placeholder {{{name}}} (only {{gateway}} is known)")
        prefix = template.replace("{gateway}", gateway)
        if "{" in prefix or "}" in prefix:
            raise ValueError("unbalanced '{' or '}'")
        if not prefix:
            raise ValueError("it is empty")
        if prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError("it starts or ends with '/'")
        if prefix.startswith("$"):
            raise ValueError("it starts with '$' (reserved for the broker)")
        for level in prefix.split("/"):
            problem = segment_problem(level)
            if problem is not None:
                raise ValueError(f"level {level!r} is not valid: {problem}")
        return cls(prefix)

    def topic(self, device: str, stream: str) -> str:
        """The publish topic of one stream."""
        return f"{self.prefix}/{device}/{stream}"


READING_TOPIC_DEFAULT = "gw/{gateway}/{device}/{stream}"
_READING_TAIL = "/{device}/{stream}"


@dataclass(frozen=True)
class ReadingTopic:
    """The consumer's view of the gateways' topics: `{topic_prefix}/{device}/{stream}` with
    `{gateway}` in the prefix, so that a topic names the identity its payload must carry.

    The default matches the gateway's default `topic_prefix`, `gw/{gateway}`.
    """

    template: str
    pattern: re.Pattern[str]

    @classmethod
    def compile(cls, template: str) -> ReadingTopic:
        """Check a template such as `gw/{gateway}/{device}/{stream}`.

        Raises:
            ValueError: with a message saying what is wrong with the template.
        """
        if not template.endswith(_READING_TAIL):
            raise ValueError("it must end with /{device}/{stream} (as the gateway publishes)")
        prefix = template[:-len(_READING_TAIL)]
        if prefix.count("{gateway}") != 1:
            raise ValueError("its prefix must hold {gateway} exactly once, so that a topic "
                             "names its gateway")
        TopicTemplate.compile(prefix, "gateway")  # the gateway's rules for topic_prefix
        head, tail = prefix.split("{gateway}")
        return cls(template, re.compile(f"{re.escape(head)}([^/]+){re.escape(tail)}"
                                        "/([^/]+)/([^/]+)"))

    def status_gateway(self, topic: str) -> str | None:
        """The gateway a `{topic_prefix}/_status` topic names, or None when it names none."""
        named = self.identity(f"{topic}/_")  # read as the device `_status` of that prefix
        return named[0] if named is not None and named[1] == "_status" else None

    def identity(self, topic: str) -> tuple[str, str, str] | None:
        """(gateway, device, stream) a reading's topic names, or None when it names none."""
        found = self.pattern.fullmatch(topic)
        if found is None:
            return None
        gateway, device, stream = found.groups()
        return gateway, device, stream
