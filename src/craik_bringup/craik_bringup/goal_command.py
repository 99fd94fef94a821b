"""`craik goal`: send a goal image to the planner, or save the camera's view as a goal.

::

    craik goal --image goal.png [--depth goal_depth.png] [--timeout S] [--max-steps N]
               [--tolerance E] [--server-timeout S] [--cancel-timeout S]
    craik goal --snapshot goal.png [--depth-out goal_depth.png] [--frame-timeout S]

``--image`` sends a ``craik_interfaces/action/ReachGoal`` goal to ``/planner/reach_goal`` and
prints one line per feedback message (step, best energy, commanded action, planning time) until
the result comes. Ctrl-C (or SIGTERM) cancels the goal and waits at most ``--cancel-timeout``
seconds for the planner to confirm it. The exit status says how the goal ended (``EXIT_*``).

``--snapshot`` waits for one colour frame and the aligned depth frame nearest to it in stamp and
writes them in the format ``--image`` / ``--depth`` read back:

* colour: an 8-bit RGB PNG. ``--image`` reads any image Pillow reads; an RGBA, palette or
  greyscale image is converted to RGB, with a note saying so.
* depth: a 16-bit single-channel PNG in millimetres, 0 where the camera has no depth (the 16UC1
  convention of the camera topics), sent as 16UC1. ``--depth`` also reads a NumPy ``.npy``
  array ``[H, W]``: uint16 millimetres (sent as 16UC1) or float metres (sent as 32FC1). An 8-bit
  or colour image as depth is refused (its units cannot be millimetres).

Files are checked before anything is sent: missing or unreadable files, a depth image of
another size than the colour image, and the planner's own goal validation
(:mod:`craik_planner.goal_validation`) on the goal as it would be sent. Everything but the ROS
session (files, the goal as plain message fields, exit codes, progress lines, the choice of a
depth frame) is plain Python, tested without a ROS graph.
"""

from __future__ import annotations

import argparse
from collections import deque
from collections.abc import Callable, Sequence
import concurrent.futures
from dataclasses import dataclass
import math
import os
from pathlib import Path
import sys
import tempfile
import threading
import time
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from craik_bringup.goal_client import (
    GOAL_RESEND_S,
    GoalCall,
    ServerWatch,
    cancel_duplicates,
    first_response,
    run_on_executor,
    wait_done,
)
from craik_interfaces.action import ReachGoal
from craik_perception.image_conversion import ImageBuffer, ImageDecodeError, encode_image
from craik_planner.goal_validation import (
    GoalDefaults,
    GoalRejectedError,
    decode_goal,
    goal_limits,
)

ACTION_NAME = '/planner/reach_goal'
COLOR_TOPIC = '/camera/camera/color/image_raw'
DEPTH_TOPIC = '/camera/camera/aligned_depth_to_color/image_raw'

# ---- exit codes ---------------------------------------------------------------------------
EXIT_OK = 0                   # --snapshot: both files written
EXIT_REACHED = 0              # the planner reports the goal reached
EXIT_ERROR = 1                # an unexpected error (a Python traceback)
EXIT_USAGE = 2                # bad arguments, an unreadable or mismatched file, a failed write
EXIT_MAX_STEPS = 3            # the planner ran max_steps steps without reaching the goal
EXIT_TIMEOUT = 4              # the goal's timeout ran out (planner side)
EXIT_CANCELED = 5             # canceled by someone else (another client)
EXIT_REJECTED_INPUT = 6       # the planner rejected the goal as malformed (message says why)
EXIT_ROBOT_FAULT = 7          # controller fault, robot lost, camera or robot state stopped
EXIT_PREEMPTED = 8            # replaced by a newer goal
EXIT_PLANNER_ERROR = 9        # the planner itself failed
EXIT_UNKNOWN = 10             # STATUS_UNKNOWN, or a status this client does not know
EXIT_NO_SERVER = 11           # no action server within --server-timeout
EXIT_GOAL_REFUSED = 12        # the action server refused the goal (goal response: rejected)
EXIT_NO_RESULT = 13           # no goal response, the server went away, or no result in time
EXIT_CANCEL_UNCONFIRMED = 14  # interrupted, but the cancel was not confirmed: may still run
EXIT_NO_CAMERA = 15           # --snapshot: no usable colour + depth pair in --frame-timeout
EXIT_INTERRUPTED = 130        # Ctrl-C / SIGTERM; a running goal was canceled (confirmed)

EXIT_STATUS_HELP = """exit status:
  0   reached (--snapshot: written)     8   preempted by a newer goal
  1   unexpected error                  9   planner error
  2   usage or file error               10  unknown status
  3   max steps without reaching it     11  no action server (--server-timeout)
  4   timeout                           12  goal refused by the action server
  5   canceled by another client        13  no result (server gone, or none in time)
  6   rejected input (see the message)  14  interrupted, cancel NOT confirmed
  7   robot fault                       15  --snapshot: no colour + depth frame pair
  130 interrupted (Ctrl-C / SIGTERM), the goal canceled and confirmed
"""

# Every STATUS_* constant of ReachGoal.Result, by name (test_goal_command checks that none is
# missing, so a new status needs a decision here).
STATUS_EXIT_CODES: dict[str, int] = {
    'STATUS_UNKNOWN': EXIT_UNKNOWN,
    'STATUS_REACHED': EXIT_REACHED,
    'STATUS_MAX_STEPS': EXIT_MAX_STEPS,
    'STATUS_TIMEOUT': EXIT_TIMEOUT,
    'STATUS_CANCELED': EXIT_CANCELED,
    'STATUS_REJECTED_INPUT': EXIT_REJECTED_INPUT,
    'STATUS_ROBOT_FAULT': EXIT_ROBOT_FAULT,
    'STATUS_PREEMPTED': EXIT_PREEMPTED,
    'STATUS_PLANNER_ERROR': EXIT_PLANNER_ERROR,
}

# The client waits this long past the goal's own --timeout for a result before it cancels.
RESULT_GRACE_S = 30.0
# An action server that has not been visible for this long is gone (not a discovery blip).
SERVER_LOST_S = 5.0
# --snapshot: colour and depth count as one frame when their stamps are this close (default).
MAX_SKEW_S = 0.05
_UINT32_MAX = 2**32 - 1
_INT32_MAX = 2**31 - 1
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NS = 1_000_000_000


class GoalInputError(ValueError):
    """An argument or file that cannot make a goal (or a snapshot); exit status EXIT_USAGE."""


def status_constants() -> dict[str, int]:
    """The STATUS_* constants of ReachGoal.Result: name -> value."""
    return {name: int(getattr(ReachGoal.Result, name)) for name in dir(ReachGoal.Result)
            if name.startswith('STATUS_')}


def status_name(status: int) -> str:
    """'reached', 'max_steps', ... for a ReachGoal.Result status ('status 42' if unknown)."""
    for name, value in status_constants().items():
        if value == status:
            return name[len('STATUS_'):].lower()
    return f'status {status}'


def exit_code_for_status(status: int) -> int:
    """The exit status of `craik goal` for a result status (EXIT_UNKNOWN for one not known)."""
    for name, value in status_constants().items():
        if value == status:
            return STATUS_EXIT_CODES.get(name, EXIT_UNKNOWN)
    return EXIT_UNKNOWN


# ---- the goal as plain message fields -----------------------------------------------------

EMPTY_IMAGE = ImageBuffer('', 0, 0, 0, np.empty(0, np.uint8))


@dataclass(frozen=True)
class DurationFields:
    """``builtin_interfaces/Duration`` (normalised: 0 <= nanosec < 1e9)."""

    sec: int
    nanosec: int


@dataclass(frozen=True)
class GoalRequest:
    """The fields of a ``ReachGoal.Goal`` as plain data (same names, so the planner's
    ``goal_validation`` reads it as it reads the message)."""

    goal_image: ImageBuffer              # rgb8
    goal_depth: ImageBuffer              # 16UC1 mm or 32FC1 m; EMPTY_IMAGE: no depth
    energy_tolerance: float              # 0: the planner's calibrated threshold
    max_steps: int                       # 0: the planner's default
    timeout: DurationFields              # 0: the planner's default


def duration_fields(seconds: float) -> DurationFields:
    """A non-negative number of seconds as a normalised Duration."""
    if not math.isfinite(seconds) or seconds < 0 or seconds > _INT32_MAX:
        raise GoalInputError(f'a duration must be in [0, {_INT32_MAX}] s, got {seconds}')
    sec = int(seconds)
    nanosec = int(round((seconds - sec) * _NS))
    if nanosec >= _NS:
        sec, nanosec = sec + 1, nanosec - _NS
    return DurationFields(sec, nanosec)


def _open_image(path: Path, what: str) -> Any:
    """Pillow image of ``path``, fully loaded; GoalInputError naming the file otherwise."""
    from PIL import Image as PilImage

    if not path.exists():
        raise GoalInputError(f'{what} {path}: no such file')
    if not path.is_file():
        raise GoalInputError(f'{what} {path}: not a file')
    try:
        with PilImage.open(path) as image:
            image.load()
            return image.copy()
    except PilImage.UnidentifiedImageError:
        raise GoalInputError(f'{what} {path}: not an image file (Pillow cannot identify '
                             'it)') from None
    except PilImage.DecompressionBombError as exc:
        raise GoalInputError(f'{what} {path}: {exc}') from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise GoalInputError(f'{what} {path}: cannot read the image ({exc})') from None


_DEPTH_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')


def load_color_image(path: Path) -> tuple[npt.NDArray[np.uint8], list[str]]:
    """An image file as rgb8 ``[H, W, 3]``, and notes on any conversion made.

    A 16-bit or float single-channel image is refused (a depth image given as colour).
    """
    image = _open_image(path, 'goal image')
    notes: list[str] = []
    if image.mode in _DEPTH_MODES or image.mode == 'F':
        raise GoalInputError(f'goal image {path}: a single-channel {image.mode} image, not a '
                             'colour image (a depth image? pass it with --depth)')
    if image.mode != 'RGB':
        alpha = image.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or (
            image.mode == 'P' and 'transparency' in image.info)
        if alpha and image.convert('RGBA').getextrema()[3][0] < 255:
            notes.append(f'goal image {path}: its transparency is dropped (converted from '
                         f'{image.mode} to RGB)')
        else:
            notes.append(f'goal image {path}: converted from {image.mode} to RGB')
        image = image.convert('RGB')
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8)), notes


def load_depth_image(path: Path) -> ImageBuffer:
    """A goal depth file as message fields: a 16-bit single-channel PNG in millimetres (16UC1),
    or a ``.npy`` ``[H, W]`` array of uint16 millimetres (16UC1) or float metres (32FC1)."""
    if path.suffix.lower() == '.npy':
        depth: np.ndarray = _load_depth_npy(path)
    else:
        image = _open_image(path, 'goal depth')
        if image.mode not in _DEPTH_MODES:
            kind = {'L': 'an 8-bit', 'P': 'an 8-bit palette', '1': 'a 1-bit',
                    'F': 'a 32-bit float'}.get(image.mode, 'a colour')
            raise GoalInputError(
                f'goal depth {path}: {kind} image (mode {image.mode}); a goal depth must be a '
                '16-bit single-channel PNG in millimetres (as `craik goal --snapshot` writes) '
                'or a .npy array (uint16 mm or float metres)')
        values = np.asarray(image)
        if values.dtype.kind not in 'ui' or (values.size and (
                int(values.min()) < 0 or int(values.max()) > 65535)):
            raise GoalInputError(f'goal depth {path}: values outside 0..65535 mm')
        depth = values.astype(np.uint16)
    if not np.any(depth):
        raise GoalInputError(f'goal depth {path}: every pixel is 0 (no depth at all)')
    encoding = '16UC1' if depth.dtype == np.uint16 else '32FC1'
    return encode_image(np.ascontiguousarray(depth), encoding)


def _load_depth_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise GoalInputError(f'goal depth {path}: no such file')
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise GoalInputError(f'goal depth {path}: not a NumPy .npy array ({exc})') from None
    if not isinstance(array, np.ndarray):
        raise GoalInputError(f'goal depth {path}: an .npz archive, not a .npy array')
    if array.ndim != 2:
        raise GoalInputError(f'goal depth {path}: shape {list(array.shape)}; a depth array '
                             'must be [H, W]')
    if array.dtype == np.uint16:
        return array
    if array.dtype.kind == 'f':
        return array.astype(np.float32)
    raise GoalInputError(f'goal depth {path}: dtype {array.dtype}; expected uint16 '
                         'millimetres or float metres')


def build_goal_request(image_path: Path, depth_path: Path | None = None, *,
                       energy_tolerance: float = 0.0, max_steps: int = 0,
                       timeout_s: float = 0.0) -> tuple[GoalRequest, list[str]]:
    """Read the goal files and check the goal as the planner will; (request, notes).

    Raises GoalInputError with a specific reason (which file, what is wrong with it).
    """
    if not math.isfinite(energy_tolerance) or not 0.0 <= energy_tolerance <= _FLOAT32_MAX:
        raise GoalInputError(f'--tolerance must be a finite value >= 0, got {energy_tolerance}')
    if not 0 <= max_steps <= _UINT32_MAX:
        raise GoalInputError(f'--max-steps must be in [0, {_UINT32_MAX}], got {max_steps}')
    timeout = duration_fields(timeout_s)
    rgb, notes = load_color_image(image_path)
    image = encode_image(rgb, 'rgb8')
    depth = EMPTY_IMAGE
    if depth_path is not None:
        depth = load_depth_image(depth_path)
        if (depth.width, depth.height) != (image.width, image.height):
            raise GoalInputError(
                f'goal depth {depth_path} is {depth.width}x{depth.height} but goal image '
                f'{image_path} is {image.width}x{image.height}: the depth must be aligned to '
                'the colour image (same size)')
    request = GoalRequest(image, depth, float(energy_tolerance), int(max_steps), timeout)
    try:   # the planner's own checks, on the goal exactly as it will be sent
        goal_limits(request, GoalDefaults(energy_tolerance=1.0, max_steps=1, timeout_s=1.0))
        decode_goal(request)
    except GoalRejectedError as exc:
        raise GoalInputError(f'the planner would reject this goal: {exc}') from None
    return request, notes


def describe_request(request: GoalRequest) -> str:
    """One line saying what a goal asks for."""
    img, depth = request.goal_image, request.goal_depth
    parts = [f'{img.width}x{img.height} {img.encoding}',
             f'depth {depth.encoding}' if depth.width else 'no depth']
    timeout = request.timeout.sec + request.timeout.nanosec / _NS
    parts.append(f'max_steps {request.max_steps}' if request.max_steps
                 else 'max_steps: planner default')
    parts.append(f'timeout {timeout:g} s' if timeout else 'timeout: planner default')
    parts.append(f'tolerance {request.energy_tolerance:g}' if request.energy_tolerance
                 else 'tolerance: planner default')
    return ', '.join(parts)


# ---- progress and result lines ------------------------------------------------------------

def format_feedback(step: int, best_energy: float, action: Sequence[float],
                    planning_time_s: float) -> str:
    """One progress line per feedback message."""
    dx, dy, dz, gripper = (float(a) for a in action)
    return (f'step {step:3d}  energy {best_energy:.4f}  action dx {dx:+.4f} dy {dy:+.4f} '
            f'dz {dz:+.4f} m  gripper {gripper:.2f}  planning {planning_time_s * 1e3:.0f} ms')


def format_result(status: int, message: str, steps: int, final_energy: float) -> str:
    """The line printed for a result."""
    text = f'result: {status_name(status)} after {steps} steps, final energy {final_energy:.4f}'
    return f'{text}: {message}' if message else text


# ---- snapshots ----------------------------------------------------------------------------

def default_depth_path(color_path: Path) -> Path:
    """goal.png -> goal_depth.png (next to it)."""
    return color_path.with_name(f'{color_path.stem}_depth.png')


def nearest_stamp(target_ns: int, stamps_ns: Sequence[int]) -> tuple[int, int]:
    """(index, |difference| in ns) of the stamp nearest ``target_ns`` (the first on a tie)."""
    if not stamps_ns:
        raise ValueError('no stamps to choose from')
    index = min(range(len(stamps_ns)), key=lambda i: abs(stamps_ns[i] - target_ns))
    return index, abs(stamps_ns[index] - target_ns)


def color_frame_to_rgb(encoding: str, pixels: np.ndarray) -> npt.NDArray[np.uint8]:
    """A decoded rgb8/bgr8 camera frame as rgb8 (a copy)."""
    if encoding == 'bgr8':
        return np.ascontiguousarray(pixels[..., ::-1])
    if encoding == 'rgb8':
        return np.array(pixels, dtype=np.uint8, copy=True)
    raise ValueError(f'colour frame encoding {encoding!r}; expected rgb8 or bgr8')


def depth_frame_to_mm(encoding: str, pixels: np.ndarray) -> tuple[npt.NDArray[np.uint16],
                                                                  list[str]]:
    """A decoded depth frame (16UC1 mm or 32FC1 m) as uint16 millimetres, and notes on what
    could not be kept (NaN / infinite / negative -> 0, beyond 65.535 m -> 65535)."""
    if encoding == '16UC1':
        return np.array(pixels, dtype=np.uint16, copy=True), []
    if encoding != '32FC1':
        raise ValueError(f'depth frame encoding {encoding!r}; expected 16UC1 or 32FC1')
    mm = pixels.astype(np.float64) * 1000.0
    notes = []
    invalid = ~np.isfinite(mm) | (mm < 0)
    if invalid.any():
        notes.append(f'{int(invalid.sum())} depth pixels were NaN, infinite or negative: '
                     'written as 0 (no depth)')
    mm[invalid] = 0.0
    far = mm > 65535.0
    if far.any():
        notes.append(f'{int(far.sum())} depth pixels beyond 65.535 m: written as 65535 mm')
    return np.rint(np.minimum(mm, 65535.0)).astype(np.uint16), notes


def check_snapshot_paths(color_path: Path, depth_path: Path) -> None:
    """Both outputs are .png files in existing directories, and not the same file."""
    for what, path in (('snapshot', color_path), ('depth output', depth_path)):
        if path.suffix.lower() != '.png':
            raise GoalInputError(f'{what} {path}: must be a .png file (lossless; 16-bit for '
                                 'depth)')
        if not path.parent.is_dir():
            raise GoalInputError(f'{what} {path}: directory {path.parent} does not exist')
        if path.is_dir():
            raise GoalInputError(f'{what} {path}: is a directory')
    if color_path.resolve() == depth_path.resolve():
        raise GoalInputError(f'snapshot and depth output are the same file {color_path}')


def save_goal_images(rgb: npt.NDArray[np.uint8], depth_mm: npt.NDArray[np.uint16],
                     color_path: Path, depth_path: Path) -> None:
    """Write a goal: ``rgb`` as an 8-bit RGB PNG, ``depth_mm`` as a 16-bit PNG (millimetres).

    Each file is written next to its destination and renamed into place, so a reader never
    sees half a file. Raises GoalInputError for bad arrays or paths, OSError if writing fails.
    """
    from PIL import Image as PilImage

    check_snapshot_paths(color_path, depth_path)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise GoalInputError(f'colour must be uint8 [H, W, 3], got {rgb.dtype} '
                             f'{list(rgb.shape)}')
    if depth_mm.dtype != np.uint16 or depth_mm.shape != rgb.shape[:2]:
        raise GoalInputError(f'depth must be uint16 {list(rgb.shape[:2])} (aligned to the '
                             f'colour image), got {depth_mm.dtype} {list(depth_mm.shape)}')
    # uint8 [H, W, 3] is mode RGB, little-endian uint16 [H, W] mode I;16 (a 16-bit PNG).
    images = ((PilImage.fromarray(np.ascontiguousarray(rgb)), color_path),
              (PilImage.fromarray(np.ascontiguousarray(depth_mm, dtype='<u2')), depth_path))
    for image, path in images:
        fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.png', dir=path.parent)
        try:
            with os.fdopen(fd, 'wb') as handle:
                image.save(handle, format='PNG')
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# ---- arguments ----------------------------------------------------------------------------

def _number(kind: Callable[[str], Any], low: float, high: float, low_inclusive: bool = True
            ) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'not a number: {text!r}') from None
        below = value < low if low_inclusive else value <= low
        if not math.isfinite(value) or below or value > high:
            bound = '>=' if low_inclusive else '>'
            raise argparse.ArgumentTypeError(f'must be {bound} {low:g} and at most '
                                             f'{high:.10g}, got {text}')
        return value
    return parse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        'Send a goal image to the planner (/planner/reach_goal) and follow it to its\n'
        'result, or save the current camera view as a goal (--snapshot).')
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXIT_STATUS_HELP
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument('--image', type=Path, metavar='PNG',
                      help='goal colour image (any image Pillow reads; converted to rgb8)')
    what.add_argument('--snapshot', type=Path, metavar='PNG',
                      help='save the current camera view as a goal: colour PNG here, depth '
                           'next to it (--depth-out)')
    goal = parser.add_argument_group('sending a goal (--image)')
    goal.add_argument('--depth', type=Path, metavar='PNG|NPY',
                      help='aligned goal depth: 16-bit PNG in millimetres, or .npy (uint16 mm '
                           'or float metres); default: colour only')
    goal.add_argument('--timeout', type=_number(float, 0.0, _INT32_MAX), default=None,
                      metavar='S', help='wall-clock limit of the goal (default 0: planner '
                                        'default)')
    goal.add_argument('--max-steps', type=_number(int, 0, _UINT32_MAX), default=None,
                      metavar='N', help='planner steps at most (default 0: planner default)')
    goal.add_argument('--tolerance', type=_number(float, 0.0, _FLOAT32_MAX), default=None,
                      metavar='E', help='energy counted as reached (default 0: the '
                                        "planner's calibrated threshold)")
    goal.add_argument('--server-timeout', type=_number(float, 0.0, 1e6, False), default=10.0,
                      metavar='S', help='wait this long for the action server (default 10)')
    goal.add_argument('--cancel-timeout', type=_number(float, 0.0, 1e6, False), default=10.0,
                      metavar='S', help='after Ctrl-C, wait this long for the cancel to be '
                                        'confirmed (default 10)')
    goal.add_argument('--action', default=ACTION_NAME, metavar='NAME',
                      help=f'ReachGoal action ({ACTION_NAME})')
    snap = parser.add_argument_group('saving a goal (--snapshot)')
    snap.add_argument('--depth-out', type=Path, metavar='PNG',
                      help='16-bit depth PNG (mm) to write (default: <snapshot>_depth.png)')
    snap.add_argument('--frame-timeout', type=_number(float, 0.0, 1e6, False), default=10.0,
                      metavar='S', help='wait this long for a colour + depth pair (default 10)')
    snap.add_argument('--max-skew', type=_number(float, 0.0, 10.0), default=MAX_SKEW_S,
                      metavar='S', help='largest colour/depth stamp difference accepted '
                                        f'(default {MAX_SKEW_S})')
    snap.add_argument('--color-topic', default=COLOR_TOPIC, metavar='TOPIC',
                      help=f'colour image topic ({COLOR_TOPIC})')
    snap.add_argument('--depth-topic', default=DEPTH_TOPIC, metavar='TOPIC',
                      help=f'aligned depth topic ({DEPTH_TOPIC})')


_GOAL_ONLY = ('depth', 'timeout', 'max_steps', 'tolerance')
_SNAPSHOT_ONLY = ('depth_out',)


def check_arguments(args: argparse.Namespace) -> None:
    """Options that belong to the other mode are an error, not silently ignored."""
    if args.snapshot is not None:
        wrong = [name for name in _GOAL_ONLY if getattr(args, name) is not None]
        mode = '--snapshot'
    else:
        wrong = [name for name in _SNAPSHOT_ONLY if getattr(args, name) is not None]
        mode = '--image'
    if wrong:
        flags = ', '.join('--' + name.replace('_', '-') for name in wrong)
        raise GoalInputError(f'{flags} cannot be used with {mode}')


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        check_arguments(args)
        if args.snapshot is not None:
            color_path = args.snapshot
            depth_path = args.depth_out or default_depth_path(color_path)
            check_snapshot_paths(color_path, depth_path)
            return _snapshot(args, color_path, depth_path, out, err)
        request, notes = build_goal_request(
            args.image, args.depth, energy_tolerance=args.tolerance or 0.0,
            max_steps=args.max_steps or 0, timeout_s=args.timeout or 0.0)
    except GoalInputError as exc:
        print(f'craik goal: error: {exc}', file=err)
        return EXIT_USAGE
    for note in notes:
        print(f'craik goal: note: {note}', file=err)
    if args.depth is None and default_depth_path(args.image).is_file():
        print(f'craik goal: note: sending colour only; {default_depth_path(args.image)} is not '
              'sent (pass it with --depth)', file=err)
    return _send_goal(args, request, out, err)


# ---- ROS: thin -----------------------------------------------------------------------------

class _RosSession:
    """A private rclpy context, one node, and a thread that spins it (after start())."""

    def __init__(self, name: str) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.signals import SignalHandlerOptions

        self._rclpy = rclpy
        self.context = Context()
        # No rclpy signal handlers: they would shut the context down on Ctrl-C, before the
        # goal could be canceled (cli.py turns SIGINT and SIGTERM into KeyboardInterrupt).
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node(f'{name}_{os.getpid()}', context=self.context)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        # Action clients and servers: Node.destroy_node leaves them (and their DDS endpoints,
        # which other participants keep discovering) alive.
        self.owned: list[Any] = []

    def start(self) -> None:
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:  # shutdown races end the thread quietly
                if not self.context.ok():
                    return
                raise

    def on_spin_thread(self, call: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run ``call()`` on the spinning thread; a future of what it returns (every action
        client call goes through here: see craik_bringup.goal_client)."""
        return run_on_executor(self._executor, call)

    def close(self) -> None:
        for entity in self.owned:
            entity.destroy()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self.context.destroy()


def goal_message(request: GoalRequest) -> Any:
    """The ReachGoal.Goal message of a request."""
    from sensor_msgs.msg import Image

    def image(buf: ImageBuffer) -> Image:
        msg = Image(height=buf.height, width=buf.width, encoding=buf.encoding,
                    is_bigendian=buf.is_bigendian, step=buf.step)
        msg.header.frame_id = 'camera_color_optical_frame' if buf.width else ''
        msg.data = buf.data.tobytes()
        return msg

    goal = ReachGoal.Goal(goal_image=image(request.goal_image),
                          goal_depth=image(request.goal_depth),
                          energy_tolerance=request.energy_tolerance,
                          max_steps=request.max_steps)
    goal.timeout.sec, goal.timeout.nanosec = request.timeout.sec, request.timeout.nanosec
    return goal


def _cancel_duplicates(calls: list[GoalCall], chosen: GoalCall | None, err: TextIO,
                       wait_s: float = 0.0) -> None:
    cancel_duplicates(calls, chosen, wait_s=wait_s, on_cancel=lambda: print(
        'craik goal: note: an earlier request of this goal was accepted late; canceling it',
        file=err, flush=True))


def _print_feedback(feedback: deque[Any], out: TextIO) -> None:
    while feedback:
        f = feedback.popleft()
        print(format_feedback(f.step, f.best_energy, f.commanded_action, f.planning_time),
              file=out, flush=True)


def _report_result(result: Any, out: TextIO) -> int:
    print(format_result(result.status, result.message, result.steps, result.final_energy),
          file=out, flush=True)
    return exit_code_for_status(result.status)


def _cancel(session: _RosSession, call: GoalCall, timeout_s: float) -> tuple[str, Any]:
    """Cancel the goal and wait (at most ``timeout_s``) for its result.

    Returns ('canceled', result), ('finished', result) when it ended otherwise first,
    ('not_running', None) when the server refused the goal, or ('unconfirmed', reason).
    """
    from action_msgs.srv import CancelGoal

    deadline = time.monotonic() + timeout_s
    try:
        handle = call.wait_handle(deadline)
        if handle is None:
            return 'unconfirmed', f'no goal response within {timeout_s:g} s'
        if not handle.accepted:
            return 'not_running', None
        results = call.wait_result_future(deadline)
        if results is None or not results.done():
            asked = session.on_spin_thread(handle.cancel_goal_async)
            if not wait_done(asked, deadline) or not wait_done(asked.result(), deadline):
                return 'unconfirmed', ('the planner did not answer the cancel request within '
                                       f'{timeout_s:g} s')
            response = asked.result().result()
            ours = bytes(handle.goal_id.uuid)
            canceling = any(bytes(g.goal_id.uuid) == ours for g in response.goals_canceling)
            if results is None:
                results = call.wait_result_future(deadline)
            # Not canceling this goal: refused (rclpy's server answers ERROR_NONE without the
            # goal), unless the goal ended meanwhile, which its result then says.
            ended = response.return_code == CancelGoal.Response.ERROR_GOAL_TERMINATED
            if not (canceling or ended) and (results is None or not wait_done(
                    results, min(deadline, time.monotonic() + 1.0))):
                if response.return_code == CancelGoal.Response.ERROR_UNKNOWN_GOAL_ID:
                    return 'unconfirmed', 'the planner does not know the goal'
                return 'unconfirmed', 'the planner refused to cancel the goal'
            if results is None or not wait_done(results, deadline):
                return 'unconfirmed', f'cancel accepted, but no result within {timeout_s:g} s'
    except KeyboardInterrupt:
        return 'unconfirmed', 'interrupted again while waiting for the cancel'
    result = results.result().result
    canceled = result.status == ReachGoal.Result.STATUS_CANCELED
    return ('canceled' if canceled else 'finished'), result


def _unconfirmed(detail: str, err: TextIO) -> int:
    print(f'craik goal: cancel not confirmed: {detail}; the goal may still be running',
          file=err)
    return EXIT_CANCEL_UNCONFIRMED


def _interrupted(session: _RosSession, calls: list[GoalCall], call: GoalCall | None,
                 args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Ctrl-C / SIGTERM: cancel the goal (bounded by --cancel-timeout); the exit status."""
    if not calls:
        print('craik goal: interrupted before the goal was sent', file=err)
        return EXIT_INTERRUPTED
    print('craik goal: interrupted; canceling the goal', file=err, flush=True)
    if call is None:     # no goal response yet: cancel whichever request is answered first
        deadline = time.monotonic() + args.cancel_timeout
        try:
            while call is None and time.monotonic() < deadline:
                call = next((c for c in calls if c.poll() is not None), None)
                time.sleep(0.01)
        except KeyboardInterrupt:
            pass
        if call is None:
            return _unconfirmed(f'no goal response within {args.cancel_timeout:g} s', err)
    outcome, detail = _cancel(session, call, args.cancel_timeout)
    _print_feedback(call.feedback, out)
    if outcome == 'unconfirmed':
        return _unconfirmed(detail, err)
    if outcome == 'not_running':
        return EXIT_INTERRUPTED
    code = _report_result(detail, out)
    return EXIT_INTERRUPTED if outcome == 'canceled' else code


def _send_goal(args: argparse.Namespace, request: GoalRequest, out: TextIO,
               err: TextIO) -> int:
    from rclpy.action import ActionClient

    session = _RosSession('craik_goal')
    client: Any = ActionClient(session.node, ReachGoal, args.action)
    session.owned.append(client)
    session.start()
    calls: list[GoalCall] = []
    call: GoalCall | None = None
    try:
        try:
            deadline = time.monotonic() + args.server_timeout
            while not client.server_is_ready():
                if time.monotonic() >= deadline:
                    print(f'craik goal: error: no action server on {args.action} within '
                          f'{args.server_timeout:g} s (is the planner running? `craik launch '
                          'sim` starts the simulated lab)', file=err)
                    return EXIT_NO_SERVER
                time.sleep(0.05)
            print(f'sending goal to {args.action}: {describe_request(request)}', file=out,
                  flush=True)
            goal = goal_message(request)
            call = first_response(
                lambda: GoalCall(session.on_spin_thread, client, goal), calls,
                time.monotonic() + max(args.server_timeout, 10.0),
                on_resend=lambda: print(
                    f'craik goal: note: no goal response within {GOAL_RESEND_S:g} s (the '
                    'server may not have discovered this client yet); sending the goal again',
                    file=err, flush=True))
            if call is None:
                print('craik goal: error: no goal response from the action server',
                      file=err)
                return EXIT_NO_RESULT
            if not call.handle.accepted:
                print(f'craik goal: error: {args.action} refused the goal', file=err)
                return EXIT_GOAL_REFUSED
            print('goal accepted (Ctrl-C cancels it)', file=out, flush=True)
            results = call.wait_result_future(None)
            timeout = request.timeout.sec + request.timeout.nanosec / _NS
            deadline = time.monotonic() + timeout + RESULT_GRACE_S if timeout else None
            server = ServerWatch(client, SERVER_LOST_S)
            while not results.done():
                _print_feedback(call.feedback, out)
                _cancel_duplicates(calls, call, err)
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    print(f'craik goal: error: no result {RESULT_GRACE_S:g} s after the '
                          "goal's timeout; canceling it", file=err)
                    outcome, detail = _cancel(session, call, args.cancel_timeout)
                    if outcome == 'finished':
                        return _report_result(detail, out)
                    if outcome == 'unconfirmed':
                        return _unconfirmed(detail, err)
                    return EXIT_NO_RESULT
                if server.lost(now):
                    print(f'craik goal: error: the action server {args.action} went away '
                          'before sending a result', file=err)
                    return EXIT_NO_RESULT
                time.sleep(0.02)
            _print_feedback(call.feedback, out)
            return _report_result(results.result().result, out)
        except KeyboardInterrupt:
            return _interrupted(session, calls, call, args, out, err)
    finally:
        if len(calls) > 1:
            _cancel_duplicates(calls, call, err, wait_s=2.0)
        session.close()


class _FrameBuffer:
    """The latest colour and depth messages of the camera, with their stamps."""

    def __init__(self, keep: int = 10) -> None:
        self._lock = threading.Lock()
        self.colors: deque[tuple[int, Any]] = deque(maxlen=keep)
        self.depths: deque[tuple[int, Any]] = deque(maxlen=keep)

    @staticmethod
    def _stamp(msg: Any) -> int:
        return int(msg.header.stamp.sec) * _NS + int(msg.header.stamp.nanosec)

    def on_color(self, msg: Any) -> None:
        with self._lock:
            self.colors.append((self._stamp(msg), msg))

    def on_depth(self, msg: Any) -> None:
        with self._lock:
            self.depths.append((self._stamp(msg), msg))

    def pair(self, max_skew_ns: int) -> tuple[Any, Any, int] | None:
        """(colour, depth, skew ns): the newest colour frame, once a depth frame at least as
        new has arrived (none later can be nearer), with the nearest depth within the skew."""
        with self._lock:
            colors, depths = list(self.colors), list(self.depths)
        for stamp, color in reversed(colors):
            if not depths or depths[-1][0] < stamp:
                continue
            index, skew = nearest_stamp(stamp, [s for s, _ in depths])
            if skew <= max_skew_ns:
                return color, depths[index][1], skew
        return None

    def why_not(self, max_skew_ns: int, color_topic: str, depth_topic: str) -> str:
        with self._lock:
            colors, depths = list(self.colors), list(self.depths)
        if not colors:
            return f'no colour frame on {color_topic}'
        if not depths:
            return f'no depth frame on {depth_topic}'
        skew = min(abs(d - c) for c, _ in colors for d, _ in depths)
        return (f'colour and depth frames arrived, but the nearest pair is {skew / 1e6:.1f} ms '
                f'apart (--max-skew {max_skew_ns / 1e6:.1f} ms)')


def _snapshot(args: argparse.Namespace, color_path: Path, depth_path: Path, out: TextIO,
              err: TextIO) -> int:
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from craik_perception.ros_image import image_to_array

    frames = _FrameBuffer()
    session = _RosSession('craik_goal_snapshot')
    session.node.create_subscription(Image, args.color_topic, frames.on_color,
                                     qos_profile_sensor_data)
    session.node.create_subscription(Image, args.depth_topic, frames.on_depth,
                                     qos_profile_sensor_data)
    session.start()
    max_skew_ns = int(round(args.max_skew * _NS))
    try:
        deadline = time.monotonic() + args.frame_timeout
        pair = frames.pair(max_skew_ns)
        while pair is None and time.monotonic() < deadline:
            time.sleep(0.02)
            pair = frames.pair(max_skew_ns)
        if pair is None:
            print(f'craik goal: error: no colour + depth frame pair within '
                  f'{args.frame_timeout:g} s: '
                  f'{frames.why_not(max_skew_ns, args.color_topic, args.depth_topic)}',
                  file=err)
            return EXIT_NO_CAMERA
    except KeyboardInterrupt:
        print('craik goal: interrupted; nothing written', file=err)
        return EXIT_INTERRUPTED
    finally:
        session.close()
    color_msg, depth_msg, skew_ns = pair
    try:
        rgb = color_frame_to_rgb(color_msg.encoding, image_to_array(
            color_msg, expected_encodings=('rgb8', 'bgr8')))
    except (ImageDecodeError, ValueError) as exc:
        print(f'craik goal: error: colour frame on {args.color_topic}: {exc}', file=err)
        return EXIT_NO_CAMERA
    try:
        depth_mm, notes = depth_frame_to_mm(depth_msg.encoding, image_to_array(
            depth_msg, expected_encodings=('16UC1', '32FC1')))
    except (ImageDecodeError, ValueError) as exc:
        print(f'craik goal: error: depth frame on {args.depth_topic}: {exc}', file=err)
        return EXIT_NO_CAMERA
    if depth_mm.shape != rgb.shape[:2]:
        print(f'craik goal: error: the depth frame ({depth_mm.shape[1]}x{depth_mm.shape[0]}) '
              f'is not aligned to the colour frame ({rgb.shape[1]}x{rgb.shape[0]}); is '
              f'{args.depth_topic} the depth aligned to colour?', file=err)
        return EXIT_NO_CAMERA
    for note in notes:
        print(f'craik goal: note: {note}', file=err)
    try:
        save_goal_images(rgb, depth_mm, color_path, depth_path)
    except (GoalInputError, OSError) as exc:
        print(f'craik goal: error: cannot write the snapshot: {exc}', file=err)
        return EXIT_USAGE
    print(f'wrote {color_path} ({rgb.shape[1]}x{rgb.shape[0]} RGB) and {depth_path} (16-bit, '
          f'millimetres; stamps {skew_ns / 1e6:.1f} ms apart). Send it with: craik goal '
          f'--image {color_path} --depth {depth_path}', file=out)
    return EXIT_OK
