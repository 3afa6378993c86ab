"""One counter → rate helper for every source and the simulator (``autoscaler.core.rates``)."""

from __future__ import annotations

import pytest

from autoscaler.core.rates import RateMeter, counter_rate
from autoscaler.ports.clock import ManualClock
from autoscaler.sources.memory import MemorySettings, MemorySource, reset_queue


def test_rates_from_successive_readings() -> None:
    meter = RateMeter()
    assert meter.update(0.0, 10) is None  # first reading: unknown, never zero
    assert meter.update(2.0, 14) == pytest.approx(2.0)
    assert meter.update(3.0, 14) == 0.0


def test_a_counter_that_goes_down_was_reset() -> None:
    meter = RateMeter()
    meter.update(0.0, 100)
    assert meter.update(1.0, 3) is None  # reset: unknown for this tick, not negative
    assert meter.update(2.0, 7) == pytest.approx(4.0)  # from the new baseline


def test_a_missing_reading_forgets_the_baseline() -> None:
    meter = RateMeter()
    meter.update(0.0, 10)
    assert meter.update(1.0, None) is None
    assert meter.update(2.0, 20) is None  # no averaging over an unknown gap
    assert meter.update(3.0, 23) == pytest.approx(3.0)


def test_no_time_passed_keeps_the_older_baseline() -> None:
    assert counter_rate((5.0, 10), 5.0, 12) == (None, (5.0, 10))
    assert counter_rate((5.0, 10), 7.0, 12) == (1.0, (7.0, 12))


async def test_memory_source_reports_a_reset_as_unknown_not_negative() -> None:
    clock = ManualClock()
    queue = reset_queue("t-rates-reset")
    pools = [("p", MemorySettings(name="t-rates-reset"))]
    sampler = MemorySource.make_sampler(pools, clock, 0.5)
    for _ in range(10):
        queue.put(clock.wall(), 1.0)
    await sampler.sample()
    clock.advance(1.0)
    for _ in range(2):
        queue.put(clock.wall(), 1.0)
    assert (await sampler.sample())["p"].arrival_rate == pytest.approx(2.0)
    queue = reset_queue("t-rates-reset")  # a fresh queue: its counters restart at zero
    queue.put(clock.wall(), 1.0)
    clock.advance(1.0)
    after_reset = (await sampler.sample())["p"]
    assert after_reset.arrival_rate is None  # 12 → 1 was a reset (it used to read -11/s)
    assert after_reset.completion_rate == 0.0  # nothing completed, before or after: 0 → 0
    for _ in range(3):
        queue.put(clock.wall(), 1.0)
    clock.advance(1.0)
    assert (await sampler.sample())["p"].arrival_rate == pytest.approx(3.0)
