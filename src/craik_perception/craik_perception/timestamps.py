"""Mapping librealsense frame timestamps (device clock, milliseconds) to ROS time (nanoseconds).

librealsense stamps frames in one of three domains:

* ``global_time``: the camera's hardware clock already converted by librealsense to the host's
  system clock (the default on D400 cameras). A live frame in this domain is used as is.
* ``system_time``: the host's clock when the frame arrived (cameras without metadata support).
  Used as is for a live camera.
* ``hardware_clock``: the camera's own clock, with an arbitrary origin. Mapped as below.

Frames played from a recording keep the timestamps of the day they were recorded, so playback
always goes through the mapping too.

The mapping keeps the device clock's spacing between frames and estimates its offset to the
host clock as the smallest observed ``arrival - device_time`` (the transport latency can only
add to it). The estimate may creep upwards at ``drift_rate`` (seconds per second, default
100 ppm, more than a crystal's drift) so that a device clock slower than the host is tracked,
and is reset when the device time jumps backwards (a recording looping, a restarted camera) or
forwards by more than ``max_gap_s``. Consequences: stamps are strictly increasing, never later
than the frame's arrival on the host, and spaced like the device clock; in as-fast-as-possible
playback they follow the arrival times instead (the recording is replayed faster than it was
recorded, and a stamp in the future of the host clock would mislead every other node).
"""

from __future__ import annotations

from dataclasses import dataclass
import math

DIRECT_DOMAINS = ('global_time', 'system_time')
_NS_PER_MS = 1_000_000


def ms_to_ns(ms: float) -> int:
    """Milliseconds (float) -> integer nanoseconds without float rounding of large values.

    ``ms * 1e6`` loses tens of nanoseconds for epoch times (1.7e18 ns needs 61 bits).
    """
    whole = math.floor(ms)
    return int(whole) * _NS_PER_MS + int(round((ms - whole) * _NS_PER_MS))


@dataclass
class DeviceClockMapper:
    """Map device timestamps (ms) to host/ROS time (ns); see the module docstring.

    ``direct``: True for a live camera in a host-clock domain (global_time/system_time), where
    the device timestamp already is host time and is only converted to nanoseconds.
    """

    direct: bool = False
    drift_rate: float = 1e-4
    max_gap_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.drift_rate < 0.01:
            raise ValueError(f'drift_rate must be in [0, 0.01), got {self.drift_rate}')
        if not self.max_gap_s > 0:
            raise ValueError(f'max_gap_s must be > 0, got {self.max_gap_s}')
        self._offset_ns: int | None = None
        self._last_device_ms = 0.0
        self._last_arrival_ns = 0
        self._last_stamp_ns = 0
        self.resets = 0

    def reset(self) -> None:
        """Forget the offset estimate (e.g. when the pipeline restarts)."""
        if self._offset_ns is not None:
            self.resets += 1
        self._offset_ns = None

    def update(self, device_ms: float, arrival_ns: int) -> int:
        """Map the timestamp of a new frame that arrived at host time ``arrival_ns``.

        Returns the frame's stamp in nanoseconds and updates the offset estimate.
        """
        if self.direct:
            stamp = ms_to_ns(device_ms)
        else:
            device_ns = ms_to_ns(device_ms)
            candidate = arrival_ns - device_ns
            if self._offset_ns is not None:
                dt_ms = device_ms - self._last_device_ms
                if dt_ms <= 0.0 or dt_ms > self.max_gap_s * 1e3:
                    self.reset()
            if self._offset_ns is None:
                self._offset_ns = candidate
            else:
                elapsed = max(0, arrival_ns - self._last_arrival_ns)
                allowed = self._offset_ns + int(elapsed * self.drift_rate)
                self._offset_ns = min(candidate, allowed)
            stamp = device_ns + self._offset_ns
            self._last_device_ms = device_ms
            self._last_arrival_ns = arrival_ns
        # Two frames with the same device time (or a backwards step in a direct domain) must
        # still get increasing stamps.
        stamp = max(stamp, self._last_stamp_ns + 1)
        self._last_stamp_ns = stamp
        return stamp

    def map(self, device_ms: float) -> int:
        """Map another stream's timestamp with the current offset, without updating it.

        For the depth frame that belongs to the colour frame just passed to :meth:`update`.
        """
        device_ns = ms_to_ns(device_ms)
        if self.direct or self._offset_ns is None:
            return device_ns
        return device_ns + self._offset_ns
