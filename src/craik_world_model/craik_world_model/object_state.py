"""Class-agnostic object state from aligned depth: what stands on the table, the arm excluded.

The world model's object slots come from geometry, never from an appearance keyed to particular
objects:

1. **Back-project** the aligned depth with the camera intrinsics and the calibrated extrinsics
   (``T_world_camera``, fr3_link0 <- optical frame) into points in the robot base frame. A moved
   camera with its calibration gives the same points: it is another view of the same state.
2. **Remove the table** (points at most ``table_clearance_m`` above the table plane, and
   everything outside the table region) and **the robot**: for an observation, a kinematic mask
   (capsules around the FR3's links and the Franka Hand at the measured joint positions, from
   the URDF's forward kinematics); for a goal image, whose joint positions are unknown, the
   structure connected to points high above the table is the arm, minus what grows from the
   table top (:func:`split_goal_arm`).
3. **Cluster** the rest: connected components of occupied voxels, each with enough points, is an
   object. Each object's position is the centre of its top-down footprint (occupied cells,
   each counted once, so the faces the camera sees from the side do not pull it), with its
   extent, height and mean colour.

:class:`ObjectSet` holds up to any number of objects; :func:`slot_features` turns one into the
latent's fixed-size slot block (``max_objects`` slots with a presence flag), and
:func:`match_to_reference` orders the objects of an observation like the slots of the goal
(Hungarian assignment on position, colour and extent), so slot k is the same object in both.

Everything here is NumPy / SciPy; metres, fr3_link0, colours in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from craik_world_model.object_templates import (
    ObjectTemplate,
    SceneView,
    TemplateConfig,
    TopDownGrid,
    register,
)

FloatArray = npt.NDArray[np.float64]

# Per-slot features after the two position entries: presence, extent x, extent y, height, r, g, b.
SLOT_FEATURES = 7
GRIPPER_MAX_WIDTH_M = 0.08
# From the fingertips up to the hand's underside.
FINGER_LENGTH_M = 0.046


class ObjectStateError(ValueError):
    """Inputs the extractor cannot use (the message names what is wrong)."""


@dataclass(frozen=True)
class ObjectStateConfig:
    """Where objects can be and how they are separated (metres, fr3_link0)."""

    table_height_m: float = 0.0
    # Points this close to the table plane are table (depth noise and the table's texture).
    table_clearance_m: float = 0.008
    # The table region objects can stand in; points outside are ignored.
    region_x_m: tuple[float, float] = (0.2, 0.85)
    region_y_m: tuple[float, float] = (-0.45, 0.45)
    # Within this radius of the base axis everything is the robot's own base.
    base_radius_m: float = 0.25
    max_height_m: float = 0.4
    voxel_m: float = 0.01          # clustering voxel (26-connected)
    footprint_cell_m: float = 0.005  # top-down cell for the footprint centre and extent
    min_points: int = 25           # fewer points than this is noise, not an object
    # Objects stand on the table: a cluster whose lowest point is higher than this floats, which
    # only the arm does (a part of it the capsules did not cover).
    support_height_m: float = 0.03
    max_objects: int = 6           # slots in the latent
    arm_margin_m: float = 0.015    # clearance added to every arm capsule
    # Goal images: structure reaching above this height is the arm...
    goal_arm_height_m: float = 0.12
    # ...minus what grows from the table top: points below this height start objects...
    goal_seed_height_m: float = 0.013
    # ...grown through voxels of this size (finer than the gap between fingers and an object);
    # a fine component lower than this at its bottom stands on the table (fingertips of a TCP
    # at the push height, 3 cm, are 2.2 cm up).
    goal_support_height_m: float = 0.018
    goal_grow_voxel_m: float = 0.004
    # The lowest visible arm points are the fingertips, this far below the TCP.
    fingertip_below_tcp_m: float = 0.0077
    fingertip_band_m: float = 0.02
    # Frames are subsampled to at most this many pixels (640x480: every 3rd row and column,
    # 15 ms per frame on one core; every 2nd took 37 ms of a 0.2 s planning budget).
    max_points: int = 40_000

    def __post_init__(self) -> None:
        for name in ('table_clearance_m', 'base_radius_m', 'voxel_m', 'footprint_cell_m',
                     'arm_margin_m', 'goal_grow_voxel_m', 'fingertip_band_m'):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 < value <= 1.0):
                raise ObjectStateError(f'{name} must be in (0, 1] m, got {value}')
        for name in ('region_x_m', 'region_y_m'):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ObjectStateError(f'{name} must be (low, high) with low < high, '
                                       f'got {(lo, hi)}')
        if not self.table_clearance_m < self.goal_seed_height_m < self.goal_arm_height_m \
                < self.max_height_m:
            raise ObjectStateError('heights must satisfy table_clearance_m < goal_seed_height_m '
                                   '< goal_arm_height_m < max_height_m')
        if isinstance(self.max_objects, bool) or not 1 <= self.max_objects <= 8:
            raise ObjectStateError(f'max_objects must be in 1..8, got {self.max_objects}')
        if self.min_points < 1 or self.max_points < 1000:
            raise ObjectStateError('min_points must be >= 1 and max_points >= 1000')


@dataclass(frozen=True)
class ObjectSet:
    """Objects on the table: ``M`` of them (any number, possibly zero)."""

    positions: FloatArray  # [M, 2] footprint centres, m
    extents: FloatArray    # [M, 2] footprint size along x and y, m
    heights: FloatArray    # [M] top above the table, m
    colours: FloatArray    # [M, 3] mean colour in [0, 1]
    points: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))  # [M]
    # Each object's own points, top-down (x, y) [n_i, 2]: its footprint for a template.
    members: tuple[FloatArray, ...] = ()

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    @staticmethod
    def empty() -> ObjectSet:
        return ObjectSet(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), np.zeros((0, 3)))


@dataclass(frozen=True)
class GoalScene:
    """What a goal image shows: its objects and where it shows the TCP (None: no arm seen)."""

    objects: ObjectSet
    tcp: FloatArray | None  # [3] m
    # Its table-top points that are not the arm [N, 3] (what the camera sees of the objects).
    object_points: FloatArray = field(default_factory=lambda: np.zeros((0, 3)))


# --- points -----------------------------------------------------------------------------------

def checked_camera(intrinsics: np.ndarray, world_from_camera: np.ndarray
                   ) -> tuple[FloatArray, FloatArray]:
    """``(K [3, 3], T [4, 4])`` as float arrays; ObjectStateError unless K is finite with
    fx, fy > 0 and T a finite rigid transform."""
    k = np.asarray(intrinsics, dtype=float)
    t = np.asarray(world_from_camera, dtype=float)
    if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ObjectStateError(f'intrinsics must be a finite 3x3 K with fx, fy > 0, got {k}')
    if t.shape != (4, 4) or not np.all(np.isfinite(t)) or \
            not np.allclose(t[:3, :3] @ t[:3, :3].T, np.eye(3), atol=1e-4):
        raise ObjectStateError('world_from_camera must be a finite 4x4 rigid transform')
    return k, t


def backproject(depth_m: np.ndarray, intrinsics: np.ndarray, world_from_camera: np.ndarray,
                rgb: np.ndarray | None = None, max_points: int = 80_000
                ) -> tuple[FloatArray, FloatArray]:
    """Aligned depth ``[H, W]`` (m, 0 = no return) -> points ``[N, 3]`` in the world frame and
    their colours ``[N, 3]`` in [0, 1] (grey when ``rgb`` is None).

    ``intrinsics``: 3x3 K of *this* image's resolution; ``world_from_camera``: 4x4 optical frame
    -> world. The frame is subsampled by a whole stride to at most ``max_points`` pixels.
    """
    depth = np.asarray(depth_m)
    if depth.ndim != 2 or depth.shape[0] < 2 or depth.shape[1] < 2:
        raise ObjectStateError(f'depth must be a [H, W] frame, got shape {depth.shape}')
    if depth.dtype.kind != 'f':
        raise ObjectStateError(f'depth must be float metres, got dtype {depth.dtype}')
    if not np.all(np.isfinite(depth)) or float(depth.min()) < 0.0:
        raise ObjectStateError('depth must be finite and >= 0 (0 = no return)')
    k, t = checked_camera(intrinsics, world_from_camera)
    h, w = depth.shape
    if rgb is not None:
        colour = np.asarray(rgb)
        if colour.shape != (h, w, 3):
            raise ObjectStateError(f'rgb {colour.shape} does not match depth {depth.shape} '
                                   "(aligned depth has the colour frame's size)")
    stride = max(1, int(math.ceil(math.sqrt(h * w / max_points))))
    d = depth[::stride, ::stride]
    rows, cols = np.nonzero(d > 0)
    z = d[rows, cols].astype(float)
    u = cols * stride + (stride - 1) / 2.0  # pixel centres of the full frame
    v = rows * stride + (stride - 1) / 2.0
    cam = np.stack([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z], axis=1)
    points = cam @ t[:3, :3].T + t[:3, 3]
    if rgb is None:
        colours = np.full((len(points), 3), 0.5)
    else:
        c = np.asarray(rgb)[::stride, ::stride][np.nonzero(d > 0)]
        colours = c.astype(float) / (255.0 if c.dtype == np.uint8 else 1.0)
    return points, colours


def _on_table_region(points: FloatArray, config: ObjectStateConfig) -> npt.NDArray[np.bool_]:
    """``[N]``: points over the table region, off the robot's base (any height)."""
    c = config
    radius = np.hypot(points[:, 0], points[:, 1])
    return ((points[:, 0] >= c.region_x_m[0]) & (points[:, 0] <= c.region_x_m[1])
            & (points[:, 1] >= c.region_y_m[0]) & (points[:, 1] <= c.region_y_m[1])
            & (radius > c.base_radius_m))


def above_table(points: FloatArray, config: ObjectStateConfig) -> npt.NDArray[np.bool_]:
    """``[N]``: points in the table region, above the table and off the robot's base."""
    c = config
    height = points[:, 2] - c.table_height_m
    return (height > c.table_clearance_m) & (height < c.max_height_m) & \
        _on_table_region(points, c)


def table_surface(points: FloatArray, config: ObjectStateConfig) -> npt.NDArray[np.bool_]:
    """``[N]``: points on the bare table top (in the region, within the table clearance)."""
    c = config
    height = points[:, 2] - c.table_height_m
    return (np.abs(height) <= c.table_clearance_m) & _on_table_region(points, c)


# --- the arm ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Capsule:
    """A segment ``a -> b`` [3] with a radius (m)."""

    a: FloatArray
    b: FloatArray
    radius: float


def points_in_capsules(points: FloatArray, capsules: list[Capsule], margin: float
                       ) -> npt.NDArray[np.bool_]:
    """``[N]``: points within any capsule's radius + ``margin``."""
    inside = np.zeros(len(points), dtype=bool)
    for c in capsules:
        reach = c.radius + margin
        # The exact test only for the points in the capsule's bounding box (a small share of
        # a frame: the robot masks test 30 capsules against every pixel).
        box = np.nonzero(np.all((points >= np.minimum(c.a, c.b) - reach)
                                & (points <= np.maximum(c.a, c.b) + reach), axis=1))[0]
        if box.size == 0:
            continue
        p = points[box]
        ab = c.b - c.a
        denom = float(ab @ ab)
        s = np.clip(((p - c.a) @ ab) / denom, 0.0, 1.0) if denom > 0 else np.zeros(len(p))
        nearest = c.a + s[:, None] * ab
        inside[box] |= np.sum((p - nearest) ** 2, axis=1) <= reach ** 2
    return inside


class ArmModel:
    """Capsules around the FR3 links and the Franka Hand, from the URDF's kinematics.

    Radii cover the links' outer shells (FR3 links are ~0.12 m thick); the hand is one capsule
    across its width and each finger one capsule along its length.
    """

    # (from frame, to frame, radius m) for the links; the chain's offsets come from the URDF.
    LINKS = (('fr3_link0', 'fr3_link1', 0.09), ('fr3_link1', 'fr3_link3', 0.08),
             ('fr3_link3', 'fr3_link4', 0.075), ('fr3_link4', 'fr3_link5', 0.07),
             ('fr3_link5', 'fr3_link7', 0.07), ('fr3_link7', 'fr3_link8', 0.06))
    HAND_HALF_WIDTH_M = 0.085   # hand-frame y (the fingers' opening axis)
    HAND_DEPTH_M = (0.0, 0.066)  # hand-frame z range of the hand body
    HAND_RADIUS_M = 0.04
    FINGER_Z_M = (0.058, 0.112)  # hand-frame z range of a finger
    FINGER_RADIUS_M = 0.013

    def __init__(self) -> None:
        import pinocchio as pin

        from craik_franka.kinematics import Fr3Kinematics

        self._pin = pin
        self.kinematics = Fr3Kinematics()
        model = self.kinematics._model
        self._model = model
        self._data = model.createData()
        self._frames = {name: model.getFrameId(name) for pair in self.LINKS for name in pair[:2]}
        self._frames['fr3_hand'] = model.getFrameId('fr3_hand')

    def capsules(self, q: np.ndarray, gripper_width_m: float) -> list[Capsule]:
        """Capsules ``[a, b, r]`` in fr3_link0 at joint positions ``q [7]``."""
        q = np.asarray(q, dtype=float)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            raise ObjectStateError(f'joint positions must be 7 finite values, got {q}')
        if not (math.isfinite(gripper_width_m) and
                -1e-3 <= gripper_width_m <= GRIPPER_MAX_WIDTH_M + 1e-3):
            raise ObjectStateError(f'gripper width must be in [0, 0.08] m, got {gripper_width_m}')
        self._pin.framesForwardKinematics(self._model, self._data, q)
        pos = {n: np.array(self._data.oMf[i].translation) for n, i in self._frames.items()}
        out = [Capsule(pos[a], pos[b], r) for a, b, r in self.LINKS]
        hand = self._data.oMf[self._frames['fr3_hand']]
        rot, origin = np.array(hand.rotation), np.array(hand.translation)

        def at(x: float, y: float, z: float) -> FloatArray:
            return origin + rot @ np.array([x, y, z])

        zc = float(np.mean(self.HAND_DEPTH_M))
        out.append(Capsule(at(0, -self.HAND_HALF_WIDTH_M, zc), at(0, self.HAND_HALF_WIDTH_M, zc),
                           self.HAND_RADIUS_M))
        half = max(0.0, gripper_width_m) / 2.0 + 0.006
        for side in (-1.0, 1.0):
            out.append(Capsule(at(0, side * half, self.FINGER_Z_M[0]),
                               at(0, side * half, self.FINGER_Z_M[1]), self.FINGER_RADIUS_M))
        return out

    def tcp(self, q: np.ndarray) -> FloatArray:
        """The hand TCP ``[3]`` (m, fr3_link0) at joint positions ``q [7]``."""
        return np.asarray(self.kinematics.fk(np.asarray(q, dtype=float))[0], dtype=float)

    def capsules_at_tcp(self, tcp: np.ndarray, gripper_width_m: float,
                        q_seed: np.ndarray | None = None) -> list[Capsule]:
        """The arm's capsules with the TCP at ``tcp [3]``, gripper down (IK), for goal images."""
        from craik_franka.kinematics import HOME_JOINT_POSITIONS, quaternion_to_matrix

        rotation = quaternion_to_matrix((1.0, 0.0, 0.0, 0.0))
        seed = np.asarray(q_seed if q_seed is not None else HOME_JOINT_POSITIONS, dtype=float)
        result = self.kinematics.ik(np.asarray(tcp, dtype=float), rotation, seed, margin=0.01)
        return self.capsules(result.q, gripper_width_m)


# --- clustering -------------------------------------------------------------------------------

def _components(points: FloatArray, voxel: float) -> tuple[npt.NDArray[np.int64], int]:
    """26-connected components of the voxels ``points [N, 3]`` occupy: labels ``[N]`` (1..n)."""
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64), 0
    idx = np.floor(points / voxel).astype(np.int64)
    idx -= idx.min(axis=0)
    grid = np.zeros(tuple(idx.max(axis=0) + 1), dtype=bool)
    grid[tuple(idx.T)] = True
    labels, count = ndimage.label(grid, structure=np.ones((3, 3, 3), dtype=bool))
    return labels[tuple(idx.T)].astype(np.int64), int(count)


def _describe(points: FloatArray, colours: FloatArray, cell: float, table_height: float
              ) -> tuple[FloatArray, FloatArray, float, FloatArray]:
    """Footprint centre [2], extent [2], height and mean colour [3] of one object's points."""
    cells = np.unique(np.floor(points[:, :2] / cell).astype(np.int64), axis=0)
    centres = (cells + 0.5) * cell
    lo, hi = centres.min(axis=0) - cell / 2, centres.max(axis=0) + cell / 2
    return (centres.mean(axis=0), hi - lo, float(points[:, 2].max() - table_height),
            colours.mean(axis=0))


def cluster_objects(points: FloatArray, colours: FloatArray, config: ObjectStateConfig,
                    voxel: float | None = None) -> ObjectSet:
    """Objects among table-top points ``[N, 3]`` (arm already removed), largest first."""
    c = config
    labels, count = _components(points, voxel or c.voxel_m)
    found: list[tuple[int, FloatArray, FloatArray, float, FloatArray, FloatArray]] = []
    for label in range(1, count + 1):
        sel = labels == label
        n = int(sel.sum())
        if n < c.min_points or \
                float(points[sel, 2].min()) - c.table_height_m > c.support_height_m:
            continue
        found.append((n, *_describe(points[sel], colours[sel], c.footprint_cell_m,
                                    c.table_height_m), points[sel, :2]))
    if not found:
        return ObjectSet.empty()
    found.sort(key=lambda item: -item[0])
    return ObjectSet(np.array([f[1] for f in found]), np.array([f[2] for f in found]),
                     np.array([f[3] for f in found]), np.array([f[4] for f in found]),
                     np.array([f[0] for f in found], dtype=np.int64),
                     tuple(f[5] for f in found))


def object_candidates(points: FloatArray, config: ObjectStateConfig,
                      arm: list[Capsule] | None) -> npt.NDArray[np.bool_]:
    """``[N]``: the points that can belong to objects: above the table, not the robot
    (``arm``: capsules of the robot to mask out)."""
    keep = above_table(points, config)
    if arm:
        keep[keep] = ~points_in_capsules(points[keep], arm, config.arm_margin_m)
    return keep


def extract_objects(points: FloatArray, colours: FloatArray, config: ObjectStateConfig,
                    arm: list[Capsule] | None) -> ObjectSet:
    """Objects in a frame's world points (``arm``: capsules of the robot to mask out)."""
    keep = object_candidates(points, config, arm)
    return cluster_objects(points[keep], colours[keep], config)


def split_goal_arm(points: FloatArray, colours: FloatArray, config: ObjectStateConfig
                   ) -> tuple[npt.NDArray[np.bool_], FloatArray | None]:
    """For a frame without joint positions: which table-top points ``[N]`` are the arm, and
    where its TCP is (None when no arm is in view).

    The arm is every coarse component reaching above ``goal_arm_height_m`` (objects on the
    table are lower), minus what grows from the table top through finer voxels: objects stand
    on the table, the fingers never touch it, and a finger beside an object is separated from
    it by more than the fine voxel. The TCP is above the lowest arm points (the fingertips).
    """
    c = config
    labels, count = _components(points, c.voxel_m)
    if count == 0:
        return np.zeros(len(points), dtype=bool), None
    tops = ndimage.maximum(points[:, 2], labels, index=np.arange(1, count + 1))
    arm_labels = np.flatnonzero(np.asarray(tops) - c.table_height_m > c.goal_arm_height_m) + 1
    arm = np.isin(labels, arm_labels)
    if not arm.any():
        return arm, None
    fine, fine_count = _components(points, c.goal_grow_voxel_m)
    index = np.arange(1, fine_count + 1)
    lows = np.asarray(ndimage.minimum(points[:, 2], fine, index=index)) - c.table_height_m
    highs = np.asarray(ndimage.maximum(points[:, 2], fine, index=index)) - c.table_height_m
    # Fine components standing on the table and lower than the arm are objects...
    standing = index[(lows <= c.goal_support_height_m) & (highs <= c.goal_arm_height_m)]
    arm &= ~np.isin(fine, standing)
    # ...and one that touches the table but reaches the arm's heights is an object the fingers
    # touch: split it.
    for label in index[(lows < c.goal_seed_height_m) & (highs > c.goal_arm_height_m)]:
        sel = np.flatnonzero(fine == label)
        arm[sel[_grown_from_table(points[sel], c)]] = False
    arm_points = points[arm]
    if len(arm_points) == 0:
        return arm, None
    lowest = float(arm_points[:, 2].min())
    tips = arm_points[arm_points[:, 2] < lowest + c.fingertip_band_m]
    tcp = np.array([*tips[:, :2].mean(axis=0), lowest + c.fingertip_below_tcp_m])
    return arm, tcp


def _grown_from_table(points: FloatArray, config: ObjectStateConfig) -> npt.NDArray[np.bool_]:
    """``[N]``: the points of one component (an object with the arm touching it) that belong to
    what stands on the table.

    Slab by slab from the table up, the top-down cells that touch the object's footprint so far
    join it; a blob that does not is the fingers coming down beside it, and from there on only
    the object's footprint below the hand (``FINGER_LENGTH_M`` above the fingertips) is kept.
    """
    c = config
    cell = c.goal_grow_voxel_m
    ij = np.floor(points[:, :2] / cell).astype(np.int64)
    ij -= ij.min(axis=0)
    shape = tuple(ij.max(axis=0) + 3)
    ij += 1
    height = points[:, 2] - c.table_height_m
    footprint = np.zeros(shape, dtype=bool)
    below = height < c.goal_seed_height_m
    footprint[tuple(ij[below].T)] = True
    cap = np.inf
    z = c.goal_seed_height_m
    while z < c.goal_arm_height_m and z < cap:
        slab = (height >= z) & (height < z + cell)
        if slab.any():
            occupied = np.zeros(shape, dtype=bool)
            occupied[tuple(ij[slab].T)] = True
            blobs, count = ndimage.label(occupied, structure=np.ones((3, 3), dtype=bool))
            near = ndimage.binary_dilation(footprint, structure=np.ones((3, 3), dtype=bool))
            for b in range(1, count + 1):
                blob = blobs == b
                if (blob & near).any():
                    footprint |= blob
                elif not np.isfinite(cap):
                    cap = z + FINGER_LENGTH_M
        z += cell
    return footprint[tuple(ij.T)] & (height < min(cap, c.goal_arm_height_m))


def goal_scene(points: FloatArray, colours: FloatArray, config: ObjectStateConfig,
               arm_model: ArmModel | None = None, gripper_width_m: float = 0.0) -> GoalScene:
    """Objects and TCP of a goal frame's world points (no joint positions known)."""
    keep = above_table(points, config)
    p, col = points[keep], colours[keep]
    arm, tcp = split_goal_arm(p, col, config)
    if tcp is not None and arm_model is not None:
        # The arm where the kinematic model puts it for that TCP also covers what the split
        # left (the hand's underside close to an object).
        arm |= points_in_capsules(p, arm_model.capsules_at_tcp(tcp, gripper_width_m),
                                  config.arm_margin_m)
    return GoalScene(cluster_objects(p[~arm], col[~arm], config), tcp, p[~arm])


# --- slots ------------------------------------------------------------------------------------

def match_to_reference(objects: ObjectSet, reference: FloatArray,
                       position_scale_m: float = 0.05, colour_scale: float = 0.5,
                       extent_scale_m: float = 0.1, max_cost: float = 6.0
                       ) -> list[int | None]:
    """Which object fills each reference slot: ``reference [K, 2 + SLOT_FEATURES]`` (the goal's
    slot rows: x, y, presence, extent x, extent y, height, r, g, b) -> K entries, an index into
    ``objects`` or None (no object for that slot).

    Hungarian assignment on a cost that adds position, colour and extent differences (each in
    units of its scale); pairs costlier than ``max_cost`` stay unmatched.
    """
    present = np.flatnonzero(reference[:, 2] > 0.5)
    out: list[int | None] = [None] * len(reference)
    if len(objects) == 0 or len(present) == 0:
        return out
    ref = reference[present]
    cost = (np.linalg.norm(objects.positions[:, None] - ref[None, :, :2], axis=-1)
            / position_scale_m
            + np.abs(objects.colours[:, None] - ref[None, :, 6:9]).sum(-1) / colour_scale
            + np.abs(objects.extents[:, None] - ref[None, :, 3:5]).sum(-1) / extent_scale_m)
    rows, cols = linear_sum_assignment(cost)
    for r, col in zip(rows, cols, strict=True):
        if cost[r, col] <= max_cost:
            out[int(present[col])] = int(r)
    return out


def slot_rows(objects: ObjectSet, order: list[int | None], count: int) -> FloatArray:
    """``[count, 2 + SLOT_FEATURES]`` slot rows in metres: object ``order[k]`` in slot k
    (absent slots are zeros with presence 0)."""
    rows = np.zeros((count, 2 + SLOT_FEATURES))
    for k, i in enumerate(order[:count]):
        if i is None:
            continue
        rows[k, :2] = objects.positions[i]
        rows[k, 2] = 1.0
        rows[k, 3:5] = objects.extents[i]
        rows[k, 5] = objects.heights[i]
        rows[k, 6:9] = objects.colours[i]
    return rows


def goal_slot_rows(objects: ObjectSet, count: int) -> FloatArray:
    """A goal's slot rows: its ``count`` largest objects, ordered by x then y (deterministic)."""
    chosen = list(range(min(count, len(objects))))
    chosen.sort(key=lambda i: (round(float(objects.positions[i, 0]), 3),
                               float(objects.positions[i, 1])))
    return slot_rows(objects, list(chosen), count)


# --- one estimator for a planner --------------------------------------------------------------

@dataclass(frozen=True)
class CameraModel:
    """A calibrated camera: pinhole ``intrinsics`` (3x3, for ``width`` x ``height``) and its pose
    ``world_from_camera`` (4x4, optical frame -> fr3_link0)."""

    intrinsics: FloatArray
    width: int
    height: int
    world_from_camera: FloatArray

    @classmethod
    def from_calibration(cls, calibration: Any) -> CameraModel:
        """The camera of a ``craik_sim.calibration.CameraCalibration`` (the calibration YAML
        format: intrinsics and the optical frame's pose in fr3_link0)."""
        k = calibration.intrinsics
        return cls(k.matrix, k.width, k.height, calibration.parent_from_camera)

    def __post_init__(self) -> None:
        checked_camera(self.intrinsics, self.world_from_camera)
        if self.width < 2 or self.height < 2:
            raise ObjectStateError(f'camera size must be at least 2x2, got '
                                   f'{self.width}x{self.height}')

    def intrinsics_for(self, width: int, height: int) -> FloatArray:
        """K for a frame of ``width`` x ``height`` showing the same field of view."""
        sx, sy = width / self.width, height / self.height
        if abs(sx / sy - 1.0) > 0.02:
            raise ObjectStateError(f'a {width}x{height} frame does not have the calibrated '
                                   f"{self.width}x{self.height} camera's aspect ratio")
        k = np.array(self.intrinsics, dtype=float)
        k[0, 0] *= sx
        k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
        k[1, 1] *= sy
        k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
        return k


class ObjectStateEstimator:
    """Object slots for a planner: the goal's, then each observation's in the goal's order.

    ``goal(rgb, depth)`` returns the goal's slot rows and TCP; ``observation(...)`` the slots of
    a frame with known joint positions, matched to the last goal's slots. Rows are
    ``[K, 2 + SLOT_FEATURES]``; their first three columns (x, y, presence) are what the world
    model's latent holds (``WorldModelRuntime.with_geometry``).

    Across the observations of one goal, each slot's object is tracked
    (:mod:`craik_world_model.object_templates`): a view of it with the arm away is its template;
    with the arm close, the template is registered against what the camera sees (a partly
    hidden object's centre), and an object the camera does not see keeps its last position.
    Once a goal slot's object has a template, the goal's own (partly hidden) object is
    registered too: ``goal_rows`` changes and ``goal_revision`` counts up.
    """

    def __init__(self, camera: CameraModel, config: ObjectStateConfig | None = None,
                 goal_max_points: int = 400_000,
                 templates: TemplateConfig | None = None) -> None:
        self.camera = camera
        self.config = config or ObjectStateConfig()
        self.templates = templates or TemplateConfig()
        self.goal_max_points = goal_max_points
        self.arm = ArmModel()
        c = self.config
        self.grid = TopDownGrid(c.region_x_m, c.region_y_m, c.footprint_cell_m)
        self.goal_rows: FloatArray | None = None
        self.goal_revision = 0
        self._goal_extracted: FloatArray | None = None  # [K, 9] as the goal frame shows them
        self._goal_view: SceneView | None = None
        self._goal_registered: list[bool] = []
        self._slot_templates: list[ObjectTemplate | None] = []
        self._last_seen: FloatArray | None = None  # [K, 9] each slot's last row

    def _points(self, rgb: np.ndarray | None, depth_m: np.ndarray, max_points: int
                ) -> tuple[FloatArray, FloatArray]:
        d = np.asarray(depth_m)
        if d.ndim != 2:
            raise ObjectStateError(f'depth must be a [H, W] frame, got shape {d.shape}')
        k = self.camera.intrinsics_for(d.shape[1], d.shape[0])
        return backproject(d, k, self.camera.world_from_camera, rgb, max_points)

    def goal(self, rgb: np.ndarray | None, depth_m: np.ndarray, gripper_width_m: float = 0.0
             ) -> tuple[FloatArray, FloatArray | None]:
        """Slot rows ``[K, 9]`` and TCP ``[3]`` (None: no arm in view) of a goal frame."""
        points, colours = self._points(rgb, depth_m, self.goal_max_points)
        scene = goal_scene(points, colours, self.config, self.arm, gripper_width_m)
        k = self.config.max_objects
        self.goal_rows = goal_slot_rows(scene.objects, k)
        self._goal_extracted = self.goal_rows.copy()
        self._goal_view = SceneView.from_points(
            self.grid, scene.object_points, points[table_surface(points, self.config)])
        self._goal_registered = [False] * k
        self._slot_templates = [None] * k
        self._last_seen = np.zeros_like(self.goal_rows)
        self.goal_revision += 1
        return self.goal_rows, scene.tcp

    def observation(self, rgb: np.ndarray | None, depth_m: np.ndarray, q: np.ndarray,
                    gripper_width_m: float) -> FloatArray:
        """Slot rows ``[K, 9]`` of a frame at joint positions ``q [7]``, in the goal's order
        (without a goal: its largest objects by position)."""
        c = self.config
        points, colours = self._points(rgb, depth_m, c.max_points)
        keep = object_candidates(points, c, self.arm.capsules(q, gripper_width_m))
        objects = cluster_objects(points[keep], colours[keep], c)
        if self.goal_rows is None or self._last_seen is None:
            return goal_slot_rows(objects, c.max_objects)
        order = match_to_reference(objects, self.goal_rows)
        rows = slot_rows(objects, order, c.max_objects)
        tcp = self.arm.tcp(q)
        view: SceneView | None = None
        for k in np.flatnonzero(self.goal_rows[:, 2] > 0.5):
            seen, last = rows[k, 2] > 0.5, self._last_seen[k, 2] > 0.5
            if not (seen or last):
                continue
            where = rows[k, :2] if seen else self._last_seen[k, :2]
            height = rows[k, 5] if seen else self._last_seen[k, 5]
            top = np.array([*where, c.table_height_m + height])
            near = float(np.linalg.norm(top - tcp)) < self.templates.unoccluded_tcp_distance_m
            template = self._slot_templates[k]
            if seen and not near:
                i = order[k]
                assert i is not None
                self._slot_templates[k] = ObjectTemplate.from_points(
                    objects.members[i], rows[k, :2], c.footprint_cell_m)
            elif template is not None:
                if view is None:
                    view = SceneView.from_points(self.grid, points[keep],
                                                 points[table_surface(points, c)])
                placement = register(template, view, self.grid, where, self.templates)
                if placement is not None:
                    if not seen:
                        rows[k] = self._last_seen[k]
                    rows[k, :2] = placement.centre
                elif last:
                    rows[k] = self._last_seen[k]
            elif not seen:
                rows[k] = self._last_seen[k]
            if rows[k, 2] > 0.5:
                self._last_seen[k] = rows[k]
        self._register_goal()
        return rows

    def _register_goal(self) -> None:
        """Register the goal's objects whose slots got a template since the last call."""
        assert self.goal_rows is not None and self._goal_extracted is not None
        changed = False
        for k, template in enumerate(self._slot_templates):
            if template is None or self._goal_registered[k] or self._goal_view is None:
                continue
            self._goal_registered[k] = True
            placement = register(template, self._goal_view, self.grid,
                                 self._goal_extracted[k, :2], self.templates)
            if placement is not None:
                self.goal_rows[k, :2] = placement.centre
                changed = True
                # The fingers can cut a goal object's visible part in two; a piece inside the
                # registered footprint is that object, not another one.
                half = float(np.max(template.extent)) / 2.0
                for j in range(len(self.goal_rows)):
                    if j != k and self._slot_templates[j] is None and \
                            self.goal_rows[j, 2] > 0.5 and \
                            np.linalg.norm(self.goal_rows[j, :2] - placement.centre) < half:
                        self.goal_rows[j] = 0.0
                        self._goal_registered[j] = True
        if changed:
            self.goal_revision += 1
