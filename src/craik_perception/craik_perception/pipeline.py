"""librealsense (pyrealsense2) pipeline wrapper: a live camera or a recording -> numpy frames.

:class:`RealSenseSource` opens a camera (by serial number, or the first one found) or a
recording, validates the requested profiles against what it offers, runs the optional depth
filters and the depth-to-colour alignment, and hands out :class:`FrameBundle`\\ s: an rgb8
colour image and a uint16 millimetre depth image as numpy arrays, with the device timestamps.
Failures are typed (:class:`DeviceNotFoundError`, :class:`RecordingError`,
:class:`FrameTimeoutError`, ...) so that :mod:`craik_perception.capture` can decide whether to
retry, restart or give up. No ROS here.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
from dataclasses import dataclass
from pathlib import Path
import time
from typing import Any

import numpy as np

from craik_perception.image_conversion import (
    Intrinsics,
    UnsupportedDistortionError,
    camera_info_from_intrinsics,
    depth_to_millimetres,
)
from craik_perception.librealsense import new_context, rs
from craik_perception.profiles import (
    COLOR_FORMATS,
    DEPTH_FORMATS,
    OfferedProfile,
    ProfileNotSupportedError,
    RealSenseConfig,
    select_profile,
)

# Waiting for frames is sliced so that the end of a recording is noticed promptly; the end is
# declared after this many empty slices in a row with playback stopped.
_WAIT_SLICE_S = 0.1
_END_SLICES = 3


class RealSenseError(RuntimeError):
    """Base class of the source's failures."""


class DeviceNotFoundError(RealSenseError):
    """No camera (or not the requested one) is connected; worth retrying."""


class DeviceError(RealSenseError):
    """librealsense failed to open or stream the camera (busy, USB error, ...); worth retrying."""


class RecordingError(RealSenseError):
    """The recording is missing, unreadable or lacks a needed stream; retrying will not help."""


class FrameTimeoutError(RealSenseError):
    """No new frameset arrived within the timeout (camera stalled or unplugged)."""


class EndOfRecording(RealSenseError):  # noqa: N818 (an expected end, not an error)
    """The recording played to its end (and does not loop)."""


@dataclass(frozen=True)
class DeviceDescription:
    """What is streaming: a camera or a recording of one."""

    name: str
    serial: str
    firmware: str
    product_line: str
    recording: str = ''          # path of the recording, '' for a live camera

    @property
    def is_playback(self) -> bool:
        return bool(self.recording)


@dataclass(frozen=True)
class StreamInfo:
    """The streams as opened: chosen profiles, intrinsics and depth units."""

    device: DeviceDescription
    color: OfferedProfile
    depth: OfferedProfile
    color_intrinsics: Intrinsics
    depth_intrinsics: Intrinsics          # of the raw depth stream
    depth_units: float                    # metres per unit of the device's depth values
    aligned: bool
    filters: tuple[str, ...]
    depth_to_color_translation: tuple[float, float, float]   # metres, in the depth frame
    depth_to_color_rotation: tuple[float, ...]                # 3x3, column-major (librealsense)

    @property
    def output_depth_intrinsics(self) -> Intrinsics:
        """Intrinsics of the published depth image (the colour camera's when aligned)."""
        return self.color_intrinsics if self.aligned else self.depth_intrinsics


class FrameBundle:
    """One synchronised colour + depth pair.

    ``color`` is [H, W, 3] uint8 rgb8 and ``depth`` [H, W] uint16 millimetres (0 = no data),
    of the colour camera's size when aligned. The depth is computed on first access (filters,
    alignment, unit conversion), so that a consumer can publish the colour image before paying
    for the alignment. Both may be views of librealsense frame memory, kept valid by
    ``keepalive`` for as long as the bundle lives. ``stamp_ns`` and ``depth_stamp_ns`` are
    host/ROS times filled in by the capture thread.
    """

    def __init__(self, color: np.ndarray,
                 depth: np.ndarray | Callable[[], tuple[np.ndarray, int, Any]],
                 color_time_ms: float, depth_time_ms: float, time_domain: str,
                 color_frame_number: int, depth_frame_number: int,
                 keepalive: Any = None) -> None:
        """``depth``: the depth image, or a function returning (depth image, number of
        saturated pixels, object keeping its memory alive), called on first access."""
        self.color = color
        self.color_time_ms = color_time_ms
        self.depth_time_ms = depth_time_ms
        self.time_domain = time_domain
        self.color_frame_number = color_frame_number
        self.depth_frame_number = depth_frame_number
        self.keepalive = keepalive
        self.stamp_ns = 0
        self.depth_stamp_ns = 0
        self._depth: np.ndarray | None = None
        self._depth_fn: Callable[[], tuple[np.ndarray, int, Any]] | None = None
        self._clipped = 0
        if isinstance(depth, np.ndarray):
            self._depth = depth
        else:
            self._depth_fn = depth

    def _resolve(self) -> np.ndarray:
        if self._depth is None:
            assert self._depth_fn is not None
            self._depth, self._clipped, keep = self._depth_fn()
            self._depth_fn = None
            if keep is not None:
                self.keepalive = (self.keepalive, keep)
        return self._depth

    @property
    def depth(self) -> np.ndarray:
        """[H, W] uint16 millimetres (computed on first access)."""
        return self._resolve()

    @property
    def depth_clipped(self) -> int:
        """Depth pixels beyond 65.535 m that were saturated to 65535 mm."""
        self._resolve()
        return self._clipped

    def detach(self) -> FrameBundle:
        """Compute the depth, copy both images out of librealsense's memory, release it.

        librealsense recycles a small pool of frames: a caller that keeps more than a few
        bundles must detach them, or the pipeline stalls and processing fails.
        """
        depth = self._resolve()
        if self.keepalive is not None:
            self.color = self.color.copy()
            self._depth = depth.copy()
            self.keepalive = None
        return self


@dataclass
class SourceCounters:
    """Framesets that librealsense delivered but the source did not pass on, by reason."""

    duplicates: int = 0     # the same colour frame again (playback pads framesets)
    unsynced: int = 0       # colour and depth further apart than half a frame period
    incomplete: int = 0     # a frameset without colour or without depth


def _enum_name(value: Any) -> str:
    return str(value).rsplit('.', 1)[-1].lower()


def intrinsics_from_rs(intr: Any) -> Intrinsics:
    """Convert a ``pyrealsense2.intrinsics`` to :class:`Intrinsics`."""
    coeffs = tuple(float(c) for c in list(intr.coeffs)[:5])
    return Intrinsics(int(intr.width), int(intr.height), float(intr.fx), float(intr.fy),
                      float(intr.ppx), float(intr.ppy), _enum_name(intr.model),
                      coeffs + (0.0,) * (5 - len(coeffs)))


def offered_profiles(device: Any) -> list[OfferedProfile]:
    """Every colour and depth video profile (stream index 0) that ``device`` offers."""
    names = {rs.stream.color: 'color', rs.stream.depth: 'depth'}
    offered: set[OfferedProfile] = set()
    for sensor in device.query_sensors():
        for profile in sensor.get_stream_profiles():
            stream = names.get(profile.stream_type())
            if stream is None or not profile.is_video_stream_profile():
                continue
            if profile.stream_index() not in (0, -1):
                continue
            video = profile.as_video_stream_profile()
            offered.add(OfferedProfile(stream, int(video.width()), int(video.height()),
                                       int(profile.fps()), _enum_name(profile.format())))
    return sorted(offered)


def _info(device: Any, field: Any) -> str:
    try:
        return str(device.get_info(field)) if device.supports(field) else ''
    except RuntimeError:
        return ''


def describe_device(device: Any, recording: str = '') -> DeviceDescription:
    """Name, serial number, firmware and product line of a librealsense device."""
    return DeviceDescription(_info(device, rs.camera_info.name),
                             _info(device, rs.camera_info.serial_number),
                             _info(device, rs.camera_info.firmware_version),
                             _info(device, rs.camera_info.product_line), recording)


def list_cameras(context: Any | None = None) -> list[DeviceDescription]:
    """The RealSense cameras connected to this machine."""
    ctx = context if context is not None else new_context()
    return [describe_device(d) for d in ctx.query_devices()]


class RealSenseSource:
    """A camera or recording streaming colour + (aligned) depth through librealsense.

    ``open()`` validates and starts, ``read()`` returns the next synchronised pair, ``close()``
    stops. Not thread-safe: use it from one thread (the capture thread).
    """

    def __init__(self, config: RealSenseConfig,
                 context_factory: Callable[[], Any] | None = None) -> None:
        self.config = config
        self._context_factory = context_factory or new_context
        self._pipeline: Any = None
        self._playback: Any = None
        self._filters: list[Any] = []
        self._align: Any = None
        self._info: StreamInfo | None = None
        self._last_color: tuple[int, float] | None = None
        self._sync_tolerance_ms = 0.0
        self._frames_seen = 0
        self._stopped_slices = 0
        self._opened_at = 0.0
        self.counters = SourceCounters()

    @property
    def info(self) -> StreamInfo | None:
        """What ``open()`` started (None before)."""
        return self._info

    # --- open ----------------------------------------------------------------------------------

    def open(self) -> StreamInfo:
        """Find the camera or recording, validate the profiles and start streaming.

        Raises DeviceNotFoundError, RecordingError, ProfileNotSupportedError (a ValueError),
        or DeviceError for other librealsense failures.
        """
        self.close()
        cfg = self.config
        try:
            context = self._context_factory()
            rs_config = rs.config()
            if cfg.is_playback:
                pipeline = rs.pipeline(context)
                device, description = self._resolve_recording(pipeline, rs_config)
            else:
                device, description = self._resolve_camera(context, rs_config)
                pipeline = rs.pipeline(context)
            source = (f'recording {cfg.rosbag_filename}' if cfg.is_playback
                      else f'camera {description.name} {description.serial}')
            offered = offered_profiles(device)
            if cfg.is_playback:
                for stream in ('color', 'depth'):
                    if not any(p.stream == stream for p in offered):
                        raise RecordingError(
                            f'recording {cfg.rosbag_filename} has no {stream} stream; it has: '
                            + (', '.join(f'{p.stream} {p}' for p in offered) or 'no video'))
            color = select_profile('color', cfg.color_profile, offered, COLOR_FORMATS, source)
            depth = select_profile('depth', cfg.depth_profile, offered, DEPTH_FORMATS, source)
            self._apply_depth_units(device, source)
            rs_config.enable_stream(rs.stream.color, color.width, color.height,
                                    getattr(rs.format, color.format), color.fps)
            rs_config.enable_stream(rs.stream.depth, depth.width, depth.height,
                                    rs.format.z16, depth.fps)
            profile = pipeline.start(rs_config)
        except (RealSenseError, ProfileNotSupportedError):
            raise
        except RuntimeError as err:
            if cfg.is_playback:
                raise RecordingError(f'cannot play recording {cfg.rosbag_filename}: '
                                     f'{_reason(err)}') from err
            raise DeviceError(f'librealsense failed to start {cfg.describe_source()}: '
                              f'{_reason(err)}') from err
        self._pipeline = pipeline
        try:
            started = profile.get_device()
            if cfg.is_playback:
                self._playback = started.as_playback()
                self._playback.set_real_time(cfg.rosbag_real_time)
            depth_units = float(started.first_depth_sensor().get_depth_scale())
            color_stream = profile.get_stream(rs.stream.color)
            depth_stream = profile.get_stream(rs.stream.depth)
            extrinsics = depth_stream.get_extrinsics_to(color_stream)
            t = [float(x) for x in extrinsics.translation]
            self._info = StreamInfo(
                description, color, depth,
                intrinsics_from_rs(color_stream.as_video_stream_profile().get_intrinsics()),
                intrinsics_from_rs(depth_stream.as_video_stream_profile().get_intrinsics()),
                depth_units, cfg.align_depth, cfg.filters.enabled,
                (t[0], t[1], t[2]),
                tuple(float(r) for r in extrinsics.rotation))
        except RuntimeError as err:
            self.close()
            raise DeviceError(f'cannot query the started streams of {cfg.describe_source()}: '
                              f'{_reason(err)}') from err
        try:
            # Streams whose distortion no ROS camera model represents cannot be published.
            camera_info_from_intrinsics(self._info.color_intrinsics)
            camera_info_from_intrinsics(self._info.output_depth_intrinsics)
        except UnsupportedDistortionError:
            self.close()
            raise
        self._filters = [{'spatial': rs.spatial_filter, 'temporal': rs.temporal_filter,
                          'hole_filling': rs.hole_filling_filter}[name]()
                         for name in cfg.filters.enabled]
        self._align = rs.align(rs.stream.color) if cfg.align_depth else None
        self._sync_tolerance_ms = 500.0 / min(color.fps, depth.fps) + 1.0
        self._last_color = None
        self._frames_seen = 0
        self._stopped_slices = 0
        self._opened_at = time.monotonic()
        return self._info

    def _resolve_recording(self, pipeline: Any, rs_config: Any) -> tuple[Any, DeviceDescription]:
        path = Path(self.config.rosbag_filename)
        if not path.exists():
            raise RecordingError(f'recording {path} not found')
        if not path.is_file():
            raise RecordingError(f'recording {path} is not a file')
        rs_config.enable_device_from_file(str(path), repeat_playback=self.config.rosbag_loop)
        try:
            device = rs_config.resolve(rs.pipeline_wrapper(pipeline)).get_device()
        except RuntimeError as err:
            raise RecordingError(f'cannot read recording {path} (corrupt or not a librealsense '
                                 f'recording): {_reason(err)}') from err
        # Before start: the pipeline plays this same device, and in the moments between
        # start() and a later set_real_time(False) real-time playback would already drop the
        # frames nobody reads yet (measured: 16 of 30 frames left after a 0.5 s delay).
        device.as_playback().set_real_time(self.config.rosbag_real_time)
        return device, describe_device(device, str(path))

    def _resolve_camera(self, context: Any, rs_config: Any) -> tuple[Any, DeviceDescription]:
        devices = list(context.query_devices())
        if not devices:
            raise DeviceNotFoundError('no RealSense camera connected (check the USB cable and '
                                      'that no other process holds the camera)')
        described = [(d, describe_device(d)) for d in devices]
        serial = self.config.serial_no
        if serial:
            matches = [(d, desc) for d, desc in described if desc.serial == serial]
            if not matches:
                present = ', '.join(f'{desc.name} {desc.serial}' for _, desc in described)
                raise DeviceNotFoundError(f'camera with serial_no {serial} not connected; '
                                          f'connected: {present}')
            device, description = matches[0]
        else:
            device, description = described[0]
        rs_config.enable_device(description.serial)
        return device, description

    def _apply_depth_units(self, device: Any, source: str) -> None:
        wanted = self.config.depth_units
        if wanted <= 0.0:
            return
        sensor = device.first_depth_sensor()
        current = float(sensor.get_depth_scale())
        if abs(current - wanted) <= 1e-9:
            return
        option = rs.option.depth_units
        if (self.config.is_playback or not sensor.supports(option)
                or sensor.is_option_read_only(option)):
            raise ProfileNotSupportedError(
                f'depth_units {wanted:g} cannot be set on {source}: its depth units are fixed '
                f'at {current:.6g} m (set depth_units to 0 to use them)')
        rng = sensor.get_option_range(option)
        if not rng.min - 1e-12 <= wanted <= rng.max + 1e-12:
            raise ProfileNotSupportedError(
                f'depth_units {wanted:g} is outside what {source} supports: '
                f'{rng.min:.6g} .. {rng.max:.6g} m per unit')
        sensor.set_option(option, wanted)

    # --- read ----------------------------------------------------------------------------------

    def read(self, timeout_s: float) -> FrameBundle:
        """The next synchronised colour + depth pair, filtered and aligned.

        Raises FrameTimeoutError when none arrives within ``timeout_s``, EndOfRecording when a
        non-looping recording is over, DeviceError when librealsense fails while streaming.
        """
        if self._pipeline is None or self._info is None:
            raise RuntimeError('RealSenseSource.read() before open()')
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0.0:
                raise FrameTimeoutError(f'no frames from {self.config.describe_source()} '
                                        f'for {timeout_s:.1f} s')
            try:
                ok, frames = self._pipeline.try_wait_for_frames(
                    max(1, int(1000 * min(remaining, _WAIT_SLICE_S))))
            except RuntimeError as err:
                raise DeviceError(f'{self.config.describe_source()} failed while streaming: '
                                  f'{_reason(err)}') from err
            if not ok:
                if self._playback is not None:
                    self._check_end_of_recording()
                continue
            self._stopped_slices = 0
            bundle = self._process(frames)
            if bundle is not None:
                self._frames_seen += 1
                return bundle

    def _check_end_of_recording(self) -> None:
        """After an empty wait: raise EndOfRecording once playback has really stopped.

        The status reads 'stopped' before playback has started, and a looping recording
        passes through it while it rewinds; so only several empty waits in a row in that state,
        after frames were delivered, mean the end.
        """
        if self.config.rosbag_loop:
            return
        if self._playback.current_status() != rs.playback_status.stopped:
            self._stopped_slices = 0
            return
        self._stopped_slices += 1
        if self._stopped_slices < _END_SLICES:
            return
        if self._frames_seen:
            raise EndOfRecording(f'recording {self.config.rosbag_filename} ended')
        if time.monotonic() - self._opened_at > max(5.0, self.config.frame_timeout):
            raise RecordingError(f'recording {self.config.rosbag_filename} ended without a '
                                 f'single synchronised colour + depth frame')

    def _process(self, frames: Any) -> FrameBundle | None:
        color = frames.get_color_frame()
        depth = frames.get_depth_frame()
        if not color or not depth:
            self.counters.incomplete += 1
            return None
        key = (color.get_frame_number(), color.get_timestamp())
        if key == self._last_color:
            self.counters.duplicates += 1
            return None
        if abs(color.get_timestamp() - depth.get_timestamp()) > self._sync_tolerance_ms:
            self.counters.unsynced += 1
            return None
        self._last_color = key
        assert self._info is not None
        rgb = _to_rgb(np.asanyarray(color.get_data()), self._info.color.format)
        filters, align, units = list(self._filters), self._align, self._info.depth_units
        return FrameBundle(rgb, lambda: _depth_of(frames, filters, align, units),
                           float(color.get_timestamp()),
                           float(depth.get_timestamp()),
                           _enum_name(color.get_frame_timestamp_domain()),
                           int(color.get_frame_number()), int(depth.get_frame_number()),
                           keepalive=frames)

    # --- close ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop streaming and release the camera or recording (safe to call repeatedly)."""
        pipeline, self._pipeline = self._pipeline, None
        self._playback = None
        self._align = None
        self._filters = []
        if pipeline is not None:
            # Already stopped, or the camera is gone: nothing left to release either way.
            with contextlib.suppress(RuntimeError):
                pipeline.stop()

    def __enter__(self) -> RealSenseSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _depth_of(frames: Any, filters: list[Any], align: Any,
              depth_units: float) -> tuple[np.ndarray, int, Any]:
    """Filter, align and convert the depth of ``frames`` (the lazy half of a FrameBundle).

    The temporal filter assumes frames in order: compute bundles' depth in the order read.
    """
    processed = frames
    try:
        for block in filters:
            processed = block.process(processed)
        if align is not None:
            processed = align.process(processed.as_frameset())
    except RuntimeError as err:
        raise DeviceError(f'librealsense post-processing failed ({_reason(err)}); if '
                          f'frames are being kept, detach() them') from err
    depth = processed.as_frameset().get_depth_frame()
    depth_mm, clipped = depth_to_millimetres(np.asanyarray(depth.get_data()), depth_units)
    return depth_mm, clipped, processed


def _to_rgb(color: np.ndarray, fmt: str) -> np.ndarray:
    """[H, W, C] colour in librealsense format ``fmt`` -> [H, W, 3] rgb8 (a view for rgb8)."""
    if fmt == 'rgb8':
        return color
    if fmt == 'bgr8':
        return np.ascontiguousarray(color[..., ::-1])
    if fmt == 'rgba8':
        return np.ascontiguousarray(color[..., :3])
    if fmt == 'bgra8':
        return np.ascontiguousarray(color[..., 2::-1])
    raise ValueError(f'colour format {fmt} cannot be converted to rgb8')


def _reason(err: BaseException) -> str:
    return str(err).strip() or type(err).__name__
