"""`craik record`, `craik replay` and `craik replay-plan` on real DDS (this process's isolated
domain, see conftest.py).

A publisher process sends a known stream (camera frames at uneven gaps, joint states, a latched
camera pose, controller commands and action feedback); `craik record` runs as a process and is
stopped with SIGINT; the bag must hold every message, byte for byte. `craik replay` then
republishes it to a subscriber here, which must get the same bytes with the recorded timing
(the measured errors are printed) and nothing of the command or action topics.

The slow part records a simulated lab session (sim + franka_controller + mpc_planner, one reach
goal): `craik replay-plan` must reproduce every recorded first action and energy, and not with
another seed; `craik wm-convert` turns the session into episodes the training loader and
`craik train` use.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import numpy as np
import pytest

from craik_bringup import bag_files

ROOT = Path(__file__).resolve().parents[3]
CAMERA = '/camera/camera/color/image_raw'
JOINTS = '/joint_states'
POSE = '/calibration/camera_pose'
TARGET = '/franka/target'
FEEDBACK = '/planner/reach_goal/_action/feedback'
STREAM_TOPICS = [CAMERA, JOINTS, POSE, TARGET, FEEDBACK]

# Publishes the known stream once the recorder has subscribed to every topic, then writes what
# it sent (topic, counter) as JSON and exits.
PUBLISHER = """\
    import json, sys, time
    import rclpy
    from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy,
                           qos_profile_sensor_data)
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import Image, JointState
    from craik_interfaces.action import ReachGoal
    from craik_interfaces.msg import CartesianTarget

    duration, out = float(sys.argv[1]), sys.argv[2]
    rclpy.init()
    node = rclpy.create_node('known_stream')
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    camera = '/camera/camera/color/image_raw'
    pubs = {
        camera: node.create_publisher(Image, camera, qos_profile_sensor_data),
        '/joint_states': node.create_publisher(JointState, '/joint_states', reliable),
        '/calibration/camera_pose': node.create_publisher(PoseStamped, '/calibration/camera_pose',
                                                          latched),
        '/franka/target': node.create_publisher(CartesianTarget, '/franka/target', reliable),
        '/planner/reach_goal/_action/feedback': node.create_publisher(
            ReachGoal.Impl.FeedbackMessage, '/planner/reach_goal/_action/feedback', reliable),
    }
    deadline = time.monotonic() + 60
    while any(p.get_subscription_count() == 0 for p in pubs.values()):
        assert time.monotonic() < deadline, 'the recorder never subscribed'
        time.sleep(0.05)
    time.sleep(0.5)
    sent = []
    pose = PoseStamped()
    pose.header.frame_id = 'fr3_link0'
    pose.header.stamp = node.get_clock().now().to_msg()
    pose.pose.position.x, pose.pose.orientation.w = 0.61, 1.0
    pubs['/calibration/camera_pose'].publish(pose)
    sent.append(['/calibration/camera_pose', 0])
    start, k = time.monotonic(), 0
    while time.monotonic() - start < duration:
        stamp = node.get_clock().now().to_msg()
        js = JointState(name=['fr3_joint1'], position=[0.001 * k])
        js.header.stamp = stamp
        pubs['/joint_states'].publish(js)
        sent.append(['/joint_states', k])
        if k % 2 == 0:
            img = Image(height=24, width=32, encoding='rgb8', step=96)
            img.header.stamp = stamp
            img.data = bytes([k % 256]) * (24 * 96)
            pubs['/camera/camera/color/image_raw'].publish(img)
            sent.append(['/camera/camera/color/image_raw', k])
        if k % 10 == 0:
            t = CartesianTarget()
            t.header.stamp = stamp
            t.position.x = 0.4 + 0.001 * k
            pubs['/franka/target'].publish(t)
            sent.append(['/franka/target', k])
            fb = ReachGoal.Impl.FeedbackMessage()
            fb.feedback.step = k
            pubs['/planner/reach_goal/_action/feedback'].publish(fb)
            sent.append(['/planner/reach_goal/_action/feedback', k])
        k += 1
        time.sleep(0.012 + 0.008 * (k % 3))     # uneven gaps: 12 / 20 / 28 ms
    json.dump(sent, open(out, 'w'))
    time.sleep(1.0)   # let reliable messages be delivered before the writers go
    """


class Proc:
    """A `craik` subcommand (or script) as a process, its output collected line by line;
    ``domain``: another ROS domain than this process's."""

    def __init__(self, argv: list[str], domain: int | None = None) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED='1', CRAIK_ROOT=str(ROOT))
        if domain is not None:
            env['ROS_DOMAIN_ID'] = str(domain)
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None or any(text in line for line in self.lines), \
                f'exited with {self.proc.returncode} before {text!r}:\n{self.output}'
            assert time.monotonic() < deadline, f'no {text!r} in {timeout_s} s:\n{self.output}'
            time.sleep(0.05)

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        return self.proc.returncode

    def wait(self, timeout_s: float) -> int:
        self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=5)
        return self.proc.returncode

    @property
    def output(self) -> str:
        return ''.join(self.lines)


def craik(*args: str) -> list[str]:
    return [sys.executable, '-m', 'craik_bringup.cli', *args]


class Listener:
    """A subscriber in this process (its own context and spinning thread) that keeps every
    message's bytes and receive / source timestamps."""

    def __init__(self, topics: dict[str, tuple[Any, Any]]) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('listener', context=self.context)
        self.got: list[tuple[str, bytes, int, int]] = []
        self._lock = threading.Lock()
        for topic, (cls, qos) in topics.items():
            self.node.create_subscription(cls, topic, partial(self._on, topic), qos, raw=True)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _on(self, topic: str, data: bytes, info: Any) -> None:
        with self._lock:
            self.got.append((topic, bytes(data), int(info['received_timestamp']),
                             int(info['source_timestamp'])))

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 (shutdown race)
                return

    def messages(self) -> list[tuple[str, bytes, int, int]]:
        with self._lock:
            return list(self.got)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=5)


def _listener_topics() -> dict[str, tuple[Any, Any]]:
    from geometry_msgs.msg import PoseStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, JointState

    from craik_interfaces.action import ReachGoal
    from craik_interfaces.msg import CartesianTarget

    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    camera = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
    return {CAMERA: (Image, camera), JOINTS: (JointState, reliable),
            POSE: (PoseStamped, latched), TARGET: (CartesianTarget, reliable),
            FEEDBACK: (ReachGoal.Impl.FeedbackMessage, reliable)}


@pytest.fixture(scope='module')
def stream_bag(tmp_path_factory) -> Iterator[tuple[Path, list[list[Any]], str]]:
    """The known stream recorded by `craik record` (stopped with SIGINT)."""
    tmp = tmp_path_factory.mktemp('stream')
    script = tmp / 'publisher.py'
    script.write_text(textwrap.dedent(PUBLISHER))
    bag = tmp / 'stream'
    recorder = Proc(craik('record', '-o', str(bag), '--progress', '1', '--topics',
                          *STREAM_TOPICS))
    publisher = Proc([sys.executable, str(script), '3.0', str(tmp / 'sent.json')])
    try:
        assert publisher.wait(120) == 0, publisher.output
        time.sleep(1.0)
    finally:
        code = recorder.stop()
        publisher.stop()
    assert code == 0, recorder.output
    yield bag, json.loads((tmp / 'sent.json').read_text()), recorder.output


def test_record_writes_every_message_and_closes_on_sigint(stream_bag):
    bag_path, sent, output = stream_bag
    assert 'craik record: closed' in output and '(interrupt after' in output
    progress = [line for line in output.splitlines() if ' MB, ' in line]
    assert progress and f'{JOINTS} ' in progress[-1]       # messages per topic and MB
    bag = bag_files.open_bag(bag_path)
    scan = bag_files.scan_bag(bag)
    expected: dict[str, int] = {}
    for topic, _ in sent:
        expected[topic] = expected.get(topic, 0) + 1
    for topic in (JOINTS, POSE, TARGET, FEEDBACK):       # reliable: every message
        assert scan.counts.get(topic, 0) == expected[topic], (topic, scan.counts, expected)
    assert scan.counts[CAMERA] >= 0.9 * expected[CAMERA]  # best effort (sensor data)
    assert bag.topics[CAMERA].offered_qos[0]['reliability'] == 'best_effort'
    assert bag.topics[POSE].offered_qos[0]['durability'] == 'transient_local'
    assert bag.topics[FEEDBACK].type == 'craik_interfaces/action/ReachGoal_FeedbackMessage'
    # The recorded bytes are the published messages: counters in order, header stamps kept,
    # and the publish time (sent) before the log time (received).
    joints = list(bag_files.iter_decoded(bag, [JOINTS]))
    assert [round(msg.position[0] * 1000) for _, msg in joints] == \
        [k for t, k in sent if t == JOINTS]
    for m, msg in joints:
        stamp_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        assert stamp_ns <= m.publish_time_ns <= m.log_time_ns < stamp_ns + 10**9
    frames = [int(bytes(msg.data)[0]) for _, msg in bag_files.iter_decoded(bag, [CAMERA])]
    camera_sent = [k % 256 for t, k in sent if t == CAMERA]
    assert frames == [k for k in camera_sent if k in frames]
    # rosbags and mcap read the same bag.
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rosbags.highlevel import AnyReader

    with AnyReader([bag_path]) as reader:
        decoded = [reader.deserialize(raw, conn.msgtype) for conn, _, raw in reader.messages()]
    assert len(decoded) == len(scan.topics)
    with open(bag.files[0], 'rb') as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        targets = [d.position.x for *_, d in reader.iter_decoded_messages(topics=[TARGET])]
    assert targets == pytest.approx([0.4 + 0.001 * k for t, k in sent if t == TARGET])


def test_replay_republishes_with_the_recorded_timing(stream_bag):
    bag_path, _, _ = stream_bag
    bag = bag_files.open_bag(bag_path)
    recorded = list(bag_files.iter_messages(bag, [CAMERA, JOINTS, POSE]))
    listener = Listener(_listener_topics())
    try:
        replay = Proc(craik('replay', str(bag_path), '--delay', '2.0'))
        assert replay.wait(120) == 0, replay.output
        time.sleep(0.5)
        got = listener.messages()
    finally:
        listener.close()
    out = replay.output
    assert f'not republishing {TARGET}: robot controller commands' in out
    assert f'not republishing {FEEDBACK}: an action topic' in out
    assert not [g for g in got if g[0] in (TARGET, FEEDBACK)]
    # Every camera / joint message arrives with the recorded bytes, in order.
    for topic in (CAMERA, JOINTS, POSE):
        assert [g[1] for g in got if g[0] == topic] == \
            [m.data for m in recorded if m.topic == topic], topic
    # Timing: match each received message to its recorded one (joint and camera messages are
    # unique), then compare the gaps between consecutive messages.
    stream = [m for m in recorded if m.topic != POSE]
    index = {(m.topic, m.data): i for i, m in enumerate(stream)}
    received = sorted((index[(t, d)], recv, src) for t, d, recv, src in got if t != POSE)
    assert [i for i, *_ in received] == list(range(len(stream)))
    log = np.array([m.log_time_ns for m in stream], dtype=np.float64)
    recv = np.array([r for _, r, _ in received], dtype=np.float64)
    sent = np.array([s for *_, s in received], dtype=np.float64)
    gap_err_ms = np.abs(np.diff(recv) - np.diff(log)) * 1e-6         # [M-1]
    publish_err_ms = np.abs(np.diff(sent) - np.diff(log)) * 1e-6
    drift = (recv - recv[0]) - (log - log[0])
    drift_ms = np.abs(drift - np.median(drift)) * 1e-6
    print(f'\nreplay timing over {len(stream)} messages: gap error received median '
          f'{np.median(gap_err_ms):.3f} ms, p95 {np.percentile(gap_err_ms, 95):.3f} ms, max '
          f'{gap_err_ms.max():.3f} ms; at publish median {np.median(publish_err_ms):.3f} ms, '
          f'max {publish_err_ms.max():.3f} ms; schedule offset max {drift_ms.max():.3f} ms')
    assert np.median(gap_err_ms) <= 1.0
    assert np.percentile(gap_err_ms, 95) <= 5.0
    assert np.median(drift_ms) <= 2.0


def test_replay_refuses_damaged_bags_and_publishes_nothing(stream_bag, tmp_path):
    bag_path, _, _ = stream_bag
    cut = tmp_path / 'cut'
    cut.mkdir()
    (cut / 'metadata.yaml').write_text((bag_path / 'metadata.yaml').read_text().replace(
        'stream_0.mcap', 'cut_0.mcap'))
    data = (bag_path / 'stream_0.mcap').read_bytes()
    (cut / 'cut_0.mcap').write_bytes(data[:int(len(data) * 0.6)])
    unknown = tmp_path / 'unknown'
    with bag_files.BagWriter(unknown) as writer:
        writer.add_topic('/thing', 'no_such_pkg/msg/Thing', 'uint32 value\n')
        writer.write('/thing', b'\x00\x01\x00\x00\x07\x00\x00\x00', 1)
    # JointState bytes recorded under another definition (type hash) than the installed one.
    changed = tmp_path / 'changed'
    info = bag_files.open_bag(bag_path).topics[JOINTS]
    with bag_files.BagWriter(changed) as writer:
        writer.add_topic(JOINTS, info.type, info.definition, 'RIHS01_' + '0' * 64)
        writer.write(JOINTS, next(bag_files.iter_messages(bag_files.open_bag(bag_path),
                                                          [JOINTS])).data, 1)
    listener = Listener(_listener_topics())
    try:
        runs = {name: Proc(craik('replay', str(path), '--delay', '0'))
                for name, path in (('cut', cut), ('unknown', unknown), ('changed', changed))}
        codes = {name: proc.wait(60) for name, proc in runs.items()}
        time.sleep(1.0)
        got = listener.messages()
    finally:
        listener.close()
    assert codes == {'cut': 1, 'unknown': 1, 'changed': 1}
    assert 'truncated MCAP file' in runs['cut'].output, runs['cut'].output
    assert 'unknown type' in runs['unknown'].output and 'no_such_pkg' in runs['unknown'].output
    assert 'recorded with another definition' in runs['changed'].output
    assert got == []


def test_record_refuses_to_overwrite(stream_bag):
    bag_path, _, _ = stream_bag
    before = (bag_path / 'stream_0.mcap').stat().st_mtime_ns
    proc = Proc(craik('record', '-o', str(bag_path), '--duration', '1'))
    assert proc.wait(60) == 1
    assert 'exists already' in proc.output
    assert (bag_path / 'stream_0.mcap').stat().st_mtime_ns == before


# --- a recorded session of the simulated lab ---------------------------------------------------

MODEL_DIR = ROOT / 'models' / 'craik_wm_geo'
# The planner of the session, also given to replay-plan: fewer samples and a generous budget, so
# that every step finishes all its iterations on a loaded two-core machine (an anytime planner
# cut short by its deadline plans differently from one that is not).
SESSION_PLANNER = {'num_samples': 128, 'max_iterations': 3, 'step_period': 1.0,
                   'planning_budget': 0.9}
SESSION_STEPS = 6


@pytest.fixture(scope='module')
def sim_session(tmp_path_factory, fresh_ros_domain) -> Iterator[tuple[Path, Any]]:
    """One reach goal through the simulated lab, recorded with `craik record`'s defaults; the
    planner publishes its goals by action introspection (its default), so the goal image is in
    the bag."""
    if not (MODEL_DIR / 'manifest.json').exists():
        pytest.skip(f'no exported world model at {MODEL_DIR}')
    from craik_bringup.graph import Graph, private_robot_ip, sim_graph
    from craik_bringup.sim_client import SimClient
    from craik_interfaces.action import ReachGoal

    tmp = tmp_path_factory.mktemp('session')
    domain = fresh_ros_domain
    graph = Graph(sim_graph(private_robot_ip(domain), planner=SESSION_PLANNER),
                  tmp / 'logs', domain_id=domain)
    graph.start()
    client = SimClient('session_client', domain_id=domain)
    recorder = None
    try:
        client.wait_ready(timeout_s=240.0, check=graph.check_alive)
        recorder = Proc(craik('record', '-o', str(tmp / 'session'), '--progress', '5'),
                        domain=domain)
        for topic in ('/camera/camera/color/image_raw',
                      '/camera/camera/aligned_depth_to_color/image_raw', '/franka/ee_pose',
                      '/joint_states', '/calibration/camera_pose', '/planner/plan_markers',
                      '/planner/reach_goal/_action/send_goal/_service_event'):
            recorder.wait_for(f'recording {topic} ', 60)
        reset = client.reset('reach', 7)
        run = client.reach_goal(ReachGoal.Goal(goal_image=reset.goal_image,
                                               goal_depth=reset.goal_depth,
                                               max_steps=SESSION_STEPS))
        time.sleep(1.5)
    finally:
        code = recorder.stop() if recorder is not None else None
        client.close()
        graph.stop()
    assert code == 0, recorder.output if recorder is not None else ''
    yield tmp / 'session', run


@pytest.mark.slow
def test_session_bag_holds_the_episode(sim_session):
    path, run = sim_session
    bag = bag_files.open_bag(path)
    scan = bag_files.scan_bag(bag)
    for topic in ('/camera/camera/color/image_raw',
                  '/camera/camera/aligned_depth_to_color/image_raw', '/franka/ee_pose',
                  '/joint_states', '/franka/target', '/calibration/camera_pose',
                  '/planner/reach_goal/_action/send_goal/_service_event'):
        assert scan.counts.get(topic, 0) > 0, (topic, scan.counts)
    assert scan.counts[FEEDBACK] == len(run.feedback) >= 3
    assert scan.counts['/planner/plan_markers'] == len(run.feedback)
    # rosbags reads every message with the bag's definitions. (Its AnyReader recomputes type
    # hashes and gets char fields wrong, so it refuses any bag with service events, rosbag2's
    # own included; the plain reader has no such check.)
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore
    from rosbags.typesys.msg import get_types_from_msg

    typestore = get_typestore(Stores.EMPTY)
    with Reader(path) as reader:
        for conn in reader.connections:
            typestore.register(get_types_from_msg(conn.msgdef.data, conn.msgtype))
        n = 0
        for conn, _, raw in reader.messages():
            typestore.deserialize_cdr(raw, conn.msgtype)
            n += 1
    assert n == len(scan.topics)
    # mcap_ros2 too, through bag_files (which renames action-derived types for its parser).
    (event, goal_msg), *_ = bag_files.iter_decoded(
        bag, ['/planner/reach_goal/_action/send_goal/_service_event'])
    image = goal_msg.request[0].goal.goal_image
    assert (image.width, image.height, image.encoding) == (640, 480, 'rgb8')


@pytest.mark.slow
def test_replay_plan_reproduces_the_recorded_first_actions(sim_session, tmp_path):
    path, run = sim_session
    settings = [a for k, v in SESSION_PLANNER.items() for a in ('--set', f'{k}={v}')]
    report_path = tmp_path / 'replay.json'
    proc = Proc(craik('replay-plan', str(path), '--report', str(report_path), *settings))
    assert proc.wait(600) == 0, proc.output
    report = json.loads(report_path.read_text())
    summary = report['summary']
    print('\n' + proc.output)
    assert summary['pass'] and summary['steps'] == len(run.feedback) >= 3
    assert summary['max_action_diff_m'] <= 1e-6 and summary['max_plan_diff_m'] <= 1e-6
    assert summary['goal_sources'] == ['action introspection']
    for step, feedback in zip(report['steps'], run.feedback, strict=True):
        assert step['step'] == feedback.step
        assert step['recorded']['energy'] == pytest.approx(feedback.best_energy)
        np.testing.assert_allclose(step['replayed']['first_action'][3],
                                   feedback.commanded_action[3])
    # Another seed plans otherwise: the comparison can fail.
    other = Proc(craik('replay-plan', str(path), *settings, '--set', 'seed=1'))
    assert other.wait(600) == 1, other.output
    assert 'FAIL' in other.output


@pytest.mark.slow
def test_recorded_session_converts_to_training_episodes(sim_session, tmp_path):
    from craik_world_model.config import DataConfig, get_preset
    from craik_world_model.data import load_episodes

    path, run = sim_session
    convert = Proc(craik('wm-convert', str(path), '--out', str(tmp_path / 'episodes'),
                         '--min-steps', '2'))
    assert convert.wait(300) == 0, convert.output
    episodes = load_episodes([tmp_path / 'episodes'], get_preset('tiny').model, DataConfig())
    assert len(episodes) >= 1
    # One step per streamed /franka/target: the planner's steps and the hold it sends at the end.
    targets = bag_files.open_bag(path).topics['/franka/target'].message_count
    assert targets == len(run.feedback) + 1
    steps = sum(int(e.actions.shape[0]) for e in episodes)
    assert 2 <= steps <= targets
    assert all(np.abs(e.actions[:, :3]).max() <= 0.05 + 1e-6 for e in episodes)
    train = Proc(craik('train', '--data', str(tmp_path / 'episodes'), '--out',
                       str(tmp_path / 'run'), '--preset', 'tiny', '--steps', '1',
                       '--batch-size', '1', '--horizon', '2'))
    assert train.wait(300) == 0, train.output
    assert (tmp_path / 'run' / 'model.safetensors').exists()
