"""Write librealsense recordings of synthetic frames (a camera-free RealSense for tests).

A ``pyrealsense2.software_device`` with a depth and a colour sensor stands in for a D435; a
``pyrealsense2.recorder`` writes everything it streams to a recording that librealsense plays
back like one made with a real camera (``rs-record``, realsense-viewer), so tests exercise the
real playback, synchronisation and alignment code with frames of known content.

Three facts learned by probing pyrealsense2 2.59 (all handled here):

* its recorder writes rosbag2 SQLite files and insists on the ``.db3`` suffix (it still plays
  ROS 1 ``.bag`` recordings made by older versions);
* frame timestamps must start at 0 ms and frame numbers at 0: librealsense derives each
  software frame's "actual fps" metadata from its timestamp and frame number relative to 0,
  and the syncer uses that rate to pair colour with depth. With another origin the played-back
  framesets come out unpaired (each frame with the previous frame of the other stream);
* the recorder files each frame under the host time at which it arrived, and real-time
  playback paces frames by those times, not by the frame timestamps. :class:`RecordingWriter`
  therefore feeds frames at the camera's rate (``pace=True``, the default). An unpaced
  recording plays back in a burst in which librealsense drops most frames, even in
  as-fast-as-possible playback (measured: 2 of 6 frames delivered).

:func:`box_scene` renders a frame of known geometry: a fronto-parallel box face in front of a
background plane, seen consistently by the depth camera and by the colour camera (which sits
``depth_to_color_translation`` to the side), with the depth that alignment must produce.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
import os
from pathlib import Path
import time
from typing import Any

import numpy as np

from craik_perception.image_conversion import DEPTH_UNITS_MM, Intrinsics
from craik_perception.librealsense import rs

RECORDING_SUFFIX = '.db3'
BOX_RGB = (220, 30, 30)


@dataclass(frozen=True)
class SyntheticCamera:
    """The virtual camera: stream intrinsics, rate, depth units and extrinsics.

    ``depth_to_color_translation`` is t of librealsense's depth-to-colour extrinsics
    (p_color = p_depth + t, metres; a D435's is ~(0.015, 0, 0)); the rotation is the
    identity. ``color_format`` is the recorded colour format ('rgb8' or 'bgr8').
    """

    color: Intrinsics = field(default_factory=lambda: Intrinsics(640, 480, 600.0, 600.0,
                                                                  320.0, 240.0))
    depth: Intrinsics = field(default_factory=lambda: Intrinsics(424, 240, 210.0, 210.0,
                                                                  212.0, 120.0))
    fps: int = 30
    depth_units: float = DEPTH_UNITS_MM
    depth_to_color_translation: tuple[float, float, float] = (0.015, 0.0, 0.0)
    color_format: str = 'rgb8'
    serial: str = '000000000001'
    name: str = 'craik synthetic D435'
    firmware: str = '0.0.0.0'

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f'SyntheticCamera.fps must be positive, got {self.fps}')
        if not self.depth_units > 0:
            raise ValueError(f'SyntheticCamera.depth_units must be positive, got '
                             f'{self.depth_units}')
        if self.color_format not in ('rgb8', 'bgr8'):
            raise ValueError(f"SyntheticCamera.color_format must be 'rgb8' or 'bgr8', got "
                             f'{self.color_format!r}')


def _rs_intrinsics(i: Intrinsics) -> Any:
    out = rs.intrinsics()
    out.width, out.height = i.width, i.height
    out.fx, out.fy, out.ppx, out.ppy = i.fx, i.fy, i.ppx, i.ppy
    out.model = getattr(rs.distortion, i.model)
    out.coeffs = list(i.coeffs)
    return out


def _video_stream(stream: Any, uid: int, intr: Intrinsics, fps: int, fmt: Any,
                  bpp: int) -> Any:
    vs = rs.video_stream()
    vs.type, vs.index, vs.uid = stream, 0, uid
    vs.width, vs.height, vs.fps = intr.width, intr.height, fps
    vs.bpp, vs.fmt = bpp, fmt
    vs.intrinsics = _rs_intrinsics(intr)
    return vs


class RecordingWriter:
    """Record synthetic colour + depth pairs to a librealsense recording (``.db3``).

    Use as a context manager; :meth:`write` adds one pair. Frame ``n`` gets frame number ``n``
    and timestamp ``n * 1000 / fps`` ms (see the module docstring for why the origin is 0).
    With ``pace`` (default), :meth:`write` waits until frame ``n`` is due at the camera's rate,
    so that the recording plays back in real time at that rate; frames written late are
    spaced by at least one frame period, never in a burst.
    """

    def __init__(self, path: str | os.PathLike[str], camera: SyntheticCamera,
                 pace: bool = True) -> None:
        self.path = Path(path)
        if self.path.suffix != RECORDING_SUFFIX:
            raise ValueError(f'pyrealsense2 records rosbag2 SQLite files: the path must end '
                             f'in {RECORDING_SUFFIX}, got {self.path}')
        self.camera = camera
        self.pace = pace
        self.frames = 0
        self._start = 0.0
        self._device: Any = None
        self._recorder: Any = None
        self._sensors: list[tuple[Any, Any]] = []

    def __enter__(self) -> RecordingWriter:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Create the software device and start recording."""
        cam = self.camera
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()
        device = rs.software_device()
        depth_sensor = device.add_sensor('Stereo Module')
        color_sensor = device.add_sensor('RGB Camera')
        depth_profile = depth_sensor.add_video_stream(
            _video_stream(rs.stream.depth, 0, cam.depth, cam.fps, rs.format.z16, 2))
        color_profile = color_sensor.add_video_stream(
            _video_stream(rs.stream.color, 1, cam.color, cam.fps,
                          getattr(rs.format, cam.color_format), 3))
        depth_sensor.add_read_only_option(rs.option.depth_units, cam.depth_units)
        extrinsics = rs.extrinsics()
        extrinsics.rotation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        extrinsics.translation = list(cam.depth_to_color_translation)
        depth_profile.register_extrinsics_to(color_profile, extrinsics)
        device.register_info(rs.camera_info.name, cam.name)
        device.register_info(rs.camera_info.serial_number, cam.serial)
        device.register_info(rs.camera_info.firmware_version, cam.firmware)
        device.register_info(rs.camera_info.product_line, 'D400')
        device.create_matcher(rs.matchers.default)
        self._recorder = rs.recorder(str(self.path), device)
        for sensor, profile in ((depth_sensor, depth_profile), (color_sensor, color_profile)):
            sensor.open(profile)
            sensor.start(lambda frame: None)
            self._sensors.append((sensor, profile.as_video_stream_profile()))
        self._device = device

    def write(self, color_rgb: np.ndarray, depth_raw: np.ndarray) -> None:
        """Record one pair: [H, W, 3] uint8 RGB colour and [H, W] uint16 depth (device units)."""
        if self._device is None:
            raise RuntimeError('RecordingWriter.write() outside open()/close()')
        cam = self.camera
        if color_rgb.shape != (cam.color.height, cam.color.width, 3) or (
                color_rgb.dtype != np.uint8):
            raise ValueError(f'colour must be uint8 [{cam.color.height}, {cam.color.width}, 3], '
                             f'got {color_rgb.dtype} {list(color_rgb.shape)}')
        if depth_raw.shape != (cam.depth.height, cam.depth.width) or depth_raw.dtype != np.uint16:
            raise ValueError(f'depth must be uint16 [{cam.depth.height}, {cam.depth.width}], '
                             f'got {depth_raw.dtype} {list(depth_raw.shape)}')
        color = color_rgb[..., ::-1] if cam.color_format == 'bgr8' else color_rgb
        timestamp = self.frames * 1000.0 / cam.fps
        if self.pace:
            if self.frames == 0:
                self._start = time.monotonic()
            delay = self._start + timestamp / 1000.0 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                # Late (slow caller, busy machine): shift the schedule rather than catch up
                # with a burst, which playback would partly drop.
                self._start -= delay
        for (sensor, profile), pixels, bpp in ((self._sensors[0], depth_raw, 2),
                                              (self._sensors[1], color, 3)):
            frame = rs.software_video_frame()
            frame.pixels = np.ascontiguousarray(pixels)
            frame.bpp = bpp
            frame.stride = profile.width() * bpp
            frame.timestamp = timestamp
            frame.domain = rs.timestamp_domain.hardware_clock
            frame.frame_number = self.frames
            frame.profile = profile
            if bpp == 2:
                frame.depth_units = cam.depth_units
            sensor.on_video_frame(frame)
        self.frames += 1

    def close(self) -> None:
        """Stop the sensors and finish the file."""
        for sensor, _ in self._sensors:
            try:
                sensor.stop()
                sensor.close()
            except RuntimeError:
                pass
        self._sensors = []
        # Dropping the recorder flushes and closes the file.
        self._recorder = None
        self._device = None


def write_recording(path: str | os.PathLike[str], camera: SyntheticCamera,
                    frames: Iterable[tuple[np.ndarray, np.ndarray]], pace: bool = True) -> int:
    """Record ``(color_rgb, depth_raw)`` pairs to ``path``; returns how many were written.

    ``pace``: feed them at the camera's rate (see :class:`RecordingWriter`).
    """
    with RecordingWriter(path, camera, pace) as writer:
        for color, depth in frames:
            writer.write(color, depth)
        return writer.frames


@dataclass(frozen=True)
class BoxScene:
    """One synthetic frame and what the camera must make of it.

    color: [H, W, 3] uint8 RGB as the colour camera sees it (box red, background patterned).
    depth_raw: [h, w] uint16 depth in device units as the depth camera sees it.
    expected_aligned_mm: [H, W] uint16, depth in the colour camera in millimetres; 0 where
        the colour camera sees background that the box hides from the depth camera.
    box_in_color: [H, W] bool, colour pixels that see the box.
    """

    color: np.ndarray
    depth_raw: np.ndarray
    expected_aligned_mm: np.ndarray
    box_in_color: np.ndarray


def _pixel_rays(intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    u = (np.arange(intr.width) - intr.ppx) / intr.fx
    v = (np.arange(intr.height) - intr.ppy) / intr.fy
    return np.meshgrid(u, v)     # [H, W] each: normalised x, y of pixel centres


def box_scene(camera: SyntheticCamera, background_m: float = 1.0, box_m: float = 0.6,
              box_size_m: tuple[float, float] = (0.2, 0.15),
              box_center_m: tuple[float, float] = (0.0, 0.0), index: int = 0) -> BoxScene:
    """A box face (``box_size_m`` wide x high, centred at ``box_center_m`` in the depth
    camera's x/y) at ``box_m`` in front of a background plane at ``background_m``.

    Everything is fronto-parallel to the depth camera (and to the colour camera: the rotation
    is the identity). ``index`` is written into the colour image's top-left 8x8 block (green
    channel) so that played-back frames can be identified.
    """
    if not 0 < box_m < background_m:
        raise ValueError(f'box_m must be between 0 and background_m, got {box_m}, '
                         f'{background_m}')
    half_w, half_h = box_size_m[0] / 2, box_size_m[1] / 2
    cx, cy = box_center_m

    def in_box(x_n: np.ndarray, y_n: np.ndarray, shift_x: float) -> np.ndarray:
        x = x_n * box_m + shift_x     # box-plane point, in the depth camera's frame
        y = y_n * box_m
        return (np.abs(x - cx) <= half_w) & (np.abs(y - cy) <= half_h)

    dx, dy = _pixel_rays(camera.depth)
    depth_m = np.where(in_box(dx, dy, 0.0), box_m, background_m)
    depth_raw = np.rint(depth_m / camera.depth_units).astype(np.uint16)

    tx = camera.depth_to_color_translation[0]
    if camera.depth_to_color_translation[1:] != (0.0, 0.0):
        raise ValueError('box_scene supports a colour camera displaced along x only')
    cxn, cyn = _pixel_rays(camera.color)
    # A colour pixel's ray hits the box plane at x_c = x_n * box_m in the colour frame, which is
    # x_c - tx in the depth frame.
    box = in_box(cxn, cyn, -tx)
    rows, cols = np.indices(box.shape)
    checker = ((rows // 32 + cols // 32) % 2).astype(np.uint8)
    color = np.empty(box.shape + (3,), np.uint8)
    color[..., 0] = 40 + 60 * checker
    color[..., 1] = (cols * 255 // max(1, box.shape[1] - 1)).astype(np.uint8)
    color[..., 2] = 200 - 80 * checker
    color[box] = BOX_RGB
    color[:8, :8] = (0, index % 256, 0)
    # Background seen by the colour camera but hidden from the depth camera by the box: the
    # depth camera's ray to that background point, (x_n * bg - tx, y_n * bg, bg) in the depth
    # frame, crosses the box plane at (x_n * box - tx * box / bg, y_n * box), inside the box.
    shadow = ~box & in_box(cxn, cyn, -tx * box_m / background_m)
    expected = np.where(box, box_m, background_m) / DEPTH_UNITS_MM
    expected[shadow] = 0.0
    return BoxScene(color, depth_raw, np.rint(expected).astype(np.uint16), box)
