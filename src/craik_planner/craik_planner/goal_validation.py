"""Validation of ReachGoal goals without ROS: images decoded, limits checked, reasons named.

The mpc_planner node hands every goal it receives to :func:`validate_goal` before anything else
happens; a goal either comes back as arrays the planner can use or is refused with a
:class:`GoalRejectedError` whose message starts with the offending field (``goal_image``,
``goal_depth``, ``energy_tolerance``, ``max_steps``, ``timeout``) and becomes the result's
message (``STATUS_REJECTED_INPUT``).

The goal is read by its field names only (``craik_interfaces/action/ReachGoal.Goal``, whose
images are ``sensor_msgs/Image``), so this module imports no ROS package. Image fields are
checked before any pixel buffer is allocated: a declared size is compared with the data that
actually arrived (``craik_perception.image_conversion.decode_image``), never allocated from.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from craik_perception.image_conversion import ImageDecodeError, decode_image

COLOR_ENCODINGS = ('rgb8', 'bgr8')
DEPTH_ENCODINGS = ('16UC1', '32FC1')
# The deepest a 16UC1 (millimetre) image can express; a metric 32FC1 goal depth beyond it is a
# corrupt value, not a scene (and would overflow the float32 arithmetic downstream).
MAX_DEPTH_M = 65.535
_NANOSECONDS_PER_SECOND = 1_000_000_000


class GoalRejectedError(ValueError):
    """A goal that cannot be executed as given; the message is the reason sent back."""


@dataclass(frozen=True)
class GoalDefaults:
    """What a goal's zero fields stand for (the node's parameters)."""

    energy_tolerance: float
    max_steps: int
    timeout_s: float


@dataclass(frozen=True)
class ValidatedGoal:
    """A goal that passed validation, with its zero fields replaced by the defaults."""

    rgb: npt.NDArray[np.uint8]                 # [H, W, 3] rgb8, C-contiguous, owns its data
    depth_m: npt.NDArray[np.float32] | None    # [H, W] metres in [0, MAX_DEPTH_M]; None: absent
    energy_tolerance: float                    # > 0
    max_steps: int                             # >= 1
    timeout_s: float                           # > 0, finite


def goal_limits(goal: Any, defaults: GoalDefaults) -> tuple[float, int, float]:
    """(energy tolerance, max steps, timeout in s) of a goal; a zero field takes the default.

    Raises GoalRejectedError naming the field: a tolerance that is negative or not finite, a
    step count that is not a non-negative integer, or a timeout that is negative or not a
    normalised ``builtin_interfaces/Duration`` (``nanosec`` below 1e9).
    """
    tolerance = float(goal.energy_tolerance)
    if not math.isfinite(tolerance) or tolerance < 0.0:
        raise GoalRejectedError(f'energy_tolerance must be a finite value >= 0, got {tolerance}')
    max_steps = goal.max_steps
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0:
        raise GoalRejectedError(f'max_steps must be an integer >= 0, got {max_steps!r}')
    sec, nanosec = goal.timeout.sec, goal.timeout.nanosec
    if not 0 <= nanosec < _NANOSECONDS_PER_SECOND:
        # A message field cannot be negative, but nanosec can exceed a second; sec + 1e-9 *
        # nanosec would then turn e.g. sec = -1 into a positive timeout.
        raise GoalRejectedError(f'timeout.nanosec must be in [0, 1e9) (a normalised Duration), '
                                f'got {nanosec}')
    timeout = sec + 1e-9 * nanosec
    if timeout < 0.0:
        raise GoalRejectedError(f'timeout must be >= 0, got {timeout} s')
    return (tolerance or defaults.energy_tolerance, max_steps or defaults.max_steps,
            timeout or defaults.timeout_s)


def _depth_absent(depth: Any) -> bool:
    """The action's convention for "no depth": width = height = 0 and no data."""
    return depth.width == 0 and depth.height == 0 and len(depth.data) == 0


def decode_goal(goal: Any) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32] | None]:
    """Validate and decode the goal image (rgb8/bgr8) and optional depth (16UC1 mm / 32FC1 m).

    Returns the colour image as rgb8 ``[H, W, 3]`` (a copy) and the depth in metres ``[H, W]``
    (None when absent). Raises GoalRejectedError naming ``goal_image`` or ``goal_depth``.
    """
    img = goal.goal_image
    try:
        rgb = decode_image(img.encoding, img.width, img.height, img.step, img.data,
                           is_bigendian=img.is_bigendian, expected_encodings=COLOR_ENCODINGS,
                           copy=True)
    except ImageDecodeError as exc:
        raise GoalRejectedError(f'goal_image: {exc}') from None
    if img.encoding == 'bgr8':
        rgb = np.ascontiguousarray(rgb[..., ::-1])
    depth_msg = goal.goal_depth
    if _depth_absent(depth_msg):
        return rgb, None
    try:
        depth = decode_image(depth_msg.encoding, depth_msg.width, depth_msg.height,
                             depth_msg.step, depth_msg.data, is_bigendian=depth_msg.is_bigendian,
                             expected_encodings=DEPTH_ENCODINGS)
    except ImageDecodeError as exc:
        raise GoalRejectedError(f'goal_depth: {exc}') from None
    if depth.shape != rgb.shape[:2]:
        raise GoalRejectedError(
            f'goal_depth is {depth.shape[1]}x{depth.shape[0]} but goal_image is '
            f'{rgb.shape[1]}x{rgb.shape[0]}: depth must be aligned to colour')
    if depth_msg.encoding == '16UC1':
        return rgb, depth.astype(np.float32) * np.float32(1e-3)
    if not np.isfinite(depth).all():
        raise GoalRejectedError('goal_depth (32FC1) contains NaN or infinite values; use 0 '
                                'for pixels without a depth return')
    lowest, highest = depth.min(), depth.max()
    # Compared in float32: a 16UC1 65535 is float32(65.535), a hair above the float64 65.535.
    if lowest < 0.0 or highest > np.float32(MAX_DEPTH_M):
        raise GoalRejectedError(f'goal_depth (32FC1) has values in [{float(lowest):.6g}, '
                                f'{float(highest):.6g}] m; depth must be in [0, {MAX_DEPTH_M}] '
                                'm (0 for pixels without a depth return)')
    return rgb, depth.astype(np.float32)


def validate_goal(goal: Any, defaults: GoalDefaults) -> ValidatedGoal:
    """Everything the planner checks of a goal before it plans: limits, then the images.

    Raises GoalRejectedError (a ValueError) whose message starts with the offending field.
    """
    tolerance, max_steps, timeout = goal_limits(goal, defaults)
    rgb, depth = decode_goal(goal)
    return ValidatedGoal(rgb, depth, tolerance, max_steps, timeout)
