"""``craik record``: record topics to a rosbag2 MCAP bag (what ``ros2 bag record -s mcap`` does).

    craik record -o lab_session                       # the default topics (below)
    craik record --topics /joint_states /franka/ee_pose --duration 30 -o arm_only
    craik record --all -o everything

Topics are found in the ROS graph as their publishers appear (checked twice a second), each
with the type its publishers announce; every message is recorded as the serialized CDR bytes
that arrived (a raw subscription: nothing is decoded or re-encoded), with its receive time as
the MCAP log time and the publisher's send time as the publish time; header stamps stay in the
messages. Each type's schema is its .msg text and dependencies (ros2msg), so the bag decodes
anywhere (``ros2 bag info/play`` on the lab robot, ``rosbags``, ``mcap``, ``craik wm-convert``).

QoS follows the publishers: camera topics are subscribed with the sensor-data profile (best
effort: a slow disk never holds the camera back); others reliable when every publisher offers
reliable, transient-local when every publisher is latched (so /tf_static and the calibrated
camera pose recorded after they were sent are still in the bag). The offered profiles are
stored with each topic for the player.

Ctrl-C (or SIGTERM, or ``--duration``) stops it: the subscriptions go, the queue is written
out and the file closed (summary, footer, metadata.yaml), so both readers open it. A progress
line (messages per topic, MB) comes every ``--progress`` seconds. An existing BAG is never
overwritten.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
import functools
import importlib
import json
from pathlib import Path
import queue
import signal
import sys
import threading
import time
from typing import Any

from craik_bringup.bag_files import COMPRESSIONS, BagError, BagWriter, qos_dict

CAMERA_PREFIX = '/camera/'
# ARCHITECTURE.md's graph: camera (realsense2_camera names), robot state and commands, the
# planner's feedback (the ReachGoal action's feedback/status topics and, where a client or the
# server enables action introspection, its goals), calibration and transforms.
DEFAULT_TOPICS = (
    '/camera/camera/color/image_raw',
    '/camera/camera/color/camera_info',
    '/camera/camera/aligned_depth_to_color/image_raw',
    '/camera/camera/aligned_depth_to_color/camera_info',
    '/joint_states',
    '/franka/ee_pose',
    '/franka/status',
    '/franka/target',
    '/planner/imagined_goal',
    '/planner/plan_markers',
    '/planner/reach_goal/_action/feedback',
    '/planner/reach_goal/_action/status',
    '/planner/reach_goal/_action/send_goal/_service_event',
    '/calibration/camera_pose',
    '/tf',
    '/tf_static',
)
GRAPH_POLL_S = 0.5


# ---------------------------------------------------------------------------------------------
# Types and definitions (ROS Python message classes; shared with craik replay)


def message_class(type_name: str) -> Any:
    """The Python class of ``pkg/msg|srv|action/Name``, including the types rosidl derives from
    services and actions (``pkg/action/X_FeedbackMessage``, ``pkg/srv/X_Event``, ...).

    Raises LookupError naming the type when it is not installed here."""
    parts = type_name.split('/')
    if len(parts) != 3 or parts[1] not in ('msg', 'srv', 'action'):
        raise LookupError(f'{type_name!r} is not a ROS type name (package/msg/Name)')
    package, kind, name = parts
    try:
        module = importlib.import_module(f'{package}.{kind}')
    except ImportError as exc:
        raise LookupError(f'type {type_name} is not installed here (no Python module '
                          f'{package}.{kind}: {exc})') from exc
    found = getattr(module, name, None)
    if isinstance(found, type):
        return found
    # Derived types live next to their service/action: ReachGoal_SendGoal_Event is in the
    # module of ReachGoal.
    pieces = name.split('_')
    for n in range(len(pieces) - 1, 0, -1):
        base = getattr(module, '_'.join(pieces[:n]), None)
        if isinstance(base, type):
            derived = getattr(sys.modules[base.__module__], name, None)
            if isinstance(derived, type):
                return derived
    raise LookupError(f'type {type_name} is not installed here ({package}.{kind} has no '
                      f'{name})')


def ref_name(type_name: str) -> str:
    """How a definition refers to a nested type: ``pkg/Name`` for messages (as .msg files do),
    the full ``pkg/action/Name`` / ``pkg/srv/Name`` for types derived from actions and
    services (their type hash includes it, which rosbags checks)."""
    package, kind, name = type_name.split('/')
    return f'{package}/{name}' if kind == 'msg' else type_name


_BASIC = {'boolean': 'bool', 'octet': 'byte', 'float': 'float32', 'double': 'float64',
          'long double': 'float64'}


def _type_text(t: Any, deps: list[Any]) -> str:
    """ros2msg spelling of a rosidl_parser type; nested message types are added to deps."""
    from rosidl_parser import definition as d

    if isinstance(t, d.Array):
        return f'{_type_text(t.value_type, deps)}[{t.size}]'
    if isinstance(t, d.BoundedSequence):
        return f'{_type_text(t.value_type, deps)}[<={t.maximum_size}]'
    if isinstance(t, d.UnboundedSequence):
        return f'{_type_text(t.value_type, deps)}[]'
    if isinstance(t, d.BoundedString):
        return f'string<={t.maximum_size}'
    if isinstance(t, d.BoundedWString):
        return f'wstring<={t.maximum_size}'
    if isinstance(t, d.UnboundedString):
        return 'string'
    if isinstance(t, d.UnboundedWString):
        return 'wstring'
    if isinstance(t, d.NamespacedType):
        deps.append(t)
        return ref_name('/'.join([*t.namespaces, t.name]))
    if isinstance(t, d.BasicType):
        return _BASIC.get(t.typename, t.typename)
    raise LookupError(f'unsupported field type {t!r}')


def _interface_text(type_name: str) -> str | None:
    """The type's own text from its package's share directory: the .msg file, or the section
    of the .srv / .action file it was derived from; None when there is none."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    package, kind, name = type_name.split('/')
    try:
        share = Path(get_package_share_directory(package))
    except (PackageNotFoundError, ValueError):
        return None
    if kind == 'msg':
        path = share / 'msg' / f'{name}.msg'
        return path.read_text() if path.is_file() else None
    sections = {'srv': ('_Request', '_Response'), 'action': ('_Goal', '_Result', '_Feedback')}
    for i, suffix in enumerate(sections[kind]):
        base = name[:-len(suffix)]
        path = share / kind / f'{base}.{kind}'
        if name.endswith(suffix) and path.is_file():
            parts = path.read_text().split('\n---\n')
            if len(parts) == len(sections[kind]):
                return parts[i].strip('\n') + '\n'
    return None


def _fields_text(cls: Any, deps: list[Any]) -> str:
    """Definition text generated from a message class's fields (no constants or comments)."""
    names = [s.lstrip('_') for s in cls.__slots__ if s != '_check_fields']
    lines = [f'{_type_text(t, deps)} {n}' for n, t in zip(names, cls.SLOT_TYPES, strict=True)]
    return '\n'.join(lines) + '\n'


def message_definition(type_name: str) -> str:
    """The ros2msg definition rosbag2 stores for ``type_name``: its text, then each message
    type it uses (recursively, once) after a line of 80 ``=`` and ``MSG: pkg/Name``."""
    root = message_class(type_name)
    sections: list[str] = []
    seen: set[str] = set()
    pending: list[tuple[str, Any]] = [(type_name, root)]
    while pending:
        name, cls = pending.pop(0)
        deps: list[Any] = []
        generated = _fields_text(cls, deps)       # also collects the dependencies
        text = _interface_text(name) or generated
        if sections:
            sections.append(f'{"=" * 80}\nMSG: {name}\n{text}')
        else:
            sections.append(text)
        for dep in deps:
            dep_name = '/'.join([*dep.namespaces, dep.name])
            if dep_name not in seen and dep_name != type_name:
                seen.add(dep_name)
                pending.append((dep_name, message_class(dep_name)))
    return ''.join(s if s.endswith('\n') else s + '\n' for s in sections)


def installed_type_hash(type_name: str) -> str:
    """The RIHS01 hash of the installed definition of ``type_name`` ('' when unknown)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    package, kind, name = type_name.split('/')
    try:
        share = Path(get_package_share_directory(package))
    except (PackageNotFoundError, ValueError):
        return ''
    candidates = [share / kind / f'{name}.json']
    # Derived types are described in the json of their service or action.
    pieces = name.split('_')
    candidates += [share / kind / f'{"_".join(pieces[:n])}.json' for n in range(1, len(pieces))]
    for path in candidates:
        if path.is_file():
            try:
                for entry in json.loads(path.read_text()).get('type_hashes', []):
                    if entry.get('type_name') == type_name:
                        return str(entry.get('hash_string', ''))
            except (OSError, ValueError):
                continue
    return ''


# ---------------------------------------------------------------------------------------------
# QoS


def _ns(duration: Any) -> int:
    return int(getattr(duration, 'nanoseconds', 0) or 0)


def profile_dict(qos: Any) -> dict[str, Any]:
    """An rclpy QoSProfile as rosbag2's offered-QoS mapping."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy

    reliability = {ReliabilityPolicy.RELIABLE: 'reliable',
                   ReliabilityPolicy.BEST_EFFORT: 'best_effort'}.get(qos.reliability,
                                                                     'system_default')
    durability = {DurabilityPolicy.TRANSIENT_LOCAL: 'transient_local',
                  DurabilityPolicy.VOLATILE: 'volatile'}.get(qos.durability, 'system_default')
    history = {HistoryPolicy.KEEP_LAST: 'keep_last', HistoryPolicy.KEEP_ALL: 'keep_all'}.get(
        qos.history, 'keep_last')
    liveliness = str(getattr(qos.liveliness, 'name', 'automatic')).lower()
    return qos_dict(reliability, durability, history, int(qos.depth or 0), _ns(qos.deadline),
                    _ns(qos.lifespan), liveliness, _ns(qos.liveliness_lease_duration))


def qos_profile(profile: dict[str, Any]) -> Any:
    """rosbag2's QoS mapping (reliability, durability, depth) as an rclpy QoSProfile."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        depth=max(1, int(profile.get('depth', 10) or 10)),
        reliability=(ReliabilityPolicy.RELIABLE if profile.get('reliability') == 'reliable'
                     else ReliabilityPolicy.BEST_EFFORT),
        durability=(DurabilityPolicy.TRANSIENT_LOCAL
                    if profile.get('durability') == 'transient_local'
                    else DurabilityPolicy.VOLATILE))


def subscription_profile(topic: str, offered: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How the recorder subscribes: sensor data for the camera; otherwise reliable only when
    every publisher is reliable (a reliable reader does not match a best-effort writer) and
    transient-local only when every publisher is (to get what latched publishers sent)."""
    depth = max([int(p.get('depth', 0) or 0) for p in offered] + [10])
    if topic.startswith(CAMERA_PREFIX) and not topic.endswith('camera_info'):
        return qos_dict('best_effort', 'volatile', depth=10)
    reliable = bool(offered) and all(p['reliability'] == 'reliable' for p in offered)
    latched = bool(offered) and all(p['durability'] == 'transient_local' for p in offered)
    return qos_dict('reliable' if reliable else 'best_effort',
                    'transient_local' if latched else 'volatile', depth=depth)


def is_hidden(topic: str) -> bool:
    """ROS hidden names (a component starting with '_': action and service-event topics)."""
    return any(part.startswith('_') for part in topic.split('/'))


# ---------------------------------------------------------------------------------------------
# The recorder


class Recorder:
    """Subscribes to the wanted topics as they appear and writes what arrives to a bag.

    ``wanted``: exact topic names, or None for every topic in the graph (hidden ones only when
    named). Messages go through a queue to a writer thread, so the callbacks only copy bytes.
    """

    def __init__(self, node: Any, writer: BagWriter, wanted: Sequence[str] | None,
                 log: Callable[[str], None] = print) -> None:
        self.node = node
        self.writer = writer
        self.wanted = list(wanted) if wanted is not None else None
        self.log = log
        self.subscriptions: dict[str, Any] = {}
        self.refused: dict[str, str] = {}
        self._queue: queue.SimpleQueue[tuple[str, bytes, int, int] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_loop, name='bag_writer', daemon=True)
        self._thread.start()
        self.write_error: BaseException | None = None

    def poll_graph(self) -> None:
        """Subscribe to wanted topics that now have a publisher."""
        for name, types in self.node.get_topic_names_and_types():
            if name in self.subscriptions or name in self.refused:
                continue
            if self.wanted is not None:
                if name not in self.wanted:
                    continue
            elif is_hidden(name):
                continue
            publishers = self.node.get_publishers_info_by_topic(name)
            if not publishers:
                continue   # only subscribers so far: the type is not the publisher's word
            type_name = types[0]
            if len(types) > 1:
                self.log(f'craik record: {name} has several types {types}; recording '
                         f'{type_name}')
            try:
                cls = message_class(type_name)
                definition = message_definition(type_name)
            except LookupError as exc:
                self.refused[name] = str(exc)
                self.log(f'craik record: not recording {name}: {exc}')
                continue
            offered = [profile_dict(p.qos_profile) for p in publishers]
            type_hash = str(getattr(publishers[0], 'topic_type_hash', '') or '') or \
                installed_type_hash(type_name)
            if not type_hash.startswith('RIHS01_'):
                type_hash = installed_type_hash(type_name)
            self.writer.add_topic(name, type_name, definition, type_hash, offered)
            profile = subscription_profile(name, offered)
            self.subscriptions[name] = self.node.create_subscription(
                cls, name, functools.partial(self._on_message, name), qos_profile(profile),
                raw=True)
            latched = ', transient_local' if profile['durability'] == 'transient_local' else ''
            self.log(f'craik record: recording {name} ({type_name}, '
                     f'{profile["reliability"]}{latched})')

    def _on_message(self, topic: str, data: bytes, info: Any) -> None:
        received = int(info.get('received_timestamp', 0) or 0) if info else 0
        sent = int(info.get('source_timestamp', 0) or 0) if info else 0
        self._queue.put((topic, bytes(data), received or time.time_ns(), sent))

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            topic, data, received, sent = item
            try:
                self.writer.write(topic, data, received, sent)
            except BaseException as exc:  # noqa: BLE001 (reported by stop())
                self.write_error = exc
                return

    def missing(self) -> list[str]:
        """Wanted topics not recorded (yet)."""
        return [t for t in self.wanted or [] if t not in self.subscriptions]

    def stop(self) -> None:
        """Unsubscribe, write out everything received, close the bag."""
        for sub in self.subscriptions.values():
            self.node.destroy_subscription(sub)
        self._queue.put(None)
        self._thread.join()
        self.writer.close()
        if self.write_error is not None:
            raise BagError(f'writing {self.writer.path} failed: {self.write_error}')


def _shutdown(recorder: Recorder, executor: Any, node: Any) -> str:
    """Close the bag and the node; the error text if writing failed ('' otherwise). A second
    Ctrl-C meanwhile is ignored: the file is being finished."""
    import rclpy

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        recorder.stop()
        return ''
    except BagError as exc:
        return str(exc)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def progress_line(recorder: Recorder, elapsed_s: float) -> str:
    """One line: time, message MB (serialized) and MB on disk, and messages per topic."""
    counts = recorder.writer.counts()
    parts = [f'{t} {n}' for t, n in counts.items()]
    missing = recorder.missing()
    tail = f'; {len(missing)} topic(s) not published yet' if missing else ''
    try:
        disk = recorder.writer.mcap_path.stat().st_size
    except OSError:
        disk = 0
    return (f'craik record: {elapsed_s:.0f} s, {recorder.writer.bytes_written() / 1e6:.1f} MB, '
            f'{disk / 1e6:.1f} MB on disk, {sum(counts.values())} messages '
            f'({", ".join(parts) or "none yet"}){tail}')


# ---------------------------------------------------------------------------------------------
# `craik record`


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``craik record``."""
    parser.add_argument('-o', '--output', required=True, metavar='BAG',
                        help='bag directory to create (BAG/BAG_0.mcap + metadata.yaml); never '
                        'overwritten')
    which = parser.add_mutually_exclusive_group()
    which.add_argument('--topics', nargs='+', metavar='T',
                       help='topics to record (default: the camera, robot state and commands, '
                       'planner feedback, calibration and /tf topics)')
    which.add_argument('--all', action='store_true',
                       help='every topic that appears (hidden ones only when named)')
    parser.add_argument('--duration', type=float, default=0.0, metavar='S',
                        help='stop after S seconds (default: until Ctrl-C)')
    parser.add_argument('--compression', choices=sorted(COMPRESSIONS), default='zstd',
                        help='MCAP chunk compression (default zstd)')
    parser.add_argument('--progress', type=float, default=5.0, metavar='S',
                        help='seconds between progress lines (0: none)')


def run(args: argparse.Namespace) -> int:
    """``craik record``."""
    if args.duration < 0:
        print('craik record: --duration must be >= 0', file=sys.stderr)
        return 2
    wanted = None if args.all else list(args.topics or DEFAULT_TOPICS)
    try:
        writer = BagWriter(args.output, compression=args.compression)
    except BagError as exc:
        print(f'craik record: {exc}', file=sys.stderr)
        return 1

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    # Ctrl-C reaches this loop as KeyboardInterrupt (not rclpy's shutdown), so the file is
    # closed before the context goes; also when started in the background by a shell, which
    # leaves SIGINT ignored (a recorder is stopped by SIGINT, as ros2 bag record is).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node('craik_record')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    recorder = Recorder(node, writer, wanted, log=lambda s: print(s, flush=True))
    start = time.monotonic()
    next_poll = next_progress = start
    stopped_by = 'duration'
    try:
        print(f'craik record: writing {writer.mcap_path} '
              f'({"all topics" if wanted is None else f"{len(wanted)} topics"}); Ctrl-C stops',
              flush=True)
        while args.duration <= 0 or time.monotonic() - start < args.duration:
            now = time.monotonic()
            if now >= next_poll:
                recorder.poll_graph()
                next_poll = now + GRAPH_POLL_S
            if args.progress > 0 and now >= next_progress:
                if now > start:
                    print(progress_line(recorder, now - start), flush=True)
                next_progress = now + args.progress
            if recorder.write_error is not None:
                break
            executor.spin_once(timeout_sec=0.05)
    except KeyboardInterrupt:
        stopped_by = 'interrupt'
    finally:
        error = _shutdown(recorder, executor, node)
    if error:
        print(f'craik record: {error}', file=sys.stderr)
        return 1
    elapsed = time.monotonic() - start
    print(progress_line(recorder, elapsed), flush=True)
    missing = recorder.missing()
    if missing:
        print(f'craik record: never published: {", ".join(missing)}', flush=True)
    print(f'craik record: closed {writer.path} ({stopped_by} after {elapsed:.1f} s)',
          flush=True)
    return 0
