"""The ROS-free half of `craik view`: what the browser shows, built from plain arrays.

``craik_bringup.web_view`` subscribes to the graph and hands this module NumPy arrays; this
module turns them into a viser scene (three.js in the browser, served over a websocket):

* the FR3 and its hand: franky-sim's visual meshes (the ones the simulator renders, decimated
  the same way) placed by MuJoCo's forward kinematics at the measured joint positions
  (:class:`RobotModel`; body frames are the URDF's link frames, ``fr3_link0`` is the world);
* the camera image and the planner's imagined goal as images in the side panel
  (:func:`display_image`: any ``sensor_msgs/Image`` encoding to RGB, at most ``max_width``
  pixels wide);
* the planned end-effector path as a line strip (:func:`polyline_segments`);
* the Gaussian map as one point per Gaussian at its mean, in its colour, at most
  ``max_points`` of them (:func:`unpack_gaussians`, :func:`bounded_indices`).

:class:`WebScene` owns the viser server and has one setter per item; the setters may be called
from any thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
import xml.etree.ElementTree as ET

import numpy as np
import numpy.typing as npt

from craik_perception.image_conversion import decode_image

ARM_JOINTS = tuple(f'fr3_joint{i}' for i in range(1, 8))
FINGER_JOINTS = ('fr3_finger_joint1', 'fr3_finger_joint2')
GRIPPER_MAX_WIDTH_M = 0.08
# franky-sim prefixes the bodies and joints of its (one) robot.
_SIM_PREFIX = 'robot0_'
# MuJoCo geom group of franky-sim's visual meshes (class "visual" in its fr3.xml).
_VISUAL_GROUP = 2
# sensor_msgs/PointField datatype of float32.
FLOAT32 = 7

FloatArray = npt.NDArray[np.float64]
Uint8Array = npt.NDArray[np.uint8]


class ViewError(ValueError):
    """A message the view cannot show (the text says which field and why)."""


# ---- robot -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MeshPart:
    """One visual mesh of the robot, fixed in its body's frame."""

    body: str                          # fr3_link0 ... fr3_link7, hand, left_finger, right_finger
    vertices: npt.NDArray[np.float32]  # [V, 3] m, in the mesh frame
    faces: npt.NDArray[np.uint32]      # [F, 3]
    color: tuple[int, int, int]        # 0..255
    position: FloatArray               # [3] mesh frame in the body frame
    wxyz: FloatArray                   # [4]


def joint_positions(names: Sequence[str], positions: Sequence[float]
                    ) -> tuple[FloatArray, float | None]:
    """``q [7]`` (fr3_joint1..7) and the gripper opening (m, the sum of the two finger joints;
    ``None`` when a finger joint is missing) from a ``sensor_msgs/JointState``'s fields."""
    if len(names) != len(positions):
        raise ViewError(f'joint state has {len(names)} names but {len(positions)} positions')
    by_name = dict(zip(names, (float(p) for p in positions), strict=True))
    missing = [n for n in ARM_JOINTS if n not in by_name]
    if missing:
        raise ViewError(f'joint state lacks {", ".join(missing)} (has {", ".join(names)})')
    q = np.array([by_name[n] for n in ARM_JOINTS], dtype=np.float64)
    if not np.all(np.isfinite(q)):
        raise ViewError(f'joint positions are not finite: {q}')
    fingers = [by_name.get(n) for n in FINGER_JOINTS]
    if any(f is None or not np.isfinite(f) for f in fingers):
        return q, None
    return q, float(sum(f for f in fingers if f is not None))


def _mat_to_wxyz(rotation: npt.ArrayLike) -> FloatArray:
    import mujoco

    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.asarray(rotation, dtype=np.float64).reshape(9))
    return quat


class RobotModel:
    """The FR3 + Franka Hand as the simulator models it: visual meshes and forward kinematics.

    The MJCF is franky-sim's (``MujocoSimulator.add_robot``), its visual meshes decimated with
    the simulator's cached vertex clustering (``craik_sim.scene.decimated_mesh_path``, ~43k
    triangles instead of ~240k), so the browser and the simulated camera see the same robot.
    """

    def __init__(self, mesh_cell_m: float = 0.004) -> None:
        from franky_sim.mujoco_simulator import MujocoSimulator
        import mujoco

        from craik_sim.scene import HOME_Q, decimated_mesh_path

        sim = MujocoSimulator()
        sim.init()
        try:
            sim.add_robot(initial_q=HOME_Q, initial_hand_width=GRIPPER_MAX_WIDTH_M)
            scene = sim.scene
            compiler = scene.find('compiler')
            meshdir = Path(compiler.get('meshdir', '.') if compiler is not None else '.')
            asset = scene.find('asset')
            for mesh in [] if asset is None else asset.findall('mesh'):
                file = mesh.get('file', '')
                if mesh_cell_m > 0 and file.endswith('_vis.obj'):
                    mesh.set('file', str(decimated_mesh_path(meshdir / file, mesh_cell_m)))
            xml = ET.tostring(scene, encoding='unicode')
        finally:
            sim.cleanup()
        self._mujoco = mujoco
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        m = self.model

        def joint_qpos(name: str) -> int:
            return int(m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)])

        self._arm_qpos = np.array([joint_qpos(_SIM_PREFIX + n) for n in ARM_JOINTS])
        self._finger_qpos = np.array([joint_qpos(f'{_SIM_PREFIX}finger_joint{i}')
                                      for i in (1, 2)])
        parts: list[MeshPart] = []
        bodies: dict[int, str] = {}
        for g in range(m.ngeom):
            body_id = int(m.geom_bodyid[g])
            body = m.body(body_id).name
            if (int(m.geom_group[g]) != _VISUAL_GROUP
                    or int(m.geom_type[g]) != mujoco.mjtGeom.mjGEOM_MESH
                    or not body.startswith(_SIM_PREFIX)):
                continue
            mesh = int(m.geom_dataid[g])
            v0, nv = int(m.mesh_vertadr[mesh]), int(m.mesh_vertnum[mesh])
            f0, nf = int(m.mesh_faceadr[mesh]), int(m.mesh_facenum[mesh])
            rgba = m.mat_rgba[m.geom_matid[g]] if m.geom_matid[g] >= 0 else m.geom_rgba[g]
            color = tuple(int(round(255 * float(c))) for c in rgba[:3])
            bodies[body_id] = body.removeprefix(_SIM_PREFIX)
            parts.append(MeshPart(
                body=bodies[body_id],
                vertices=np.array(m.mesh_vert[v0:v0 + nv], dtype=np.float32),
                faces=np.array(m.mesh_face[f0:f0 + nf], dtype=np.uint32),
                color=(color[0], color[1], color[2]),
                position=np.array(m.geom_pos[g], dtype=np.float64),
                wxyz=np.array(m.geom_quat[g], dtype=np.float64)))
        self.parts = parts
        self._body_ids = dict(sorted((name, i) for i, name in bodies.items()))
        self.bodies = tuple(self._body_ids)

    def body_poses(self, q: npt.ArrayLike, gripper_width_m: float = GRIPPER_MAX_WIDTH_M
                   ) -> dict[str, tuple[FloatArray, FloatArray]]:
        """Each body's (position [3], wxyz [4]) in fr3_link0 at joint positions ``q [7]`` and
        the gripper opening (m, split evenly between the fingers)."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            raise ViewError(f'joint positions must be 7 finite values, got {q}')
        width = float(np.clip(gripper_width_m, 0.0, GRIPPER_MAX_WIDTH_M))
        self.data.qpos[self._arm_qpos] = q
        self.data.qpos[self._finger_qpos] = width / 2.0
        self._mujoco.mj_kinematics(self.model, self.data)
        return {name: (np.array(self.data.xpos[i]), np.array(self.data.xquat[i]))
                for name, i in self._body_ids.items()}

    def vertices_at(self, q: npt.ArrayLike, gripper_width_m: float = GRIPPER_MAX_WIDTH_M
                    ) -> FloatArray:
        """All mesh vertices ``[V, 3]`` in fr3_link0 at ``q`` (for checks and bounds)."""
        poses = self.body_poses(q, gripper_width_m)
        out = []
        for part in self.parts:
            body_pos, body_wxyz = poses[part.body]
            rot = _wxyz_to_matrix(body_wxyz) @ _wxyz_to_matrix(part.wxyz)
            origin = body_pos + _wxyz_to_matrix(body_wxyz) @ part.position
            out.append(part.vertices.astype(np.float64) @ rot.T + origin)
        return np.concatenate(out)


def _wxyz_to_matrix(wxyz: npt.ArrayLike) -> FloatArray:
    w, x, y, z = np.asarray(wxyz, dtype=np.float64) / np.linalg.norm(wxyz)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


# ---- images ------------------------------------------------------------------------------------

def display_image(encoding: str, width: int, height: int, step: int, data: Any, *,
                  is_bigendian: bool | int = False, max_width: int = 640,
                  min_width: int = 256) -> Uint8Array:
    """An image's pixels as ``[h, w, 3]`` uint8 RGB for the browser, ``min_width`` to
    ``max_width`` wide where an integer factor gets it there.

    Colour encodings are reordered to RGB (alpha dropped); single-channel ones (mono, depth)
    are stretched from their smallest to their largest finite value, zeros (no depth) black.
    Larger images are shrunk by an integer factor (block mean), smaller ones (a 64x64
    imagined goal) enlarged by one (each pixel a block, nothing interpolated). Raises
    ``ImageDecodeError`` (a ``ValueError``) for a malformed image.
    """
    pixels = decode_image(encoding, width, height, step, data, is_bigendian=is_bigendian)
    if pixels.ndim == 3:
        rgb = pixels[..., :3]
        if encoding in ('bgr8', 'bgra8'):
            rgb = rgb[..., ::-1]
        rgb = np.asarray(rgb, dtype=np.uint8)
    else:
        values = pixels.astype(np.float64)
        valid = np.isfinite(values) & (values != 0)
        grey = np.zeros(values.shape, dtype=np.uint8)
        if valid.any():
            lo, hi = float(values[valid].min()), float(values[valid].max())
            scaled = (values[valid] - lo) / (hi - lo) if hi > lo else np.ones(int(valid.sum()))
            grey[valid] = np.rint(40 + 215 * scaled).astype(np.uint8)
        rgb = np.repeat(grey[..., None], 3, axis=2)
    factor = -(-rgb.shape[1] // max(1, max_width))  # ceil
    if factor > 1:
        h, w = (rgb.shape[0] // factor) * factor, (rgb.shape[1] // factor) * factor
        blocks = rgb[:h, :w].reshape(h // factor, factor, w // factor, factor, 3)
        rgb = np.rint(blocks.mean(axis=(1, 3))).astype(np.uint8)
    grow = min(max(1, min_width) // rgb.shape[1], max(1, max_width) // rgb.shape[1])
    if grow > 1:
        rgb = np.repeat(np.repeat(rgb, grow, axis=0), grow, axis=1)
    return np.ascontiguousarray(rgb)


# ---- planned path ------------------------------------------------------------------------------

def transform_points(points: npt.ArrayLike, position: npt.ArrayLike, wxyz: npt.ArrayLike
                     ) -> FloatArray:
    """``points [N, 3]`` given in a pose (a marker's) expressed in its parent frame."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    quat = np.asarray(wxyz, dtype=np.float64)
    if not np.any(quat):
        quat = np.array([1.0, 0.0, 0.0, 0.0])   # an unset orientation means identity (rviz2)
    return pts @ _wxyz_to_matrix(quat).T + np.asarray(position, dtype=np.float64)


def polyline_segments(points: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """The segments ``[N - 1, 2, 3]`` of a line strip through ``points [N, 3]``."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    if len(pts) < 2:
        return np.zeros((0, 2, 3), dtype=np.float32)
    return np.stack([pts[:-1], pts[1:]], axis=1)


# visualization_msgs/Marker constants (type and action).
LINE_STRIP, ADD, DELETE, DELETEALL = 4, 0, 2, 3
FIXED_FRAME = 'fr3_link0'


class MarkerPaths:
    """The line strips of a ``visualization_msgs/MarkerArray`` stream, as rviz2 keeps them:
    by (ns, id), replaced by a newer marker, removed by DELETE / DELETEALL or when their
    lifetime runs out. Markers are read by attribute (a message or anything shaped like one)."""

    def __init__(self) -> None:
        # 'ns/id' -> (points [N, 3] in fr3_link0, colour, expiry on the caller's clock or None)
        self.paths: dict[str, tuple[FloatArray, tuple[int, int, int], float | None]] = {}

    def update(self, markers: Sequence[Any], now: float) -> tuple[int, list[str]]:
        """Apply one array's markers; returns how many were ignored (not line strips) and the
        errors (a marker in a frame other than fr3_link0: the view has no /tf)."""
        ignored, errors = 0, []
        for marker in markers:
            key = f'{marker.ns}/{marker.id}'
            if marker.action == DELETEALL:
                self.paths.clear()
            elif marker.action == DELETE:
                self.paths.pop(key, None)
            elif marker.type != LINE_STRIP:
                ignored += 1
            elif marker.header.frame_id not in ('', FIXED_FRAME):
                errors.append(f'{key} is in frame {marker.header.frame_id!r}, not {FIXED_FRAME}')
            else:
                pose = marker.pose
                points = transform_points(
                    [(p.x, p.y, p.z) for p in marker.points],
                    (pose.position.x, pose.position.y, pose.position.z),
                    (pose.orientation.w, pose.orientation.x, pose.orientation.y,
                     pose.orientation.z))
                rgb = [int(round(255 * float(np.clip(c, 0.0, 1.0))))
                       for c in (marker.color.r, marker.color.g, marker.color.b)]
                life = marker.lifetime.sec + 1e-9 * marker.lifetime.nanosec
                self.paths[key] = (points, (rgb[0], rgb[1], rgb[2]),
                                   now + life if life > 0 else None)
        return ignored, errors

    def expire(self, now: float) -> list[str]:
        """Drop the paths whose lifetime ran out by ``now``; returns their keys."""
        gone = [k for k, (_, _, expiry) in self.paths.items()
                if expiry is not None and expiry < now]
        for key in gone:
            del self.paths[key]
        return gone


# ---- Gaussian map ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Gaussians:
    """The map's Gaussians: means, colours and, when the cloud has them, scales and opacities."""

    means: npt.NDArray[np.float32]               # [N, 3] m
    colors: Uint8Array                           # [N, 3]
    scales: npt.NDArray[np.float32] | None       # [N] m
    opacities: npt.NDArray[np.float32] | None    # [N]

    def __len__(self) -> int:
        return len(self.means)


def unpack_gaussians(fields: Sequence[tuple[str, int, int, int]], point_step: int, count: int,
                     data: Any, is_bigendian: bool | int = False) -> Gaussians:
    """The Gaussians of a ``sensor_msgs/PointCloud2`` with float32 fields x y z, rgb (packed
    0x00RRGGBB in a float, rviz2's convention) and optionally scale and opacity.

    ``fields`` are the PointFields as ``(name, offset, datatype, count)``. Points with a
    non-finite mean are dropped (as rviz2 does).
    """
    by_name = {name: (offset, datatype, n) for name, offset, datatype, n in fields}
    required = ('x', 'y', 'z', 'rgb')
    missing = [n for n in required if n not in by_name]
    if missing:
        raise ViewError(f'point cloud lacks field(s) {", ".join(missing)} (has '
                        f'{", ".join(by_name) or "none"})')
    names = [n for n in (*required, 'scale', 'opacity') if n in by_name]
    for name in names:
        offset, datatype, n = by_name[name]
        if datatype != FLOAT32 or n != 1:
            raise ViewError(f'point cloud field {name!r} must be one float32 (datatype '
                            f'{FLOAT32}), got datatype {datatype} x {n}')
        if offset < 0 or offset + 4 > point_step:
            raise ViewError(f'point cloud field {name!r} at offset {offset} does not fit in '
                            f'point_step {point_step}')
    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else (
        data.reshape(-1).view(np.uint8))
    if count < 0 or buffer.size < count * point_step:
        raise ViewError(f'point cloud data has {buffer.size} bytes; {count} points of '
                        f'{point_step} bytes need {count * point_step}')
    order = '>' if is_bigendian else '<'
    dtype = np.dtype({'names': names, 'formats': [f'{order}f4'] * len(names),
                      'offsets': [by_name[n][0] for n in names], 'itemsize': point_step})
    table = buffer[:count * point_step].view(dtype)
    means = np.stack([table['x'], table['y'], table['z']], axis=1).astype(np.float32)
    packed = np.ascontiguousarray(table['rgb']).astype(np.float32).view(np.uint32)
    colors = np.stack([(packed >> 16) & 0xFF, (packed >> 8) & 0xFF, packed & 0xFF],
                      axis=1).astype(np.uint8)
    keep = np.all(np.isfinite(means), axis=1)

    def optional(name: str) -> npt.NDArray[np.float32] | None:
        return table[name][keep].astype(np.float32) if name in names else None

    return Gaussians(means[keep], colors[keep], optional('scale'), optional('opacity'))


def bounded_indices(count: int, max_count: int, seed: int = 0) -> npt.NDArray[np.int64]:
    """At most ``max_count`` indices out of ``count``: all of them, or a uniform sample without
    replacement, sorted (the same sample for the same ``count`` and ``seed``, so a map that
    does not change does not flicker)."""
    if max_count < 1:
        raise ViewError(f'max_count must be at least 1, got {max_count}')
    if count <= max_count:
        return np.arange(count, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(count, size=max_count, replace=False)).astype(np.int64)


def point_size_m(scales: npt.NDArray[np.float32] | None, default: float = 0.006) -> float:
    """The size to draw every point of the map at: twice the median Gaussian scale (a point
    covers its Gaussian's one-sigma disc), within 2 mm .. 3 cm."""
    if scales is None or len(scales) == 0 or not np.any(np.isfinite(scales)):
        return default
    return min(max(2.0 * float(np.nanmedian(scales)), 0.002), 0.03)


# ---- the browser scene -------------------------------------------------------------------------

@dataclass(frozen=True)
class ViewCamera:
    """Where the browser's camera starts: in front of the robot, above and beside the calibrated
    camera (config/calibration/sim_d435.yaml), so the 3D view and the image look alike."""

    position: tuple[float, float, float] = (1.45, 0.8, 0.85)
    look_at: tuple[float, float, float] = (0.3, 0.0, 0.22)


class WebScene:
    """A viser server showing the robot, the camera image, the imagined goal, the planned path
    and the Gaussian map; every ``set_*`` replaces what was shown and may be called from any
    thread."""

    def __init__(self, host: str = '127.0.0.1', port: int = 8080,
                 robot: RobotModel | None = None, max_points: int = 100_000,
                 camera: ViewCamera | None = None, status: str = '') -> None:
        import viser

        if max_points < 1:
            raise ViewError(f'max_points must be at least 1, got {max_points}')
        self.max_points = max_points
        self.server = viser.ViserServer(host=host, port=port, label='craik view', verbose=False)
        self.server.gui.configure_theme(dark_mode=True, control_width='large',
                                        show_share_button=False, show_logo=False)
        scene = self.server.scene
        scene.set_up_direction('+z')
        scene.add_grid('/table', width=1.6, height=1.6, cell_size=0.1, section_size=0.5,
                       position=(0.4, 0.0, 0.0), cell_color=(90, 90, 96),
                       section_color=(130, 130, 138))
        scene.add_frame('/fr3_link0', axes_length=0.15, axes_radius=0.006)
        camera = camera or ViewCamera()
        self.server.initial_camera.position = camera.position
        self.server.initial_camera.look_at = camera.look_at
        self.server.initial_camera.up = (0.0, 0.0, 1.0)
        gui = self.server.gui
        self._status = gui.add_markdown(status or 'starting', order=2)
        blank = np.full((48, 64, 3), 40, dtype=np.uint8)
        self._images = {
            'camera': gui.add_image(blank, label='camera', format='jpeg', jpeg_quality=90,
                                    order=0),
            'goal': gui.add_image(blank, label='imagined goal', format='jpeg',
                                  jpeg_quality=90, order=1),
        }
        self._robot = robot
        self._robot_frames: dict[str, Any] = {}
        if robot is not None:
            for body in robot.bodies:
                self._robot_frames[body] = scene.add_frame(f'/robot/{body}', show_axes=False,
                                                           visible=False)
            for i, part in enumerate(robot.parts):
                scene.add_mesh_simple(f'/robot/{part.body}/mesh{i}', part.vertices, part.faces,
                                      color=part.color, position=part.position, wxyz=part.wxyz)
        self._plan_handles: dict[str, Any] = {}
        self._plan_shown: dict[str, tuple[npt.NDArray[np.float32], tuple[int, int, int]]] = {}
        self._map: Any = None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self.server.get_port())

    def set_status(self, markdown: str) -> None:
        """The text at the top of the panel (what arrived from which topic)."""
        self._status.content = markdown

    def set_image(self, key: str, rgb: Uint8Array) -> None:
        """Show ``rgb [h, w, 3]`` uint8 as the ``camera`` or the imagined ``goal``."""
        if key not in self._images:
            raise ViewError(f'no image {key!r} (have {", ".join(self._images)})')
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ViewError(f'image must be [h, w, 3] uint8, got {rgb.shape} {rgb.dtype}')
        self._images[key].image = rgb

    def set_image_label(self, key: str, label: str) -> None:
        """The caption above an image (its topic, size, rate)."""
        self._images[key].label = label

    def set_joints(self, q: npt.ArrayLike, gripper_width_m: float | None) -> None:
        """Place the robot at joint positions ``q [7]`` (and the gripper opening, if known)."""
        if self._robot is None:
            return
        width = GRIPPER_MAX_WIDTH_M if gripper_width_m is None else gripper_width_m
        poses = self._robot.body_poses(q, width)
        with self.server.atomic():
            for body, (position, wxyz) in poses.items():
                frame = self._robot_frames[body]
                frame.position = position
                frame.wxyz = wxyz
                frame.visible = True

    def set_plan(self, key: str, points: npt.ArrayLike | None,
                 color: tuple[int, int, int] = (25, 204, 51)) -> None:
        """Show (or, with ``None`` or fewer than two points, remove) the planned path ``key``
        through ``points [N, 3]`` (fr3_link0), its end marked with a sphere. The same path
        again changes nothing; a new one replaces the old in place (no flicker)."""
        segments = None if points is None else polyline_segments(points)
        if segments is None or len(segments) == 0:
            for handle in self._plan_handles.pop(key, ()):
                handle.remove()
            self._plan_shown.pop(key, None)
            return
        shown = self._plan_shown.get(key)
        if shown is not None and shown[1] == color and np.array_equal(shown[0], segments):
            return
        end = segments[-1, 1].astype(np.float64)
        handles = self._plan_handles.get(key)
        if (handles is not None and shown is not None and shown[1] == color
                and shown[0].shape == segments.shape):
            with self.server.atomic():
                handles[0].points = segments
                handles[1].position = end
        else:
            for handle in self._plan_handles.pop(key, ()):
                handle.remove()
            safe = key.replace('/', '_')
            scene = self.server.scene
            self._plan_handles[key] = (
                scene.add_line_segments(f'/plan/{safe}', segments, color, thickness=4.0,
                                        thickness_units='screen'),
                scene.add_icosphere(f'/plan/{safe}_end', radius=0.012, color=color,
                                    position=end),
            )
        self._plan_shown[key] = (segments, color)

    def plan_keys(self) -> tuple[str, ...]:
        """The planned paths shown now."""
        return tuple(self._plan_handles)

    def set_gaussians(self, gaussians: Gaussians) -> int:
        """Show the map (at most ``max_points`` of its Gaussians, replacing the previous map in
        place); returns how many are shown."""
        keep = bounded_indices(len(gaussians), self.max_points)
        if len(keep) == 0:
            if self._map is not None:
                self._map.remove()
                self._map = None
            return 0
        scales = None if gaussians.scales is None else gaussians.scales[keep]
        means, colors = gaussians.means[keep], gaussians.colors[keep]
        if self._map is None:
            self._map = self.server.scene.add_point_cloud(
                '/map/gaussians', means, colors, point_size=point_size_m(scales),
                point_shape='circle', precision='float32')
        else:
            with self.server.atomic():
                self._map.points = means
                self._map.colors = colors
                self._map.point_size = point_size_m(scales)
        return int(len(keep))

    def close(self) -> None:
        """Stop the server (browsers show "disconnected")."""
        self.server.stop()
