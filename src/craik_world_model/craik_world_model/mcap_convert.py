"""Robot recordings (rosbag2 MCAP) to world-model episodes: ``craik wm-convert``.

Reads, without ROS (``mcap`` + ``mcap-ros2-support``; message definitions come from the file's
own schemas), the topics of ARCHITECTURE.md:

- ``/camera/camera/color/image_raw`` (sensor_msgs/Image, rgb8; bgr8 is converted explicitly,
  any other encoding is rejected),
- ``/camera/camera/aligned_depth_to_color/image_raw`` (16UC1 / mono16 millimetres, or 32FC1
  metres),
- ``/franka/ee_pose`` (geometry_msgs/PoseStamped) for the end-effector position,
- ``/joint_states`` (fr3_finger_joint1/2: finger width -> gripper 0 open ... 1 closed),
- ``/franka/target`` (craik_interfaces/CartesianTarget), the planner's streamed commands.

Steps are cut in one of two ways:

- ``commanded`` (default when the bag has commands): every command is a step. Observation t is
  the last colour frame at or before command t; the action is the commanded displacement (target
  minus the measured end-effector position at that frame) and the commanded gripper. The
  observation after the last command is taken one median command period later.
- ``achieved`` (``--step-period``, for teleoperation or recordings without commands): steps
  every ``step_period`` seconds; the action is the displacement the end effector actually made
  and the gripper state it reached.

A step whose displacement leaves the action bounds (|d| <= 0.05 m), a pause longer than
``max_gap_s``, or a missing/unsynchronised frame ends the episode there (the rest starts a new
one); nothing is clipped, and the report counts every such cut. Frames are stored resized to
``width x height`` (same aspect as the camera) in the simulation's episode format.

A file that is not MCAP, is truncated (no closing MCAP magic) or whose records or message
definitions do not parse raises :class:`ConversionError` naming it; no episode of it is written.
"""

from __future__ import annotations

import argparse
import bisect
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
import json
from pathlib import Path
import sys
from typing import Any

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from craik_world_model.config import MAX_DISPLACEMENT_M
from craik_world_model.episode_io import RecordedEpisode, write_episodes
from craik_world_model.mcap_framing import mcap_framing_problem
from craik_world_model.observation import (
    GRIPPER_MAX_WIDTH_M,
    MIN_VALID_FRACTION,
    gripper_from_width,
)

COLOR_TOPIC = '/camera/camera/color/image_raw'
DEPTH_TOPIC = '/camera/camera/aligned_depth_to_color/image_raw'
JOINT_STATES_TOPIC = '/joint_states'
EE_POSE_TOPIC = '/franka/ee_pose'
TARGET_TOPIC = '/franka/target'
COLOR_INFO_TOPIC = '/camera/camera/color/camera_info'
FINGER_JOINTS = ('fr3_finger_joint1', 'fr3_finger_joint2')
ARM_JOINTS = tuple(f'fr3_joint{i}' for i in range(1, 8))
# Layout of the per-step state vector: position, finger width, orientation (x y z w), arm joints.
S_POS, S_WIDTH, S_QUAT, S_Q = slice(0, 3), 3, slice(4, 8), slice(8, 15)
ACTION_TOLERANCE_M = 1e-6


class ConversionError(ValueError):
    """A recording cannot be converted; the message names the file and the problem."""


@dataclass(frozen=True)
class ConvertConfig:
    """How a recording is cut into steps and stored."""

    width: int = 160
    height: int = 120
    # 0: one step per /franka/target command; > 0: a step every step_period_s (achieved motion).
    step_period_s: float = 0.0
    # Colour, depth and proprioception must lie at most this far apart in time (seconds).
    max_sync_s: float = 0.05
    # A longer pause between steps ends an episode.
    max_gap_s: float = 2.0
    # Shorter pieces are dropped (and counted).
    min_steps: int = 4

    def __post_init__(self) -> None:
        if not (8 <= self.width <= 1280 and 8 <= self.height <= 960):
            raise ValueError(f'width/height must be in 8..1280 x 8..960, got '
                             f'{self.width}x{self.height}')
        if self.step_period_s < 0:
            raise ValueError(f'step_period_s must be >= 0, got {self.step_period_s}')
        if self.max_sync_s <= 0 or self.max_gap_s <= 0:
            raise ValueError('max_sync_s and max_gap_s must be > 0')
        if self.min_steps < 1:
            raise ValueError(f'min_steps must be >= 1, got {self.min_steps}')


@dataclass
class ConversionReport:
    """What a conversion did, for the user (every cut and drop is counted)."""

    source: str
    mode: str = ''
    episodes: int = 0
    steps: int = 0
    cuts: dict[str, int] = field(default_factory=dict)
    dropped_short: int = 0
    messages: dict[str, int] = field(default_factory=dict)

    def cut(self, reason: str) -> None:
        """Count one episode cut for ``reason``."""
        self.cuts[reason] = self.cuts.get(reason, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {'source': self.source, 'mode': self.mode, 'episodes': self.episodes,
                'steps': self.steps, 'cuts': dict(self.cuts),
                'dropped_short_pieces': self.dropped_short, 'messages': dict(self.messages)}


def _stamp(msg: Any, log_time_ns: int) -> float:
    """Header stamp in seconds; the log time when the header is unset."""
    header = getattr(msg, 'header', None)
    if header is not None:
        t = header.stamp.sec + header.stamp.nanosec * 1e-9
        if t > 0:
            return float(t)
    return log_time_ns * 1e-9


def mcap_files(path: str | Path) -> list[Path]:
    """The .mcap files of a rosbag2 directory (sorted), or the file itself."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob('*.mcap'))
        if not files:
            raise ConversionError(f'{p}: no .mcap files in this directory')
        return files
    if not p.is_file():
        raise ConversionError(f'{p}: no such file or directory')
    if p.suffix != '.mcap':
        raise ConversionError(f'{p}: not an .mcap file')
    return [p]


def check_mcap_framing(path: Path) -> None:
    """Refuse a file that does not start and end with the MCAP magic: not an MCAP file, or a
    truncated one (recorder killed, copy cut short), before any record is parsed."""
    problem = mcap_framing_problem(path)
    if problem is not None:
        raise ConversionError(problem)


def _iter_messages(files: Sequence[Path], topics: Sequence[str]
                   ) -> Iterator[tuple[str, float, Any]]:
    """(topic, stamp seconds, decoded message) for ``topics`` in all files."""
    factory = DecoderFactory()
    decoders: dict[int, Any] = {}
    for path in files:
        check_mcap_framing(path)
        try:
            with open(path, 'rb') as f:
                reader = make_reader(f)
                for schema, channel, message in reader.iter_messages(topics=list(topics)):
                    decoder = decoders.get(channel.id)
                    if decoder is None:
                        decoder = factory.decoder_for(channel.message_encoding, schema)
                        if decoder is None:
                            raise ConversionError(f'{path}: cannot decode {channel.topic} '
                                                  f'(encoding {channel.message_encoding})')
                        decoders[channel.id] = decoder
                    msg = decoder(message.data)
                    yield channel.topic, _stamp(msg, message.log_time), msg
        except ConversionError:
            raise
        except Exception as exc:  # the mcap library raises many types for a damaged file
            raise ConversionError(f'{path}: cannot read MCAP file (damaged or crafted): '
                                  f'{type(exc).__name__}: {exc}') from exc
        decoders.clear()


def decode_color(msg: Any, where: str) -> np.ndarray:
    """sensor_msgs/Image -> uint8 [H, W, 3] RGB; rgb8 or bgr8, anything else is rejected."""
    h, w, enc = int(msg.height), int(msg.width), str(msg.encoding).lower()
    if enc not in ('rgb8', 'bgr8'):
        raise ConversionError(f'{where}: colour encoding {msg.encoding!r} is not supported '
                              '(expected rgb8 or bgr8)')
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    step = int(msg.step)
    if step < w * 3 or data.size < step * h:
        raise ConversionError(f'{where}: {enc} image {w}x{h} with step {step} has '
                              f'{data.size} bytes')
    img = data[:step * h].reshape(h, step)[:, :w * 3].reshape(h, w, 3)
    return np.array(img[..., ::-1] if enc == 'bgr8' else img)  # a writable copy


def decode_depth(msg: Any, where: str) -> np.ndarray:
    """sensor_msgs/Image -> float32 metres [H, W] (0 = no return); 16UC1/mono16 mm or 32FC1 m."""
    h, w, enc = int(msg.height), int(msg.width), str(msg.encoding).upper()
    data = bytes(msg.data)
    step = int(msg.step)
    dtype: np.dtype[Any]
    if enc in ('16UC1', 'MONO16'):
        dtype, scale, size = np.dtype('>u2' if msg.is_bigendian else '<u2'), 0.001, 2
    elif enc == '32FC1':
        dtype, scale, size = np.dtype('>f4' if msg.is_bigendian else '<f4'), 1.0, 4
    else:
        raise ConversionError(f'{where}: depth encoding {msg.encoding!r} is not supported '
                              '(expected 16UC1 millimetres or 32FC1 metres)')
    if step < w * size or len(data) < step * h:
        raise ConversionError(f'{where}: {enc} image {w}x{h} with step {step} has '
                              f'{len(data)} bytes')
    rows = np.frombuffer(data[:step * h], dtype=np.uint8).reshape(h, step)[:, :w * size]
    depth = np.ascontiguousarray(rows).view(dtype).reshape(h, w).astype(np.float32) * scale
    depth[~np.isfinite(depth)] = 0.0
    return depth


def resize_frame(rgb: np.ndarray, depth: np.ndarray, width: int, height: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Area-resize an aligned pair; the aspect ratio must be kept (checked by the caller)."""
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    rgb_out = F.adaptive_avg_pool2d(x, (height, width))[0].permute(1, 2, 0)
    d = torch.from_numpy(depth)[None, None]
    valid = (d > 0).float()
    frac = F.adaptive_avg_pool2d(valid, (height, width))
    total = F.adaptive_avg_pool2d(d * valid, (height, width))
    depth_out = torch.where(frac >= MIN_VALID_FRACTION, total / frac.clamp_min(1e-6),
                            torch.zeros_like(total))[0, 0]
    return (rgb_out.round().clamp(0, 255).to(torch.uint8).numpy(),
            depth_out.numpy().astype(np.float32))


@dataclass
class _Series:
    """A time series of vectors, sorted by time."""

    times: list[float] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)

    def sort(self) -> None:
        order = np.argsort(self.times, kind='stable')
        self.times = [self.times[i] for i in order]
        self.values = [self.values[i] for i in order]

    def at(self, t: float, max_dt: float) -> np.ndarray | None:
        """The value at ``t``: interpolated between neighbours at most ``2 max_dt`` apart,
        else the nearest sample within ``max_dt``; None if there is none."""
        i = bisect.bisect_left(self.times, t)
        if 0 < i < len(self.times):
            t0, t1 = self.times[i - 1], self.times[i]
            if t1 - t0 <= 2 * max_dt:
                w = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
                return (1 - w) * self.values[i - 1] + w * self.values[i]
        near = [j for j in (i - 1, i) if 0 <= j < len(self.times)]
        if not near:
            return None
        j = min(near, key=lambda j: abs(self.times[j] - t))
        return self.values[j] if abs(self.times[j] - t) <= max_dt else None


def _latest_at_or_before(times: Sequence[float], t: float) -> int:
    """Index of the last time <= t (-1 if none)."""
    return bisect.bisect_right(times, t) - 1


def convert_recording(path: str | Path, config: ConvertConfig | None = None
                      ) -> tuple[list[RecordedEpisode], ConversionReport]:
    """Cut one recording into episodes (see the module docstring)."""
    config = config or ConvertConfig()
    files = mcap_files(path)
    report = ConversionReport(source=str(path))
    ee, quat, width, arm = _Series(), _Series(), _Series(), _Series()
    intrinsics: np.ndarray | None = None
    color_times: list[float] = []
    depth_times: list[float] = []
    commands: list[tuple[float, np.ndarray, bool, float]] = []
    counts = dict.fromkeys((COLOR_TOPIC, DEPTH_TOPIC, EE_POSE_TOPIC, JOINT_STATES_TOPIC,
                            TARGET_TOPIC, COLOR_INFO_TOPIC), 0)
    # Pass 1: everything but the pixels.
    for topic, t, msg in _iter_messages(files, list(counts)):
        counts[topic] += 1
        if topic == COLOR_TOPIC:
            color_times.append(t)
        elif topic == DEPTH_TOPIC:
            depth_times.append(t)
        elif topic == EE_POSE_TOPIC:
            p, o = msg.pose.position, msg.pose.orientation
            ee.times.append(t)
            ee.values.append(np.array([p.x, p.y, p.z], dtype=np.float64))
            quat.times.append(t)
            quat.values.append(np.array([o.x, o.y, o.z, o.w], dtype=np.float64))
        elif topic == JOINT_STATES_TOPIC:
            names = list(msg.name)
            if all(j in names for j in FINGER_JOINTS):
                w = sum(float(msg.position[names.index(j)]) for j in FINGER_JOINTS)
                width.times.append(t)
                width.values.append(np.array([w]))
            if all(j in names for j in ARM_JOINTS):
                arm.times.append(t)
                arm.values.append(np.array([float(msg.position[names.index(j)])
                                            for j in ARM_JOINTS]))
        elif topic == COLOR_INFO_TOPIC and intrinsics is None:
            intrinsics = np.array(list(msg.k), dtype=np.float64).reshape(3, 3)
            intrinsics_size = (int(msg.width), int(msg.height))
        elif topic == TARGET_TOPIC:
            p = msg.position
            commands.append((t, np.array([p.x, p.y, p.z], dtype=np.float64),
                             bool(msg.move_gripper), float(msg.gripper)))
    report.messages = dict(counts)
    missing = [k for k in (COLOR_TOPIC, DEPTH_TOPIC, EE_POSE_TOPIC) if counts[k] == 0]
    if missing:
        raise ConversionError(f'{path}: the recording has no messages on {", ".join(missing)}')
    for series in (ee, quat, width, arm):
        series.sort()
    color_times.sort()
    depth_times.sort()
    commands.sort(key=lambda c: c[0])
    if config.step_period_s > 0:
        report.mode = 'achieved'
        boundaries = _periodic_boundaries(color_times, config.step_period_s)
        period = config.step_period_s
    else:
        if not commands:
            raise ConversionError(f'{path}: no {TARGET_TOPIC} commands; give a step period '
                                  '(--step-period) to cut steps from the achieved motion')
        report.mode = 'commanded'
        boundaries = [c[0] for c in commands]
        period = float(np.median(np.diff(boundaries))) if len(boundaries) > 1 else 0.5
        boundaries.append(boundaries[-1] + period)
    # Frame chosen for each boundary (the last colour frame at or before it, at most half a
    # step old) and its state.
    max_age = max(config.max_sync_s, 0.5 * period)
    chosen: list[int | None] = []
    states: list[np.ndarray | None] = []
    missing_why: list[str] = []
    for tb in boundaries:
        # 1 ms of slack: stamps pass through sec/nanosec and float rounding.
        i = _latest_at_or_before(color_times, tb + 1e-3)
        state: np.ndarray | None = None
        why = 'no recent colour frame for the step'
        if i >= 0 and tb - color_times[i] <= max_age:
            tc = color_times[i]
            pos = ee.at(tc, config.max_sync_s)
            j = _nearest(depth_times, tc)
            if pos is None:
                why = 'no end-effector pose near the frame'
            elif j is None or abs(depth_times[j] - tc) > config.max_sync_s:
                why = 'no depth frame near the colour frame'
            else:
                # Without finger joints (no gripper) the gripper reads as open; without arm
                # joints q is NaN-free zeros (the world model does not use either array).
                finger = width.at(tc, config.max_sync_s)
                q_arm = arm.at(tc, config.max_sync_s)
                o = quat.at(tc, config.max_sync_s)
                state = np.concatenate([
                    pos, [float(finger[0]) if finger is not None else GRIPPER_MAX_WIDTH_M],
                    o / np.linalg.norm(o) if o is not None else [1.0, 0.0, 0.0, 0.0],
                    q_arm if q_arm is not None else np.zeros(7)])
                why = ''
        chosen.append(i if state is not None else None)
        states.append(state)
        missing_why.append(why)
    # The action of each step k -> k + 1.
    actions: list[np.ndarray | None] = []
    gripper_cmd = next((float(gripper_from_width(s[S_WIDTH])) for s in states
                        if s is not None), 0.0)
    for k in range(len(boundaries) - 1):
        sk, sn = states[k], states[k + 1]
        if report.mode == 'commanded':
            _, target, move, grip = commands[k]
            gripper_cmd = grip if move else gripper_cmd
            actions.append(None if sk is None else np.array([*(target - sk[:3]), gripper_cmd]))
        else:
            actions.append(None if sk is None or sn is None else np.array(
                [*(sn[:3] - sk[:3]), float(gripper_from_width(sn[S_WIDTH]))]))
    # Pieces: maximal runs of boundaries joined by usable steps.
    pieces: list[list[int]] = [[]]
    for k in range(len(boundaries) - 1):
        why = ''
        if states[k] is None or states[k + 1] is None:
            why = missing_why[k] or missing_why[k + 1]
        elif chosen[k + 1] == chosen[k]:
            why = 'no new colour frame after the step'
        elif boundaries[k + 1] - boundaries[k] > config.max_gap_s:
            why = 'pause longer than max_gap_s'
        elif not _action_ok(actions[k]):
            why = 'action outside the bounds (|d| > 0.05 m or gripper outside 0..1)'
        if why:
            if pieces[-1]:
                pieces.append([])
            report.cut(why)
            continue
        if not pieces[-1]:
            pieces[-1].append(k)
        pieces[-1].append(k + 1)
    if intrinsics is not None:
        intrinsics = _scaled_intrinsics(intrinsics, intrinsics_size, config)
    episodes: list[RecordedEpisode] = []
    for piece in pieces:
        # A piece is frames k0..kn; its actions are those of k0..k(n-1).
        if len(piece) - 1 < config.min_steps:
            if len(piece) > 1:
                report.dropped_short += 1
            continue
        meta = {'task': 'recording', 'seed': len(episodes), 'source': str(path),
                'mode': report.mode, 'step_duration_s': period,
                'start_time_s': boundaries[piece[0]], 'success': False,
                'intrinsics_known': intrinsics is not None, 'extrinsics_known': False,
                'ground_truth': False}
        episodes.append(_build_episode(files, f'{Path(path)}#{len(episodes):03d}', piece,
                                       chosen, color_times, depth_times, states, actions,
                                       intrinsics, meta, config))
    report.episodes = len(episodes)
    report.steps = sum(int(e.arrays['actions'].shape[0]) for e in episodes)
    return episodes, report


def _action_ok(action: np.ndarray | None) -> bool:
    if action is None or not np.isfinite(action).all():
        return False
    return bool(np.abs(action[:3]).max() <= MAX_DISPLACEMENT_M + ACTION_TOLERANCE_M
                and 0.0 <= action[3] <= 1.0)


def _nearest(times: Sequence[float], t: float) -> int | None:
    if not times:
        return None
    i = bisect.bisect_left(times, t)
    candidates = [j for j in (i - 1, i) if 0 <= j < len(times)]
    return min(candidates, key=lambda j: abs(times[j] - t))


def _periodic_boundaries(color_times: Sequence[float], period: float) -> list[float]:
    if not color_times:
        return []
    n = int((color_times[-1] - color_times[0]) / period + 1e-9)
    return [color_times[0] + k * period for k in range(n + 1)]


def _scaled_intrinsics(k: np.ndarray, size: tuple[int, int], config: ConvertConfig
                       ) -> np.ndarray:
    """K of the camera_info resolution -> K of the stored resolution (half-pixel convention)."""
    sx, sy = config.width / size[0], config.height / size[1]
    out = np.array(k, dtype=np.float64)
    out[0, 0], out[1, 1] = k[0, 0] * sx, k[1, 1] * sy
    out[0, 2], out[1, 2] = (k[0, 2] + 0.5) * sx - 0.5, (k[1, 2] + 0.5) * sy - 0.5
    return out


def _build_episode(files: Sequence[Path], name: str, piece: list[int],
                   chosen: list[int | None], color_times: list[float],
                   depth_times: list[float], states: list[np.ndarray | None],
                   actions: list[np.ndarray | None], intrinsics: np.ndarray | None,
                   metadata: dict[str, Any], config: ConvertConfig) -> RecordedEpisode:
    """Pass 2: decode the frames of one piece into the simulation's episode schema."""
    want_color: dict[float, list[int]] = {}
    want_depth: dict[float, list[int]] = {}
    for n, k in enumerate(piece):
        i = chosen[k]
        assert i is not None
        want_color.setdefault(color_times[i], []).append(n)
        j = _nearest(depth_times, color_times[i])
        assert j is not None
        want_depth.setdefault(depth_times[j], []).append(n)
    frames = len(piece)
    rgb = np.zeros((frames, config.height, config.width, 3), dtype=np.uint8)
    depth = np.zeros((frames, config.height, config.width), dtype=np.uint16)
    color_raw: dict[int, np.ndarray] = {}
    depth_raw: dict[int, np.ndarray] = {}
    for topic, t, msg in _iter_messages(files, [COLOR_TOPIC, DEPTH_TOPIC]):
        where = f'{name} {topic} @ {t:.3f}'
        if topic == COLOR_TOPIC and t in want_color:
            c = decode_color(msg, where)
            for n in want_color.pop(t):
                color_raw[n] = c
        elif topic == DEPTH_TOPIC and t in want_depth:
            d = decode_depth(msg, where)
            for n in want_depth.pop(t):
                depth_raw[n] = d
    for n in range(frames):
        c, d = color_raw[n], depth_raw[n]
        if c.shape[:2] != d.shape:
            raise ConversionError(f'{name}: depth {d.shape[1]}x{d.shape[0]} is not aligned with '
                                  f'colour {c.shape[1]}x{c.shape[0]} (record '
                                  'aligned_depth_to_color)')
        h, w = c.shape[:2]
        if abs(w / h - config.width / config.height) > 0.02 * config.width / config.height:
            raise ConversionError(f'{name}: camera frames are {w}x{h}; the output size '
                                  f'{config.width}x{config.height} has another aspect ratio')
        rgb[n], depth_m = resize_frame(c, d, config.width, config.height)
        depth[n] = np.clip(np.round(depth_m * 1000.0), 0, 65535).astype(np.uint16)
    st = np.stack([states[k] for k in piece])  # type: ignore[misc]     # [T+1, 15]
    acts = np.stack([actions[k] for k in piece[:-1]]).astype(np.float32)  # type: ignore[misc]
    t1 = frames
    arrays = {
        'rgb': rgb, 'depth': depth,
        'ee_pos': st[:, S_POS].astype(np.float32),
        'ee_quat': st[:, S_QUAT].astype(np.float32),
        'q': st[:, S_Q].astype(np.float32),
        'gripper_width': st[:, S_WIDTH].astype(np.float32),
        'actions': acts,
        # The controller's envelope rejects rather than clips: an accepted command is applied
        # as given (achieved mode: the displacement that happened).
        'applied_displacement': acts[:, :3].copy(),
        'contact': np.zeros(t1 - 1, dtype=bool),
        'cube_pos': np.zeros((t1, 0, 3), dtype=np.float32),
        'cube_quat': np.zeros((t1, 0, 4), dtype=np.float32),
        'goal_rgb': rgb[-1].copy(), 'goal_depth': depth[-1].copy(),
        'intrinsics': intrinsics if intrinsics is not None else np.zeros((3, 3)),
        'extrinsics': np.eye(4),
    }
    return RecordedEpisode(name, arrays, metadata)


# ---------------------------------------------------------------------------------------------
# `craik wm-convert`


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``craik wm-convert``."""
    parser.add_argument('bags', nargs='+', help='rosbag2 directories or .mcap files')
    parser.add_argument('--out', required=True, help='episode directory to write')
    parser.add_argument('--width', type=int, default=ConvertConfig.width)
    parser.add_argument('--height', type=int, default=ConvertConfig.height)
    parser.add_argument('--step-period', type=float, default=0.0, metavar='S',
                        help='cut steps every S seconds from the achieved motion (default: one '
                        'step per /franka/target command)')
    parser.add_argument('--max-sync', type=float, default=ConvertConfig.max_sync_s)
    parser.add_argument('--max-gap', type=float, default=ConvertConfig.max_gap_s)
    parser.add_argument('--min-steps', type=int, default=ConvertConfig.min_steps)


def run(args: argparse.Namespace) -> int:
    """``craik wm-convert``."""
    try:
        config = ConvertConfig(args.width, args.height, args.step_period, args.max_sync,
                               args.max_gap, args.min_steps)
    except ValueError as exc:
        print(f'craik wm-convert: {exc}', file=sys.stderr)
        return 2
    reports = []
    total = 0
    for bag in args.bags:
        try:
            episodes, report = convert_recording(bag, config)
        except ConversionError as exc:
            print(f'craik wm-convert: {exc}', file=sys.stderr)
            return 1
        written = write_episodes(episodes, Path(args.out),
                                 {'source': 'craik wm-convert', **asdict(config)})
        total += len(written)
        reports.append(report.to_dict())
        print(f'{bag}: {report.episodes} episode(s), {report.steps} steps ({report.mode}); '
              f'cuts {report.cuts or "none"}; short pieces dropped {report.dropped_short}')
    print(json.dumps({'out': str(args.out), 'episodes': total, 'recordings': reports},
                     indent=2))
    return 0
