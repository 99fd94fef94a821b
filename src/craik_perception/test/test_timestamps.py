"""Device clock -> ROS time mapping (no camera, no ROS)."""

import numpy as np
import pytest

from craik_perception.timestamps import DeviceClockMapper

MS = 1_000_000
PERIOD_MS = 1000.0 / 30


def _run(mapper, device_ms, arrival_ns):
    return np.array([mapper.update(d, a) for d, a in zip(device_ms, arrival_ns, strict=True)])


def test_spacing_of_the_device_clock_is_kept_and_stamps_never_lead_arrival():
    rng = np.random.default_rng(1)
    n = 300
    device = 5_000.0 + PERIOD_MS * np.arange(n)
    capture_ns = 1_700_000_000_000_000_000 + (device * MS).astype(np.int64)
    arrival = capture_ns + rng.integers(3 * MS, 12 * MS, n)           # USB + driver latency
    stamps = _run(DeviceClockMapper(), device, arrival)
    assert np.all(stamps <= arrival)
    assert np.all(np.diff(stamps) > 0)
    # After a few frames the offset is the minimum latency: the stamps are the capture times
    # plus ~3 ms, spaced exactly like the device clock.
    settled = stamps[100:] - capture_ns[100:]
    assert settled.min() >= 3 * MS and settled.max() <= 4 * MS
    spacing = np.diff(stamps[100:]) / MS
    assert np.median(spacing) == pytest.approx(PERIOD_MS, abs=0.01)


def test_a_slow_device_clock_is_tracked():
    # The device clock runs 100 ppm slow: without the drift allowance the stamps would lag
    # further and further behind the capture times.
    n = 30 * 600                                       # ten minutes at 30 Hz
    host_capture = (np.arange(n) * PERIOD_MS * MS).astype(np.int64)
    device = np.arange(n) * PERIOD_MS * (1 - 1e-4)
    arrival = host_capture + 5 * MS
    stamps = _run(DeviceClockMapper(), device, arrival)
    lag = (arrival - stamps)[-100:] / MS
    assert lag.max() < 10.0 and lag.min() >= 0.0


def test_backwards_device_time_resets_the_offset():
    mapper = DeviceClockMapper()
    first = _run(mapper, [100.0, 133.3, 166.7], [10 * MS, 43 * MS, 77 * MS])
    # The recording loops: device time starts over while host time goes on.
    again = mapper.update(0.0, 200 * MS)
    assert mapper.resets == 1
    assert again == 200 * MS
    assert again > first[-1]


def test_a_long_gap_resets_the_offset():
    mapper = DeviceClockMapper(max_gap_s=1.0)
    mapper.update(0.0, 1000 * MS)
    stamp = mapper.update(60_000.0, 1_000_000 * MS)          # camera restarted
    assert mapper.resets == 1 and stamp == 1_000_000 * MS


def test_direct_domain_uses_the_device_time():
    mapper = DeviceClockMapper(direct=True)
    assert mapper.update(1_700_000_000_123.5, 0) == 1_700_000_000_123_500_000
    # Equal device times still give increasing stamps.
    assert mapper.update(1_700_000_000_123.5, 0) == 1_700_000_000_123_500_001
    assert mapper.map(1_700_000_000_100.0) == 1_700_000_000_100_000_000


def test_other_streams_use_the_same_offset():
    mapper = DeviceClockMapper()
    stamp = mapper.update(1000.0, 5_000 * MS)
    assert mapper.map(1002.5) == stamp + int(2.5 * MS)


def test_parameters_are_validated():
    with pytest.raises(ValueError, match='drift_rate'):
        DeviceClockMapper(drift_rate=0.5)
    with pytest.raises(ValueError, match='max_gap_s'):
        DeviceClockMapper(max_gap_s=0.0)
