"""``craik replay-plan``: re-plan a recorded episode offline and compare with the recording.

    craik replay-plan lab_session [--report replay.json] [--model models/craik_wm_geo]
                      [--params config/mpc_planner.yaml] [--set num_samples=128 ...]

A planner regression check: the planner library (``craik_planner.mpc.MpcEpisode`` over the
world model's rollout energy, exactly as ``mpc_planner`` builds it) runs again on the recorded
observation of every planning step, with the recorded goal, the same configuration and seed,
and its first action and energy are compared with what the planner did on the robot. No ROS,
no robot, no controller: the bag is read with ``bag_files`` and nothing is published.

What a bag holds of an episode (``craik record``'s default topics):

- the goal: the ReachGoal goal is sent to the action's send_goal service, not a topic; it is in
  the bag when the goal's client or the planner enables action introspection (contents) and
  ``.../_action/send_goal/_service_event`` is recorded (``REQUEST_RECEIVED`` preferred, else
  ``REQUEST_SENT``); or on ``/planner/goal_image`` + ``/planner/goal_depth`` (sensor_msgs/Image);
  or from ``--goal FILE.npz`` (``rgb`` [H, W, 3] uint8, optional ``depth_m`` [H, W] float32).
- each step: the action feedback (``.../_action/feedback``: step, best energy, commanded action,
  planning time), the planned end-effector path (``/planner/plan_markers``: its first point is
  the observation's TCP position, the differences are the planned displacements) and the
  streamed target (``/franka/target``).
- the observations: colour + aligned depth, ``/franka/ee_pose``, ``/joint_states`` and the
  camera pose updates (``/calibration/camera_pose``).

Which camera frame a step planned on is not recorded by the planner today. It is reconstructed
from what the node does: the newest colour frame with a matching depth frame at the moment the
TCP pose the plan starts from was the latest pose, before the plan (planning time) and not
older than the previous command. Where that leaves several frames, each is replanned from the
same state and the one that reproduces the recorded plan is kept; the report says how many
candidates each step had. A regression reproduces none of them. Planning without a deadline:
a recorded step whose planner was cut short by its time budget is flagged
(``deadline_suspected``) rather than matched.

Exit status: 0 every step reproduced within the tolerances, 1 a step did not, 2 the bag cannot
be replayed (damaged, no goal, no planning steps).
"""

from __future__ import annotations

import argparse
import bisect
import copy
from dataclasses import dataclass, field
import json
from pathlib import Path
import struct
import sys
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from craik_bringup.bag_files import BagError, BagInfo, iter_decoded, iter_messages, open_bag

COLOR_TOPIC = '/camera/camera/color/image_raw'
DEPTH_TOPIC = '/camera/camera/aligned_depth_to_color/image_raw'
EE_TOPIC = '/franka/ee_pose'
JOINTS_TOPIC = '/joint_states'
TARGET_TOPIC = '/franka/target'
MARKERS_TOPIC = '/planner/plan_markers'
FEEDBACK_TOPIC = '/planner/reach_goal/_action/feedback'
GOAL_EVENT_TOPIC = '/planner/reach_goal/_action/send_goal/_service_event'
GOAL_IMAGE_TOPIC = '/planner/goal_image'
GOAL_DEPTH_TOPIC = '/planner/goal_depth'
CAMERA_POSE_TOPIC = '/calibration/camera_pose'
ARM_JOINTS = tuple(f'fr3_joint{i}' for i in range(1, 8))
GRIPPER_MAX_WIDTH_M = 0.08
# mpc_planner_node: colour and depth pair when their stamps are this close; it keeps the last
# 4 frames of each stream.
PAIR_TOLERANCE_S = 0.5 / 15.0
FRAME_HISTORY = 4
# The recorder's receive times stand in for the planner's: a few ms of slack either way.
SLACK_NS = 3_000_000
# service_msgs/ServiceEventInfo event types.
REQUEST_SENT, REQUEST_RECEIVED = 0, 1
PLANNER_KEYS = ('backend', 'model_dir', 'runtime', 'runtime_threads', 'method', 'num_samples',
                'horizon', 'max_iterations', 'num_elites', 'seed', 'hold_gripper',
                'energy_tolerance', 'max_steps', 'goal_timeout', 'max_observation_age',
                'camera_calibration')


class ReplayError(ValueError):
    """The recording cannot be replanned (no goal, no steps, unusable frames)."""


# ---------------------------------------------------------------------------------------------
# Reading the recording


@dataclass(frozen=True)
class Frame:
    """A camera frame's receive time and header stamp (its pixels are read when needed)."""

    log_ns: int
    stamp_s: float


@dataclass
class RecordedStep:
    """One planning step as the recording shows it."""

    step: int                                   # feedback step number (1, 2, ...)
    feedback_log_ns: int
    best_energy: float
    commanded_action: npt.NDArray[np.float64]   # [4] as executed (after the command limits)
    planning_time_s: float
    observed_ee: npt.NDArray[np.float64] | None = None    # [3] TCP the plan started from
    planned_xyz: npt.NDArray[np.float64] | None = None    # [H, 3] planned displacements
    target_stamp_s: float | None = None         # header stamp of the step's /franka/target
    target_log_ns: int | None = None


@dataclass
class RecordedGoal:
    """One ReachGoal and its steps."""

    goal_id: bytes
    log_ns: int
    goal: Any                                   # has the ReachGoal.Goal fields
    source: str
    steps: list[RecordedStep] = field(default_factory=list)


@dataclass
class Recording:
    """Everything replanning needs, in receive-time order."""

    goals: list[RecordedGoal]
    colors: list[Frame]
    depths: list[Frame]
    ee_log_ns: list[int]
    ee_positions: list[npt.NDArray[np.float64]]          # [3] each
    joints: list[tuple[int, float, dict[str, float]]]    # (log ns, stamp s, name -> position)
    camera_poses: list[tuple[int, float, npt.NDArray[np.float64]]]   # (log, stamp, [4, 4])


def header_stamp_s(data: bytes) -> float:
    """The header stamp of a CDR-serialized message whose first field is std_msgs/Header
    (read from the bytes: the pixels of an image are not decoded)."""
    if len(data) < 12:
        raise BagError(f'a {len(data)}-byte message has no header')
    endian = '<' if data[1] == 1 else '>'
    sec, nanosec = struct.unpack_from(f'{endian}iI', data, 4)
    return sec + nanosec * 1e-9


def _stamp(msg: Any) -> float:
    return float(msg.header.stamp.sec) + float(msg.header.stamp.nanosec) * 1e-9


def _pose_matrix(msg: Any) -> npt.NDArray[np.float64] | None:
    from craik_sim.calibration import quat_xyzw_to_matrix

    if msg.header.frame_id not in ('', 'fr3_link0'):
        return None
    o, p = msg.pose.orientation, msg.pose.position
    quat = np.array([o.x, o.y, o.z, o.w])
    position = np.array([p.x, p.y, p.z])
    if not (np.all(np.isfinite(quat)) and np.all(np.isfinite(position))
            and abs(np.linalg.norm(quat) - 1.0) < 1e-3):
        return None
    pose = np.eye(4)
    pose[:3, :3] = quat_xyzw_to_matrix(quat)
    pose[:3, 3] = position
    return pose


def read_recording(bag: BagInfo, goal_file: str | None = None) -> Recording:
    """Goals, their steps and the observation streams of a bag; raises ReplayError when the
    bag has no goal or no planning step, BagError when it is damaged."""
    missing = [t for t in (COLOR_TOPIC, DEPTH_TOPIC, EE_TOPIC, FEEDBACK_TOPIC)
               if bag.topics.get(t) is None or bag.topics[t].message_count == 0]
    if missing:
        raise ReplayError(f'{bag.path}: no messages on {", ".join(missing)} (record them with '
                          '`craik record`, whose default topics include them)')
    colors = [Frame(m.log_time_ns, header_stamp_s(m.data))
              for m in iter_messages(bag, [COLOR_TOPIC])]
    depths = [Frame(m.log_time_ns, header_stamp_s(m.data))
              for m in iter_messages(bag, [DEPTH_TOPIC])]
    ee_log: list[int] = []
    ee_pos: list[npt.NDArray[np.float64]] = []
    joints: list[tuple[int, float, dict[str, float]]] = []
    poses: list[tuple[int, float, npt.NDArray[np.float64]]] = []
    events: dict[bytes, tuple[int, int, Any]] = {}       # goal id -> (type rank, log, goal)
    goal_images: list[tuple[int, Any]] = []
    goal_depths: list[tuple[int, Any]] = []
    feedback: list[tuple[int, Any]] = []
    markers: list[tuple[int, Any]] = []
    targets: list[tuple[int, Any]] = []
    light = [EE_TOPIC, JOINTS_TOPIC, CAMERA_POSE_TOPIC, GOAL_EVENT_TOPIC, GOAL_IMAGE_TOPIC,
             GOAL_DEPTH_TOPIC, FEEDBACK_TOPIC, MARKERS_TOPIC, TARGET_TOPIC]
    for message, msg in iter_decoded(bag, light):
        t = message.log_time_ns
        if message.topic == EE_TOPIC:
            p = msg.pose.position
            ee_log.append(t)
            ee_pos.append(np.array([p.x, p.y, p.z], dtype=np.float64))
        elif message.topic == JOINTS_TOPIC:
            joints.append((t, _stamp(msg), dict(zip(msg.name, map(float, msg.position),
                                                    strict=False))))
        elif message.topic == CAMERA_POSE_TOPIC:
            pose = _pose_matrix(msg)
            if pose is not None:
                poses.append((t, _stamp(msg), pose))
        elif message.topic == GOAL_EVENT_TOPIC:
            if msg.info.event_type in (REQUEST_SENT, REQUEST_RECEIVED) and msg.request:
                request = msg.request[0]
                gid = bytes(request.goal_id.uuid)
                rank = 0 if msg.info.event_type == REQUEST_RECEIVED else 1
                if gid not in events or rank < events[gid][0]:
                    events[gid] = (rank, t, request.goal)
        elif message.topic == GOAL_IMAGE_TOPIC:
            goal_images.append((t, msg))
        elif message.topic == GOAL_DEPTH_TOPIC:
            goal_depths.append((t, msg))
        elif message.topic == FEEDBACK_TOPIC:
            feedback.append((t, msg))
        elif message.topic == MARKERS_TOPIC:
            markers.append((t, msg))
        elif message.topic == TARGET_TOPIC:
            targets.append((t, msg))
    steps_by_goal: dict[bytes, list[RecordedStep]] = {}
    for t, msg in feedback:
        f = msg.feedback
        steps_by_goal.setdefault(bytes(msg.goal_id.uuid), []).append(RecordedStep(
            int(f.step), t, float(f.best_energy),
            np.array(list(f.commanded_action), dtype=np.float64), float(f.planning_time)))
    goals: list[RecordedGoal] = []
    for gid, steps in steps_by_goal.items():
        if gid in events:
            _, t_goal, goal = events[gid]
            goals.append(RecordedGoal(gid, t_goal, goal, 'action introspection', steps))
        elif goal_file is not None or goal_images:
            first = steps[0].feedback_log_ns
            goal, t_goal, source = _goal_from_topics_or_file(goal_images, goal_depths, first,
                                                             goal_file)
            goals.append(RecordedGoal(gid, t_goal, goal, source, steps))
    if not goals:
        raise ReplayError(
            f'{bag.path}: the recording has {len(feedback)} planning steps but no goal image: '
            "a ReachGoal goal travels on the action's send_goal service, which a bag holds only "
            f'when action introspection is enabled (record {GOAL_EVENT_TOPIC}); or record '
            f'{GOAL_IMAGE_TOPIC} / {GOAL_DEPTH_TOPIC}, or pass --goal FILE.npz')
    goals.sort(key=lambda g: g.log_ns)
    for i, g in enumerate(goals):
        end = goals[i + 1].log_ns if i + 1 < len(goals) else 2**63 - 1
        g.steps.sort(key=lambda s: s.feedback_log_ns)
        mine = [m for t, m in markers if g.log_ns <= t < end]
        previous = g.log_ns
        for k, step in enumerate(g.steps):
            if k < len(mine) and mine[k].markers and len(mine[k].markers[0].points) >= 2:
                pts = np.array([[p.x, p.y, p.z] for p in mine[k].markers[0].points])  # [H+1, 3]
                step.observed_ee = pts[0]
                step.planned_xyz = np.diff(pts, axis=0)
            sent = [(t, m) for t, m in targets if previous < t <= step.feedback_log_ns]
            if sent:
                step.target_log_ns, step.target_stamp_s = sent[-1][0], _stamp(sent[-1][1])
            previous = step.feedback_log_ns
    return Recording(goals, colors, depths, ee_log, ee_pos, joints, sorted(poses,
                     key=lambda p: p[0]))


def _goal_from_topics_or_file(images: list[tuple[int, Any]], depths: list[tuple[int, Any]],
                              first_step_ns: int, goal_file: str | None
                              ) -> tuple[Any, int, str]:
    """A ReachGoal.Goal-like object from --goal or the last goal image before the steps."""
    empty = SimpleNamespace(width=0, height=0, data=b'', encoding='', step=0, is_bigendian=0)
    timeout = SimpleNamespace(sec=0, nanosec=0)
    if goal_file is not None:
        with np.load(goal_file) as data:
            rgb = np.ascontiguousarray(data['rgb'], dtype=np.uint8)      # [H, W, 3]
            depth = (np.ascontiguousarray(data['depth_m'], dtype=np.float32)
                     if 'depth_m' in data else None)                     # [H, W] m
        h, w = rgb.shape[:2]
        image = SimpleNamespace(width=w, height=h, encoding='rgb8', step=3 * w,
                                data=rgb.tobytes(), is_bigendian=0,
                                header=SimpleNamespace(stamp=SimpleNamespace(sec=0, nanosec=0)))
        depth_msg = empty if depth is None else SimpleNamespace(
            width=w, height=h, encoding='32FC1', step=4 * w, data=depth.tobytes(),
            is_bigendian=0)
        return (SimpleNamespace(goal_image=image, goal_depth=depth_msg, energy_tolerance=0.0,
                                max_steps=0, timeout=timeout), first_step_ns, goal_file)
    before = [(t, m) for t, m in images if t <= first_step_ns] or images[:1]
    t, image = before[-1]
    depth_msg = min(depths, key=lambda d: abs(d[0] - t))[1] if depths else empty
    return (SimpleNamespace(goal_image=image, goal_depth=depth_msg, energy_tolerance=0.0,
                            max_steps=0, timeout=timeout), t, GOAL_IMAGE_TOPIC)


# ---------------------------------------------------------------------------------------------
# Which observation a step planned on


@dataclass(frozen=True)
class Candidate:
    """A possible observation of one step: colour and depth frame and the joint state."""

    color: int               # index into Recording.colors
    depth: int               # index into Recording.depths
    at_ns: int               # a receive time at which the node would have taken this pair


def newest_pair(rec: Recording, t_ns: int) -> tuple[int, int] | None:
    """mpc_planner_node's ``_newest_pair`` over the frames received by ``t_ns``: the newest
    colour frame (of the last 4) with a depth frame (of the last 4) within PAIR_TOLERANCE_S."""
    nc = bisect.bisect_right([f.log_ns for f in rec.colors], t_ns)
    nd = bisect.bisect_right([f.log_ns for f in rec.depths], t_ns)
    depths = range(max(0, nd - FRAME_HISTORY), nd)
    for ci in range(nc - 1, max(0, nc - FRAME_HISTORY) - 1, -1):
        t = rec.colors[ci].stamp_s
        best = min(depths, key=lambda j: abs(rec.depths[j].stamp_s - t), default=None)
        if best is not None and abs(rec.depths[best].stamp_s - t) <= PAIR_TOLERANCE_S:
            return ci, best
    return None


def observation_window(rec: Recording, goal: RecordedGoal, k: int) -> list[tuple[int, int]]:
    """Receive-time intervals in which step ``k``'s observation was taken: while the TCP pose
    the plan started from was the latest pose, after the previous step (or the goal), before
    the step's plan."""
    step = goal.steps[k]
    lo = goal.log_ns if k == 0 else goal.steps[k - 1].feedback_log_ns
    hi = step.target_log_ns or step.feedback_log_ns
    hi = hi - int(step.planning_time_s * 1e9) + SLACK_NS
    if step.observed_ee is None:
        return [(lo, hi)]
    i0 = bisect.bisect_left(rec.ee_log_ns, lo - SLACK_NS)
    i1 = bisect.bisect_right(rec.ee_log_ns, step.feedback_log_ns)
    windows = []
    for i in range(max(0, i0 - 1), i1):
        if np.array_equal(rec.ee_positions[i], step.observed_ee):
            start = rec.ee_log_ns[i]
            end = rec.ee_log_ns[i + 1] if i + 1 < len(rec.ee_log_ns) else hi
            a, b = max(start - SLACK_NS, lo), min(end + SLACK_NS, hi)
            if a <= b:
                windows.append((a, b))
    return windows or [(lo, hi)]


def observation_candidates(rec: Recording, goal: RecordedGoal, k: int,
                           max_age_s: float) -> list[Candidate]:
    """The frame pairs step ``k`` may have planned on (newest first); see the module doc."""
    step = goal.steps[k]
    if k == 0:
        not_before = goal.log_ns * 1e-9 - max_age_s
    else:
        prev = goal.steps[k - 1]
        not_before = (prev.target_stamp_s if prev.target_stamp_s is not None
                      else prev.feedback_log_ns * 1e-9) - SLACK_NS * 1e-9
    found: dict[tuple[int, int], int] = {}
    color_log = [f.log_ns for f in rec.colors]
    depth_log = [f.log_ns for f in rec.depths]
    for a, b in observation_window(rec, goal, k):
        probes = {a, b}
        for times in (color_log, depth_log):
            lo, hi = bisect.bisect_left(times, a), bisect.bisect_right(times, b)
            probes.update(times[lo:hi])
        for t in sorted(probes):
            pair = newest_pair(rec, t)
            if pair is not None and rec.colors[pair[0]].stamp_s >= not_before:
                found.setdefault(pair, t)
    if not found:
        raise ReplayError(f'goal at {goal.log_ns * 1e-9:.3f}, step {step.step}: no colour + '
                          'depth pair in the bag fits the step (frames missing from the '
                          'recording?)')
    return [Candidate(c, d, t) for (c, d), t in sorted(found.items(), key=lambda x: -x[0][0])]


# ---------------------------------------------------------------------------------------------
# Planner state snapshots (to try several candidate observations from the same state)


def _copy_state(obj: Any, memo: dict[int, Any]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for key, value in vars(obj).items():
        try:
            state[key] = copy.deepcopy(value, memo)
        except (TypeError, copy.Error):
            state[key] = value    # a model object (kinematics), not per-goal state
    return state


@dataclass
class Snapshot:
    """Backend (object-state estimator) and episode (rng, warm start, goal) state."""

    backend: dict[str, Any]
    objects: dict[str, Any] | None
    episode: dict[str, Any]

    @classmethod
    def take(cls, episode: Any) -> Snapshot:
        """Copy the mutable state of ``episode`` and its backend."""
        backend = episode.backend
        memo: dict[int, Any] = {id(backend.runtime): backend.runtime, id(backend): backend}
        objects = getattr(backend, 'objects', None)
        return cls({k: copy.deepcopy(v, memo) for k, v in vars(backend).items()
                    if k not in ('runtime', 'objects')},
                   _copy_state(objects, memo) if objects is not None else None,
                   {k: copy.deepcopy(v, memo) for k, v in vars(episode).items()
                    if k != 'backend'})

    def restore(self, episode: Any) -> None:
        """Put the copied state back (copied again: a snapshot can be restored many times)."""
        backend = episode.backend
        memo: dict[int, Any] = {id(backend.runtime): backend.runtime, id(backend): backend}
        vars(backend).update({k: copy.deepcopy(v, memo) for k, v in self.backend.items()})
        if self.objects is not None:
            objects = copy.copy(backend.objects)
            vars(objects).update({k: _copy_value(v, memo) for k, v in self.objects.items()})
            backend.objects = objects
        vars(episode).update({k: copy.deepcopy(v, memo) for k, v in self.episode.items()})


def _copy_value(value: Any, memo: dict[int, Any]) -> Any:
    try:
        return copy.deepcopy(value, memo)
    except (TypeError, copy.Error):
        return value


# ---------------------------------------------------------------------------------------------
# Replanning


@dataclass(frozen=True)
class Tolerances:
    """How close a replayed step must come to the recorded one."""

    action_m: float = 1e-4         # first action (and planned path), per axis
    energy_rel: float = 1e-3       # |energy difference| / max(|recorded|, 1e-6)


def planner_parameters(params_file: str | Path | None, overrides: list[str]) -> dict[str, Any]:
    """mpc_planner's parameters: the node's defaults, then the YAML block of ``params_file``
    (``mpc_planner: ros__parameters:``), then ``NAME=VALUE`` overrides (VALUE read as YAML)."""
    from craik_planner.mpc_planner_node import PARAMETERS

    params = {name: spec[0] for name, spec in PARAMETERS.items()}
    if params_file:
        doc = yaml.safe_load(Path(params_file).read_text()) or {}
        block: dict[str, Any] = next((v.get('ros__parameters', {}) for k, v in doc.items()
                                      if k.strip('/').split('/')[-1] == 'mpc_planner'
                                      and isinstance(v, dict)), {})
        params.update(block)
    for item in overrides:
        name, sep, value = item.partition('=')
        if not sep or name not in params:
            raise ValueError(f'--set {item!r}: expected NAME=VALUE with a mpc_planner '
                             f'parameter name ({", ".join(PLANNER_KEYS)})')
        params[name] = yaml.safe_load(value)
    return params


class Replanner:
    """The planner library set up as mpc_planner sets it up, fed from a recording."""

    def __init__(self, bag: BagInfo, rec: Recording, params: dict[str, Any],
                 root: Path) -> None:
        from craik_planner.backends import WorldModelBackend
        from craik_sim.calibration import default_calibration_path, load_calibration
        from craik_world_model.object_state import CameraModel

        if params['backend'] != 'world_model':
            raise ReplayError(f"backend {params['backend']!r}: only the learned world model "
                              'is replanned (the oracle needs the simulator state)')
        self.bag, self.rec, self.params = bag, rec, params
        model_dir = Path(params['model_dir'])
        model_dir = model_dir if model_dir.is_absolute() else root / model_dir
        self.model_dir = model_dir
        self.backend = WorldModelBackend.load(str(model_dir), params['runtime'],
                                              int(params['runtime_threads']))
        calibration = params['camera_calibration'] or str(default_calibration_path())
        self.camera = CameraModel.from_calibration(load_calibration(calibration))
        self.backend.set_camera(self.camera)
        self._pose_applied: float | None = None
        self._pixels: dict[tuple[str, int], npt.NDArray[Any]] = {}

    # -- inputs ------------------------------------------------------------------------------

    def load_frames(self, wanted: set[tuple[str, int]]) -> None:
        """Decode the colour / depth frames ``(topic, log ns)`` that candidates use."""
        from craik_perception.image_conversion import decode_image

        for message, msg in iter_decoded(self.bag, [COLOR_TOPIC, DEPTH_TOPIC]):
            key = (message.topic, message.log_time_ns)
            if key not in wanted:
                continue
            where = f'{message.topic} @ {message.log_time_ns * 1e-9:.3f}'
            try:
                if message.topic == COLOR_TOPIC:
                    rgb = decode_image(msg.encoding, msg.width, msg.height, msg.step, msg.data,
                                       expected_encodings=('rgb8', 'bgr8'), copy=True)
                    if msg.encoding == 'bgr8':
                        rgb = np.ascontiguousarray(rgb[..., ::-1])
                    self._pixels[key] = rgb                                 # [H, W, 3]
                else:
                    raw = decode_image(msg.encoding, msg.width, msg.height, msg.step,
                                       msg.data, expected_encodings=('16UC1',))
                    self._pixels[key] = raw.astype(np.float32) * 1e-3       # [H, W] m
            except ValueError as exc:
                raise ReplayError(f'{where}: {exc}') from exc

    def _camera_pose_at(self, t_ns: int, not_before_stamp: float | None = None) -> None:
        """Apply the camera pose the node had at ``t_ns`` (with ``not_before_stamp``: the
        first pose at least that new, as the node waits for one before encoding a goal)."""
        from dataclasses import replace

        poses = self.rec.camera_poses
        chosen = None
        if not_before_stamp is not None:
            chosen = next((p for p in poses if p[1] >= not_before_stamp - 1e-6), None)
        if chosen is None:
            before = [p for p in poses if p[0] <= t_ns]
            chosen = before[-1] if before else None
        if chosen is None or chosen[1] == self._pose_applied:
            return
        self.camera = replace(self.camera, world_from_camera=chosen[2])
        self.backend.set_camera(self.camera)
        self._pose_applied = chosen[1]

    def _joints_near(self, stamp_s: float, by_ns: int) -> dict[str, float] | None:
        received = [j for j in self.rec.joints if j[0] <= by_ns]
        if not received:
            return None
        return min(received[-256:], key=lambda j: abs(j[1] - stamp_s))[2]

    @staticmethod
    def _gripper(named: dict[str, float] | None) -> float:
        widths = [v for n, v in (named or {}).items() if 'finger' in n]
        if not widths:
            return 0.0
        return float(np.clip(1.0 - sum(widths) / GRIPPER_MAX_WIDTH_M, 0.0, 1.0))

    def observation(self, candidate: Candidate, ee: npt.NDArray[np.float64]) -> Any:
        """The planner's Observation of a candidate (as the node's ``_observation``)."""
        from craik_planner.mpc import Observation

        color, depth = self.rec.colors[candidate.color], self.rec.depths[candidate.depth]
        named = self._joints_near(color.stamp_s, candidate.at_ns)
        q = None
        if named is not None and all(n in named for n in ARM_JOINTS):
            q = np.array([named[n] for n in ARM_JOINTS], dtype=np.float64)          # [7]
        return Observation(rgb=self._pixels[(COLOR_TOPIC, color.log_ns)],
                           depth_m=self._pixels[(DEPTH_TOPIC, depth.log_ns)],
                           ee_position=np.asarray(ee, dtype=np.float64),
                           gripper=self._gripper(named), stamp_s=color.stamp_s,
                           joint_positions=q)

    # -- the episode -------------------------------------------------------------------------

    def start_goal(self, goal: RecordedGoal) -> Any:
        """Encode the goal and create the episode, as the node's ``_run_goal`` does."""
        from craik_planner.goal_validation import GoalDefaults, validate_goal
        from craik_planner.mpc import MpcConfig, MpcEpisode
        from craik_planner.planning import PlannerConfig

        p = self.params
        valid = validate_goal(goal.goal, GoalDefaults(float(p['energy_tolerance']),
                                                      int(p['max_steps']),
                                                      float(p['goal_timeout'])))
        stamp = _stamp(goal.goal.goal_image) if hasattr(goal.goal.goal_image, 'header') else 0
        self._camera_pose_at(goal.log_ns, stamp if stamp > 0 else None)
        pair = newest_pair(self.rec, goal.log_ns)
        gripper = 0.0
        if pair is not None:
            gripper = self._gripper(self._joints_near(self.rec.colors[pair[0]].stamp_s,
                                                      goal.log_ns))
        latent = self.backend.encode_goal(valid.rgb, valid.depth_m, gripper)
        planner = PlannerConfig(method=p['method'], num_samples=int(p['num_samples']),
                                horizon=int(p['horizon']),
                                max_iterations=int(p['max_iterations']),
                                num_elites=int(p['num_elites']))
        self.tolerance = valid.energy_tolerance
        return MpcEpisode(self.backend, latent, MpcConfig(
            planner=planner, energy_tolerance=valid.energy_tolerance,
            max_steps=valid.max_steps, timeout_s=valid.timeout_s, seed=int(p['seed']),
            hold_gripper=bool(p['hold_gripper'])))

    def try_step(self, episode: Any, candidate: Candidate, step: RecordedStep) -> Any:
        """Encode the candidate observation and plan one step (no deadline)."""
        color = self.rec.colors[candidate.color]
        self._camera_pose_at(candidate.at_ns)
        ee = step.observed_ee if step.observed_ee is not None else self._ee_at(candidate.at_ns)
        obs = self.observation(candidate, ee)
        z0 = self.backend.encode_observation(obs)
        outcome = episode.step(z0, deadline=None, energy_tolerance=self.tolerance,
                               gripper=obs.gripper)
        return outcome, color.stamp_s

    def _ee_at(self, t_ns: int) -> npt.NDArray[np.float64]:
        i = bisect.bisect_right(self.rec.ee_log_ns, t_ns) - 1
        return self.rec.ee_positions[max(i, 0)]


def _compare(step: RecordedStep, outcome: Any) -> dict[str, Any]:
    """Recorded vs replayed numbers of one step."""
    recorded_first = (np.array([*step.planned_xyz[0], step.commanded_action[3]])
                      if step.planned_xyz is not None else step.commanded_action.copy())
    out: dict[str, Any] = {'recorded': {'first_action': recorded_first.tolist(),
                                        'energy': step.best_energy,
                                        'commanded_action': step.commanded_action.tolist(),
                                        'planning_time_s': step.planning_time_s,
                                        'from': ('plan_markers' if step.planned_xyz is not None
                                                 else 'feedback commanded_action')}}
    if outcome.reached or outcome.plan is None:
        out.update(replayed={'reached': True, 'energy': outcome.current_energy},
                   action_diff_m=float('inf'), plan_diff_m=float('inf'),
                   energy_diff=float('inf'))
        return out
    plan = outcome.plan
    first = np.asarray(plan.actions[0], dtype=np.float64)
    diff = float(np.max(np.abs(first[:3] - recorded_first[:3])))
    plan_diff = diff
    if step.planned_xyz is not None and step.planned_xyz.shape == plan.actions[:, :3].shape:
        plan_diff = float(np.max(np.abs(plan.actions[:, :3] - step.planned_xyz)))
    out.update(replayed={'first_action': first.tolist(), 'energy': float(plan.energy),
                         'iterations': int(plan.iterations),
                         'energy_history': [float(e) for e in plan.energy_history]},
               action_diff_m=diff, plan_diff_m=plan_diff,
               energy_diff=abs(float(plan.energy) - step.best_energy))
    return out


def _within(entry: dict[str, Any], tol: Tolerances) -> bool:
    energy = abs(entry['recorded']['energy'])
    return bool(entry['action_diff_m'] <= tol.action_m and entry['plan_diff_m'] <= tol.action_m
                and entry['energy_diff'] <= tol.energy_rel * max(energy, 1e-6))


def replay_recording(bag: BagInfo, rec: Recording, params: dict[str, Any], root: Path,
                     tol: Tolerances, log: Any = print) -> dict[str, Any]:
    """Replan every recorded step; the report (see ``craik replay-plan --help``)."""
    start = time.monotonic()
    replanner = Replanner(bag, rec, params, root)
    max_age = float(params['max_observation_age'])
    candidates = {(gi, k): observation_candidates(rec, g, k, max_age)
                  for gi, g in enumerate(rec.goals) for k in range(len(g.steps))}
    wanted = set()
    for cands in candidates.values():
        for c in cands:
            wanted.add((COLOR_TOPIC, rec.colors[c.color].log_ns))
            wanted.add((DEPTH_TOPIC, rec.depths[c.depth].log_ns))
    replanner.load_frames(wanted)
    steps: list[dict[str, Any]] = []
    for gi, goal in enumerate(rec.goals):
        episode = replanner.start_goal(goal)
        for k, step in enumerate(goal.steps):
            snapshot = Snapshot.take(episode)
            tried = []
            for c in candidates[(gi, k)]:
                snapshot.restore(episode)
                outcome, stamp = replanner.try_step(episode, c, step)
                entry = _compare(step, outcome)
                entry['observation_stamp_s'] = stamp
                tried.append((entry['plan_diff_m'], entry['energy_diff'], entry,
                              Snapshot.take(episode)))
                if _within(entry, tol):
                    break
            _, _, entry, after = min(tried, key=lambda x: (x[0], x[1]))
            after.restore(episode)
            entry.update(goal=gi, step=step.step, candidates=len(tried),
                         candidates_total=len(candidates[(gi, k)]), ok=_within(entry, tol))
            history = entry['replayed'].get('energy_history', [])
            entry['deadline_suspected'] = bool(
                not entry['ok'] and any(abs(e - step.best_energy) <= tol.energy_rel *
                                        max(abs(step.best_energy), 1e-6)
                                        for e in history[:-1]))
            steps.append(entry)
            log(_step_line(entry))
    finite = [s for s in steps if np.isfinite(s['action_diff_m'])]
    summary = {
        'bag': str(bag.path), 'model_dir': str(replanner.model_dir),
        'goals': len(rec.goals), 'goal_sources': sorted({g.source for g in rec.goals}),
        'steps': len(steps),
        'max_action_diff_m': max((s['action_diff_m'] for s in steps), default=0.0),
        'max_plan_diff_m': max((s['plan_diff_m'] for s in steps), default=0.0),
        'max_energy_diff': max((s['energy_diff'] for s in steps), default=0.0),
        'median_action_diff_m': float(np.median([s['action_diff_m'] for s in finite]))
        if finite else None,
        'steps_reproduced': sum(s['ok'] for s in steps),
        'tolerance': {'action_m': tol.action_m, 'energy_rel': tol.energy_rel},
        'pass': bool(steps) and all(s['ok'] for s in steps),
        'planner': {k: params[k] for k in PLANNER_KEYS if k in params},
        'elapsed_s': time.monotonic() - start,
    }
    return {'summary': summary, 'steps': steps}


def _step_line(e: dict[str, Any]) -> str:
    rec, rep = e['recorded'], e['replayed']
    first = rep.get('first_action')
    shown = ('reached' if first is None else '[' + ', '.join(f'{v:+.4f}' for v in first[:3])
             + ']')
    return (f"goal {e['goal']} step {e['step']:3d}: recorded ["
            + ', '.join(f'{v:+.4f}' for v in rec['first_action'][:3])
            + f"] E {rec['energy']:.5f} | replayed {shown} E {rep['energy']:.5f} | "
            f"diff {e['action_diff_m']:.2e} m, dE {e['energy_diff']:.2e} "
            f"({e['candidates']}/{e['candidates_total']} frames) "
            f"{'ok' if e['ok'] else 'DIFFERENT'}")


# ---------------------------------------------------------------------------------------------
# `craik replay-plan`


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``craik replay-plan``."""
    parser.add_argument('bag', help='rosbag2 MCAP directory of a recorded planning session')
    parser.add_argument('--report', metavar='JSON', help='write the report here')
    parser.add_argument('--model', metavar='DIR', help="world model (default: the params "
                        "file's model_dir)")
    parser.add_argument('--params', metavar='YAML', default='config/mpc_planner.yaml',
                        help='mpc_planner parameters the session ran with (default '
                        'config/mpc_planner.yaml)')
    parser.add_argument('--set', action='append', default=[], metavar='NAME=VALUE',
                        help='override one planner parameter (repeatable), as the session did')
    parser.add_argument('--calibration', metavar='YAML',
                        help="camera calibration (default: the params file's)")
    parser.add_argument('--goal', metavar='NPZ', help='goal image when the bag has none (rgb '
                        '[H, W, 3] uint8, optional depth_m [H, W] float32)')
    parser.add_argument('--action-tolerance', type=float, default=Tolerances.action_m,
                        metavar='M', help='allowed first-action difference per axis, m')
    parser.add_argument('--energy-tolerance', type=float, default=Tolerances.energy_rel,
                        metavar='REL', help='allowed relative energy difference')


def run(args: argparse.Namespace) -> int:
    """``craik replay-plan``."""
    from craik_bringup.graph import workspace_root

    root = workspace_root()
    try:
        params_file = Path(args.params)
        params_file = params_file if params_file.is_absolute() else root / params_file
        params = planner_parameters(params_file if params_file.exists() else None, args.set)
        if args.model:
            params['model_dir'] = str(Path(args.model).resolve())
        if args.calibration:
            params['camera_calibration'] = str(Path(args.calibration).resolve())
        tol = Tolerances(args.action_tolerance, args.energy_tolerance)
        bag = open_bag(args.bag)
        rec = read_recording(bag, args.goal)
        print(f'craik replay-plan: {bag.path}: {len(rec.goals)} goal(s), '
              f'{sum(len(g.steps) for g in rec.goals)} planning steps; replanning with '
              f"{params['model_dir']}", flush=True)
        report = replay_recording(bag, rec, params, root, tol,
                                  log=lambda s: print(s, flush=True))
    except (BagError, ReplayError, ValueError, OSError) as exc:
        print(f'craik replay-plan: {exc}', file=sys.stderr)
        return 2
    s = report['summary']
    print(f"craik replay-plan: {s['steps_reproduced']}/{s['steps']} steps reproduced; max "
          f"first-action difference {s['max_action_diff_m']:.3g} m, max energy difference "
          f"{s['max_energy_diff']:.3g} -> {'PASS' if s['pass'] else 'FAIL'}", flush=True)
    if args.report:
        Path(args.report).write_text(json.dumps(_finite(report), indent=2))
        print(f'craik replay-plan: report {args.report}', flush=True)
    return 0 if s['pass'] else 1


def _finite(value: Any) -> Any:
    """The report as strict JSON: numpy values as Python ones, inf/NaN (a step the replay
    found already reached) as null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
