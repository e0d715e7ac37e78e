"""The simulator driver: a fake climate sensor for demos and tests.

This module owns the simulator's config keys, the pure `SimulatedClimate`
model (seeded random walks, no clock or I/O), the pure `TickSchedule` that
keeps emission on a fixed grid, and the driver loop that emits one record
per interval until cancelled.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from devices.base import DriverRun, JsonValue, Record, RecordSink
from devices.tick_schedule import TickSchedule
from gateway.config.reader import MapReader

FIELDS = frozenset({"temp_c", "humidity_pct", "counter", "alarm"})

TEMP_CENTRE_C = 21.0
TEMP_RANGE_C = (15.0, 27.0)
HUMIDITY_START_PCT = 45.0
HUMIDITY_RANGE_PCT = (0.0, 100.0)
ALARM_PROBABILITY = 0.01


@dataclass(frozen=True)
class SimulatorOptions:
    """How often the simulator emits, and its random seed (None: unpredictable)."""

    interval: float = 1.0
    seed: int | None = None


def read_options(reader: MapReader) -> SimulatorOptions | None:
    """Read the simulator's keys (`interval`, `seed`) from one device mapping.

    Args:
        reader: The device's mapping; problems are recorded on it.

    Returns:
        The options, or None when any of these keys had a problem.
    """
    problems_before = len(reader.problems)
    interval = reader.duration("interval", default=1.0, minimum=0.001)
    seed = reader.integer("seed")
    if len(reader.problems) > problems_before:
        return None
    return SimulatorOptions(interval=interval, seed=seed)


def offered_fields(options: SimulatorOptions) -> frozenset[str]:
    """The fields every simulated record carries.

    Args:
        options: The device's options (the fields do not depend on them).

    Returns:
        `FIELDS`.
    """
    return FIELDS


class SimulatedClimate:
    """A seeded, clock-free model of a greenhouse climate sensor.

    Temperature wanders around 21 °C and humidity around 45 %, each pulled
    gently back towards its centre and clamped to its range; the counter
    counts samples from 1; the alarm is true about once in a hundred samples.
    """

    def __init__(self, seed: int | None = None) -> None:
        """Create the model.

        Args:
            seed: Seed for the random walks; the same seed gives the same samples.
        """
        self._rng = random.Random(seed)
        self._temp_c = TEMP_CENTRE_C
        self._humidity_pct = HUMIDITY_START_PCT
        self._counter = 0

    def sample(self) -> dict[str, JsonValue]:
        """Take the next reading.

        Returns:
            `temp_c` (float, 0.01 steps), `humidity_pct` (float, 0.01 steps),
            `counter` (int) and `alarm` (bool).
        """
        rng = self._rng
        self._temp_c = _walk(self._temp_c, TEMP_CENTRE_C, 0.05, TEMP_RANGE_C, rng)
        self._humidity_pct = _walk(
            self._humidity_pct, HUMIDITY_START_PCT, 0.3, HUMIDITY_RANGE_PCT, rng
        )
        self._counter += 1
        return {
            "temp_c": round(self._temp_c, 2),
            "humidity_pct": round(self._humidity_pct, 2),
            "counter": self._counter,
            "alarm": rng.random() < ALARM_PROBABILITY,
        }


def start(device_id: str, options: SimulatorOptions) -> DriverRun:
    """Prepare a simulated device.

    Args:
        device_id: The device's id from the config (unused: the sink knows it).
        options: The device's validated options.

    Returns:
        A coroutine function that emits one record per interval until cancelled.
    """

    async def run(sink: RecordSink) -> None:
        climate = SimulatedClimate(options.seed)
        loop = asyncio.get_running_loop()
        schedule = TickSchedule(options.interval, loop.time())
        sink.device_state(True, "simulator started")
        while True:
            sink.record(Record(ts=time.time(), fields=climate.sample()))
            await asyncio.sleep(schedule.wait_after_tick(loop.time()))

    return run


def _walk(
    value: float, centre: float, step: float, bounds: tuple[float, float], rng: random.Random
) -> float:
    """One step of a random walk pulled back towards `centre`, clamped to `bounds`."""
    value += rng.gauss(0.0, step) + 0.02 * (centre - value)
    low, high = bounds
    return min(max(value, low), high)
