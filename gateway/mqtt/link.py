"""One paho-mqtt client, owned and driven by one asyncio event loop.

paho keeps its session in memory and is not thread-safe, so nothing here
uses its threads: the loop watches paho's socket (`add_reader`/`add_writer`)
and calls `loop_misc()` once a second for keep-alive. The TCP connect happens
on the loop without blocking it; paho is then handed the connected socket.

`MqttLink.run()` is the reconnect loop: connect, wait for CONNACK, stay up
until the connection drops, back off (capped, jittered), try the next of the
broker's URLs. It uses MQTT 5 with a clean start on the first connect of the
process and a session expiry, so later reconnects resume the broker session
and paho resends what was in flight; with `protocol: auto` a broker that
answers "unsupported protocol version" is spoken to in 3.1.1 from then on
(`_ceiling`). The QoS published and subscribed at is capped by the broker's
ceiling. What this needs of paho's internals is in `_paho`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config.common import BrokerAddress, BrokerEndpoints
from gateway.config.credentials import BrokerSecrets
from gateway.core.backoff import Backoff
from gateway.mqtt import _paho
from gateway.mqtt._alias import TopicAliases
from gateway.mqtt._ceiling import MQTT5, RETAIN_NOT_SUPPORTED, BrokerChoice

log = logging.getLogger("gateway.mqtt")
Message = _paho.Message  # a received message, as callbacks get it

CONNECT_TIMEOUT = 10.0
# Reconnect delays grow from 0.5 s to this cap (jittered, 2.5-5 s): a broker back after
# a long outage is found within 5 s.
RECONNECT_CAP = 5.0
_AGAIN = "again"  # an attempt to repeat at once (in 3.1.1, or without a retained will)
LATENCY_SAMPLE = 8  # one publish in this many is timed to its acknowledgement (metrics)


@dataclass(frozen=True)
class Session:
    """What the broker said in CONNACK."""

    session_present: bool
    receive_maximum: int
    maximum_packet_size: int | None
    protocol: str = MQTT5  # "5" or "3.1.1"
    retain_available: bool = True


class MqttLink:
    """A reconnecting MQTT connection driven by the running event loop.

    Callbacks run on the loop thread: `on_up(session)` after each CONNACK,
    `on_down(reason)` after each lost connection or failed attempt,
    `on_publish(mid, reason_code)` for each PUBACK/PUBCOMP (and each QoS 0
    write), `on_message(message)` for each message received.
    """

    def __init__(
        self,
        endpoints: BrokerEndpoints,
        client_id: str,
        *,
        keepalive: int,
        session_expiry: int,
        clean_first: bool,
        manual_ack: bool = False,
        receive_maximum: int | None = None,
        secrets: BrokerSecrets | None = None,
        max_packet_size: int | None = None,
    ) -> None:
        self.broker = BrokerChoice(endpoints)
        self._max_packet_size = max_packet_size
        self.client_id = client_id
        self.keepalive = keepalive
        self._session_expiry = session_expiry
        self._clean_first = clean_first
        self._receive_maximum = receive_maximum
        self._persistent = not clean_first  # 3.1.1: clean_session=False
        self.max_qos = self.broker.max_qos
        self.protocol = self.broker.protocol  # of the connection up, or the next attempt
        self.retain_available = True
        self.aliases = TopicAliases()  # MQTT 5 topic aliases, when the broker allows them
        self._qos2_since: float | None = None  # the first QoS 2 PUBLISH on this connection
        self.connected = False
        self.refused = False  # the last attempt reached the broker and was turned away
        # Counts CONNACKs, bumped inside paho's callback: a message is tagged
        # with the connection it arrived on before any later packet is read.
        self.generation = 0
        self.on_up: Callable[[Session], None] = lambda session: None
        self.on_down: Callable[[str], None] = lambda reason: None
        self.on_publish: Callable[[int, ReasonCode], None] = lambda mid, rc: None
        self.on_message: Callable[[Message], None] = lambda message: None
        self.on_subscribe: Callable[[int, list[ReasonCode]], None] = lambda mid, codes: None
        # Set by the metrics endpoint: called with the seconds from publish to PUBACK/PUBCOMP
        # of one sampled message in LATENCY_SAMPLE.
        self.on_latency: Callable[[float], None] | None = None
        self._sent_at: dict[int, float] = {}
        self.connections = 0  # accepted connections since the start
        self.published = 0  # messages handed to paho
        self._durable_published = 0  # of them QoS 1/2, while latency is observed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connack: asyncio.Future[tuple[ReasonCode, Session]] | None = None
        self._dropped: asyncio.Event = asyncio.Event()
        self._drop_reason = ""
        self._started = False
        self.client = _paho.new_client(client_id, manual_ack=manual_ack,
                                       tls=any(a.tls for a in endpoints.addresses),
                                       secrets=secrets)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message  # type: ignore[assignment]  # a Received too
        self.client.on_subscribe = self._on_subscribe

    @property
    def address(self) -> BrokerAddress:
        """The broker URL in use (or tried next)."""
        return self.broker.address

    def set_will(self, topic: str, payload: bytes) -> None:
        """The retained QoS 1 message the broker publishes when this client vanishes."""
        self.client.will_set(topic, payload, qos=min(1, self.max_qos),
                             retain=self.retain_available)

    # -- the reconnect loop ------------------------------------------------
    async def run(self) -> None:
        """Keep the connection up until cancelled."""
        self._loop = asyncio.get_running_loop()
        _paho.attach_to_loop(self.client, self._loop)
        backoff = Backoff(base=0.5, cap=RECONNECT_CAP)
        misc = asyncio.create_task(self._misc_loop())
        try:
            while True:
                reason = await self._connect_once()
                if reason is None:
                    backoff.reset()
                    await self._dropped.wait()
                    reason = self._drop_reason
                    self._learn_qos_ceiling()
                elif reason == _AGAIN:
                    continue
                self.connected = False
                self.on_down(reason)
                self.broker.next_url()
                await asyncio.sleep(backoff.next_delay())
        finally:
            misc.cancel()
            self._close()

    async def _connect_once(self) -> str | None:
        """One attempt: None when connected, else why it failed."""
        assert self._loop is not None
        self._dropped.clear()
        try:
            sock = await asyncio.wait_for(self._open_socket(), CONNECT_TIMEOUT)
        except TimeoutError:
            return f"no answer from {self.address} within {CONNECT_TIMEOUT:.0f}s"
        except socket.gaierror as exc:
            return f"cannot resolve the broker's host {self.address.host}: {exc.strerror or exc}"
        except OSError as exc:
            why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            return f"cannot reach broker {self.address}: {why}"
        self._connack = self._loop.create_future()
        self.client.preconnected = sock
        self.protocol = self.broker.protocol
        try:
            self._send_connect()
        except (OSError, ssl.SSLError, ValueError) as exc:
            sock.close()
            return f"connect to {self.address} failed: {exc}"
        try:
            rc, session = await asyncio.wait_for(self._connack, CONNECT_TIMEOUT)
        except TimeoutError:
            self._close()
            return f"no CONNACK from {self.address} within {CONNECT_TIMEOUT:.0f}s"
        except ConnectionError as exc:
            if self.broker.downgrade(None):
                log.info("broker %s closed the connection after an MQTT 5 CONNECT; trying "
                         "MQTT 3.1.1", self.address)
                return _AGAIN
            self.broker.unanswered()
            return str(exc)
        self.broker.answered()
        if rc.is_failure:
            self._close()
            if self.broker.downgrade(rc.value):
                log.info("broker %s does not speak MQTT 5 (%s); using MQTT 3.1.1 with it",
                         self.address, rc)
                return _AGAIN
            if rc.value == RETAIN_NOT_SUPPORTED and self.retain_available:
                self.retain_available = False
                self._will_unretained()
                return _AGAIN
            self.refused = True
            return f"broker {self.address} refused the connection: {rc}"
        self.refused = False
        self._qos2_since = None
        self.connected = True
        _paho.PAHO_REPEATS.seen.clear()
        self.connections += 1
        self.on_up(session)
        return None

    def _send_connect(self) -> None:
        """CONNECT to the current URL in the MQTT version chosen for it."""
        props = _paho.connect_properties(self._session_expiry, self._receive_maximum,
                                         self._max_packet_size)
        if not self._started:
            self.client.connect_async(
                self.address.host, self.address.port, self.keepalive,
                clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY if self._clean_first else False,
                properties=props)
            self._started = True
        _paho.prepare(self.client, self.address.host, self.address.port, self.keepalive,
                      mqtt5=self.protocol == MQTT5, persistent=self._persistent,
                      properties=props)
        self.client.reconnect()

    def _will_unretained(self) -> None:
        will = self.client._will_topic, self.client._will_payload
        if self.client._will:
            self.client.will_set(will[0].decode(), will[1], qos=min(1, self.max_qos))

    def _learn_qos_ceiling(self) -> None:
        """After a lost connection: a broker that closed it on a QoS 2 PUBLISH (nothing
        answered it) takes at most QoS 1 from now on."""
        since, self._qos2_since = self._qos2_since, None
        unanswered = None if since is None or self.client.qos2_answered else (
            time.monotonic() - since)
        if self.broker.qos2_refused(unanswered):
            self.max_qos = self.broker.max_qos
            _paho.lower_queued_qos(self.client, self.max_qos)
            log.warning("broker %s closed the connection right after a QoS 2 PUBLISH: it does "
                        "not take QoS 2; exactly-once streams are published at QoS 1 from now "
                        "on (the consumer's dedup and the end-to-end confirmation keep them "
                        "exactly once in the database; set broker.max_qos: 1 to say so)",
                        self.address)

    async def _open_socket(self) -> socket.socket:
        """A connected, blocking-mode TCP socket (paho sets it non-blocking)."""
        assert self._loop is not None
        infos = await self._loop.getaddrinfo(self.address.host, self.address.port,
                                             type=socket.SOCK_STREAM)
        last: OSError | None = None
        for family, kind, proto, _name, addr in infos:
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                await self._loop.sock_connect(sock, addr)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(True)
            sock.settimeout(CONNECT_TIMEOUT)
            return sock
        raise last or OSError(errno.EHOSTUNREACH, "no address")

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.client.socket() is not None:
                self.client.loop_misc()

    def _close(self) -> None:
        if self.client.socket() is not None:
            self.client.disconnect()
            if self.client.socket() is not None:
                self.client.loop_write()
            self._drop_socket()

    def _drop_socket(self) -> None:
        sock = self.client.socket()
        if sock is not None:
            assert self._loop is not None
            _paho.forget_socket(self._loop, sock)
            sock.close()

    # -- publishing --------------------------------------------------------
    def publish(self, topic: str, payload: bytes, qos: int, *,
                expiry: int | None = None) -> int | None:
        """Hand one message to paho; its mid, or None when not connected. `expiry`: the
        MQTT 5 Message Expiry Interval in seconds (the broker drops it when it runs out)."""
        if not self.connected:
            return None
        if qos > self.max_qos:
            qos = self.max_qos
        elif qos == 2 and self._qos2_since is None:
            self._qos2_since = time.monotonic()
        if expiry is not None and self.protocol == MQTT5:
            # The whole topic: an alias would be set up by a message the broker may drop.
            info = self.client.publish(topic, payload, qos,
                                       properties=_paho.expiry_properties(expiry))
        elif self.aliases.maximum:
            sent_topic, alias = self.aliases.route(topic)
            info = self.client.publish(sent_topic, payload, qos, properties=alias)
        else:
            info = self.client.publish(topic, payload, qos)
        self.published += 1
        if qos and self.on_latency is not None:
            # One QoS 1/2 publish in LATENCY_SAMPLE, counted apart from QoS 0 (paho's
            # packet ids are shared by both, so `mid % n` would sample unevenly).
            self._durable_published += 1
            if not self._durable_published % LATENCY_SAMPLE:
                self._sent_at[info.mid] = time.monotonic()
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            # paho keeps QoS 1/2 messages it could not write yet and sends them
            # after reconnecting: the outcome is unknown, never "not sent".
            return info.mid if qos > 0 else None
        return info.mid

    def subscribe(self, topic: str, qos: int) -> None:
        """Subscribe at no more than the broker's ceiling, when connected (callers subscribe
        again after every CONNACK)."""
        if self.connected:
            self.client.subscribe(topic, qos=min(qos, self.max_qos))

    def publish_retained(self, topic: str, payload: bytes) -> int | None:
        """Publish a retained QoS 1 message (retained only where the broker keeps them)."""
        if not self.connected:
            return None
        return self.client.publish(topic, payload, min(1, self.max_qos),
                                   retain=self.retain_available).mid

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a received message (manual-ack mode)."""
        self.client.ack(mid, qos)

    def ack_all(self, mids: Sequence[int]) -> None:
        """Acknowledge received QoS 1 messages (manual-ack mode), in one write."""
        self.client.ack_all(mids)

    # -- paho callbacks (on the loop thread) --------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    props: Properties | None) -> None:
        limits = _paho.connack_limits(props if self.protocol == MQTT5 else None)
        self.broker.connack_max_qos = limits.maximum_qos
        self.max_qos = self.broker.max_qos
        if not limits.retain_available:
            self.retain_available = False
        if self.max_qos < 2:
            _paho.lower_queued_qos(self.client, self.max_qos)  # paho resends them next
        with self.client._out_message_mutex:
            self.aliases.restore(self.client._out_messages)
        self.aliases.reset(limits.topic_alias_maximum)
        session = Session(bool(flags.session_present), limits.receive_maximum,
                          limits.maximum_packet_size, self.protocol,
                          limits.retain_available)
        self.generation += 1
        if self._connack is not None and not self._connack.done():
            self._connack.set_result((rc, session))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                       props: Properties | None) -> None:
        reason = f"connection to {self.address} lost ({rc})"
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(ConnectionError(reason))
        self._drop_reason = reason
        self._dropped.set()
        self._sent_at.clear()  # a resent message's time would be that of its first send

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode,
                    props: Properties | None) -> None:
        pubrec = self.client.pubrec_codes.pop(mid, None) if self.client.pubrec_codes else None
        if self._sent_at:
            sent = self._sent_at.pop(mid, None)
            if sent is not None and self.on_latency is not None:
                self.on_latency(time.monotonic() - sent)
        self.on_publish(mid, pubrec if pubrec is not None and not rc.is_failure else rc)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: Message) -> None:
        self.on_message(message)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      codes: list[ReasonCode], props: Properties | None) -> None:
        self.on_subscribe(mid, codes)
