"""Images and camera models without ROS: encodings, decode/validate, CameraInfo fields.

The ROS message types stay out of this module: images are described by the plain fields of
``sensor_msgs/Image`` (encoding, width, height, step, data) and camera models by
:class:`CameraInfoFields`, so any node (and the planner's goal-image validation) can use the
same checks, with specific errors, whatever message object carries the pixels.

Distortion models (librealsense ``rs2_distortion`` -> ROS ``distortion_model``), as the
realsense2_camera driver maps them:

=========================  ===============  ==================================================
librealsense               ROS              D
=========================  ===============  ==================================================
none                       plumb_bob        [0, 0, 0, 0, 0]
brown_conrady              plumb_bob        [k1, k2, p1, p2, k3]: OpenCV's model, exact
modified_brown_conrady     plumb_bob        the five coefficients; approximate (librealsense
                                            applies the tangential terms to the radially
                                            distorted point)
inverse_brown_conrady      plumb_bob        the five coefficients; they describe the inverse
                                            mapping (distorted -> undistorted), so this is
                                            exact only when they are all zero (D4xx colour)
kannala_brandt4            equidistant      [k1, k2, k3, k4] (OpenCV fisheye)
ftheta                     (rejected)       no ROS model represents it
=========================  ===============  ==================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
import sys
from typing import Any

import numpy as np

# encoding -> (numpy dtype, channels); names as in sensor_msgs/image_encodings.hpp.
ENCODINGS: dict[str, tuple[np.dtype[Any], int]] = {
    'rgb8': (np.dtype(np.uint8), 3),
    'bgr8': (np.dtype(np.uint8), 3),
    'rgba8': (np.dtype(np.uint8), 4),
    'bgra8': (np.dtype(np.uint8), 4),
    'mono8': (np.dtype(np.uint8), 1),
    'mono16': (np.dtype(np.uint16), 1),
    '8UC1': (np.dtype(np.uint8), 1),
    '8UC3': (np.dtype(np.uint8), 3),
    '8UC4': (np.dtype(np.uint8), 4),
    '16UC1': (np.dtype(np.uint16), 1),
    '16SC1': (np.dtype(np.int16), 1),
    '32SC1': (np.dtype(np.int32), 1),
    '32FC1': (np.dtype(np.float32), 1),
    '64FC1': (np.dtype(np.float64), 1),
}

# Depth images on craik's camera topics: uint16 millimetres (realsense2_camera's convention).
DEPTH_ENCODING = '16UC1'
DEPTH_UNITS_MM = 0.001          # metres per unit of a 16UC1 depth image
COLOR_ENCODING = 'rgb8'
# A real image larger than this is certainly a corrupt header (8K RGBA is ~33e6 pixels).
MAX_PIXELS = 100_000_000

_HOST_BIG_ENDIAN = sys.byteorder == 'big'


class ImageDecodeError(ValueError):
    """An image whose fields do not describe a valid buffer (base class of the errors below)."""


class UnsupportedEncodingError(ImageDecodeError):
    """The encoding is unknown or not one of the encodings the caller accepts."""


class ImageShapeError(ImageDecodeError):
    """Width or height is zero, negative or implausibly large, or an array has a bad shape."""


class ImageStepError(ImageDecodeError):
    """The row stride (step) is smaller than a row or not a whole number of pixels apart."""


class ImageSizeError(ImageDecodeError):
    """The data buffer is not exactly step * height bytes long."""


def bytes_per_pixel(encoding: str) -> int:
    """Bytes per pixel of a supported encoding (raises UnsupportedEncodingError)."""
    dtype, channels = _lookup(encoding)
    return dtype.itemsize * channels


def _lookup(encoding: str) -> tuple[np.dtype[Any], int]:
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise UnsupportedEncodingError(
            f'unsupported image encoding {encoding!r}; supported: '
            f'{", ".join(ENCODINGS)}') from None


def decode_image(encoding: str, width: int, height: int, step: int, data: Any, *,
                 is_bigendian: bool | int = False,
                 expected_encodings: Sequence[str] | None = None,
                 copy: bool = False) -> np.ndarray:
    """Validate the fields of an image and view its pixels as an array.

    ``data`` is any buffer (``bytes``, ``array.array`` as in an rclpy message, ``memoryview``,
    numpy array). Returns ``[height, width, channels]`` for multi-channel encodings and
    ``[height, width]`` for single-channel ones, in host byte order. Without ``copy`` the
    result is a view of ``data`` when possible (read-only if ``data`` is); rows padded to a
    larger ``step`` are sliced, not copied.

    Raises (all subclasses of :class:`ImageDecodeError`, itself a ``ValueError``):
    UnsupportedEncodingError (unknown encoding, or not in ``expected_encodings``),
    ImageShapeError (width/height not positive or too large), ImageStepError (step shorter
    than a row or not a multiple of the pixel's element size), ImageSizeError (data length
    differs from step * height).
    """
    if expected_encodings is not None and encoding not in expected_encodings:
        raise UnsupportedEncodingError(
            f'image encoding {encoding!r} is not accepted here; expected '
            f'{" or ".join(expected_encodings)}')
    dtype, channels = _lookup(encoding)
    if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
        raise ImageShapeError(f'image size {width}x{height} is not valid (width and height '
                              f'must be positive, at most {MAX_PIXELS} pixels)')
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageStepError(f'step {step} is smaller than a row of {width} {encoding} pixels '
                             f'({row_bytes} bytes)')
    if step % dtype.itemsize:
        raise ImageStepError(f'step {step} is not a multiple of the {dtype.itemsize}-byte '
                             f'element size of {encoding}')
    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else (
        data.reshape(-1).view(np.uint8))
    if buffer.size != step * height:
        raise ImageSizeError(f'image data has {buffer.size} bytes; {width}x{height} {encoding} '
                             f'with step {step} needs step * height = {step * height}')
    rows = buffer.reshape(height, step)[:, :row_bytes]
    declared = dtype.newbyteorder('>' if is_bigendian else '<')
    shape = (height, width, channels) if channels > 1 else (height, width)
    pixels = rows.view(declared).reshape(shape)
    if dtype.itemsize > 1 and bool(is_bigendian) != _HOST_BIG_ENDIAN:
        return pixels.astype(dtype)          # byte-swap into host order (a copy)
    return pixels.view(dtype).copy() if copy else pixels.view(dtype)


@dataclass(frozen=True)
class ImageBuffer:
    """The fields of a ``sensor_msgs/Image`` for an array, with ``data`` still an array.

    ``data`` is C-contiguous (the input array itself when it already was), so a message can be
    filled from it with a single copy.
    """

    encoding: str
    width: int
    height: int
    step: int
    data: np.ndarray
    is_bigendian: int = 0


def encode_image(array: np.ndarray, encoding: str) -> ImageBuffer:
    """Describe ``array`` ([H, W] or [H, W, C]) as an image of ``encoding`` without copying.

    Raises UnsupportedEncodingError for an unknown encoding and ImageShapeError when the
    array's dtype or channel count does not fit the encoding.
    """
    dtype, channels = _lookup(encoding)
    if array.dtype != dtype:
        raise ImageShapeError(f'{encoding} needs a {dtype} array, got {array.dtype}')
    if array.ndim == 2 and channels == 1:
        height, width = array.shape
    elif array.ndim == 3 and array.shape[2] == channels:
        height, width = array.shape[:2]
    else:
        wanted = '[H, W]' if channels == 1 else f'[H, W, {channels}]'
        raise ImageShapeError(f'{encoding} needs shape {wanted}, got {list(array.shape)}')
    if width <= 0 or height <= 0:
        raise ImageShapeError(f'image size {width}x{height} is empty')
    data = np.ascontiguousarray(array)
    big = data.dtype.byteorder == '>' or (data.dtype.byteorder == '=' and _HOST_BIG_ENDIAN)
    return ImageBuffer(encoding, int(width), int(height),
                       int(width * channels * dtype.itemsize), data,
                       int(big and dtype.itemsize > 1))


# --- camera models -----------------------------------------------------------------------------

DISTORTION_TO_ROS = {
    'none': 'plumb_bob',
    'brown_conrady': 'plumb_bob',
    'modified_brown_conrady': 'plumb_bob',
    'inverse_brown_conrady': 'plumb_bob',
    'kannala_brandt4': 'equidistant',
}


class UnsupportedDistortionError(ValueError):
    """A librealsense distortion model that no ROS distortion model represents."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of a stream (librealsense ``rs2_intrinsics`` without librealsense).

    Pixel coordinates follow librealsense and ROS: the centre of pixel (u, v) is at (u, v).
    ``model`` is the librealsense distortion name in lower case ('none', 'brown_conrady', ...).
    """

    width: int
    height: int
    fx: float
    fy: float
    ppx: float
    ppy: float
    model: str = 'none'
    coeffs: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f'Intrinsics width/height must be positive, got '
                             f'{self.width}x{self.height}')
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f'Intrinsics fx/fy must be positive, got {self.fx}, {self.fy}')
        if len(self.coeffs) != 5:
            raise ValueError(f'Intrinsics.coeffs needs 5 values, got {len(self.coeffs)}')

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pinhole projection (ignoring distortion) of [N, 3] points in metres -> [N, 2] px."""
        z = points[:, 2]
        return np.stack([self.fx * points[:, 0] / z + self.ppx,
                         self.fy * points[:, 1] / z + self.ppy], axis=1)


@dataclass(frozen=True)
class CameraInfoFields:
    """The fields of ``sensor_msgs/CameraInfo`` (without the header)."""

    width: int
    height: int
    distortion_model: str
    d: tuple[float, ...]
    k: tuple[float, ...]           # 3x3 row-major
    r: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    p: tuple[float, ...] = field(default=(0.0,) * 12)   # 3x4 row-major
    approximate: bool = False      # the ROS model only approximates librealsense's


def camera_info_from_intrinsics(intrinsics: Intrinsics) -> CameraInfoFields:
    """CameraInfo fields of a (monocular, rectified-is-raw) RealSense stream.

    K and P carry fx, fy, ppx, ppy (P has no baseline term: each published stream is its own
    camera), R is the identity. The distortion model is mapped as the module docstring shows;
    ``approximate`` is True when that mapping is not exact for these coefficients. Raises
    UnsupportedDistortionError for models with no ROS counterpart (ftheta).
    """
    i = intrinsics
    try:
        ros_model = DISTORTION_TO_ROS[i.model]
    except KeyError:
        raise UnsupportedDistortionError(
            f'librealsense distortion model {i.model!r} has no ROS distortion_model '
            f'(supported: {", ".join(DISTORTION_TO_ROS)})') from None
    coeffs = tuple(float(c) for c in i.coeffs)
    if i.model == 'none':
        d: tuple[float, ...] = (0.0,) * 5
    elif ros_model == 'equidistant':
        d = coeffs[:4]
    else:
        d = coeffs
    approximate = (i.model in ('modified_brown_conrady', 'inverse_brown_conrady')
                   and any(c != 0.0 for c in coeffs))
    k = (i.fx, 0.0, i.ppx, 0.0, i.fy, i.ppy, 0.0, 0.0, 1.0)
    p = (i.fx, 0.0, i.ppx, 0.0, 0.0, i.fy, i.ppy, 0.0, 0.0, 0.0, 1.0, 0.0)
    return CameraInfoFields(i.width, i.height, ros_model, d, tuple(float(x) for x in k),
                            p=tuple(float(x) for x in p), approximate=approximate)


# --- depth -------------------------------------------------------------------------------------

def depth_to_millimetres(raw: np.ndarray, depth_units: float) -> tuple[np.ndarray, int]:
    """Convert a uint16 depth image in device units (metres per unit) to uint16 millimetres.

    Returns the image (``raw`` itself, not a copy, when the units already are millimetres) and
    the number of pixels beyond 65.535 m that were saturated to 65535, so that the caller can
    report them. Values are rounded to the nearest millimetre; 0 (no depth) stays 0.
    """
    if raw.dtype != np.uint16:
        raise ValueError(f'depth must be uint16 device units, got {raw.dtype}')
    if not depth_units > 0:
        raise ValueError(f'depth_units must be positive metres per unit, got {depth_units}')
    scale = depth_units / DEPTH_UNITS_MM
    if abs(scale - 1.0) < 1e-6:
        return raw, 0
    mm = raw.astype(np.float32) * np.float32(scale)
    clipped = int(np.count_nonzero(mm > 65535.0))
    np.clip(mm, 0.0, 65535.0, out=mm)
    return np.rint(mm).astype(np.uint16), clipped
