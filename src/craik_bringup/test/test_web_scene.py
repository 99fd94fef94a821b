"""The ROS-free half of `craik view` (craik_bringup.web_scene): joint states, the FR3 model,
image, path and map conversion, and the viser server itself (no browser, no ROS graph)."""

from __future__ import annotations

from collections.abc import Iterator
import socket
import urllib.request

import numpy as np
import pytest

from craik_bringup.web_scene import (
    ARM_JOINTS,
    FINGER_JOINTS,
    Gaussians,
    MarkerPaths,
    RobotModel,
    ViewError,
    WebScene,
    bounded_indices,
    display_image,
    joint_positions,
    point_size_m,
    polyline_segments,
    transform_points,
    unpack_gaussians,
)
from craik_franka.kinematics import HOME_JOINT_POSITIONS, Fr3Kinematics
from craik_perception.image_conversion import ImageDecodeError

TCP_OFFSET_M = 0.1034   # fr3_hand -> fr3_hand_tcp along the hand's z (franky / libfranka)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


# ---- joint states ------------------------------------------------------------------------------

def test_joint_positions_are_read_by_name_in_any_order() -> None:
    names = [*reversed(ARM_JOINTS), *FINGER_JOINTS]
    positions = [0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.015, 0.02]
    q, width = joint_positions(names, positions)
    np.testing.assert_allclose(q, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    assert width == pytest.approx(0.035)


def test_joint_positions_without_fingers_have_no_width() -> None:
    q, width = joint_positions(list(ARM_JOINTS), [0.0] * 7)
    assert q.shape == (7,) and width is None


def test_joint_positions_name_what_is_wrong() -> None:
    with pytest.raises(ViewError, match='fr3_joint4'):
        joint_positions([n for n in ARM_JOINTS if n != 'fr3_joint4'], [0.0] * 6)
    with pytest.raises(ViewError, match='7 names but 6 positions'):
        joint_positions(list(ARM_JOINTS), [0.0] * 6)
    with pytest.raises(ViewError, match='not finite'):
        joint_positions(list(ARM_JOINTS), [0.0] * 6 + [float('nan')])


# ---- robot model -------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def robot() -> RobotModel:
    return RobotModel()


def test_robot_model_has_every_link_and_a_browser_sized_mesh(robot: RobotModel) -> None:
    assert set(robot.bodies) == {*(f'fr3_link{i}' for i in range(8)), 'hand', 'left_finger',
                                 'right_finger'}
    triangles = sum(len(p.faces) for p in robot.parts)
    assert 10_000 < triangles < 100_000, triangles
    for part in robot.parts:
        assert part.faces.max() < len(part.vertices)


@pytest.mark.parametrize('seed', range(4))
def test_robot_model_hand_is_where_the_controller_kinematics_put_the_tcp(
        robot: RobotModel, seed: int) -> None:
    """The meshes are placed by MuJoCo (franky-sim's MJCF); the controller computes the TCP with
    pinocchio from the URDF. Both must agree, or the page shows the robot somewhere else."""
    rng = np.random.default_rng(seed)
    q = np.asarray(HOME_JOINT_POSITIONS) + rng.uniform(-0.5, 0.5, size=7)
    poses = robot.body_poses(q, 0.05)
    hand_pos, hand_wxyz = poses['hand']
    w, x, y, z = hand_wxyz
    hand_z = np.array([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)])
    tcp = hand_pos + TCP_OFFSET_M * hand_z
    expected = Fr3Kinematics().fk(q)[0]
    np.testing.assert_allclose(tcp, expected, atol=1e-3)
    gap = np.linalg.norm(poses['left_finger'][0] - poses['right_finger'][0])
    assert gap == pytest.approx(0.05, abs=1e-6)


def test_robot_vertices_follow_the_first_joint(robot: RobotModel) -> None:
    q = np.asarray(HOME_JOINT_POSITIONS, dtype=float)
    turned = q.copy()
    turned[0] += np.pi / 2
    a, b = robot.vertices_at(q), robot.vertices_at(turned)
    assert a.shape == b.shape and 0.6 < a[:, 2].max() < 1.3   # elbow bent: ~0.8 m tall
    rot_z = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    moved = np.linalg.norm(b - a, axis=1) > 1e-6
    # Every vertex that moved (all but the base's) turned 90 degrees about the base's z axis.
    assert 0.5 < moved.mean() < 1.0
    np.testing.assert_allclose(b[moved], a[moved] @ rot_z.T, atol=1e-6)
    with pytest.raises(ViewError, match='7 finite values'):
        robot.body_poses(np.zeros(6))


# ---- images ------------------------------------------------------------------------------------

def _pattern(h: int = 480, w: int = 640) -> np.ndarray:
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[: h // 2, : w // 2] = (255, 0, 0)
    img[: h // 2, w // 2:] = (0, 255, 0)
    img[h // 2:, : w // 2] = (0, 0, 255)
    img[h // 2:, w // 2:] = (255, 255, 0)
    return img


def test_display_image_keeps_rgb_and_reorders_bgr_and_drops_alpha() -> None:
    img = _pattern()
    out = display_image('rgb8', 640, 480, 640 * 3, img.tobytes())
    np.testing.assert_array_equal(out, img)
    bgr = np.ascontiguousarray(img[..., ::-1])
    np.testing.assert_array_equal(display_image('bgr8', 640, 480, 1920, bgr.tobytes()), img)
    rgba = np.concatenate([img, np.full((480, 640, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(display_image('rgba8', 640, 480, 2560, rgba.tobytes()), img)


def test_display_image_shrinks_by_block_mean_and_enlarges_small_images() -> None:
    img = np.zeros((4, 4, 3), dtype=np.uint8)
    img[0, 0] = (200, 100, 40)           # one pixel of the top-left 2x2 block
    out = display_image('rgb8', 4, 4, 12, img.tobytes(), max_width=2, min_width=1)
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[0, 0], (50, 25, 10))
    np.testing.assert_array_equal(out[1, 1], (0, 0, 0))
    big = display_image('rgb8', 1280, 960, 3840, np.zeros((960, 1280, 3), np.uint8).tobytes())
    assert big.shape == (480, 640, 3)
    small = _pattern(64, 64)
    grown = display_image('rgb8', 64, 64, 192, small.tobytes())
    assert grown.shape == (256, 256, 3)
    np.testing.assert_array_equal(grown[::4, ::4], small)


def test_display_image_stretches_depth_and_keeps_holes_black() -> None:
    depth = np.array([[0, 500], [1000, 1500]], dtype=np.uint16)
    out = display_image('16UC1', 2, 2, 4, depth.tobytes(), min_width=1)
    assert out.shape == (2, 2, 3)
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 40 and out[1, 1, 0] == 255
    assert 40 < out[1, 0, 0] < 255


def test_display_image_rejects_malformed_images() -> None:
    with pytest.raises(ImageDecodeError, match='step'):
        display_image('rgb8', 640, 480, 100, bytes(100 * 480))
    with pytest.raises(ImageDecodeError, match='unsupported image encoding'):
        display_image('yuv422', 2, 2, 4, bytes(8))


# ---- planned path ------------------------------------------------------------------------------

def test_polyline_segments_join_consecutive_points() -> None:
    pts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0]], dtype=float)
    seg = polyline_segments(pts)
    assert seg.shape == (2, 2, 3)
    np.testing.assert_array_equal(seg[0], [[0, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(seg[1], [[1, 0, 0], [1, 1, 0]])
    assert polyline_segments(pts[:1]).shape == (0, 2, 3)


def test_transform_points_applies_a_marker_pose() -> None:
    pts = np.array([[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(transform_points(pts, (0, 0, 0), (0, 0, 0, 0)), pts)
    half = np.sqrt(0.5)
    np.testing.assert_allclose(transform_points(pts, (0.1, 0.2, 0.3), (half, 0, 0, half)),
                               [[0.1, 1.2, 0.3]], atol=1e-12)


def _strip(ns: str, points: list[tuple[float, float, float]], frame: str = 'fr3_link0',
           lifetime_s: int = 0, action: int = 0, marker_type: int = 4) -> object:
    from geometry_msgs.msg import Point
    from visualization_msgs.msg import Marker

    marker = Marker(ns=ns, id=0, type=marker_type, action=action)
    marker.header.frame_id = frame
    marker.pose.orientation.w = 1.0
    marker.pose.position.z = 0.1
    marker.color.r, marker.color.g = 1.0, 0.5
    marker.lifetime.sec = lifetime_s
    marker.points = [Point(x=x, y=y, z=z) for x, y, z in points]
    return marker


def test_marker_paths_keep_replace_delete_and_expire_like_rviz() -> None:
    from visualization_msgs.msg import Marker

    plans = MarkerPaths()
    ignored, errors = plans.update([_strip('planned_ee_path', [(0, 0, 0), (1, 0, 0)],
                                           lifetime_s=2)], now=10.0)
    assert (ignored, errors) == (0, [])
    points, colour, expiry = plans.paths['planned_ee_path/0']
    np.testing.assert_allclose(points, [[0, 0, 0.1], [1, 0, 0.1]])   # the marker's pose
    assert colour == (255, 128, 0) and expiry == 12.0
    plans.update([_strip('other', [(0, 0, 0), (0, 1, 0)])], now=11.0)
    assert plans.expire(11.5) == [] and len(plans.paths) == 2
    assert plans.expire(12.5) == ['planned_ee_path/0']      # its 2 s ran out; 'other' has none
    plans.update([_strip('other', [], action=Marker.DELETE)], now=13.0)
    assert plans.paths == {}
    plans.update([_strip('a', [(0, 0, 0), (0, 0, 1)]), _strip('b', [(0, 0, 0), (0, 0, 1)])], 14)
    plans.update([_strip('', [], action=Marker.DELETEALL)], now=15.0)
    assert plans.paths == {}


def test_marker_paths_report_other_frames_and_ignore_other_types() -> None:
    plans = MarkerPaths()
    ignored, errors = plans.update([_strip('p', [(0, 0, 0), (1, 0, 0)], frame='camera_link'),
                                    _strip('s', [(0, 0, 0)], marker_type=2)], now=0.0)
    assert ignored == 1 and plans.paths == {}
    assert errors == ["p/0 is in frame 'camera_link', not fr3_link0"]


# ---- Gaussian map ------------------------------------------------------------------------------

def _mapper_cloud(n: int, seed: int = 0) -> tuple[object, np.ndarray, np.ndarray, np.ndarray,
                                                   np.ndarray]:
    """A cloud packed by the gaussian_mapper node's own function."""
    from std_msgs.msg import Header

    from craik_mapping.gaussian_mapper_node import cloud_message

    rng = np.random.default_rng(seed)
    means = rng.uniform(-1, 1, size=(n, 3)).astype(np.float32)
    colours = rng.integers(0, 256, size=(n, 3)) / 255.0
    scales = rng.uniform(0.001, 0.01, size=n).astype(np.float32)
    opacities = rng.uniform(0, 1, size=n).astype(np.float32)
    return cloud_message(means, colours, scales, opacities, Header()), means, colours, scales, \
        opacities


def _fields(msg: object) -> list[tuple[str, int, int, int]]:
    return [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]  # type: ignore[attr-defined]


def test_unpack_gaussians_reads_the_mappers_cloud() -> None:
    msg, means, colours, scales, opacities = _mapper_cloud(500)
    g = unpack_gaussians(_fields(msg), msg.point_step, msg.width, msg.data)  # type: ignore
    assert len(g) == 500
    np.testing.assert_array_equal(g.means, means)
    np.testing.assert_array_equal(g.colors, np.rint(colours * 255).astype(np.uint8))
    assert g.scales is not None and g.opacities is not None
    np.testing.assert_array_equal(g.scales, scales)
    np.testing.assert_array_equal(g.opacities, opacities)


def test_unpack_gaussians_handles_padding_and_drops_non_finite_means() -> None:
    n = 4
    table = np.zeros((n, 8), dtype=np.float32)        # point_step 32: x y z rgb + 4 pad
    table[:, :3] = np.arange(12, dtype=np.float32).reshape(4, 3)
    table[2, 1] = np.nan
    table[:, 3] = np.array([0x00FF8000] * n, dtype=np.uint32).view(np.float32)
    fields = [('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1), ('rgb', 12, 7, 1)]
    g = unpack_gaussians(fields, 32, n, table.tobytes())
    assert len(g) == 3 and g.scales is None and g.opacities is None
    np.testing.assert_array_equal(g.colors[0], (255, 128, 0))
    np.testing.assert_array_equal(g.means[2], (9, 10, 11))


def test_unpack_gaussians_names_what_is_wrong() -> None:
    fields = [('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1)]
    with pytest.raises(ViewError, match='lacks field.*rgb'):
        unpack_gaussians(fields, 16, 1, bytes(16))
    with pytest.raises(ViewError, match="'rgb' must be one float32"):
        unpack_gaussians([*fields, ('rgb', 12, 6, 1)], 16, 1, bytes(16))
    with pytest.raises(ViewError, match='does not fit'):
        unpack_gaussians([*fields, ('rgb', 14, 7, 1)], 16, 1, bytes(16))
    with pytest.raises(ViewError, match='3 points of 16 bytes need 48'):
        unpack_gaussians([*fields, ('rgb', 12, 7, 1)], 16, 3, bytes(40))


def test_bounded_indices_are_a_stable_uniform_sample() -> None:
    np.testing.assert_array_equal(bounded_indices(5, 10), np.arange(5))
    a = bounded_indices(100_000, 1000)
    assert len(a) == len(np.unique(a)) == 1000 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, bounded_indices(100_000, 1000))
    assert 0.4 < np.mean(a < 50_000) < 0.6
    with pytest.raises(ViewError):
        bounded_indices(10, 0)


def test_point_size_follows_the_gaussians_scale_within_bounds() -> None:
    assert point_size_m(np.full(10, 0.004, np.float32)) == pytest.approx(0.008)
    assert point_size_m(np.full(10, 1.0, np.float32)) == 0.03
    assert point_size_m(None) == 0.006


# ---- the viser server --------------------------------------------------------------------------

@pytest.fixture
def scene() -> Iterator[WebScene]:
    web = WebScene(port=free_port(), max_points=100)
    yield web
    web.close()


def test_web_scene_serves_the_page_and_bounds_what_it_draws(scene: WebScene) -> None:
    with urllib.request.urlopen(f'http://127.0.0.1:{scene.port}/', timeout=10) as reply:
        assert reply.status == 200 and b'<html' in reply.read().lower()
    msg, *_ = _mapper_cloud(1000)
    g = unpack_gaussians(_fields(msg), msg.point_step, msg.width, msg.data)  # type: ignore
    assert scene.set_gaussians(g) == 100
    empty = Gaussians(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), None, None)
    assert scene.set_gaussians(empty) == 0
    scene.set_plan('planned_ee_path/0', np.array([[0.4, 0, 0.3], [0.5, 0, 0.2]]))
    assert scene.plan_keys() == ('planned_ee_path/0',)
    scene.set_plan('planned_ee_path/0', None)
    assert scene.plan_keys() == ()
    scene.set_image('camera', _pattern(48, 64))
    with pytest.raises(ViewError, match='uint8'):
        scene.set_image('camera', np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ViewError, match="no image 'depth'"):
        scene.set_image('depth', _pattern(48, 64))
