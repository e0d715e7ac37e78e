"""A second subscriber that counts what crosses the wire, duplicates included.

It runs aiomqtt on its own event loop in a thread and reconnects when the
broker goes away. Its counts say how many copies of each identity the broker
delivered; the consumer's `readings` table says how many survived dedup.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter

import aiomqtt

from gateway.core.batch_wire import decode_message
from gateway.core.envelope import Envelope

Identity = tuple[str, str, str, str, int]


class WireTap:
    """Counts every message on a topic filter, per reading identity."""

    def __init__(self, port: int, topic: str) -> None:
        self.port = port
        self.topic = topic
        self.copies: Counter[Identity] = Counter()
        self.batched: Counter[str] = Counter()  # copies per stream that came in a v2 batch
        self.messages = 0
        self.subscribed = threading.Event()
        self.subscriptions = 0  # how many times it (re)subscribed
        self._stop = threading.Event()
        self._held = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="wiretap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._listen())
        self._loop.close()

    async def _listen(self) -> None:
        while not self._stop.is_set():
            if self._held.is_set():
                await asyncio.sleep(0.05)
                continue
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier=None) as client:
                    await client.subscribe(self.topic, qos=0)
                    self.subscriptions += 1
                    self.subscribed.set()
                    async for message in client.messages:
                        self._count(message.topic.value, message.payload)
                        if self._stop.is_set():
                            return
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    def _count(self, topic: str, payload: object) -> None:
        if not isinstance(payload, bytes | bytearray):
            return
        self.messages += 1
        for env in decode_message(topic, bytes(payload)):  # v1: one reading; a v2 batch: several
            if isinstance(env, Envelope):
                self.copies[(env.gateway, env.epoch, env.device, env.stream, env.seq)] += 1
                if topic.endswith("/_batch"):
                    self.batched[env.stream] += 1

    def hold(self) -> None:
        """Do not reconnect after the connection drops, until `release()`.

        While the tap is subscribed the broker has a matching subscriber for
        the gateway's topics, so it would accept QoS 1 publishes that the
        consumer (not yet subscribed again after a broker restart) never gets.
        """
        self._held.set()

    def release(self) -> None:
        """Reconnect again when disconnected."""
        self._held.clear()

    def duplicates(self, stream: str) -> int:
        """Extra copies seen on the wire for one stream."""
        return sum(n - 1 for key, n in self.copies.items() if key[3] == stream)

    def close(self) -> None:
        """Stop listening."""
        self._stop.set()
        with contextlib.suppress(RuntimeError):  # the loop may have finished already
            self._loop.call_soon_threadsafe(self._cancel_all)
        self._thread.join(5)

    def _cancel_all(self) -> None:
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
