"""craik_franka test helpers: franky-sim servers in subprocesses, sessions and ROS fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
import sys
import threading
import time

import numpy as np
import pytest

# Helper modules next to the tests (franky_sim_server, fake_franky, command_strategies) are
# imported by name; pytest's importlib mode does not put this directory on sys.path by itself.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from franky_sim_server import FrankySimServer  # noqa: E402 (needs the path above)


@pytest.fixture
def sim_server() -> Iterator[FrankySimServer]:
    """A fresh franky-sim FR3 (robot + gripper) in its own process, at the home pose."""
    server = FrankySimServer()
    server.start()
    yield server
    server.stop()


class SpeedRecorder:
    """Samples the session's measured TCP speed and position in a background thread."""

    def __init__(self, session, period: float = 0.002) -> None:
        self._session = session
        self._period = period
        self.samples: list[tuple[float, float, np.ndarray]] = []  # (t, speed, position [3])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last_stamp = None
        while not self._stop.is_set():
            snap = self._session.snapshot()
            if snap.reading is not None and snap.stamp != last_stamp:
                last_stamp = snap.stamp
                self.samples.append((time.monotonic(), float(np.linalg.norm(
                    snap.reading.ee_velocity)), snap.reading.ee_position.copy()))
            time.sleep(self._period)

    def __enter__(self) -> SpeedRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, t0: float, t1: float) -> list[tuple[float, float, np.ndarray]]:
        return [s for s in self.samples if t0 <= s[0] <= t1]


@pytest.fixture
def speed_recorder():
    return SpeedRecorder
