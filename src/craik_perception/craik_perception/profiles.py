"""Typed configuration of the RealSense source and validation against what a camera offers.

Everything here is plain Python: the node fills :class:`RealSenseConfig` from its parameters and
the pipeline wrapper checks the requested stream profiles against the profiles that the device
(or the recording) actually offers, with :func:`select_profile`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
import re

# Colour pixel formats that the source can turn into rgb8, in order of preference. A live
# camera offers rgb8 (librealsense converts from YUYV); a recording offers what was recorded.
COLOR_FORMATS = ('rgb8', 'bgr8', 'rgba8', 'bgra8')
DEPTH_FORMATS = ('z16',)
RECORDING_SUFFIXES = ('.bag', '.db3')

# Requested size when width/height are 0 ("any"): the profile closest to 640x480 @ 30 Hz wins.
_PREFERRED_PIXELS = 640 * 480
_PREFERRED_FPS = 30


class ProfileNotSupportedError(ValueError):
    """The requested stream profile is not offered; the message lists the offered ones."""


@dataclass(frozen=True)
class StreamProfile:
    """A requested video stream: width and height in pixels, rate in frames per second.

    0 in any field means "any": the closest offered profile to 640x480 @ 30 Hz is taken.
    """

    width: int = 640
    height: int = 480
    fps: int = 30

    def __post_init__(self) -> None:
        for name in ('width', 'height', 'fps'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f'StreamProfile.{name} must be a non-negative integer '
                                 f'(0 = any), got {value!r}')

    @classmethod
    def parse(cls, text: str, name: str = 'profile') -> StreamProfile:
        """Parse ``'640,480,30'`` (realsense2_camera's syntax) or ``'640x480x30'``.

        Raises ValueError naming ``name`` when the text is not three non-negative integers.
        """
        parts = [p for p in re.split(r'[,x\s]+', text.strip().lower()) if p]
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ValueError(f"{name} must be 'width,height,fps' (e.g. '640,480,30'; "
                             f"0 = any), got {text!r}")
        width, height, fps = (int(p) for p in parts)
        return cls(width, height, fps)

    def matches(self, width: int, height: int, fps: int) -> bool:
        """Whether an offered (width, height, fps) satisfies this request."""
        return ((self.width in (0, width)) and (self.height in (0, height))
                and (self.fps in (0, fps)))

    def __str__(self) -> str:
        def part(value: int) -> str:
            return str(value) if value else '*'
        return f'{part(self.width)}x{part(self.height)}@{part(self.fps)}'


@dataclass(frozen=True, order=True)
class OfferedProfile:
    """A video stream profile offered by a device or a recording."""

    stream: str          # 'color' or 'depth'
    width: int
    height: int
    fps: int
    format: str          # librealsense format name in lower case: 'rgb8', 'z16', ...

    def __str__(self) -> str:
        return f'{self.width}x{self.height}@{self.fps} {self.format}'


def format_offered(offered: Sequence[OfferedProfile], stream: str) -> str:
    """A compact, sorted list of the offered profiles of one stream (for error messages)."""
    by_size: dict[tuple[int, int, int], set[str]] = {}
    for p in offered:
        if p.stream == stream:
            by_size.setdefault((p.width, p.height, p.fps), set()).add(p.format)
    if not by_size:
        return 'none'
    items = sorted(by_size.items(), key=lambda kv: (-kv[0][0] * kv[0][1], -kv[0][2]))
    return ', '.join(f'{w}x{h}@{fps} ({"/".join(sorted(fmts))})'
                     for (w, h, fps), fmts in items)


def select_profile(stream: str, requested: StreamProfile, offered: Sequence[OfferedProfile],
                   formats: Sequence[str], source: str = 'the camera') -> OfferedProfile:
    """Pick the offered profile of ``stream`` that satisfies ``requested``.

    Among matching profiles, the pixel format earliest in ``formats`` wins; with wildcards (0)
    the size and rate closest to 640x480 @ 30 Hz. Raises :class:`ProfileNotSupportedError`
    listing every profile of that stream that ``source`` offers when nothing matches.
    """
    candidates = [p for p in offered
                  if p.stream == stream and p.format in formats
                  and requested.matches(p.width, p.height, p.fps)]
    if not candidates:
        usable = [p for p in offered if p.stream == stream and p.format in formats]
        hint = '' if usable or not any(p.stream == stream for p in offered) else (
            f' (none in a usable format: {"/".join(formats)})')
        raise ProfileNotSupportedError(
            f'{stream} profile {requested} is not offered by {source}{hint}; supported '
            f'{stream} profiles: {format_offered(offered, stream)}')

    def rank(p: OfferedProfile) -> tuple[int, int, int, int]:
        return (formats.index(p.format), abs(p.width * p.height - _PREFERRED_PIXELS),
                abs(p.fps - _PREFERRED_FPS), -p.width)
    return min(candidates, key=rank)


@dataclass(frozen=True)
class FilterConfig:
    """librealsense depth post-processing, applied before alignment (all off by default)."""

    spatial: bool = False
    temporal: bool = False
    hole_filling: bool = False

    @property
    def enabled(self) -> tuple[str, ...]:
        """Names of the enabled filters in the order they run."""
        return tuple(name for name in ('spatial', 'temporal', 'hole_filling')
                     if getattr(self, name))


@dataclass(frozen=True)
class RealSenseConfig:
    """What to open and how to stream it.

    serial_no: the camera's serial number; '' takes the first camera found.
    rosbag_filename: a librealsense recording (``.bag`` or ``.db3``) to play instead of a
        camera; '' for a live camera.
    rosbag_loop: restart the recording at its end instead of stopping.
    rosbag_real_time: play at the recorded rate (True) or as fast as the node consumes (False;
        then no frame of the recording is skipped).
    color_profile, depth_profile: requested stream profiles (0 = any).
    align_depth: resample depth into the colour camera (the aligned_depth_to_color topics).
    filters: librealsense post-processing of depth.
    depth_units: metres per depth unit to set on the camera (e.g. 0.001); 0 keeps the device's
        (or recording's) setting. Published depth is millimetres either way.
    frame_timeout: seconds without frames before the pipeline is restarted.
    reconnect_delay: seconds between attempts to find a camera that is not (or no longer)
        connected.
    """

    serial_no: str = ''
    rosbag_filename: str = ''
    rosbag_loop: bool = False
    rosbag_real_time: bool = True
    color_profile: StreamProfile = field(default_factory=StreamProfile)
    depth_profile: StreamProfile = field(default_factory=StreamProfile)
    align_depth: bool = True
    filters: FilterConfig = field(default_factory=FilterConfig)
    depth_units: float = 0.0
    frame_timeout: float = 2.0
    reconnect_delay: float = 1.0

    def __post_init__(self) -> None:
        if self.serial_no and self.rosbag_filename:
            raise ValueError('serial_no and rosbag_filename are exclusive: set serial_no for a '
                             'live camera or rosbag_filename for a recording, not both')
        if self.serial_no and not re.fullmatch(r'[0-9A-Za-z_-]+', self.serial_no):
            raise ValueError(f'serial_no must be a camera serial number such as '
                             f"'123456789012', got {self.serial_no!r}")
        if self.rosbag_filename and not self.rosbag_filename.lower().endswith(
                RECORDING_SUFFIXES):
            raise ValueError(f'rosbag_filename must be a librealsense recording ending in '
                             f'{" or ".join(RECORDING_SUFFIXES)}, got {self.rosbag_filename!r}')
        if not (self.depth_units == 0.0 or 1e-6 <= self.depth_units <= 0.01):
            raise ValueError(f'depth_units must be 0 (keep the device setting) or between '
                             f'1e-6 and 0.01 metres per unit, got {self.depth_units}')
        if not self.frame_timeout > 0.0:
            raise ValueError(f'frame_timeout must be > 0 s, got {self.frame_timeout}')
        if not self.reconnect_delay > 0.0:
            raise ValueError(f'reconnect_delay must be > 0 s, got {self.reconnect_delay}')

    @property
    def is_playback(self) -> bool:
        """Whether this plays a recording rather than a live camera."""
        return bool(self.rosbag_filename)

    def describe_source(self) -> str:
        """Human-readable name of the source for logs and errors."""
        if self.is_playback:
            return f'recording {self.rosbag_filename}'
        return f'camera {self.serial_no}' if self.serial_no else 'the first RealSense camera'
