"""The capture thread: open the source, stream, and recover from faults, without ROS.

States and transitions:

* ``connecting`` -> ``streaming`` when the source opens;
* ``connecting`` -> ``waiting for device`` when no (or not the requested) camera is connected,
  retried every ``reconnect_delay`` seconds, also when a camera disappears mid-stream and later
  returns;
* ``streaming`` -> ``restarting`` when no frame arrived for ``frame_timeout`` seconds or
  librealsense failed while streaming: the pipeline is closed and opened again;
* ``streaming`` -> ``finished`` at the end of a recording that does not loop;
* -> ``failed`` for faults that retrying cannot fix: a missing or corrupt recording, a profile
  the device does not offer, an unsupported camera model. The thread ends; the node stays up
  and reports the error.

Each transition is reported through ``on_event``; frames go to ``on_frames`` with their host
timestamps filled in (:mod:`craik_perception.timestamps`). Both callbacks run on the capture
thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
import sys
import threading
import time
import traceback
from typing import Protocol

from craik_perception.diagnostics import Level
from craik_perception.image_conversion import UnsupportedDistortionError
from craik_perception.pipeline import (
    DeviceError,
    DeviceNotFoundError,
    EndOfRecording,
    FrameBundle,
    FrameTimeoutError,
    RealSenseError,
    RecordingError,
    StreamInfo,
)
from craik_perception.profiles import ProfileNotSupportedError
from craik_perception.timestamps import DIRECT_DOMAINS, DeviceClockMapper

# The source is polled in slices this long so that stop() is honoured promptly.
_POLL_S = 0.25


class CaptureState(StrEnum):
    """Where the capture thread is (the values are what diagnostics show)."""

    IDLE = 'idle'
    CONNECTING = 'connecting'
    STREAMING = 'streaming'
    WAITING_FOR_DEVICE = 'waiting for device'
    RESTARTING = 'restarting'
    FINISHED = 'finished'
    FAILED = 'failed'
    STOPPED = 'stopped'


@dataclass(frozen=True)
class CaptureEvent:
    """A state change with its reason."""

    state: CaptureState
    message: str
    level: Level
    info: StreamInfo | None = None


class FrameSource(Protocol):
    """What the capture thread drives (RealSenseSource, or a fake in tests)."""

    def open(self) -> StreamInfo: ...

    def read(self, timeout_s: float) -> FrameBundle: ...

    def close(self) -> None: ...


class CaptureThread:
    """Runs a :class:`FrameSource` on a dedicated thread with retry, restart and recovery."""

    def __init__(self, source_factory: Callable[[], FrameSource],
                 on_frames: Callable[[FrameBundle], None],
                 on_event: Callable[[CaptureEvent], None], *,
                 frame_timeout: float, reconnect_delay: float, is_playback: bool,
                 now_ns: Callable[[], int] = time.time_ns,
                 name: str = 'realsense-capture') -> None:
        if not frame_timeout > 0 or not reconnect_delay > 0:
            raise ValueError(f'frame_timeout and reconnect_delay must be > 0, got '
                             f'{frame_timeout}, {reconnect_delay}')
        self._factory = source_factory
        self._on_frames = on_frames
        self._on_event = on_event
        self.frame_timeout = frame_timeout
        self.reconnect_delay = reconnect_delay
        self.is_playback = is_playback
        self._now_ns = now_ns
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.state = CaptureState.IDLE
        self.message = ''
        self.info: StreamInfo | None = None
        self.restarts = 0
        self.frames = 0
        self.callback_errors = 0

    # --- control -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start capturing (returns at once; the source is opened on the capture thread)."""
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Stop capturing and release the source; True when the thread has ended."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    # --- thread --------------------------------------------------------------------------------

    def _emit(self, state: CaptureState, message: str, level: Level,
              info: StreamInfo | None = None) -> None:
        self.state, self.message = state, message
        try:
            self._on_event(CaptureEvent(state, message, level, info))
        except Exception as err:  # noqa: BLE001 (a broken listener must not stop the camera)
            self.callback_errors += 1
            print(f'realsense capture: event listener failed on {state.value!r}: {err!r}',
                  file=sys.stderr)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._session():
                    break
        finally:
            if self.state not in (CaptureState.FAILED, CaptureState.FINISHED):
                self._emit(CaptureState.STOPPED, 'capture stopped', Level.OK)

    def _session(self) -> bool:
        """Open the source once and stream until it fails; False to end the thread."""
        self._emit(CaptureState.CONNECTING, 'opening the camera or recording', Level.OK)
        source = self._factory()
        try:
            info = source.open()
        except DeviceNotFoundError as err:
            source.close()
            self._emit(CaptureState.WAITING_FOR_DEVICE,
                       f'{err}; retrying every {self.reconnect_delay:g} s', Level.WARN)
            self._stop.wait(self.reconnect_delay)
            return True
        except (RecordingError, ProfileNotSupportedError, UnsupportedDistortionError,
                ValueError) as err:
            source.close()
            self._emit(CaptureState.FAILED, str(err), Level.ERROR)
            return False
        except (DeviceError, RealSenseError, RuntimeError) as err:
            source.close()
            self._emit(CaptureState.RESTARTING,
                       f'{err}; retrying in {self.reconnect_delay:g} s', Level.WARN)
            self._stop.wait(self.reconnect_delay)
            return True
        except Exception as err:  # noqa: BLE001 (report it instead of dying silently)
            source.close()
            self._emit(CaptureState.FAILED, f'unexpected error opening the source: {err!r}\n'
                       + traceback.format_exc(), Level.ERROR)
            return False
        self.info = info
        self._emit(CaptureState.STREAMING, 'streaming', Level.OK, info)
        try:
            return self._stream(source)
        finally:
            source.close()

    def _stream(self, source: FrameSource) -> bool:
        mapper = DeviceClockMapper()
        first = True
        last_frame = time.monotonic()
        while not self._stop.is_set():
            try:
                bundle = source.read(min(_POLL_S, self.frame_timeout))
            except FrameTimeoutError:
                silent = time.monotonic() - last_frame
                if silent < self.frame_timeout:
                    continue
                self.restarts += 1
                self._emit(CaptureState.RESTARTING,
                           f'no frames for {silent:.1f} s (frame_timeout '
                           f'{self.frame_timeout:g} s); restarting the pipeline', Level.WARN)
                return True
            except EndOfRecording as err:
                self._emit(CaptureState.FINISHED, str(err), Level.OK)
                return False
            except RecordingError as err:
                self._emit(CaptureState.FAILED, str(err), Level.ERROR)
                return False
            except (DeviceError, RealSenseError, RuntimeError) as err:
                self.restarts += 1
                self._emit(CaptureState.RESTARTING, f'{err}; restarting the pipeline',
                           Level.WARN)
                self._stop.wait(min(self.reconnect_delay, 0.5))
                return True
            last_frame = time.monotonic()
            if first:
                mapper.direct = (not self.is_playback
                                 and bundle.time_domain in DIRECT_DOMAINS)
                first = False
            bundle.stamp_ns = mapper.update(bundle.color_time_ms, self._now_ns())
            bundle.depth_stamp_ns = mapper.map(bundle.depth_time_ms)
            self.frames += 1
            try:
                self._on_frames(bundle)
            except Exception as err:  # noqa: BLE001 (one bad frame must not stop the camera)
                self.callback_errors += 1
                if self.callback_errors <= 3:
                    self._emit(CaptureState.STREAMING, f'frame callback failed: {err!r}',
                               Level.WARN)
        return False
