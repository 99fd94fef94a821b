"""Measured stream rates and the camera's health report, without ROS.

:class:`RateMeter` measures a stream's delivered rate over a sliding window;
:func:`camera_status` turns the capture state and the rates into a :class:`StatusReport`
(level, message, key/value pairs) that the node publishes as a
``diagnostic_msgs/DiagnosticStatus``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
import threading


class Level(IntEnum):
    """diagnostic_msgs/DiagnosticStatus levels."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


class RateMeter:
    """Rate of events (frames) over the last ``window_s`` seconds; thread-safe."""

    def __init__(self, window_s: float = 2.0) -> None:
        if not window_s > 0:
            raise ValueError(f'window_s must be > 0, got {window_s}')
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.count = 0

    def tick(self, now_s: float) -> None:
        """Record one event at ``now_s`` (seconds, any monotonic clock)."""
        with self._lock:
            self._times.append(now_s)
            self.count += 1
            self._trim(now_s)

    def rate(self, now_s: float) -> float:
        """Events per second over the window ending at ``now_s`` (0 with fewer than 2)."""
        with self._lock:
            self._trim(now_s)
            if len(self._times) < 2:
                return 0.0
            span = now_s - self._times[0]
            # N events observed over the span since the first one: N - 1 intervals, plus the
            # time since the last one, which counts against the rate once a stream stalls.
            return (len(self._times) - 1) / span if span > 0 else 0.0

    def reset(self) -> None:
        with self._lock:
            self._times.clear()

    def _trim(self, now_s: float) -> None:
        while self._times and self._times[0] < now_s - self.window_s:
            self._times.popleft()


@dataclass(frozen=True)
class StatusReport:
    """A diagnostic status without the message type."""

    level: Level
    message: str
    values: dict[str, str] = field(default_factory=dict)


def camera_status(state: str, detail: str, expected_fps: float, rates: dict[str, float],
                  values: dict[str, str], min_rate_fraction: float = 0.8) -> StatusReport:
    """The camera's health: ERROR when it failed, WARN when it is (re)connecting, restarting,
    finished, or a stream runs below ``min_rate_fraction`` of ``expected_fps``; else OK.

    ``rates`` maps stream names to measured Hz; they are added to ``values`` as
    ``'<stream> rate (Hz)'``.
    """
    out = dict(values)
    out['state'] = state
    for name, hz in rates.items():
        out[f'{name} rate (Hz)'] = f'{hz:.2f}'
    if expected_fps > 0:
        out['expected rate (Hz)'] = f'{expected_fps:g}'
    if state == 'failed':
        return StatusReport(Level.ERROR, detail or 'camera failed', out)
    if state != 'streaming':
        return StatusReport(Level.WARN, detail or state, out)
    slow = [name for name, hz in rates.items()
            if expected_fps > 0 and hz < min_rate_fraction * expected_fps]
    if slow:
        return StatusReport(Level.WARN, 'low frame rate: ' + ', '.join(
            f'{name} {rates[name]:.1f} Hz' for name in slow) + f' (expected {expected_fps:g})',
            out)
    return StatusReport(Level.OK, detail or 'streaming', out)
