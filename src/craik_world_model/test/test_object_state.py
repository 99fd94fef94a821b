"""Class-agnostic object state: analytic depth scenes (ray-cast here), and the simulated lab."""

from dataclasses import replace
import math

import numpy as np
import pytest

from craik_world_model.object_state import (
    SLOT_FEATURES,
    ArmModel,
    CameraModel,
    Capsule,
    ObjectSet,
    ObjectStateConfig,
    ObjectStateError,
    backproject,
    extract_objects,
    goal_slot_rows,
    match_to_reference,
    points_in_capsules,
    slot_rows,
)

WIDTH, HEIGHT = 320, 240
K = np.array([[307.5, 0.0, 159.75], [0.0, 307.5, 119.75], [0.0, 0.0, 1.0]])
# The calibrated tripod camera of config/calibration/sim_d435.yaml (optical frame in fr3_link0).
CAMERA_T = np.array([1.3, 0.35, 0.62])
CAMERA_Q = np.array([-0.478315, -0.71423, 0.424559, 0.284324])


def quat_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def pose(translation: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = rotation, translation
    return t


def rotation_about(axis: np.ndarray, angle: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


CALIBRATED = pose(CAMERA_T, quat_matrix(CAMERA_Q))


def render(world_from_camera: np.ndarray, boxes: list[tuple[np.ndarray, np.ndarray]],
           spheres: list[tuple[np.ndarray, float]], colours: list[tuple[float, float, float]]
           ) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast a table (z = 0) with axis-aligned boxes (centre, half sizes) and spheres
    (centre, radius): depth [H, W] metres along the optical axis, rgb uint8 [H, W, 3]."""
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH]
    rays_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1],
                         np.ones_like(u, dtype=float)], -1).reshape(-1, 3)
    r, o = world_from_camera[:3, :3], world_from_camera[:3, 3]
    d = rays_cam @ r.T                                    # world directions, z_cam = 1
    best = np.where(d[:, 2] < 0, -o[2] / np.where(d[:, 2] < 0, d[:, 2], -1.0), np.inf)
    colour = np.tile(np.array([0.6, 0.5, 0.35]), (len(d), 1))
    objects = [('box', b) for b in boxes] + [('sphere', s) for s in spheres]
    for i, (kind, shape) in enumerate(objects):
        if kind == 'box':
            centre, half = shape
            with np.errstate(divide='ignore', invalid='ignore'):
                t1 = (centre - half - o) / d
                t2 = (centre + half - o) / d
            near = np.nanmax(np.minimum(t1, t2), axis=1)
            far = np.nanmin(np.maximum(t1, t2), axis=1)
            t = np.where((near <= far) & (near > 0), near, np.inf)
        else:
            centre, radius = shape
            oc = o - centre
            b = d @ oc
            a = np.sum(d * d, axis=1)
            disc = b * b - a * (oc @ oc - radius ** 2)
            t = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / a, np.inf)
        hit = t < best
        best = np.where(hit, t, best)
        colour[hit] = colours[i]
    depth = np.where(np.isfinite(best), best, 0.0).reshape(HEIGHT, WIDTH)  # t along z_cam = 1
    rgb = np.round(colour.reshape(HEIGHT, WIDTH, 3) * 255).astype(np.uint8)
    return depth.astype(np.float32), rgb


SCENE_BOXES = [(np.array([0.45, 0.10, 0.025]), np.array([0.025, 0.025, 0.025])),
               (np.array([0.60, -0.12, 0.02]), np.array([0.02, 0.03, 0.02])),
               (np.array([0.52, 0.25, 0.04]), np.array([0.03, 0.03, 0.04]))]
SCENE_SPHERES = [(np.array([0.40, -0.22, 0.025]), 0.025)]
TRUTH = np.array([[0.45, 0.10], [0.60, -0.12], [0.52, 0.25], [0.40, -0.22]])


def extract(world_from_camera: np.ndarray, colours: list, config: ObjectStateConfig | None = None,
            arm: list[Capsule] | None = None) -> ObjectSet:
    depth, rgb = render(world_from_camera, SCENE_BOXES, SCENE_SPHERES, colours)
    points, point_colours = backproject(depth, K, world_from_camera, rgb)
    return extract_objects(points, point_colours, config or ObjectStateConfig(), arm)


def assert_found(found: ObjectSet, truth: np.ndarray, tolerance_m: float = 0.01) -> None:
    assert len(found) == len(truth), found.positions
    for t in truth:
        assert np.min(np.linalg.norm(found.positions - t, axis=1)) < tolerance_m, \
            (t, found.positions)


@pytest.mark.parametrize('colour_seed', [0, 1, 2])
def test_every_object_is_found_within_a_centimetre_whatever_its_colour(colour_seed):
    rng = np.random.default_rng(colour_seed)
    colours = [tuple(rng.uniform(0, 1, 3)) for _ in range(4)]
    found = extract(CALIBRATED, colours)
    assert_found(found, TRUTH)
    # Extent and height of the first box (5 cm cube) come out of the same points.
    i = int(np.argmin(np.linalg.norm(found.positions - TRUTH[0], axis=1)))
    assert found.extents[i] == pytest.approx([0.05, 0.05], abs=0.011)
    assert found.heights[i] == pytest.approx(0.05, abs=0.006)
    assert found.colours[i] == pytest.approx(np.round(np.array(colours[0]) * 255) / 255,
                                             abs=0.02)


@pytest.mark.parametrize('seed', [3, 4, 5, 6])
def test_a_camera_moved_within_the_variation_range_gives_the_same_positions(seed):
    rng = np.random.default_rng(seed)
    # craik_sim's camera-pose variation: 2 cm per axis and 0.02 rad (clipped at 2 std).
    moved = pose(CAMERA_T + np.clip(rng.normal(size=3), -2, 2) * 0.02,
                 rotation_about(rng.normal(size=3), float(np.clip(rng.normal(), -2, 2)) * 0.02)
                 @ quat_matrix(CAMERA_Q))
    colours = [(0.8, 0.2, 0.1)] * 4
    reference = extract(CALIBRATED, colours)
    found = extract(moved, colours)
    order = match_to_reference(found, goal_slot_rows(reference, 6))
    rows = slot_rows(found, order, 6)
    expected = goal_slot_rows(reference, 6)
    present = expected[:, 2] > 0
    assert np.all(rows[present, 2] == 1)
    assert np.abs(rows[present, :2] - expected[present, :2]).max() < 0.01


def test_the_arm_is_masked_and_what_floats_is_not_an_object():
    colours = [(0.2, 0.7, 0.2)] * 4
    # A "finger" box hanging above the table next to the first cube and a tall "link" box: the
    # capsules cover them, so only the four objects remain.
    boxes = SCENE_BOXES + [(np.array([0.45, 0.045, 0.06]), np.array([0.01, 0.01, 0.03])),
                           (np.array([0.30, 0.0, 0.25]), np.array([0.04, 0.04, 0.15]))]
    depth, rgb = render(CALIBRATED, boxes, SCENE_SPHERES, colours + [(0.9, 0.9, 0.9)] * 2)
    points, point_colours = backproject(depth, K, CALIBRATED, rgb)
    arm = [Capsule(np.array([0.45, 0.045, 0.03]), np.array([0.45, 0.045, 0.09]), 0.012),
           Capsule(np.array([0.30, 0.0, 0.10]), np.array([0.30, 0.0, 0.40]), 0.06)]
    assert_found(extract_objects(points, point_colours, ObjectStateConfig(), arm), TRUTH)
    # Without the mask the finger merges into the cube or stands alone; the tall link does not
    # reach the table within support_height_m, so it is never an object either way.
    unmasked = extract_objects(points, point_colours, ObjectStateConfig(), None)
    assert not np.any(np.linalg.norm(unmasked.positions - [0.30, 0.0], axis=1) < 0.05)


def test_arm_capsules_follow_the_kinematics():
    arm = ArmModel()
    q_home = np.array([0.0, -0.2594, 0.0, -2.4315, 0.0, 2.1721, 0.7854])  # TCP (0.45, 0, 0.30)
    capsules = arm.capsules(q_home, 0.08)
    # The hand above the TCP, both open fingers and the wrist are arm...
    arm_points = np.array([[0.45, 0.0, 0.36], [0.45, 0.046, 0.31], [0.45, -0.046, 0.31],
                           [0.45, 0.0, 0.45]])
    assert points_in_capsules(arm_points, capsules, 0.0).all()
    # ...the space between the open fingers, below them and elsewhere on the table is not.
    free = np.array([[0.45, 0.0, 0.31], [0.45, 0.0, 0.27], [0.6, 0.2, 0.05]])
    assert not points_in_capsules(free, capsules, 0.0).any()
    closed = arm.capsules(q_home, 0.0)
    assert points_in_capsules(np.array([[0.45, 0.0, 0.31]]), closed, 0.0).all()
    with pytest.raises(ObjectStateError, match='joint positions'):
        arm.capsules(np.full(7, np.nan), 0.08)
    with pytest.raises(ObjectStateError, match='gripper width'):
        arm.capsules(q_home, 0.2)


def test_slots_are_matched_by_position_colour_and_extent():
    objects = ObjectSet(np.array([[0.5, 0.1], [0.6, -0.1], [0.4, 0.0]]),
                        np.full((3, 2), 0.05), np.full(3, 0.05),
                        np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], dtype=float))
    reference = np.zeros((4, 2 + SLOT_FEATURES))
    reference[0, :9] = [0.41, 0.01, 1, 0.05, 0.05, 0.05, 0, 1, 0]     # the green one, moved 1 cm
    reference[2, :9] = [0.55, 0.15, 1, 0.05, 0.05, 0.05, 1, 0, 0]     # the red one, pushed
    assert match_to_reference(objects, reference) == [2, None, 0, None]
    rows = slot_rows(objects, [2, None, 0, None], 4)
    assert rows[:, 2].tolist() == [1, 0, 1, 0]
    assert rows[0, :2].tolist() == [0.4, 0.0]


@pytest.mark.parametrize('change, message', [
    ({'voxel_m': 0.0}, 'voxel_m'),
    ({'region_x_m': (0.8, 0.2)}, 'region_x_m'),
    ({'max_objects': 9}, 'max_objects'),
    ({'goal_seed_height_m': 0.5}, 'heights'),
])
def test_bad_configs_are_rejected(change, message):
    with pytest.raises(ObjectStateError, match=message):
        replace(ObjectStateConfig(), **change)


def test_malformed_frames_get_specific_errors():
    depth = np.ones((HEIGHT, WIDTH), np.float32)
    with pytest.raises(ObjectStateError, match='finite'):
        backproject(np.where(depth > 0, np.nan, 0).astype(np.float32), K, CALIBRATED)
    with pytest.raises(ObjectStateError, match='float metres'):
        backproject(depth.astype(np.uint16), K, CALIBRATED)
    with pytest.raises(ObjectStateError, match='does not match'):
        backproject(depth, K, CALIBRATED, np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ObjectStateError, match='rigid'):
        backproject(depth, K, np.eye(4) * 2)
    camera = CameraModel(K, WIDTH, HEIGHT, CALIBRATED)
    assert camera.intrinsics_for(640, 480)[0, 0] == pytest.approx(615.0)
    with pytest.raises(ObjectStateError, match='aspect'):
        camera.intrinsics_for(640, 640)
