"""The benchmark timer's protocol: warm-up, calibration, re-warm, interleaving.

Only the order and number of calls are checked, never a duration (speed is measured by
the benchmarks themselves, not by tests). The clock is replaced by a counter so the
calibration is exact.
"""

from __future__ import annotations

import itertools

import pytest

from benchmarks import timing


@pytest.fixture
def clock(monkeypatch):
    """perf_counter advances 1 ms per reading; sleeps are recorded, not slept."""
    ticks = itertools.count()
    sleeps = []
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(ticks) * 1e-3)
    monkeypatch.setattr(timing.time, "sleep", sleeps.append)
    return sleeps


def _recorder(log, name):
    def fn():
        log.append(name)
    return fn


def test_each_block_is_paused_rewarmed_then_timed(clock):
    log = []
    timer = timing.Timer(pause=0.25, min_block=0.004, warmup=0.0, rewarm=0.003)
    number, rewarm = timer.calibrate(_recorder(log, "a"))
    # the calibration reads the clock around each call: about 1 ms per call
    assert number >= 2 and rewarm >= 2
    log.clear()
    timer.block(_recorder(log, "a"), number, rewarm)
    assert clock == [0.25]
    assert log == ["a"] * (rewarm + number)


def test_rewarm_zero_means_no_untimed_calls(clock):
    timer = timing.Timer(pause=0.0, min_block=0.004, warmup=0.0, rewarm=0.0)
    log = []
    number, rewarm = timer.calibrate(_recorder(log, "a"))
    assert rewarm == 0
    log.clear()
    timer.block(_recorder(log, "a"), number, rewarm)
    assert log == ["a"] * number and clock == []


def test_rewarm_is_at_least_two_calls_for_slow_callables(clock):
    # a callable slower than the re-warm time still gets two untimed calls
    timer = timing.Timer(pause=0.0, min_block=0.0, warmup=0.0, rewarm=1e-6)
    _, rewarm = timer.calibrate(lambda: None)
    assert rewarm == 2


def test_compare_interleaves_and_rewarms_each_side_before_its_block(clock):
    log = []
    timer = timing.Timer(pause=0.1, min_block=0.002, warmup=0.0, rewarm=0.002)
    sides = {"x": _recorder(log, "x"), "y": _recorder(log, "y")}
    times = timer.compare(sides, repeats=2)
    assert set(times) == {"x", "y"} and all(len(v) == 2 for v in times.values())
    assert len(clock) == 4                      # one pause per timed block
    # calibration (x, then y), then the blocks x, y in repeat 0 and y, x in repeat 1
    groups = [(k, len(list(g))) for k, g in itertools.groupby(log)]
    assert [k for k, _ in groups] == ["x", "y", "x", "y", "x"]
    assert groups[2][1] == groups[4][1]         # both x blocks: re-warm + timed calls
    assert groups[3][1] % 2 == 0                # two y blocks back to back
