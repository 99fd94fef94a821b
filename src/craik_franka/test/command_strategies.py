"""Hypothesis strategies for end-effector commands: plausible ones near the limits, some with
an adversarial field, and completely arbitrary ones (NaN, inf, huge, tiny, invalid modes)."""

import math

from hypothesis import strategies as st

from craik_franka.envelope import Mode, MotionCommand

SPECIAL = [0.0, -0.0, 5e-324, -5e-324, 1e-300, 1e-12, 0.05, -0.05, 0.0500000001, 1.0, 1e300,
           -1e300, math.inf, -math.inf, math.nan, 1.7976931348623157e308]
anything = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SPECIAL),
                     st.integers(min_value=-10**30, max_value=10**30))
small = st.floats(min_value=-0.06, max_value=0.06)
HOME_TCP = (0.5544, 0.0, 0.5214)


@st.composite
def plausible(draw: st.DrawFn) -> MotionCommand:
    """Commands near the limits, occasionally with one adversarial field."""
    mode = draw(st.sampled_from([Mode.RELATIVE, Mode.ABSOLUTE, Mode.STREAMED]))
    reach = 0.06 if mode != Mode.ABSOLUTE else 0.3
    offsets = [draw(st.one_of(st.floats(min_value=-reach, max_value=reach),
                              st.sampled_from([0.0, -0.0, 5e-324, 0.05, -0.05, 0.0500000001])))
               for _ in range(3)]
    if mode == Mode.RELATIVE:
        target = list(offsets)
    else:
        target = [h + o for h, o in zip(HOME_TCP, offsets, strict=True)]
    gripper = draw(st.one_of(st.none(), st.floats(min_value=-0.05, max_value=1.05)))
    factor = draw(st.one_of(st.just(0.0), st.floats(min_value=-0.05, max_value=0.35)))
    if draw(st.integers(min_value=0, max_value=4)) == 0:  # poison one field
        which = draw(st.integers(min_value=0, max_value=4))
        value = draw(anything)
        if which < 3:
            target[which] = value
        elif which == 3:
            gripper = value
        else:
            factor = value
    return MotionCommand(int(mode), tuple(target), gripper, factor)


commands = st.one_of(plausible(), plausible(), st.builds(
    MotionCommand,
    mode=st.one_of(st.sampled_from([0, 1, 2]), st.integers(min_value=-3, max_value=300)),
    target=st.tuples(anything, anything, anything),
    gripper=st.one_of(st.none(), anything),
    dynamics_factor=anything))
