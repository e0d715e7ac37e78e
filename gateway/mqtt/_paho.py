"""What `MqttLink` needs of paho-mqtt's internals, kept in one place.

paho is used without its threads and without its own TCP connect: the client
below takes a socket the event loop already connected, reads PUBREC reason
codes paho ignores, and skips paho's decoding of plain successful
acknowledgements and of PUBLISH packets without properties. It reads the
socket in chunks (paho asks for one byte, then the length, then the rest:
three system calls a packet) and acknowledges a commit's messages in one
write. `attach_to_loop` lets the event loop watch paho's socket and read
every packet that is there, and a log filter keeps paho's repeated
complaints to one per outage.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config.credentials import BrokerSecrets

DEFAULT_RECEIVE_MAXIMUM = 65535  # MQTT 5, 3.2.2.3.3: when CONNACK does not say
READ_CHUNK = 65536  # bytes asked of the socket at once
PACKETS_PER_TURN = 256  # packets read before the event loop runs its other callbacks
_PUBACK_HEAD = bytes((mqtt.PUBACK, 2))  # a PUBACK of success: the packet id alone


class Message(Protocol):
    """What a received message offers: paho's `MQTTMessage` or a `Received`."""

    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def qos(self) -> int: ...
    @property
    def mid(self) -> int: ...
    @property
    def retain(self) -> bool: ...


@dataclass(slots=True)
class Received:
    """A PUBLISH without properties, decoded once (paho's `MQTTMessage` builds a
    Properties object, a lock and an info object per message, and decodes its topic
    on every access)."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool


class RepeatsWhileDown(logging.Filter):
    """Lets paho's warnings and errors through once per outage.

    paho logs e.g. `failed to receive on socket: [SSL: ...]` at ERROR on every
    reconnect attempt; while the broker stays away that is the same line
    again and again. Repeats are dropped (shown at DEBUG level only) until a
    connection succeeds; the gateway's summary line says how long it is down.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        text = record.getMessage()
        if text not in self.seen:
            self.seen.add(text)
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


PAHO_LOG = logging.getLogger("paho")
PAHO_REPEATS = RepeatsWhileDown()
PAHO_LOG.addFilter(PAHO_REPEATS)


class Client(mqtt.Client):
    """paho's client, taking a socket the event loop already connected.

    It also reads the reason code of PUBREC, which paho ignores. A failure
    ends the QoS 2 exchange there (MQTT 5, 4.3.3): the message is reported
    through `on_publish` with that code instead of being sent a PUBREL and
    then reported as delivered. A success other than 0 (0x10, no matching
    subscribers) is kept in `pubrec_codes` so that the PUBCOMP that follows
    is reported with it.
    """

    preconnected: socket.socket | None = None
    pubrec_codes: dict[int, ReasonCode]
    qos2_answered = False  # a PUBREC came on this connection (the broker takes QoS 2)

    _unread = b""  # read from the socket, not yet taken by paho
    _unread_at = 0

    def _create_socket_connection(self) -> socket.socket:
        sock, self.preconnected = self.preconnected, None
        if sock is None:
            raise OSError(errno.ENOTCONN, "no connected socket was handed over")
        self._unread, self._unread_at = b"", 0  # nothing of an earlier connection
        return sock

    def _sock_recv(self, bufsize: int) -> bytes:
        at = self._unread_at
        if at < len(self._unread):
            chunk = self._unread[at:at + bufsize]
            self._unread_at = at + len(chunk)
            return chunk
        data = super()._sock_recv(max(bufsize, READ_CHUNK))
        if len(data) <= bufsize:
            return data
        self._unread, self._unread_at = data, bufsize
        return data[:bufsize]

    def _handle_publish(self) -> MQTTErrorCode:
        # QoS 0 and 1 without properties (and with a UTF-8 topic) decoded here; anything
        # else (QoS 2, properties, a malformed packet) by paho.
        command = self._in_packet["command"]
        packet = self._in_packet["packet"]
        qos = (command & 0x06) >> 1
        if qos == 2 or len(packet) < 2:
            return super()._handle_publish()
        start = end = 2 + ((packet[0] << 8) | packet[1])
        mid = 0
        if qos == 1:
            if len(packet) < end + 2:
                return super()._handle_publish()
            mid, start = (packet[end] << 8) | packet[end + 1], end + 2
        if self._protocol == mqtt.MQTTv5:
            if len(packet) <= start or packet[start] != 0:  # properties follow
                return super()._handle_publish()
            start += 1
        try:
            topic = packet[2:end].decode("utf-8")
        except UnicodeDecodeError:
            return super()._handle_publish()
        self._handle_on_message(Received(topic, bytes(packet[start:]), qos, mid,  # type: ignore[arg-type]
                                         bool(command & 0x01)))
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_all(self, mids: Sequence[int]) -> None:
        """Acknowledge QoS 1 messages (manual-ack mode) with one write for them all."""
        if mids:
            packet = b"".join([_PUBACK_HEAD + mid.to_bytes(2, "big") for mid in mids])
            self._packet_queue(mqtt.PUBACK, packet, 0, 0)

    def _handle_pubrec(self) -> MQTTErrorCode:
        packet = _packet.decode_pubrec(self._in_packet["command"], self._in_packet["packet"],
                                       self._protocol)
        self.qos2_answered = True
        if packet.mid in self._out_messages:
            if packet.reason.is_failure:
                with self._out_message_mutex:
                    return self._do_on_publish(packet.mid, packet.reason, packet.properties)
            if packet.reason.value != 0:
                self.pubrec_codes[packet.mid] = packet.reason
        return super()._handle_pubrec()

    def _handle_pubackcomp(self, cmd: Any) -> MQTTErrorCode:
        # The common case without paho's decoding, which builds a ReasonCode and a
        # Properties object per acknowledgement: success with no properties, sent by
        # MQTT 5 brokers as the packet id alone or followed by reason code 0.
        packet = self._in_packet["packet"]
        if len(packet) == 2 or (len(packet) == 3 and packet[2] == 0):
            mid = (packet[0] << 8) | packet[1]
            if mid in self._out_messages:
                success, no_properties = _SUCCESS[cmd]
                with self._out_message_mutex:
                    return self._do_on_publish(mid, success, no_properties)
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._handle_pubackcomp(cmd)


# Shared by every successful PUBACK/PUBCOMP; nothing mutates them.
_SUCCESS = {
    "PUBACK": (ReasonCode(PacketTypes.PUBACK), Properties(PacketTypes.PUBACK)),  # type: ignore[no-untyped-call]
    "PUBCOMP": (ReasonCode(PacketTypes.PUBCOMP), Properties(PacketTypes.PUBCOMP)),  # type: ignore[no-untyped-call]
}


def new_client(client_id: str, *, manual_ack: bool, tls: bool,
               secrets: BrokerSecrets | None) -> Client:
    """An MQTT 5 client with the broker credentials and TLS set, logging to `PAHO_LOG`
    (`prepare` switches it to 3.1.1 for a broker that speaks only that)."""
    # Without paho's own reconnects: it would downgrade a refused 3.1.1 to 3.1 and open
    # a socket of its own.
    client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                    manual_ack=manual_ack, reconnect_on_failure=False)
    client.pubrec_codes = {}
    # No cap of paho's own: the publisher's window (inflight.py) keeps what is in flight
    # within the broker's Receive Maximum, and paho's cap rescans its queue on every ack.
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    if secrets is not None and secrets.username is not None:
        client.username_pw_set(secrets.username, secrets.password)
    if tls:
        context = secrets.tls if secrets is not None else None
        client.tls_set_context(context or ssl.create_default_context())
    client.enable_logger(PAHO_LOG)
    return client


def expiry_properties(seconds: int) -> Properties:
    """PUBLISH properties with the Message Expiry Interval."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.MessageExpiryInterval = seconds
    return props


def connect_properties(session_expiry: int, receive_maximum: int | None,
                       max_packet_size: int | None = None) -> Properties:
    """The CONNECT properties: the session expiry, and the Receive Maximum and Maximum
    Packet Size (the largest packet the broker may send us) when set."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session_expiry
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    if max_packet_size is not None:
        props.MaximumPacketSize = max_packet_size
    return props


def prepare(client: Client, host: str, port: int, keepalive: int, *, mqtt5: bool,
            persistent: bool, properties: Properties) -> None:
    """Set what the next CONNECT says: where to (TLS checks the host name), which MQTT
    version, and in 3.1.1 the clean session flag (False: a persistent session)."""
    client._host, client._port, client._keepalive = host, port, keepalive
    client._protocol = mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311
    client._clean_session = not persistent
    client._connect_properties = properties if mqtt5 else None
    client.qos2_answered = False


def lower_queued_qos(client: Client, max_qos: int) -> None:
    """Send the messages paho keeps for resending at no more than `max_qos`: a broker that
    refused a QoS 2 PUBLISH closes the connection again on its resend. (Those whose QoS 2
    exchange the broker already took part in are finished as they are.)"""
    with client._out_message_mutex:
        for message in client._out_messages.values():
            if message.qos > max_qos and message.state in (mqtt_ms_publish, mqtt_ms_queued):
                message.qos = max_qos


mqtt_ms_publish = mqtt.mqtt_ms_publish
mqtt_ms_queued = mqtt.mqtt_ms_queued


@dataclass(frozen=True)
class ConnackLimits:
    """What the broker said in CONNACK's properties (MQTT 5; 3.1.1 says none of it)."""

    receive_maximum: int = DEFAULT_RECEIVE_MAXIMUM
    maximum_packet_size: int | None = None  # None: no limit
    maximum_qos: int = 2
    retain_available: bool = True
    topic_alias_maximum: int = 0


def connack_limits(props: Properties | None) -> ConnackLimits:
    """The broker's limits from the CONNACK properties."""
    if props is None:
        return ConnackLimits()
    max_packet = getattr(props, "MaximumPacketSize", None)
    return ConnackLimits(
        int(getattr(props, "ReceiveMaximum", DEFAULT_RECEIVE_MAXIMUM)),
        int(max_packet) if max_packet else None,
        int(getattr(props, "MaximumQoS", 2)),
        bool(getattr(props, "RetainAvailable", 1)),
        int(getattr(props, "TopicAliasMaximum", 0)))


def attach_to_loop(client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
    """Let `loop` drive the client: read when its socket is readable, write while paho
    has output queued (paho asks through its socket callbacks)."""

    def opened(client: mqtt.Client, userdata: Any, sock: Any) -> None:
        loop.add_reader(sock, read_available, client, loop)

    def closed(client: mqtt.Client, userdata: Any, sock: Any) -> None:
        forget_socket(loop, sock)

    def wants_write(client: mqtt.Client, userdata: Any, sock: Any) -> None:
        loop.add_writer(sock, client.loop_write)

    def written(client: mqtt.Client, userdata: Any, sock: Any) -> None:
        loop.remove_writer(sock)

    client.on_socket_open = opened
    client.on_socket_close = closed
    client.on_socket_register_write = wants_write
    client.on_socket_unregister_write = written


def read_available(client: mqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
    """Handle the packets the socket holds (paho's `loop_read` handles one a call):
    up to PACKETS_PER_TURN, then again after the loop's other callbacks."""
    for _ in range(PACKETS_PER_TURN):
        if client._sock is None:
            return
        rc = client._packet_read()
        if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
            return  # the socket is empty, and so is what was read from it
        if rc > 0:
            client._loop_rc_handle(rc)
            return
    loop.call_soon(read_available, client, loop)


def forget_socket(loop: asyncio.AbstractEventLoop, sock: Any) -> None:
    """Stop watching a socket that is closed or about to be."""
    loop.remove_reader(sock)
    loop.remove_writer(sock)
