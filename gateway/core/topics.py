"""Topic segments and the topic template `{topic_prefix}/{device}/{stream}`.

Checked once at config time so the publisher never hands the broker a topic
that would make it drop the connection (a NUL or a wildcard in a topic name
makes paho reconnect and resend forever).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GATEWAY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FORBIDDEN = ("/", "+", "#", "\x00")
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
    if any(ch.isspace() for ch in value):
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
