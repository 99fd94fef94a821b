"""Camera calibration: the YAML format shared by the simulated and the lab camera.

The lab robot's hand-eye calibration writes the same file, so the simulated D435 and the real
one are described identically. A file looks like this (units: metres, pixels)::

    format_version: 1
    camera_name: sim_d435
    extrinsics:                       # pose of the optical frame in the parent frame
      parent_frame: fr3_link0
      child_frame: camera_color_optical_frame
      translation: [1.2, 0.45, 0.75]  # metres
      rotation_xyzw: [qx, qy, qz, qw] # unit quaternion (normalised on load if within 1e-3)
    intrinsics:
      width: 640
      height: 480
      fx: 615.0
      fy: 615.0
      cx: 320.0
      cy: 240.0
      distortion_model: plumb_bob     # plumb_bob | rational_polynomial | equidistant | none
      distortion_coeffs: [0, 0, 0, 0, 0]
    depth:
      units: millimetre               # depth images are uint16 in these units
      scale: 0.001                    # metres per depth unit
      min_m: 0.1                      # valid range; outside it depth is 0 (no return)
      max_m: 6.0

The optical frame follows REP 103's camera convention: x right, y down, z forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

FORMAT_VERSION = 1
DISTORTION_MODELS = {'plumb_bob': 5, 'rational_polynomial': 8, 'equidistant': 4, 'none': 0}
DEPTH_UNITS = {'millimetre': 0.001, 'metre': 1.0}


class CalibrationError(ValueError):
    """A calibration file or value is malformed; the message names the file and the field."""


def _fail(source: str, message: str) -> CalibrationError:
    return CalibrationError(f'{source}: {message}')


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of an image stream (pixels)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = 'plumb_bob'
    distortion_coeffs: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        for name in ('width', 'height'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise CalibrationError(
                    f'intrinsics.{name} must be a positive integer, got {value!r}')
        for name in ('fx', 'fy', 'cx', 'cy'):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or not math.isfinite(value):
                raise CalibrationError(f'intrinsics.{name} must be a finite number, got {value!r}')
        if self.fx <= 0 or self.fy <= 0:
            raise CalibrationError(f'intrinsics.fx/fy must be > 0, got {self.fx}, {self.fy}')
        if not (0 <= self.cx <= self.width and 0 <= self.cy <= self.height):
            raise CalibrationError(
                f'intrinsics principal point ({self.cx}, {self.cy}) lies outside the '
                f'{self.width}x{self.height} image')
        if self.distortion_model not in DISTORTION_MODELS:
            raise CalibrationError(
                f'intrinsics.distortion_model {self.distortion_model!r} is not one of '
                f'{sorted(DISTORTION_MODELS)}')
        expected = DISTORTION_MODELS[self.distortion_model]
        if self.distortion_model != 'none' and len(self.distortion_coeffs) != expected:
            raise CalibrationError(
                f'intrinsics.distortion_coeffs: {self.distortion_model} needs {expected} '
                f'coefficients, got {len(self.distortion_coeffs)}')
        if not all(math.isfinite(float(c)) for c in self.distortion_coeffs):
            raise CalibrationError('intrinsics.distortion_coeffs must be finite numbers')

    @property
    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def is_distorted(self) -> bool:
        return any(abs(c) > 0.0 for c in self.distortion_coeffs)

    def scaled(self, width: int, height: int) -> CameraIntrinsics:
        """Intrinsics of the same field of view resampled to width x height pixels.

        Each axis scales separately (640x480 -> 64x64 gives fx' = fx/10, fy' = fy/7.5), so the
        image covers exactly the same rays; pixel centres map with the half-pixel convention.
        """
        if width <= 0 or height <= 0:
            raise CalibrationError(f'scaled size must be positive, got {width}x{height}')
        sx, sy = width / self.width, height / self.height
        return replace(self, width=int(width), height=int(height), fx=self.fx * sx,
                       fy=self.fy * sy, cx=(self.cx + 0.5) * sx - 0.5,
                       cy=(self.cy + 0.5) * sy - 0.5)

    def project(self, points_camera: np.ndarray) -> np.ndarray:
        """Project points [N, 3] given in the optical frame to pixels [N, 2] (undistorted)."""
        p = np.asarray(points_camera, dtype=float).reshape(-1, 3)
        z = p[:, 2]
        return np.stack([self.fx * p[:, 0] / z + self.cx, self.fy * p[:, 1] / z + self.cy], 1)


@dataclass(frozen=True)
class CameraCalibration:
    """Intrinsics + extrinsics (optical frame in parent frame) + depth encoding of one camera."""

    intrinsics: CameraIntrinsics
    translation: tuple[float, float, float]
    rotation_xyzw: tuple[float, float, float, float]
    parent_frame: str = 'fr3_link0'
    child_frame: str = 'camera_color_optical_frame'
    camera_name: str = 'camera'
    depth_units: str = 'millimetre'
    depth_scale: float = 0.001
    depth_min_m: float = 0.1
    depth_max_m: float = 6.0
    source: str = field(default='<memory>', compare=False)

    def __post_init__(self) -> None:
        if len(self.translation) != 3 or not all(math.isfinite(v) for v in self.translation):
            raise CalibrationError(f'extrinsics.translation must be 3 finite numbers, got '
                                   f'{self.translation!r}')
        q = np.asarray(self.rotation_xyzw, dtype=float)
        if q.shape != (4,) or not np.all(np.isfinite(q)):
            raise CalibrationError(f'extrinsics.rotation_xyzw must be 4 finite numbers, got '
                                   f'{self.rotation_xyzw!r}')
        if abs(np.linalg.norm(q) - 1.0) > 1e-3:
            raise CalibrationError(
                'extrinsics.rotation_xyzw is not a unit quaternion '
                f'(norm {np.linalg.norm(q):.4f})')
        if not self.parent_frame or not self.child_frame:
            raise CalibrationError('extrinsics.parent_frame and child_frame must be non-empty')
        if self.depth_units not in DEPTH_UNITS:
            raise CalibrationError(
                f'depth.units {self.depth_units!r} is not one of {sorted(DEPTH_UNITS)}')
        if not math.isclose(self.depth_scale, DEPTH_UNITS[self.depth_units], rel_tol=1e-6):
            raise CalibrationError(
                f'depth.scale {self.depth_scale} does not match depth.units {self.depth_units}')
        if not 0.0 < self.depth_min_m < self.depth_max_m:
            raise CalibrationError(
                f'depth range must satisfy 0 < min_m < max_m, got {self.depth_min_m}, '
                f'{self.depth_max_m}')

    @property
    def rotation_matrix(self) -> np.ndarray:
        """Rotation of the optical frame in the parent frame (columns: x right, y down, z fwd)."""
        return quat_xyzw_to_matrix(np.asarray(self.rotation_xyzw, dtype=float))

    @property
    def parent_from_camera(self) -> np.ndarray:
        """4x4 homogeneous transform from optical-frame to parent-frame coordinates."""
        t = np.eye(4)
        t[:3, :3] = self.rotation_matrix
        t[:3, 3] = self.translation
        return t

    def points_to_camera(self, points_parent: np.ndarray) -> np.ndarray:
        """Transform points [N, 3] from the parent frame into the optical frame."""
        p = np.asarray(points_parent, dtype=float).reshape(-1, 3)
        return (p - np.asarray(self.translation)) @ self.rotation_matrix

    def project(self, points_parent: np.ndarray) -> np.ndarray:
        """Pixels [N, 2] of parent-frame points [N, 3] in this camera's image."""
        return self.intrinsics.project(self.points_to_camera(points_parent))

    def scaled(self, width: int, height: int) -> CameraCalibration:
        """The same camera resampled to width x height (see CameraIntrinsics.scaled)."""
        return replace(self, intrinsics=self.intrinsics.scaled(width, height))

    def with_pose(self, translation: np.ndarray, rotation_matrix: np.ndarray) -> CameraCalibration:
        """The same camera at another pose (used for camera jitter)."""
        q = matrix_to_quat_xyzw(np.asarray(rotation_matrix, dtype=float))
        return replace(self, translation=tuple(float(v) for v in translation),  # type: ignore[arg-type]
                       rotation_xyzw=tuple(float(v) for v in q))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """The YAML structure of this calibration (see the module docstring)."""
        k = self.intrinsics
        return {
            'format_version': FORMAT_VERSION,
            'camera_name': self.camera_name,
            'extrinsics': {
                'parent_frame': self.parent_frame,
                'child_frame': self.child_frame,
                'translation': [float(v) for v in self.translation],
                'rotation_xyzw': [float(v) for v in self.rotation_xyzw],
            },
            'intrinsics': {
                'width': k.width, 'height': k.height, 'fx': float(k.fx), 'fy': float(k.fy),
                'cx': float(k.cx), 'cy': float(k.cy), 'distortion_model': k.distortion_model,
                'distortion_coeffs': [float(c) for c in k.distortion_coeffs],
            },
            'depth': {'units': self.depth_units, 'scale': self.depth_scale,
                      'min_m': self.depth_min_m, 'max_m': self.depth_max_m},
        }


def quat_xyzw_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a (normalised) quaternion given as x, y, z, w."""
    x, y, z, w = np.asarray(q, dtype=float) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat_xyzw(r: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w, w >= 0) of a rotation matrix."""
    m = np.asarray(r, dtype=float)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    out = np.array(q)
    out /= np.linalg.norm(out)
    return out if out[3] >= 0 else -out


def look_at_optical(position: np.ndarray, target: np.ndarray,
                    up: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """Rotation matrix of an optical frame at `position` looking at `target` (x right, y down)."""
    z = np.asarray(target, dtype=float) - np.asarray(position, dtype=float)
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=float))
    if np.linalg.norm(x) < 1e-6:
        raise CalibrationError('look_at: the viewing direction is parallel to the up vector')
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def _get(mapping: Any, key: str, source: str, where: str) -> Any:
    if not isinstance(mapping, dict):
        raise _fail(source, f'{where} must be a mapping, got {type(mapping).__name__}')
    if key not in mapping:
        raise _fail(source, f'missing field {where}.{key}' if where else f'missing field {key}')
    return mapping[key]


def _number(value: Any, source: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(source, f'{name} must be a number, got {value!r}')
    return float(value)


def _vector(value: Any, n: int, source: str, name: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise _fail(source, f'{name} must be a list of {n} numbers, got {value!r}')
    return tuple(_number(v, source, f'{name}[{i}]') for i, v in enumerate(value))


def calibration_from_dict(data: Any, source: str = '<dict>') -> CameraCalibration:
    """Parse and validate the YAML structure; raises CalibrationError naming the field."""
    if not isinstance(data, dict):
        raise _fail(source, f'top level must be a mapping, got {type(data).__name__}')
    version = _get(data, 'format_version', source, '')
    if version != FORMAT_VERSION:
        raise _fail(source, f'unsupported format_version {version!r} (expected {FORMAT_VERSION})')
    ext = _get(data, 'extrinsics', source, '')
    intr = _get(data, 'intrinsics', source, '')
    depth = data.get('depth', {'units': 'millimetre', 'scale': 0.001})
    try:
        width = _get(intr, 'width', source, 'intrinsics')
        height = _get(intr, 'height', source, 'intrinsics')
        intrinsics = CameraIntrinsics(
            width=width if isinstance(width, int) else -1,
            height=height if isinstance(height, int) else -1,
            fx=_number(_get(intr, 'fx', source, 'intrinsics'), source, 'intrinsics.fx'),
            fy=_number(_get(intr, 'fy', source, 'intrinsics'), source, 'intrinsics.fy'),
            cx=_number(_get(intr, 'cx', source, 'intrinsics'), source, 'intrinsics.cx'),
            cy=_number(_get(intr, 'cy', source, 'intrinsics'), source, 'intrinsics.cy'),
            distortion_model=str(intr.get('distortion_model', 'plumb_bob')),
            distortion_coeffs=tuple(
                _number(c, source, 'intrinsics.distortion_coeffs')
                for c in (intr.get('distortion_coeffs') or [0.0] * 5)),
        )
        rotation = _vector(_get(ext, 'rotation_xyzw', source, 'extrinsics'), 4, source,
                           'extrinsics.rotation_xyzw')
        norm = float(np.linalg.norm(rotation))
        if norm > 0 and abs(norm - 1.0) <= 1e-3:
            rotation = tuple(v / norm for v in rotation)
        return CameraCalibration(
            intrinsics=intrinsics,
            translation=_vector(_get(ext, 'translation', source, 'extrinsics'), 3, source,
                                'extrinsics.translation'),  # type: ignore[arg-type]
            rotation_xyzw=rotation,  # type: ignore[arg-type]
            parent_frame=str(_get(ext, 'parent_frame', source, 'extrinsics')),
            child_frame=str(_get(ext, 'child_frame', source, 'extrinsics')),
            camera_name=str(data.get('camera_name', 'camera')),
            depth_units=str(_get(depth, 'units', source, 'depth')),
            depth_scale=_number(_get(depth, 'scale', source, 'depth'), source, 'depth.scale'),
            depth_min_m=_number(depth.get('min_m', 0.1), source, 'depth.min_m'),
            depth_max_m=_number(depth.get('max_m', 6.0), source, 'depth.max_m'),
            source=source,
        )
    except CalibrationError as err:
        message = str(err)
        raise err if message.startswith(source) else _fail(source, message) from None


def load_calibration(path: str | Path) -> CameraCalibration:
    """Read and validate a calibration YAML file."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f'{path}: calibration file not found')
    try:
        # safe_load: plain mappings, lists, strings and numbers only; a tag that would construct
        # a Python object (!!python/object/apply:..., !!python/name:...) is refused unbuilt.
        data = yaml.safe_load(path.read_text())
    except yaml.constructor.ConstructorError as err:
        where = f' at line {err.problem_mark.line + 1}' if err.problem_mark else ''
        raise CalibrationError(f'{path}: refusing a YAML tag{where} ({err.problem}); a '
                               'calibration holds only mappings, lists, numbers and strings, '
                               'and no tag constructs objects') from None
    except yaml.YAMLError as err:
        raise CalibrationError(f'{path}: not valid YAML ({err})') from None
    return calibration_from_dict(data, str(path))


def save_calibration(calibration: CameraCalibration, path: str | Path) -> None:
    """Write a calibration in the shared YAML format."""
    Path(path).write_text(yaml.safe_dump(calibration.to_dict(), sort_keys=False))


def default_calibration_path() -> Path:
    """config/calibration/sim_d435.yaml of this workspace ($CRAIK_ROOT, else the source tree)."""
    import os
    candidates = []
    if os.environ.get('CRAIK_ROOT'):
        candidates.append(Path(os.environ['CRAIK_ROOT']))
    candidates.extend(Path(__file__).resolve().parents)
    for root in candidates:
        path = root / 'config' / 'calibration' / 'sim_d435.yaml'
        if path.is_file():
            return path
    raise CalibrationError('config/calibration/sim_d435.yaml not found (set CRAIK_ROOT)')
