"""One paho-mqtt client, owned and driven by one asyncio event loop.

paho keeps its session in memory and is not thread-safe, so nothing here
uses its threads: the loop watches paho's socket (`add_reader`/`add_writer`)
and calls `loop_misc()` once a second for keep-alive. The TCP connect happens
on the loop without blocking it; paho is then handed the connected socket.

`MqttLink.run()` is the reconnect loop: connect, wait for CONNACK, stay up
until the connection drops, back off (capped, jittered), try again. It uses
MQTT 5 with a clean start on the first connect of the process and a session
expiry, so later reconnects resume the broker session and paho resends what
was in flight. What this needs of paho's internals is in `_paho`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config.common import BrokerAddress
from gateway.config.credentials import BrokerSecrets
from gateway.core.backoff import Backoff
from gateway.mqtt import _paho

log = logging.getLogger("gateway.mqtt")

CONNECT_TIMEOUT = 10.0
LATENCY_SAMPLE = 8  # one publish in this many is timed to its acknowledgement (metrics)


@dataclass(frozen=True)
class Session:
    """What the broker said in CONNACK."""

    session_present: bool
    receive_maximum: int
    maximum_packet_size: int | None


class MqttLink:
    """A reconnecting MQTT 5 connection driven by the running event loop.

    Callbacks run on the loop thread: `on_up(session)` after each CONNACK,
    `on_down(reason)` after each lost connection or failed attempt,
    `on_publish(mid, reason_code)` for each PUBACK/PUBCOMP (and each QoS 0
    write), `on_message(message)` for each message received.
    """

    def __init__(
        self,
        address: BrokerAddress,
        client_id: str,
        *,
        keepalive: int,
        session_expiry: int,
        clean_first: bool,
        manual_ack: bool = False,
        receive_maximum: int | None = None,
        secrets: BrokerSecrets | None = None,
    ) -> None:
        self.address = address
        self.client_id = client_id
        self.keepalive = keepalive
        self._session_expiry = session_expiry
        self._clean_first = clean_first
        self._receive_maximum = receive_maximum
        self.connected = False
        self.refused = False  # the last attempt reached the broker and was turned away
        # Counts CONNACKs, bumped inside paho's callback: a message is tagged
        # with the connection it arrived on before any later packet is read.
        self.generation = 0
        self.on_up: Callable[[Session], None] = lambda session: None
        self.on_down: Callable[[str], None] = lambda reason: None
        self.on_publish: Callable[[int, ReasonCode], None] = lambda mid, rc: None
        self.on_message: Callable[[mqtt.MQTTMessage], None] = lambda message: None
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
        self.client = _paho.new_client(client_id, manual_ack=manual_ack, tls=address.tls,
                                       secrets=secrets)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    # -- the reconnect loop ------------------------------------------------
    async def run(self) -> None:
        """Keep the connection up until cancelled."""
        self._loop = asyncio.get_running_loop()
        _paho.attach_to_loop(self.client, self._loop)
        backoff = Backoff(base=0.5, cap=30.0)
        misc = asyncio.create_task(self._misc_loop())
        try:
            while True:
                reason = await self._connect_once()
                if reason is None:
                    backoff.reset()
                    await self._dropped.wait()
                    reason = self._drop_reason
                self.connected = False
                self.on_down(reason)
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
        try:
            if not self._started:
                props = _paho.connect_properties(self._session_expiry, self._receive_maximum)
                self.client.connect(
                    self.address.host, self.address.port, self.keepalive,
                    clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY if self._clean_first else False,
                    properties=props,
                )
                self._started = True
            else:
                self.client.reconnect()
        except (OSError, ssl.SSLError, ValueError) as exc:
            sock.close()
            return f"connect to {self.address} failed: {exc}"
        try:
            rc, session = await asyncio.wait_for(self._connack, CONNECT_TIMEOUT)
        except TimeoutError:
            self._close()
            return f"no CONNACK from {self.address} within {CONNECT_TIMEOUT:.0f}s"
        except ConnectionError as exc:
            return str(exc)
        if rc.is_failure:
            self._close()
            self.refused = True
            return f"broker {self.address} refused the connection: {rc}"
        self.refused = False
        self.connected = True
        _paho.PAHO_REPEATS.seen.clear()
        self.connections += 1
        self.on_up(session)
        return None

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
        properties = None if expiry is None else _paho.expiry_properties(expiry)
        info = self.client.publish(topic, payload, qos, properties=properties)
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
        """Subscribe, when connected (callers subscribe again after every CONNACK)."""
        if self.connected:
            self.client.subscribe(topic, qos=qos)

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a received message (manual-ack mode)."""
        self.client.ack(mid, qos)

    # -- paho callbacks (on the loop thread) --------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    props: Properties | None) -> None:
        session = Session(bool(flags.session_present), *_paho.connack_limits(props))
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

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.on_message(message)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      codes: list[ReasonCode], props: Properties | None) -> None:
        self.on_subscribe(mid, codes)
