"""The planner pairs colour and aligned depth frames by stamp (they arrive as two messages)."""

import pytest

pytest.importorskip('rclpy')
from sensor_msgs.msg import Image  # noqa: E402

from craik_planner.mpc_planner_node import _newest_pair  # noqa: E402


def frame(t: float) -> Image:
    msg = Image()
    msg.header.stamp.sec = int(t)
    msg.header.stamp.nanosec = int(round((t - int(t)) * 1e9))
    return msg


def test_the_newest_colour_frame_whose_depth_has_arrived_is_taken():
    colors = [frame(10.0), frame(10.066), frame(10.133)]
    depths = [frame(10.0), frame(10.066)]           # the newest depth is still on its way
    color, depth = _newest_pair(colors, depths)
    assert color is colors[1] and depth is depths[1]


def test_no_pair_without_matching_stamps():
    assert _newest_pair([frame(10.0)], [frame(11.0)]) is None
    assert _newest_pair([frame(10.0)], []) is None
    assert _newest_pair([], [frame(10.0)]) is None
