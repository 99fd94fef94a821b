"""Observation preprocessing: camera frames and proprioception to model inputs.

What the model sees (and what every runtime backend's ``encode`` takes after this module):
- ``rgb``: float32 ``[3, S, S]`` in [0, 1], from an ``rgb8`` frame (uint8 ``[H, W, 3]``, R first)
  resized by area averaging to the model's ``S x S``.
- ``depth``: float32 ``[1, S, S]`` in metres, 0 where the camera has no return. From a ``16UC1``
  frame in millimetres (uint16 ``[H, W]``) or a float frame in metres; resized by averaging only
  valid pixels (a low-resolution pixel is valid when at least a quarter of its area was).
- ``proprio``: float32 ``[4]`` = end-effector position in fr3_link0 (metres) + gripper
  (0 open ... 1 closed, from the finger width: ``1 - width / 0.08 m``).

A frame must show the camera's whole field of view (the driver's 640x480, or the simulation's
renders with scaled intrinsics, e.g. 64x64): it is squashed to ``S x S``, exactly as the
simulation's low-resolution renders are; a cropped frame would be misread, so crop nothing.
Nothing is silently misread: frames of another encoding or layout, frames smaller than the model
input or with an implausible aspect ratio are rejected with an :class:`ObservationError` that
says what was received; NaN or infinite values are rejected.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812

from craik_world_model.config import ModelConfig

FloatArray = npt.NDArray[np.float32]
# A resized pixel counts as a valid depth return when this fraction of its area was valid.
MIN_VALID_FRACTION = 0.25
MIN_ASPECT, MAX_ASPECT = 0.5, 2.0
GRIPPER_MAX_WIDTH_M = 0.08


class ObservationError(ValueError):
    """An observation cannot be used as given; the message says what is wrong with it."""


def _check_frame_size(height: int, width: int, config: ModelConfig, what: str) -> None:
    """Frames must cover the camera's whole view; they are squashed to S x S like the
    simulation's scaled renders. Tiny or strangely shaped frames are wiring mistakes."""
    s = config.image_size
    if height < s or width < s:
        raise ObservationError(f'{what} is {width}x{height}, smaller than the model input '
                               f'{s}x{s}; upsampling would invent detail')
    aspect = width / height
    if not MIN_ASPECT <= aspect <= MAX_ASPECT:
        raise ObservationError(f'{what} is {width}x{height} (aspect {aspect:.2f}); a camera '
                               f'frame has an aspect in [{MIN_ASPECT}, {MAX_ASPECT}] (wrong '
                               'layout?)')


def _area_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, size, size] by area averaging (identity at that size)."""
    if x.shape[-2:] == (size, size):
        return x
    return F.adaptive_avg_pool2d(x, (size, size))


def rgb_frames_to_model(rgb: np.ndarray, config: ModelConfig, what: str = 'rgb') -> FloatArray:
    """rgb8 frames ``[H, W, 3]`` or ``[T, H, W, 3]`` -> float32 ``[(T,) 3, S, S]`` in [0, 1].

    Accepts uint8 (0..255) or float (0..1, finite). Anything else is rejected: a 4-channel frame
    (rgba/bgra), a single-channel frame, channel-first layout, 16-bit colour.
    """
    arr = np.asarray(rgb)
    single = arr.ndim == 3
    if arr.ndim not in (3, 4) or arr.shape[-1] != 3:
        hint = ''
        if arr.ndim in (3, 4) and arr.shape[-3] == 3:
            hint = ' (channel-first? pass [H, W, 3])'
        elif arr.ndim in (3, 4) and arr.shape[-1] == 4:
            hint = ' (rgba/bgra is not accepted; convert to rgb8)'
        elif arr.ndim == 2:
            hint = ' (a single-channel frame is not an rgb8 image)'
        raise ObservationError(f'{what} must be an rgb8 frame [H, W, 3] (or [T, H, W, 3]), got '
                               f'shape {arr.shape}{hint}')
    if arr.dtype == np.uint8:
        x = torch.from_numpy(np.ascontiguousarray(arr)).float().div_(255.0)
    elif arr.dtype in (np.float32, np.float64):
        if not np.isfinite(arr).all():
            raise ObservationError(f'{what} contains NaN or infinite values')
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ObservationError(f'{what} is float with values in [{lo:.3g}, {hi:.3g}]; float '
                                   'colour must be in [0, 1] (uint8 is taken as 0..255)')
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    else:
        raise ObservationError(f'{what} has dtype {arr.dtype}; expected uint8 (rgb8) or float '
                               'in [0, 1]')
    height, width = arr.shape[-3], arr.shape[-2]
    _check_frame_size(height, width, config, what)
    x = x.reshape(-1, height, width, 3).permute(0, 3, 1, 2)  # [T, 3, H, W]
    out = _area_resize(x, config.image_size).clamp_(0.0, 1.0).contiguous().numpy()
    return out[0] if single else out


def depth_frames_to_model(depth: np.ndarray, config: ModelConfig, units: str = 'auto',
                          what: str = 'depth') -> FloatArray:
    """Depth frames ``[H, W]`` or ``[T, H, W]`` -> float32 metres ``[(T,) 1, S, S]``, 0 invalid.

    ``units``: 'mm' (uint16 16UC1), 'm' (float), or 'auto' (uint16 -> mm, float -> m). A frame
    with a trailing channel axis of 1 is accepted. Negative or non-finite depth is rejected.
    """
    arr = np.asarray(depth)
    if arr.ndim in (3, 4) and arr.shape[-1] == 1:
        arr = arr[..., 0]
    single = arr.ndim == 2
    # A trailing axis of 2..4 is colour channels, not a stack of 2-4 pixel wide frames.
    if arr.ndim not in (2, 3) or arr.shape[-1] in (2, 3, 4):
        raise ObservationError(f'{what} must be a single-channel frame [H, W] (or [T, H, W]), '
                               f'got shape {np.asarray(depth).shape}')
    if units == 'auto':
        units = 'mm' if arr.dtype == np.uint16 else 'm'
    if units == 'mm':
        if arr.dtype != np.uint16:
            raise ObservationError(f'{what} in millimetres must be uint16 (16UC1), got '
                                   f'{arr.dtype}')
        metres = torch.from_numpy(arr.astype(np.float32)) * 0.001
    elif units == 'm':
        if arr.dtype not in (np.float32, np.float64):
            raise ObservationError(f'{what} in metres must be float32/float64, got {arr.dtype} '
                                   "(uint16 depth is millimetres: units='mm')")
        if not np.isfinite(arr).all():
            raise ObservationError(f'{what} contains NaN or infinite values')
        if float(arr.min()) < 0.0:
            raise ObservationError(f'{what} has negative depth ({float(arr.min()):.3g} m)')
        metres = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    else:
        raise ObservationError(f"depth units must be 'mm', 'm' or 'auto', got {units!r}")
    height, width = arr.shape[-2], arr.shape[-1]
    _check_frame_size(height, width, config, what)
    x = metres.reshape(-1, 1, height, width)
    valid = (x > 0).float()
    if x.shape[-2:] != (config.image_size, config.image_size):
        valid_frac = _area_resize(valid, config.image_size)
        total = _area_resize(x * valid, config.image_size)
        x = torch.where(valid_frac >= MIN_VALID_FRACTION,
                        total / valid_frac.clamp_min(1e-6), torch.zeros_like(total))
    out = x.contiguous().numpy().astype(np.float32, copy=False)
    return out[0] if single else out


def check_same_size(rgb: np.ndarray, depth: np.ndarray) -> None:
    """Aligned depth has the colour frame's size; anything else is a wiring mistake."""
    rh, rw = np.asarray(rgb).shape[-3:-1]
    d = np.asarray(depth)
    if d.ndim >= 3 and d.shape[-1] == 1:
        d = d[..., 0]
    dh, dw = d.shape[-2:]
    if (rh, rw) != (dh, dw):
        raise ObservationError(f'depth is {dw}x{dh} but rgb is {rw}x{rh}; depth must be aligned '
                               'to the colour frame (aligned_depth_to_color)')


def proprio_to_model(proprio: np.ndarray | None, config: ModelConfig,
                     what: str = 'proprio') -> FloatArray:
    """Proprioception ``[P]`` (or ``[T, P]``) -> float32, validated; None -> zeros.

    None is for goal images, whose latent's proprioceptive part the energy ignores.
    """
    if proprio is None:
        return np.zeros(config.proprio_dim, dtype=np.float32)
    arr = np.asarray(proprio, dtype=np.float64)
    if arr.shape[-1:] != (config.proprio_dim,) or arr.ndim not in (1, 2):
        raise ObservationError(f'{what} must have shape [{config.proprio_dim}] (ee_x, ee_y, ee_z, '
                               f'gripper) or [T, {config.proprio_dim}], got {arr.shape}')
    if not np.isfinite(arr).all():
        raise ObservationError(f'{what} contains NaN or infinite values')
    return arr.astype(np.float32)


def gripper_from_width(width_m: np.ndarray | float) -> np.ndarray:
    """Gripper state in the command convention (0 open ... 1 closed) from the finger opening."""
    return np.clip(1.0 - np.asarray(width_m, dtype=np.float64) / GRIPPER_MAX_WIDTH_M, 0.0, 1.0)


def prepare_observation(rgb: np.ndarray, depth: np.ndarray | None, proprio: np.ndarray | None,
                        config: ModelConfig, depth_units: str = 'auto'
                        ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """One observation -> (rgb ``[1, 3, S, S]``, depth ``[1, 1, S, S]``, proprio ``[1, P]``).

    ``depth`` None (e.g. a goal given as an RGB image only) becomes an all-invalid depth frame,
    which the encoder was trained to handle (depth dropout).
    """
    rgb_m = rgb_frames_to_model(rgb, config)[None]
    if depth is None:
        depth_m = np.zeros((1, 1, config.image_size, config.image_size), dtype=np.float32)
    else:
        check_same_size(rgb, depth)
        depth_m = depth_frames_to_model(depth, config, depth_units)[None]
    p = proprio_to_model(proprio, config)
    if p.ndim != 1:
        raise ObservationError(f'proprio for one observation must be [P], got {p.shape}')
    return rgb_m, depth_m, p[None]
