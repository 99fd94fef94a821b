"""Generated ReachGoal goals and the property the planner's goal validation must meet for each.

Shared by test_goal_fuzzing.py (CI) and bench/fuzz_goals.py (any count; its JSON is
bench/results/fuzzing.json), so the bench measures exactly what CI tests.

A goal is drawn as a :class:`GoalSpec` (plain fields) and built into a real
``craik_interfaces.action.ReachGoal.Goal`` with ``sensor_msgs/Image`` fields: encodings valid,
other known and bogus; width/height/step/data length consistent or not, declared sizes up to
2^32 - 1 (data never larger than ``MAX_DATA_BYTES``), empty images; depth with NaN, inf,
negative, huge values in either byte order; tolerances NaN/inf/negative/zero/huge; any
``max_steps``; timeouts negative, zero, huge, with nanoseconds beyond a second.

:func:`check_goal` runs the goal through the planner's validation
(``craik_planner.goal_validation.validate_goal``, what ``mpc_planner`` calls first) and checks
it against an oracle written from the action's contract (ReachGoal.action and the image rules),
not from the implementation: a goal is accepted exactly when no field is invalid, with arrays
equal to the pixels it carries; otherwise it is refused with a GoalRejectedError whose message
starts with one of the invalid fields. Any other exception, or an allocation larger than the
data that arrived, is a failure.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
import functools
import math
import tracemalloc
from typing import Any

from hypothesis import strategies as st
import numpy as np

from craik_perception.image_conversion import ENCODINGS, MAX_PIXELS
from craik_planner.goal_validation import (
    COLOR_ENCODINGS,
    DEPTH_ENCODINGS,
    MAX_DEPTH_M,
    GoalDefaults,
    GoalRejectedError,
    ValidatedGoal,
    validate_goal,
)

# The node's defaults (config/mpc_planner.yaml); any positive values would do.
DEFAULTS = GoalDefaults(energy_tolerance=0.0415, max_steps=40, timeout_s=120.0)
# Examples per CI run (test_goal_fuzzing.py); the bench scales it.
CI_EXAMPLES = 4500
# Rejected goals also run through the node's execute callback (test_goal_fuzzing.py).
NODE_CI_EXAMPLES = 200
# Images whose data matches their declared size are generated up to this size; declared sizes
# beyond it come with short data (the test must not allocate what it fuzzes the planner with).
MAX_DATA_BYTES = 64 * 1024
# Allocation the validation may make beyond a small multiple of the data it was given.
ALLOCATION_SLACK_BYTES = 256 * 1024
U32 = 2**32 - 1
# The deepest valid depth, in the precision depth images have (a 16UC1 65535 mm).
DEPTH_LIMIT = np.float32(MAX_DEPTH_M)
FIELDS = ('goal_image', 'goal_depth', 'energy_tolerance', 'max_steps', 'timeout')
BOGUS_ENCODINGS = ('', 'RGB8', 'Rgb8', 'rgb8 ', ' rgb8', 'rgb8\x00', 'rgb16', 'bgr 8', 'jpeg',
                   '16uc1', '16UC', '32FC', '32FC3', 'yuv422', 'bayer_rggb8', 'é',
                   "8UC1'; --")
SPECIAL_DEPTH = np.array([math.nan, math.inf, -math.inf, -1.0, -1e-30, -0.0, 0.0, 1e-45,
                          MAX_DEPTH_M, 65.536, 1e3, 3.4e38], dtype=np.float32)
SPECIAL_TOLERANCES = (0.0, -0.0, 1e-45, 0.0415, 3.4028234663852886e38, -1e-45, -1.0, math.nan,
                      math.inf, -math.inf)


@dataclass(frozen=True)
class ImageSpec:
    """The fields of one sensor_msgs/Image."""

    encoding: str
    width: int
    height: int
    step: int
    data: bytes
    is_bigendian: int = 0

    def message(self) -> Any:
        from sensor_msgs.msg import Image

        # array.array is what rclpy hands a subscriber (and is set without a per-byte check).
        return Image(encoding=self.encoding, width=self.width, height=self.height,
                     step=self.step, is_bigendian=self.is_bigendian,
                     data=array.array('B', self.data))


@dataclass(frozen=True)
class GoalSpec:
    """The fields of one ReachGoal goal."""

    image: ImageSpec
    depth: ImageSpec
    energy_tolerance: float
    max_steps: int
    timeout_sec: int
    timeout_nanosec: int

    def message(self) -> Any:
        from builtin_interfaces.msg import Duration

        from craik_interfaces.action import ReachGoal

        return ReachGoal.Goal(
            goal_image=self.image.message(), goal_depth=self.depth.message(),
            energy_tolerance=self.energy_tolerance, max_steps=self.max_steps,
            timeout=Duration(sec=self.timeout_sec, nanosec=self.timeout_nanosec))


NO_DEPTH = ImageSpec('', 0, 0, 0, b'')


def _pixel_bytes(encoding: str, n: int, seed: int, special_fraction: float,
                 big_endian: bool) -> bytes:
    """``n`` bytes of plausible pixels: depth in metres with some special values for 32FC1,
    any uint16 for 16UC1, random bytes otherwise."""
    rng = np.random.default_rng(seed)
    if encoding == '32FC1':
        values = rng.uniform(0.0, 3.0, (n + 3) // 4).astype(np.float32)
        special = rng.random(values.size) < special_fraction
        values[special] = rng.choice(SPECIAL_DEPTH, int(special.sum()))
        return values.astype('>f4' if big_endian else '<f4').tobytes()[:n]
    if encoding == '16UC1':
        raw = rng.integers(0, 65536, (n + 1) // 2).astype('>u2' if big_endian else '<u2')
        return raw.tobytes()[:n]
    return rng.integers(0, 256, n, dtype=np.uint8).tobytes()


# Strategies are built once: building them inside every draw costs more than the draw.
_TEXT = st.text(alphabet='rgbBGR8136UCF_ .\x00é', max_size=10)
_SIZE_MODES = {False: st.sampled_from(['small'] * 4 + ['zero', 'huge', 'max_pixels']),
               True: st.sampled_from(['like'] * 6 + ['small', 'small', 'zero', 'huge',
                                                     'max_pixels'])}
_SIZE = st.integers(1, 24)
# Well-formed images 3 times in 5 (else the goal_image check would hide all the others).
_CLEAN = st.sampled_from([True, True, True, False, False])
_U32 = st.integers(0, U32)
_STEP_KIND = st.sampled_from(['exact'] * 4 + ['padded', 'short', 'odd', 'any'])
_DATA_KIND = st.sampled_from(['exact'] * 4 + ['short', 'long', 'empty', 'any'])
_BIG_ENDIAN = st.one_of(st.sampled_from([0, 0, 0, 1]), st.integers(0, 255))
_SPECIAL_FRACTION = st.sampled_from([0.0, 0.0, 0.0, 0.01, 0.3, 1.0])
_DEPTH_KIND = st.sampled_from(['absent', 'absent', 'aligned', 'aligned', 'aligned', 'any'])
# Mostly valid limits (so that the images are what decides), the rest anything a message holds.
_TOLERANCE = st.one_of(st.just(0.0), st.floats(0.0009765625, 16.0, width=32),
                       st.floats(width=32), st.sampled_from(SPECIAL_TOLERANCES))
_MAX_STEPS = st.one_of(st.integers(0, U32), st.sampled_from([0, 1, 40, U32]))
_TIMEOUT = st.one_of(
    st.tuples(st.sampled_from([0, 0, 1, 120]), st.sampled_from([0, 0, 1, 999_999_999])),
    st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 999_999_999)),
    st.tuples(st.integers(-2**31, 2**31 - 1), st.integers(0, U32)),
    st.tuples(st.sampled_from([-2**31, -1, 0, 5]),
              st.sampled_from([0, 500_000_000, 1_000_000_000, 2_000_000_000, U32])))


_ENCODING_KIND = st.sampled_from(['allowed', 'allowed', 'known', 'bogus', 'text'])


@functools.cache
def _encodings(allowed: tuple[str, ...]) -> dict[str, st.SearchStrategy[str]]:
    return {'allowed': st.sampled_from(allowed), 'known': st.sampled_from(sorted(ENCODINGS)),
            'bogus': st.sampled_from(BOGUS_ENCODINGS), 'text': _TEXT}


@st.composite
def image_specs(draw: st.DrawFn, allowed: tuple[str, ...],
                like: tuple[int, int] | None = None) -> ImageSpec:
    """An image meant for ``allowed`` encodings: mostly well-formed, often not."""
    clean = draw(_CLEAN)
    encoding = draw(_encodings(allowed)['allowed' if clean else draw(_ENCODING_KIND)])
    known = ENCODINGS.get(encoding)
    if known is not None:
        itemsize, channels = known[0].itemsize, known[1]
    else:
        itemsize, channels = 1, 3
    bpp = itemsize * channels
    size = 'like' if clean and like is not None else (
        'small' if clean else draw(_SIZE_MODES[like is not None]))
    if size == 'like' and like is not None:
        width, height = like
    elif size == 'zero':
        width, height = draw(st.sampled_from([(0, 0), (0, 5), (5, 0)]))
    elif size == 'huge':
        width, height = draw(_U32), draw(_U32)
    elif size == 'max_pixels':   # just at and just above the decoder's plausibility limit
        width = draw(st.sampled_from([1, 10, 10000, MAX_PIXELS]))
        height = MAX_PIXELS // width + draw(st.integers(-1, 1))
    else:
        width, height = draw(_SIZE), draw(_SIZE)
    row = width * bpp
    step_kind = draw(st.sampled_from(['exact', 'padded']) if clean else _STEP_KIND)
    if step_kind == 'padded':
        step = row + itemsize * draw(st.integers(1, 4))
    elif step_kind == 'short':
        step = max(0, row - draw(st.integers(1, 8)))
    elif step_kind == 'odd':
        step = row + 1
    elif step_kind == 'any':
        step = draw(_U32)
    else:
        step = row
    step = min(step, U32)
    need = step * height
    data_kind = 'exact' if clean else draw(_DATA_KIND)
    if data_kind == 'exact' and need <= MAX_DATA_BYTES:
        n = need
    elif data_kind == 'short' and 0 < need <= MAX_DATA_BYTES:
        n = need - draw(st.integers(1, min(need, 8)))
    elif data_kind == 'long' and need <= MAX_DATA_BYTES:
        n = need + draw(st.integers(1, 8))
    elif data_kind == 'empty':
        n = 0
    else:
        n = draw(st.integers(0, 4096))
    is_bigendian = draw(_BIG_ENDIAN)
    fraction = draw(_SPECIAL_FRACTION)
    data = _pixel_bytes(encoding, n, draw(_U32), fraction, bool(is_bigendian))
    return ImageSpec(encoding, width, height, step, data, is_bigendian)


@st.composite
def goal_specs(draw: st.DrawFn) -> GoalSpec:
    """A ReachGoal goal: colour image, optional depth, tolerance, step limit and timeout."""
    image = draw(image_specs(COLOR_ENCODINGS))
    depth_kind = draw(_DEPTH_KIND)
    if depth_kind == 'absent':
        # "Leave empty (width = height = 0)": an encoding alone does not make a depth image.
        depth = ImageSpec(draw(st.sampled_from(['', '16UC1', '32FC1', 'rgb8'])), 0, 0,
                          draw(st.sampled_from([0, 0, 2, U32])), b'')
    elif depth_kind == 'aligned':
        depth = draw(image_specs(DEPTH_ENCODINGS, like=(image.width, image.height)))
    else:
        depth = draw(image_specs(DEPTH_ENCODINGS))
    sec, nanosec = draw(_TIMEOUT)
    return GoalSpec(image, depth, draw(_TOLERANCE), draw(_MAX_STEPS), sec, nanosec)


# ---- the oracle ---------------------------------------------------------------------------------

def _well_formed(spec: ImageSpec, allowed: tuple[str, ...]) -> bool:
    """The image rules: an accepted encoding, a plausible positive size, a step that holds a
    row and is a whole number of elements, and exactly step * height bytes."""
    if spec.encoding not in allowed:
        return False
    dtype, channels = ENCODINGS[spec.encoding]
    w, h = spec.width, spec.height
    return (w > 0 and h > 0 and w * h <= MAX_PIXELS and spec.step >= w * channels * dtype.itemsize
            and spec.step % dtype.itemsize == 0 and len(spec.data) == spec.step * h)


def _pixels(spec: ImageSpec) -> np.ndarray:
    """The pixels a well-formed image carries, in host byte order (row padding dropped)."""
    dtype, channels = ENCODINGS[spec.encoding]
    row = spec.width * channels * dtype.itemsize
    rows = np.frombuffer(spec.data, np.uint8).reshape(spec.height, spec.step)[:, :row]
    order = '>' if spec.is_bigendian else '<'
    values = np.ascontiguousarray(rows).view(dtype.newbyteorder(order)).astype(dtype)
    return values.reshape((spec.height, spec.width, channels) if channels > 1
                          else (spec.height, spec.width))


def _depth_absent(spec: ImageSpec) -> bool:
    return spec.width == 0 and spec.height == 0 and not spec.data


def invalid_fields(spec: GoalSpec, goal: Any) -> set[str]:
    """The fields of the goal that break the action's contract (empty: a valid goal)."""
    bad = set()
    tolerance = goal.energy_tolerance    # as the message holds it
    if not math.isfinite(tolerance) or tolerance < 0.0:
        bad.add('energy_tolerance')
    if spec.timeout_nanosec >= 10**9 or spec.timeout_sec + 1e-9 * spec.timeout_nanosec < 0:
        bad.add('timeout')
    image_ok = _well_formed(spec.image, COLOR_ENCODINGS)
    if not image_ok:
        bad.add('goal_image')
    if not _depth_absent(spec.depth):
        aligned = (spec.depth.width, spec.depth.height) == (spec.image.width,
                                                            spec.image.height)
        if not _well_formed(spec.depth, DEPTH_ENCODINGS) or (image_ok and not aligned):
            bad.add('goal_depth')
        elif spec.depth.encoding == '32FC1':
            d = _pixels(spec.depth)
            if not (np.all(np.isfinite(d)) and np.all(d >= 0.0) and np.all(d <= DEPTH_LIMIT)):
                bad.add('goal_depth')
    return bad


def _check_accepted(spec: GoalSpec, goal: Any, valid: ValidatedGoal) -> None:
    rgb = _pixels(spec.image)
    if spec.image.encoding == 'bgr8':
        rgb = rgb[..., ::-1]
    assert valid.rgb.dtype == np.uint8 and valid.rgb.shape == (spec.image.height,
                                                                spec.image.width, 3)
    assert valid.rgb.flags['C_CONTIGUOUS'] and valid.rgb.flags['OWNDATA'], \
        'the goal image must not alias the message buffer'
    np.testing.assert_array_equal(valid.rgb, rgb)
    if _depth_absent(spec.depth):
        assert valid.depth_m is None
    else:
        d = valid.depth_m
        assert d is not None and d.dtype == np.float32 and d.shape == rgb.shape[:2]
        assert np.all(np.isfinite(d)) and np.all(d >= 0.0) and np.all(d <= DEPTH_LIMIT)
        raw = _pixels(spec.depth)
        expected = raw * np.float32(1e-3) if spec.depth.encoding == '16UC1' else raw
        np.testing.assert_array_equal(d, expected.astype(np.float32))
    tolerance = goal.energy_tolerance or DEFAULTS.energy_tolerance
    assert valid.energy_tolerance == tolerance and valid.energy_tolerance > 0.0
    assert valid.max_steps == (spec.max_steps or DEFAULTS.max_steps) and valid.max_steps >= 1
    timeout = spec.timeout_sec + 1e-9 * spec.timeout_nanosec
    assert valid.timeout_s == (timeout or DEFAULTS.timeout_s)
    assert math.isfinite(valid.timeout_s) and valid.timeout_s > 0.0


def check_goal(spec: GoalSpec) -> str:
    """Validate one goal as the planner does and check the outcome against the oracle.

    Returns ``'accepted'`` or ``'rejected: <field>'``; raises AssertionError when the planner
    got it wrong (and lets any exception other than GoalRejectedError through).
    """
    goal = spec.message()
    tracemalloc.start()
    try:
        outcome: ValidatedGoal | GoalRejectedError = validate_goal(goal, DEFAULTS)
    except GoalRejectedError as exc:
        outcome = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    arrived = len(spec.image.data) + len(spec.depth.data)
    # Decoding copies and converts what arrived (a few times at most); a declared size is never
    # allocated from (a 4e9 x 4e9 header with 10 bytes of data must cost nothing).
    assert peak <= 8 * arrived + ALLOCATION_SLACK_BYTES, \
        f'validation allocated {peak} bytes for {arrived} bytes of image data'
    bad = invalid_fields(spec, goal)
    if isinstance(outcome, GoalRejectedError):
        message = str(outcome)
        named = next((f for f in FIELDS if message.startswith(f)), None)
        assert bad, f'a valid goal was rejected: {message}'
        assert named in bad, f'the rejection names {named!r}, but the invalid fields are ' \
                             f'{sorted(bad)}: {message}'
        return f'rejected: {named}'
    assert not bad, f'a goal with invalid {sorted(bad)} was accepted'
    _check_accepted(spec, goal, outcome)
    return 'accepted'
