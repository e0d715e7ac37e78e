"""What the link learns about the brokers it talks to, kept for the run: the MQTT version
each URL speaks and the highest QoS the broker takes. Pure logic, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.config.common import BrokerAddress, BrokerEndpoints

MQTT5 = "5"
MQTT311 = "3.1.1"
UNSUPPORTED_PROTOCOL_VERSION = 0x84  # MQTT 5 reason code; 3.1.1 return code 1 maps to it
RETAIN_NOT_SUPPORTED = 0x9A
QOS2_REFUSAL_WINDOW = 5.0  # a drop this soon after an unanswered QoS 2 PUBLISH is a refusal


@dataclass
class BrokerChoice:
    """Which URL is next, in which MQTT version, and the QoS ceiling."""

    endpoints: BrokerEndpoints
    index: int = 0
    # URLs found (in `auto`) to speak only 3.1.1, by index
    downgraded: set[int] = field(default_factory=set)
    # Of them, those downgraded on a connection closed before any CONNACK, until a 3.1.1
    # CONNACK confirms it (a proxy in front of a broker that is down closes it too)
    tentative: set[int] = field(default_factory=set)
    spoke5: set[int] = field(default_factory=set)  # URLs that answered an MQTT 5 CONNECT
    connack_max_qos: int = 2  # of the current connection (MQTT 5 CONNACK Maximum QoS)
    learnt_max_qos: int = 2  # lowered when the broker closes the connection on QoS 2

    @property
    def address(self) -> BrokerAddress:
        """The URL in use, or tried next."""
        return self.endpoints.addresses[self.index]

    @property
    def protocol(self) -> str:
        """The MQTT version to use with the current URL."""
        if self.endpoints.protocol == MQTT311 or self.index in self.downgraded:
            return MQTT311
        return MQTT5

    def next_url(self) -> None:
        """Move on to the next URL (after a failed attempt or a lost connection)."""
        self.index = (self.index + 1) % len(self.endpoints.addresses)

    def downgrade(self, reason_code: int | None) -> bool:
        """After a refusal (its reason code) or a connection closed before CONNACK (None):
        True when the attempt should be repeated at once in MQTT 3.1.1."""
        if self.endpoints.protocol != "auto" or self.protocol != MQTT5:
            return False
        if reason_code is not None and reason_code != UNSUPPORTED_PROTOCOL_VERSION:
            return False
        if reason_code is None:
            if self.index in self.spoke5:
                return False
            self.tentative.add(self.index)
        self.downgraded.add(self.index)
        return True

    def answered(self) -> None:
        """A CONNACK came (accepting or refusing) in the current version."""
        if self.protocol == MQTT5:
            self.spoke5.add(self.index)
        else:
            self.tentative.discard(self.index)

    def unanswered(self) -> None:
        """The connection closed before any CONNACK: a tentative 3.1.1 is undone (that
        was no answer to the version either)."""
        if self.index in self.tentative:
            self.tentative.discard(self.index)
            self.downgraded.discard(self.index)

    @property
    def max_qos(self) -> int:
        """The highest QoS to publish and subscribe at."""
        configured = self.endpoints.max_qos
        ceiling = min(self.connack_max_qos, self.learnt_max_qos)
        return ceiling if configured is None else min(configured, ceiling)

    @property
    def max_qos_source(self) -> str:
        """Where the ceiling comes from, for status and logs."""
        if self.endpoints.max_qos is not None and self.endpoints.max_qos <= self.max_qos:
            return "broker.max_qos"
        if self.learnt_max_qos < self.connack_max_qos:
            return "learnt: the broker closed the connection on a QoS 2 PUBLISH"
        if self.connack_max_qos < 2:
            return "CONNACK Maximum QoS"
        return "MQTT"

    def qos2_refused(self, qos2_unanswered_for: float | None) -> bool:
        """After a lost connection: True when it is taken as the broker refusing QoS 2 (the
        connection closed within QOS2_REFUSAL_WINDOW of a QoS 2 PUBLISH nothing answered),
        and the ceiling becomes 1 for the run."""
        if self.endpoints.max_qos is not None or self.learnt_max_qos < 2:
            return False
        if qos2_unanswered_for is None or qos2_unanswered_for > QOS2_REFUSAL_WINDOW:
            return False
        self.learnt_max_qos = 1
        return True
