"""Capture thread fault handling with scripted sources, and the health report (no camera).

The scripted source stands in for librealsense where a real camera would be needed: a camera
that is missing at start, stalls, or is unplugged mid-stream and plugged back in.
"""

import threading
import time

import numpy as np
import pytest

from craik_perception.capture import CaptureEvent, CaptureState, CaptureThread
from craik_perception.diagnostics import Level, RateMeter, camera_status
from craik_perception.image_conversion import Intrinsics
from craik_perception.pipeline import (
    DeviceDescription,
    DeviceNotFoundError,
    EndOfRecording,
    FrameBundle,
    FrameTimeoutError,
    RecordingError,
    StreamInfo,
)
from craik_perception.profiles import OfferedProfile, ProfileNotSupportedError

INTR = Intrinsics(8, 6, 10.0, 10.0, 4.0, 3.0)
INFO = StreamInfo(DeviceDescription('fake D435', '42', '5.16', 'D400'),
                  OfferedProfile('color', 8, 6, 30, 'rgb8'),
                  OfferedProfile('depth', 8, 6, 30, 'z16'), INTR, INTR, 0.001, True, (),
                  (0.015, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


def _bundle(n):
    return FrameBundle(np.zeros((6, 8, 3), np.uint8), np.zeros((6, 8), np.uint16),
                       1000.0 + n * 33.3, 1000.0 + n * 33.3, 'hardware_clock', n, n)


class World:
    """A scripted camera: connected or not, streaming or stalled."""

    def __init__(self, connected=True, open_error=None):
        self.connected = connected
        self.stalled = False
        self.open_error = open_error
        self.opened = 0
        self.closed = 0
        self.frames_left = None          # None = endless; else frames until EndOfRecording
        self.read_error = None           # raised by read() when set
        self.n = 0

    def factory(self):
        world = self

        class Source:
            def open(self):
                if world.open_error is not None:
                    raise world.open_error
                if not world.connected:
                    raise DeviceNotFoundError('no RealSense camera connected')
                world.opened += 1
                return INFO

            def read(self, timeout_s):
                if world.read_error is not None:
                    raise world.read_error
                if world.frames_left == 0:
                    raise EndOfRecording('recording x.db3 ended')
                if world.stalled or not world.connected:
                    time.sleep(timeout_s)
                    raise FrameTimeoutError('no frames')
                time.sleep(0.005)
                world.n += 1
                if world.frames_left is not None:
                    world.frames_left -= 1
                return _bundle(world.n)

            def close(self):
                world.closed += 1

        return Source()


class Recorder:
    def __init__(self):
        self.events: list[CaptureEvent] = []
        self.frames: list[FrameBundle] = []
        self.lock = threading.RLock()

    def on_event(self, event):
        with self.lock:
            self.events.append(event)

    def on_frames(self, bundle):
        with self.lock:
            self.frames.append(bundle)

    def states(self):
        with self.lock:
            return [e.state for e in self.events]

    def wait_for(self, predicate, timeout_s=10.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self):
                    return True
            time.sleep(0.01)
        return False


@pytest.fixture
def run():
    threads = []

    def start(world, **kwargs):
        rec = Recorder()
        options = {'frame_timeout': 0.3, 'reconnect_delay': 0.05, 'is_playback': False}
        options.update(kwargs)
        thread = CaptureThread(world.factory, rec.on_frames, rec.on_event, **options)
        threads.append(thread)
        thread.start()
        return thread, rec

    yield start
    for thread in threads:
        assert thread.stop(timeout_s=5.0), 'capture thread did not stop'


def test_streams_and_stamps_frames(run):
    world = World()
    thread, rec = run(world, now_ns=lambda: time.time_ns())
    assert rec.wait_for(lambda r: len(r.frames) >= 10)
    assert rec.states()[:2] == [CaptureState.CONNECTING, CaptureState.STREAMING]
    assert rec.events[1].info == INFO
    stamps = [f.stamp_ns for f in rec.frames[:10]]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
    assert all(f.depth_stamp_ns == f.stamp_ns for f in rec.frames[:10])


def test_no_device_is_reported_and_retried_until_it_appears(run):
    world = World(connected=False)
    thread, rec = run(world)
    assert rec.wait_for(lambda r: r.states().count(CaptureState.WAITING_FOR_DEVICE) >= 3)
    waiting = [e for e in rec.events if e.state == CaptureState.WAITING_FOR_DEVICE][0]
    assert waiting.level == Level.WARN
    assert 'no RealSense camera connected' in waiting.message and 'retrying' in waiting.message
    assert not rec.frames
    world.connected = True
    assert rec.wait_for(lambda r: len(r.frames) >= 3)
    assert thread.state == CaptureState.STREAMING


def test_stalled_frames_restart_the_pipeline(run):
    world = World()
    thread, rec = run(world)
    assert rec.wait_for(lambda r: len(r.frames) >= 3)
    world.stalled = True
    assert rec.wait_for(lambda r: CaptureState.RESTARTING in r.states())
    restart = [e for e in rec.events if e.state == CaptureState.RESTARTING][0]
    assert 'restarting the pipeline' in restart.message and 'frame_timeout' in restart.message
    world.stalled = False
    before = len(rec.frames)
    assert rec.wait_for(lambda r: len(r.frames) > before + 3)
    assert world.opened >= 2 and thread.restarts >= 1
    assert world.closed >= 1            # the stalled pipeline was released before reopening


def test_camera_unplugged_mid_stream_recovers_when_it_returns(run):
    world = World()
    thread, rec = run(world)
    assert rec.wait_for(lambda r: len(r.frames) >= 3)
    world.connected = False           # unplugged: frames stop, reopening finds no camera
    assert rec.wait_for(lambda r: CaptureState.WAITING_FOR_DEVICE in r.states())
    assert rec.states().index(CaptureState.RESTARTING) < rec.states().index(
        CaptureState.WAITING_FOR_DEVICE)
    time.sleep(0.2)
    world.connected = True            # plugged back in
    before = len(rec.frames)
    assert rec.wait_for(lambda r: len(r.frames) > before + 3)
    assert rec.states()[-1] == CaptureState.STREAMING


@pytest.mark.parametrize('error', [RecordingError('recording /x.bag not found'),
                                   ProfileNotSupportedError('color profile 1x1@1 ...')])
def test_unfixable_errors_fail_without_retrying(run, error):
    world = World(open_error=error)
    thread, rec = run(world)
    assert rec.wait_for(lambda r: CaptureState.FAILED in r.states())
    thread.stop()
    failed = [e for e in rec.events if e.state == CaptureState.FAILED]
    assert len(failed) == 1 and failed[0].level == Level.ERROR
    assert failed[0].message == str(error)
    assert not thread.running


def test_a_recording_failing_mid_stream_is_not_retried(run):
    world = World()
    thread, rec = run(world, is_playback=True)
    assert rec.wait_for(lambda r: len(r.frames) >= 2)
    world.read_error = RecordingError('recording x.db3 ended without a single frame')
    assert rec.wait_for(lambda r: CaptureState.FAILED in r.states())
    assert rec.wait_for(lambda r: not thread.running)
    assert world.opened == 1
    assert rec.events[-1].message == 'recording x.db3 ended without a single frame'


def test_end_of_recording_finishes(run):
    world = World()
    world.frames_left = 5
    thread, rec = run(world, is_playback=True)
    assert rec.wait_for(lambda r: CaptureState.FINISHED in r.states())
    assert len(rec.frames) == 5
    assert rec.events[-1].message == 'recording x.db3 ended'


def test_a_failing_frame_callback_does_not_stop_capture():
    world = World()
    calls = []

    def broken(bundle):
        calls.append(bundle)
        raise RuntimeError('publisher exploded')

    rec = Recorder()
    thread = CaptureThread(world.factory, broken, rec.on_event, frame_timeout=0.3,
                           reconnect_delay=0.05, is_playback=False)
    thread.start()
    try:
        assert rec.wait_for(lambda r: len(calls) >= 10)
        assert thread.callback_errors >= 10
        assert thread.state == CaptureState.STREAMING
    finally:
        assert thread.stop()


def test_stop_is_prompt_while_waiting_for_a_device():
    world = World(connected=False)
    rec = Recorder()
    thread = CaptureThread(world.factory, rec.on_frames, rec.on_event, frame_timeout=5.0,
                           reconnect_delay=30.0, is_playback=False)
    thread.start()
    assert rec.wait_for(lambda r: CaptureState.WAITING_FOR_DEVICE in r.states())
    t0 = time.monotonic()
    assert thread.stop(timeout_s=5.0)
    assert time.monotonic() - t0 < 5.0
    assert rec.states()[-1] == CaptureState.STOPPED


# --- health report ---------------------------------------------------------------------------


def test_rate_meter_measures_and_notices_a_stall():
    meter = RateMeter(window_s=2.0)
    for i in range(61):
        meter.tick(i / 30)
    assert meter.rate(2.0) == pytest.approx(30.0, rel=0.02)
    assert meter.rate(10.0) == 0.0        # nothing in the last 2 s
    assert meter.count == 61


def test_status_levels():
    ok = camera_status('streaming', '', 30, {'color': 29.9, 'depth': 30.0}, {'serial': '42'})
    assert ok.level == Level.OK and ok.values['color rate (Hz)'] == '29.90'
    assert ok.values['serial'] == '42'
    slow = camera_status('streaming', '', 30, {'color': 12.0, 'depth': 30.0}, {})
    assert slow.level == Level.WARN and 'color 12.0 Hz' in slow.message
    waiting = camera_status('waiting for device', 'no camera', 30, {}, {})
    assert waiting.level == Level.WARN and waiting.message == 'no camera'
    failed = camera_status('failed', 'recording missing', 0, {}, {})
    assert failed.level == Level.ERROR
