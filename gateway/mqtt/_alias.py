"""MQTT 5 topic aliases for outgoing PUBLISHes, where the broker allows them.

The first message to a topic carries the topic and a new alias; later ones carry only
the alias (two bytes instead of the topic), up to the broker's Topic Alias Maximum from
CONNACK. Aliases live as long as the connection: messages paho keeps to resend after a
reconnect get their topic back and lose the alias first (`restore`), since the next
connection, maybe to another broker, knows none of them.
"""

from __future__ import annotations

from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class AliasProperties(Properties):
    """PUBLISH properties holding one topic alias, packed once (paho packs properties
    on every send, which would cost more than the alias saves)."""

    def __init__(self, alias: int) -> None:
        super().__init__(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        self.TopicAlias = alias
        # Properties takes only property names as attributes: these two go around it.
        object.__setattr__(self, "alias", alias)
        object.__setattr__(self, "_packed", super().pack())  # type: ignore[no-untyped-call]

    alias: int
    _packed: bytes

    def pack(self) -> bytes:
        """The packed form, computed once."""
        return self._packed


class TopicAliases:
    """The aliases of one connection."""

    def __init__(self) -> None:
        self.maximum = 0  # 0: no aliases on this connection
        self._by_topic: dict[str, AliasProperties] = {}
        self._topics: dict[int, str] = {}

    def route(self, topic: str) -> tuple[str, AliasProperties | None]:
        """The topic to send (empty once the alias is known) and the alias property."""
        props = self._by_topic.get(topic)
        if props is not None:
            return "", props
        if len(self._by_topic) >= self.maximum:
            return topic, None
        props = AliasProperties(len(self._by_topic) + 1)
        self._by_topic[topic] = props
        self._topics[props.alias] = topic
        return topic, props  # sets the alias at the broker

    def restore(self, out_messages: dict[int, Any]) -> None:
        """Before paho resends: give each kept message its topic back, without the alias."""
        for message in out_messages.values():
            props = message.properties
            if isinstance(props, AliasProperties):
                message._topic = self._topics[props.alias].encode()
                message.properties = None

    def reset(self, maximum: int) -> None:
        """A new connection allowing `maximum` aliases (0: none)."""
        self.maximum = maximum
        self._by_topic.clear()
        self._topics.clear()
