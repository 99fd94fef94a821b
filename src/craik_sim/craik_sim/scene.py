"""The simulated lab scene: franky-sim's FR3 + hand, a table, cubes, distractors, lights and the
calibrated third-person camera.

One MJCF builder (`build_scene`) serves both the networked franky-sim server (the `sim` node)
and the fast headless environment, so they share every body, geom, light and camera. Visual
meshes of the FR3 are decimated once (vertex clustering, cached on disk): the shipped meshes have
~240k triangles, which costs ~20 ms per frame on a CPU (Mesa llvmpipe) at any resolution; the
physics uses franky-sim's unchanged collision meshes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import hashlib
import math
import os
from pathlib import Path
import tempfile
import xml.etree.ElementTree as ET

from franky_sim.mujoco_simulator import MujocoSimulator
import mujoco
import numpy as np

from craik_sim.calibration import CalibrationError, CameraCalibration, matrix_to_quat_xyzw

# Robot body/joint names are prefixed by franky-sim (one robot: `robot0_`).
ROBOT_PREFIX = 'robot0_'
ARM_JOINTS = tuple(f'{ROBOT_PREFIX}fr3_joint{i}' for i in range(1, 8))
FINGER_JOINTS = (f'{ROBOT_PREFIX}finger_joint1', f'{ROBOT_PREFIX}finger_joint2')
# The names craik publishes (ARCHITECTURE): fr3_joint1..7, fr3_finger_joint1..2.
PUBLIC_JOINT_NAMES = tuple(f'fr3_joint{i}' for i in range(1, 8)) + (
    'fr3_finger_joint1', 'fr3_finger_joint2')
TCP_SITE = f'{ROBOT_PREFIX}tcp'
CAMERA_NAME = 'd435_color'
# franky-sim's TCP: flange (link8) + 0.1034 m along z, the same frame the libfranka O_T_EE uses.
TCP_OFFSET_M = 0.1034
# Home of every episode: the TCP at (0.45, 0, 0.30), gripper pointing down (IK solution from
# franky-sim's default joints, which put the TCP at (0.554, 0, 0.521)).
HOME_Q = (0.0, -0.2594, 0.0, -2.4315, 0.0, 2.1721, 0.7854)
HOME_TCP = (0.45, 0.0, 0.30)
GRIPPER_MAX_WIDTH_M = 0.08
TABLE_TOP_Z = 0.0
FLOOR_Z = -0.75
# Cubes and distractors are placed in this table region (fr3_link0, metres).
CUBE_REGION = ((0.38, 0.68), (-0.22, 0.22))
DEFAULT_COLOURS = ((0.85, 0.15, 0.12), (0.12, 0.35, 0.85), (0.15, 0.7, 0.2), (0.9, 0.75, 0.1),
                   (0.6, 0.2, 0.75), (0.95, 0.5, 0.1))
# Distractors that are switched off wait below the floor, invisible and without collisions.
PARKING = (-3.0, -3.0)


class SceneError(ValueError):
    """The scene cannot be built as configured (the message names the field)."""


@dataclass(frozen=True)
class SceneConfig:
    """What is on the table and how it is rendered."""

    cube_count: int = 2
    cube_size_m: float = 0.05
    cube_mass_kg: float = 0.1
    cube_friction: float = 0.8
    cube_colours: tuple[tuple[float, float, float], ...] = DEFAULT_COLOURS
    max_distractors: int = 3
    # Vertex-clustering cell for the FR3 visual meshes; 0 renders the full meshes.
    mesh_cell_m: float = 0.004
    # Shadow maps triple the CPU render time (llvmpipe): off by default, on for GPU machines.
    shadows: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.cube_count, bool) or not 0 <= self.cube_count <= 6:
            raise SceneError(f'cube_count must be in 0..6, got {self.cube_count}')
        if not 0.02 <= self.cube_size_m <= 0.08:
            raise SceneError(f'cube_size_m must be in [0.02, 0.08] (graspable), got '
                             f'{self.cube_size_m}')
        if not 0.01 <= self.cube_mass_kg <= 2.0:
            raise SceneError(f'cube_mass_kg must be in [0.01, 2], got {self.cube_mass_kg}')
        if not 0.05 <= self.cube_friction <= 2.0:
            raise SceneError(f'cube_friction must be in [0.05, 2], got {self.cube_friction}')
        if len(self.cube_colours) < max(1, self.cube_count) or any(
                len(c) != 3 or not all(0.0 <= v <= 1.0 for v in c) for c in self.cube_colours):
            raise SceneError('cube_colours needs one RGB triple in [0, 1] per cube')
        if not 0 <= self.max_distractors <= 6:
            raise SceneError(f'max_distractors must be in 0..6, got {self.max_distractors}')
        if not 0.0 <= self.mesh_cell_m <= 0.02:
            raise SceneError(f'mesh_cell_m must be in [0, 0.02], got {self.mesh_cell_m}')


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    """A (lo, hi) variation range inside [low, high]; the error names the field."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise SceneError(f'variation.{name} must be a (low, high) pair, got {value!r}') from None
    if not (math.isfinite(lo) and math.isfinite(hi) and low <= lo <= hi <= high):
        raise SceneError(f'variation.{name} must satisfy {low} <= low <= high <= {high}, got '
                         f'{value!r}')


@dataclass(frozen=True)
class VariationConfig:
    """Domain randomisation, all off by default; every draw comes from the episode seed.

    The switches say what varies; the ranges how much (the one place they are defined: `craik
    collect`, `craik eval`, `craik calibrate` and the `sim` node all sample from here).
    """

    lighting: bool = False
    cube_colours: bool = False
    cube_sizes: bool = False
    camera_jitter: bool = False
    distractors: int = 0
    table_texture: bool = False
    # Camera pose around the calibrated one: translation std per axis (m, clipped at 2 std) and
    # rotation std about a random axis (rad, clipped at 2 std).
    camera_jitter_m: float = 0.02
    camera_jitter_rad: float = 0.02
    cube_size_range_m: tuple[float, float] = (0.04, 0.06)
    # Lights: diffuse scale, direction offset (x, y of the unit direction) and ambient.
    light_scale_range: tuple[float, float] = (0.6, 1.3)
    light_direction_range: tuple[float, float] = (-0.3, 0.3)
    ambient_range: tuple[float, float] = (0.0, 0.15)
    # Table: a colour tint per channel and the texture's repeat count.
    table_tint_range: tuple[float, float] = (0.4, 1.0)
    table_repeat_range: tuple[float, float] = (1.0, 8.0)

    def __post_init__(self) -> None:
        if isinstance(self.distractors, bool) or not isinstance(self.distractors, int) or \
                not 0 <= self.distractors <= 6:
            raise SceneError(f'variation.distractors must be an integer in 0..6, got '
                             f'{self.distractors!r}')
        if not 0.0 <= self.camera_jitter_m <= 0.1:
            raise SceneError(f'variation.camera_jitter_m must be in [0, 0.1], got '
                             f'{self.camera_jitter_m}')
        if not 0.0 <= self.camera_jitter_rad <= 0.1:
            raise SceneError(f'variation.camera_jitter_rad must be in [0, 0.1], got '
                             f'{self.camera_jitter_rad}')
        _check_range('cube_size_range_m', self.cube_size_range_m, 0.02, 0.08)
        _check_range('light_scale_range', self.light_scale_range, 0.1, 3.0)
        _check_range('light_direction_range', self.light_direction_range, -1.0, 1.0)
        _check_range('ambient_range', self.ambient_range, 0.0, 0.5)
        _check_range('table_tint_range', self.table_tint_range, 0.1, 1.0)
        _check_range('table_repeat_range', self.table_repeat_range, 0.5, 20.0)

    @property
    def any(self) -> bool:
        return (self.lighting or self.cube_colours or self.cube_sizes or self.camera_jitter
                or self.table_texture or self.distractors > 0)


# --- visual mesh decimation -------------------------------------------------------------------

def _read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    vertices: list[list[float]] = []
    faces: list[list[int]] = []
    for line in path.read_text().splitlines():
        if line.startswith('v '):
            vertices.append([float(v) for v in line.split()[1:4]])
        elif line.startswith('f '):
            idx = [int(tok.split('/')[0]) for tok in line.split()[1:]]
            idx = [i - 1 if i > 0 else len(vertices) + i for i in idx]
            faces.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))
    return np.asarray(vertices, dtype=float), np.asarray(faces, dtype=np.int64).reshape(-1, 3)


def decimate_mesh(vertices: np.ndarray, faces: np.ndarray,
                  cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering: merge vertices per `cell`-sized voxel, drop collapsed/duplicate faces.

    vertices [V, 3] float, faces [F, 3] int -> (vertices [V', 3], faces [F', 3]).
    """
    keys = np.floor(vertices / cell).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    merged = np.zeros((len(counts), 3))
    np.add.at(merged, inverse, vertices)
    merged /= counts[:, None]
    f = inverse[faces]
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    f = f[keep]
    _, first = np.unique(np.sort(f, axis=1), axis=0, return_index=True)
    f = f[np.sort(first)]
    used, f = np.unique(f, return_inverse=True)
    return merged[used], f.reshape(-1, 3)


def _cache_dir() -> Path:
    root = os.environ.get('CRAIK_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')), 'craik')
    return Path(root)


def decimated_mesh_path(source: Path, cell: float) -> Path:
    """The decimated copy of an OBJ mesh (made on first use, then cached; atomic writes).

    Meshes that would collapse to almost nothing are returned unchanged.
    """
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    out_dir = _cache_dir() / 'sim_meshes_v2' / f'cell{cell * 1000:.1f}mm'
    out = out_dir / f'{source.stem}-{digest}.obj'
    if out.is_file():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    vertices, faces = decimate_mesh(*_read_obj(source), cell)
    if len(faces) < 20:
        # Small parts (buttons, trim) collapse entirely: keep them as they are.
        return source
    lines = [f'v {x:.6f} {y:.6f} {z:.6f}' for x, y, z in vertices]
    lines += [f'f {a + 1} {b + 1} {c + 1}' for a, b, c in faces]
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix='.tmp')
    with os.fdopen(fd, 'w') as handle:
        handle.write('\n'.join(lines) + '\n')
    os.replace(tmp, out)
    return out


# --- scene building ---------------------------------------------------------------------------

def _fmt(values: tuple[float, ...] | list[float] | np.ndarray) -> str:
    return ' '.join(f'{float(v):.6g}' for v in values)


def camera_mujoco_quat(calibration: CameraCalibration) -> np.ndarray:
    """MuJoCo camera orientation (w, x, y, z; camera looks along -z, y up) of a calibration."""
    r_opt = calibration.rotation_matrix
    r_mj = r_opt @ np.diag([1.0, -1.0, -1.0])
    x, y, z, w = matrix_to_quat_xyzw(r_mj)
    return np.array([w, x, y, z])


def validate_camera_in_scene(calibration: CameraCalibration) -> None:
    """Reject camera poses outside the lab or not looking at the workspace."""
    t = np.asarray(calibration.translation)
    if not (-2.0 <= t[0] <= 3.0 and -2.5 <= t[1] <= 2.5 and 0.05 <= t[2] <= 3.0):
        raise CalibrationError(
            f'{calibration.source}: camera position {t.round(3).tolist()} is outside the '
            'simulated lab (x in [-2, 3], y in [-2.5, 2.5], z in [0.05, 3] m above the table)')
    centre = np.array([np.mean(CUBE_REGION[0]), np.mean(CUBE_REGION[1]), 0.0])
    p_cam = calibration.points_to_camera(centre[None])[0]
    if p_cam[2] <= 0.1:
        raise CalibrationError(
            f'{calibration.source}: the workspace centre {centre.tolist()} is behind the camera')
    u, v = calibration.intrinsics.project(p_cam[None])[0]
    k = calibration.intrinsics
    if not (0 <= u < k.width and 0 <= v < k.height):
        raise CalibrationError(
            f'{calibration.source}: the workspace centre projects to pixel ({u:.0f}, {v:.0f}), '
            f'outside the {k.width}x{k.height} image: the camera does not see the workspace')


def build_scene(sim: MujocoSimulator, config: SceneConfig, calibration: CameraCalibration,
                max_render_size: tuple[int, int] = (1280, 960)) -> None:
    """Add the lab (table, cubes, distractor slots, camera, TCP site) to a franky-sim scene.

    Call after `sim.add_robot()` and before the simulator starts.
    """
    validate_camera_in_scene(calibration)
    scene, world = sim.scene, sim.worldbody

    visual = scene.find('visual')
    assert visual is not None
    quality = visual.find('quality')
    if quality is not None:
        # 1024 px shadow maps and 4x MSAA: the shipped 4096/8x costs ~3x more on CPUs.
        quality.set('shadowsize', '1024')
        quality.set('offsamples', '4')
    ET.SubElement(visual, 'global', offwidth=str(max_render_size[0]),
                  offheight=str(max_render_size[1]))
    ET.SubElement(visual, 'map', znear='0.01', zfar='50')

    asset = scene.find('asset')
    assert asset is not None
    if config.mesh_cell_m > 0:
        compiler = scene.find('compiler')
        meshdir = Path(compiler.get('meshdir', '.') if compiler is not None else '.')
        for mesh in asset.findall('mesh'):
            file = mesh.get('file', '')
            if file.endswith('_vis.obj'):
                mesh.set('file', str(decimated_mesh_path(meshdir / file, config.mesh_cell_m)))
    ET.SubElement(asset, 'texture', name='lab_sky', type='skybox', builtin='gradient',
                  rgb1='0.55 0.57 0.6', rgb2='0.3 0.31 0.33', width='64', height='64')
    ET.SubElement(asset, 'texture', name='table_wood', type='2d', builtin='flat',
                  rgb1='0.62 0.5 0.36', rgb2='0.55 0.44 0.3', mark='random', random='0.05',
                  width='256', height='256')
    ET.SubElement(asset, 'material', name='table_top', texture='table_wood', texrepeat='4 4',
                  specular='0.1', shininess='0.2')

    ET.SubElement(asset, 'material', name='lab_floor', rgba='0.42 0.43 0.45 1', specular='0.05')

    # The franky-sim ground plane becomes the lab floor; the robot stands on a table at z = 0.
    for geom in world.findall('geom'):
        if geom.get('name') == 'ground':
            geom.set('pos', f'0 0 {FLOOR_Z}')
            geom.set('material', 'lab_floor')
    table = ET.SubElement(world, 'body', name='table', pos=f'0.35 0 {(TABLE_TOP_Z + FLOOR_Z) / 2}')
    ET.SubElement(table, 'geom', name='table_geom', type='box',
                  size=_fmt((0.65, 0.75, (TABLE_TOP_Z - FLOOR_Z) / 2)), material='table_top',
                  friction='0.8 0.005 0.0001')

    # The TCP (libfranka's EE frame) as a site on the hand: flange + 0.1034 m along z.
    hand = next((b for b in world.iter('body') if b.get('name') == f'{ROBOT_PREFIX}hand'), None)
    if hand is None:
        raise SceneError('franky-sim scene has no robot hand body; call sim.add_robot() first')
    ET.SubElement(hand, 'site', name=TCP_SITE, pos=f'0 0 {TCP_OFFSET_M}', size='0.005',
                  group='4')

    half = config.cube_size_m / 2
    for i in range(config.cube_count):
        x = CUBE_REGION[0][0] + 0.08 * i
        body = ET.SubElement(world, 'body', name=f'cube{i}', pos=_fmt((x, 0.0, half)))
        ET.SubElement(body, 'freejoint', name=f'cube{i}_joint')
        ET.SubElement(body, 'geom', name=f'cube{i}_geom', type='box', size=_fmt((half,) * 3),
                      mass=f'{config.cube_mass_kg}', rgba=_fmt((*config.cube_colours[i], 1.0)),
                      friction=f'{config.cube_friction} 0.005 0.0001')
    shapes = ('sphere', 'cylinder', 'capsule')
    colours = ((0.8, 0.8, 0.75), (0.3, 0.3, 0.3), (0.55, 0.35, 0.2))
    for i in range(config.max_distractors):
        # Parked: below the floor, invisible, without collisions, floating (gravcomp).
        body = ET.SubElement(world, 'body', name=f'distractor{i}', gravcomp='1',
                             pos=_fmt((*PARKING, FLOOR_Z - 1.0 - 0.3 * i)))
        ET.SubElement(body, 'freejoint', name=f'distractor{i}_joint')
        shape = shapes[i % len(shapes)]
        size = {'sphere': (0.025,), 'cylinder': (0.025, 0.03), 'capsule': (0.018, 0.025)}[shape]
        ET.SubElement(body, 'geom', name=f'distractor{i}_geom', type=shape, size=_fmt(size),
                      mass='0.1', rgba=_fmt((*colours[i % len(colours)], 0.0)), contype='0',
                      conaffinity='0')

    k = calibration.intrinsics
    fovy = math.degrees(2 * math.atan(k.height / (2 * k.fy)))
    ET.SubElement(world, 'camera', name=CAMERA_NAME, mode='fixed',
                  pos=_fmt(calibration.translation), quat=_fmt(camera_mujoco_quat(calibration)),
                  fovy=f'{fovy:.4f}')


def make_simulator(config: SceneConfig, calibration: CameraCalibration,
                   initial_hand_width: float = GRIPPER_MAX_WIDTH_M) -> MujocoSimulator:
    """A franky-sim MujocoSimulator with one FR3 at HOME_Q and the lab built (not started)."""
    sim = MujocoSimulator()
    sim.init()
    sim.add_robot(initial_q=HOME_Q, initial_hand_width=initial_hand_width)
    build_scene(sim, config, calibration)
    return sim


def scene_xml(config: SceneConfig, calibration: CameraCalibration) -> str:
    """The MJCF text of the same scene, for the fast environment to compile itself."""
    sim = make_simulator(config, calibration)
    try:
        return ET.tostring(sim.scene, encoding='unicode')
    finally:
        sim.cleanup()


# --- handles and ground truth -----------------------------------------------------------------

@dataclass(frozen=True)
class SceneHandles:
    """Indices into a compiled scene model (MuJoCo ids and qpos/qvel addresses)."""

    arm_qpos: np.ndarray  # [7]
    arm_dof: np.ndarray  # [7]
    finger_qpos: np.ndarray  # [2]
    finger_dof: np.ndarray  # [2]
    tcp_site: int
    camera: int
    cube_bodies: np.ndarray  # [N]
    cube_geoms: np.ndarray  # [N]
    cube_qpos: np.ndarray  # [N] start address of each free joint (7 values)
    cube_dof: np.ndarray  # [N] start address (6 values)
    distractor_geoms: np.ndarray  # [K]
    distractor_qpos: np.ndarray  # [K]
    distractor_dof: np.ndarray  # [K]
    robot_geoms: np.ndarray  # every geom of a robot body (contact detection)
    table_geom: int
    lights: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    geom_kind: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))  # [ngeom]

    @staticmethod
    def from_model(model: mujoco.MjModel) -> SceneHandles:
        def jid(name: str) -> int:
            i = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
            if i < 0:
                raise SceneError(f'joint {name!r} not in the model')
            return int(i)

        def oid(kind: mujoco.mjtObj, name: str) -> int:
            i = mujoco.mj_name2id(model, kind, name)
            if i < 0:
                raise SceneError(f'{kind.name} {name!r} not in the model')
            return int(i)

        def names(prefix: str, kind: mujoco.mjtObj) -> list[int]:
            out: list[int] = []
            while (i := mujoco.mj_name2id(model, kind, f'{prefix}{len(out)}')) >= 0:
                out.append(int(i))
            return out

        cubes = names('cube', mujoco.mjtObj.mjOBJ_BODY)
        distractors = names('distractor', mujoco.mjtObj.mjOBJ_BODY)
        robot_bodies = {i for i in range(model.nbody)
                        if model.body(i).name.startswith(ROBOT_PREFIX)}
        robot_geoms = np.array([g for g in range(model.ngeom)
                                if int(model.geom_bodyid[g]) in robot_bodies], dtype=int)
        cube_geoms = np.array([oid(mujoco.mjtObj.mjOBJ_GEOM, f'cube{i}_geom')
                               for i in range(len(cubes))], dtype=int)
        geom_kind = np.zeros(model.ngeom, dtype=np.int8)
        geom_kind[robot_geoms] = 1
        geom_kind[cube_geoms] = 2
        return SceneHandles(
            arm_qpos=np.array([model.jnt_qposadr[jid(n)] for n in ARM_JOINTS]),
            arm_dof=np.array([model.jnt_dofadr[jid(n)] for n in ARM_JOINTS]),
            finger_qpos=np.array([model.jnt_qposadr[jid(n)] for n in FINGER_JOINTS]),
            finger_dof=np.array([model.jnt_dofadr[jid(n)] for n in FINGER_JOINTS]),
            tcp_site=oid(mujoco.mjtObj.mjOBJ_SITE, TCP_SITE),
            camera=oid(mujoco.mjtObj.mjOBJ_CAMERA, CAMERA_NAME),
            cube_bodies=np.array(cubes, dtype=int),
            cube_geoms=cube_geoms,
            cube_qpos=np.array([model.jnt_qposadr[jid(f'cube{i}_joint')]
                                for i in range(len(cubes))], dtype=int),
            cube_dof=np.array([model.jnt_dofadr[jid(f'cube{i}_joint')]
                               for i in range(len(cubes))], dtype=int),
            distractor_geoms=np.array([oid(mujoco.mjtObj.mjOBJ_GEOM, f'distractor{i}_geom')
                                       for i in range(len(distractors))], dtype=int),
            distractor_qpos=np.array([model.jnt_qposadr[jid(f'distractor{i}_joint')]
                                      for i in range(len(distractors))], dtype=int),
            distractor_dof=np.array([model.jnt_dofadr[jid(f'distractor{i}_joint')]
                                     for i in range(len(distractors))], dtype=int),
            robot_geoms=robot_geoms,
            table_geom=oid(mujoco.mjtObj.mjOBJ_GEOM, 'table_geom'),
            lights=np.arange(model.nlight),
            geom_kind=geom_kind,
        )


@dataclass(frozen=True)
class GroundTruth:
    """Privileged simulator state (evaluation and data collection only)."""

    time_s: float
    q: np.ndarray  # [7] arm joints, rad
    gripper_width_m: float
    ee_pos: np.ndarray  # [3] TCP in fr3_link0, m
    ee_quat_xyzw: np.ndarray  # [4]
    cube_pos: np.ndarray  # [N, 3]
    cube_quat_xyzw: np.ndarray  # [N, 4]


def ground_truth(model: mujoco.MjModel, data: mujoco.MjData, h: SceneHandles) -> GroundTruth:
    """Read the ground truth from data (positions must be current: after mj_step/mj_forward)."""
    ee_rot = data.site_xmat[h.tcp_site].reshape(3, 3)
    cube_pos = np.array([data.qpos[a:a + 3] for a in h.cube_qpos]).reshape(-1, 3)
    cube_quat = np.array([np.roll(data.qpos[a + 3:a + 7], -1) for a in h.cube_qpos]).reshape(-1, 4)
    return GroundTruth(
        time_s=float(data.time),
        q=data.qpos[h.arm_qpos].copy(),
        gripper_width_m=float(np.sum(data.qpos[h.finger_qpos])),
        ee_pos=data.site_xpos[h.tcp_site].copy(),
        ee_quat_xyzw=matrix_to_quat_xyzw(ee_rot),
        cube_pos=cube_pos,
        cube_quat_xyzw=cube_quat,
    )


def robot_cube_contact(model: mujoco.MjModel, data: mujoco.MjData, h: SceneHandles) -> bool:
    """Whether any robot geom touches any cube in the current contact list."""
    if data.ncon == 0 or len(h.cube_geoms) == 0:
        return False
    g1 = data.contact.geom1[:data.ncon]
    g2 = data.contact.geom2[:data.ncon]
    kind = h.geom_kind  # 1 robot, 2 cube
    pair = kind[g1] | kind[g2]
    return bool(np.any(pair == 3))


def set_free_body(data: mujoco.MjData, qpos_addr: int, dof_addr: int, pos: np.ndarray,
                  yaw: float = 0.0) -> None:
    """Teleport a free body to `pos` with a yaw rotation, at rest."""
    data.qpos[qpos_addr:qpos_addr + 3] = pos
    data.qpos[qpos_addr + 3:qpos_addr + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
    data.qvel[dof_addr:dof_addr + 6] = 0.0
