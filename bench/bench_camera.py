"""Camera frame latency and delivery between two processes: colour + aligned depth, 640x480 @ 30.

Latency is measured from the frame's header stamp (its capture time) to the start of the
subscriber's callback in another process; "delivered" is the share of the frames published
after discovery that reached the subscriber. The subscriber is a plain rclpy node with typed
subscriptions and the sensor-data QoS, the same for every variant. Publisher variants:

* ``node_playback``: the realsense node itself playing a 640x480 recording in real time through
  librealsense (synchronisation, alignment), stamped with the mapped device timestamps;
* ``plain_playback``: its like-for-like baseline: plain rclpy on the same streams from the same
  recording, read through the same librealsense pipeline (``RealSenseSource``) and stamped the
  same way, colour + CameraInfo then aligned depth + CameraInfo with the same sensor-data QoS,
  but published as a first rclpy node would: ``msg.data = array.tobytes()``, Fast DDS defaults;
* ``plain_color_depth``: synthetic frames (no librealsense), colour + 16UC1 depth, plain rclpy
  (``tobytes()``, Fast DDS defaults), sensor-data QoS: the baseline of the next three;
* ``nocopy_color_depth``: craik_perception.ros_image.fill_image (the numpy buffer goes into the
  message without the two Python-side copies), Fast DDS defaults;
* ``profile_color_depth``: ``tobytes()`` again, with the realsense node's Fast DDS profile
  (32 MiB shared-memory segment) in the publishing process;
* ``craik_color_depth``: both, which is how the realsense node publishes;
* ``plain_color``: colour only, plain rclpy, sensor-data QoS;
* ``plain_color_reliable``: colour only with reliable QoS (depth 10) on both sides. Not
  like-for-like (one stream, another QoS): it shows what reliable delivery costs in latency.

Each variant runs ``--runs`` times for ``--seconds``; the JSON gives every run, the median over
runs and the like-for-like pairs (``like_for_like``: the node's path against plain rclpy on the
same streams and QoS). It goes to ``--out`` (with the command, git commit, machine and date) and
to stdout. Run: ``python bench/bench_camera.py [--runs 3] [--seconds 5] [--only VARIANT ...]
[--out bench/results/camera.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np

from craik_bringup.graph import git_commit

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, FPS = 640, 480, 30
COLOR_TOPIC = '/camera/camera/color/image_raw'
DEPTH_TOPIC = '/camera/camera/aligned_depth_to_color/image_raw'
RELIABLE_TOPIC = '/bench_camera/reliable/color/image_raw'
SYNTHETIC = ('plain_color_depth', 'nocopy_color_depth', 'profile_color_depth',
             'craik_color_depth', 'plain_color', 'plain_color_reliable')
PLAYBACK = ('node_playback', 'plain_playback')
VARIANTS = PLAYBACK + SYNTHETIC
# (the node's path, plain rclpy on the same streams and QoS, what they share)
LIKE_FOR_LIKE = {
    'recording': ('node_playback', 'plain_playback',
                  'the same 640x480 @ 30 recording through librealsense (sync, alignment), '
                  'colour + aligned depth + CameraInfos, sensor-data QoS, device-time stamps'),
    'synthetic': ('craik_color_depth', 'plain_color_depth',
                  'the same synthetic 640x480 colour + depth frames at 30 Hz, sensor-data QoS, '
                  'stamped at publication'),
}
SETTLE_S = 1.0          # after the subscriber is matched, before frames count
RECORDING_FRAMES = 90   # 3 s loop for node_playback


# --- publisher processes -----------------------------------------------------------------------


def plain_image(array: np.ndarray, encoding: str, frame_id: str, stamp_ns: int) -> Any:
    """A sensor_msgs/Image filled the plain rclpy way: ``msg.data = array.tobytes()``."""
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    msg.height, msg.width = array.shape[:2]
    msg.encoding = encoding
    msg.step = array.shape[1] * array.itemsize * (array.shape[2] if array.ndim == 3 else 1)
    msg.data = array.tobytes()
    return msg


def publisher_main(variant: str, seconds: float) -> None:
    """Publish frames at 30 Hz after discovery; print a JSON line with what was published."""
    if variant in ('profile_color_depth', 'craik_color_depth'):
        from craik_perception.dds_profile import apply_large_data_profile
        apply_large_data_profile(os.environ)
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from craik_perception.ros_image import fill_image

    rclpy.init()
    node = Node('bench_camera_publisher')
    with_depth = variant not in ('plain_color', 'plain_color_reliable')
    nocopy = variant in ('nocopy_color_depth', 'craik_color_depth')
    if variant == 'plain_color_reliable':
        pubs = [node.create_publisher(Image, RELIABLE_TOPIC, 10)]
    else:
        pubs = [node.create_publisher(Image, COLOR_TOPIC, qos_profile_sensor_data)]
    if with_depth:
        pubs.append(node.create_publisher(Image, DEPTH_TOPIC, qos_profile_sensor_data))
    rng = np.random.default_rng(0)
    color = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    depth = rng.integers(300, 3000, (HEIGHT, WIDTH), dtype=np.uint16)
    deadline = time.monotonic() + 30.0
    while any(p.get_subscription_count() == 0 for p in pubs) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(SETTLE_S)
    count = int(seconds * FPS)
    publish_ms = []
    start = time.monotonic()
    for seq in range(count):
        due = start + seq / FPS
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        color[0, 0, 0] = seq & 0xFF                   # each frame differs a little
        stamp = time.time_ns()                        # "capture"
        t0 = time.perf_counter()
        for pub, array, encoding in zip(pubs, (color, depth), ('rgb8', '16UC1'),
                                        strict=False):
            frame = 'camera_color_optical_frame'
            if nocopy:
                msg = fill_image(Image(), array, encoding, frame, stamp)
            else:
                msg = plain_image(array, encoding, frame, stamp)
            pub.publish(msg)
        publish_ms.append((time.perf_counter() - t0) * 1e3)
    time.sleep(0.5)
    print(json.dumps({'published': count, 'publish_ms_median': float(np.median(publish_ms))}),
          flush=True)
    node.destroy_node()
    rclpy.shutdown()


def playback_publisher_main(recording: str, seconds: float) -> None:
    """``plain_playback``: the recording through the node's librealsense pipeline, published
    with plain rclpy after discovery; print a JSON line with what was published."""
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from craik_perception.image_conversion import camera_info_from_intrinsics
    from craik_perception.pipeline import FrameTimeoutError, RealSenseSource
    from craik_perception.profiles import RealSenseConfig
    from craik_perception.ros_image import camera_info_message, set_stamp
    from craik_perception.timestamps import DeviceClockMapper

    rclpy.init()
    node = Node('bench_camera_plain_playback')
    qos = qos_profile_sensor_data
    color_pub = node.create_publisher(Image, COLOR_TOPIC, qos)
    color_info_pub = node.create_publisher(CameraInfo, COLOR_TOPIC[:-len('image_raw')]
                                           + 'camera_info', qos)
    depth_pub = node.create_publisher(Image, DEPTH_TOPIC, qos)
    depth_info_pub = node.create_publisher(CameraInfo, DEPTH_TOPIC[:-len('image_raw')]
                                           + 'camera_info', qos)
    deadline = time.monotonic() + 30.0
    while (any(p.get_subscription_count() == 0 for p in (color_pub, depth_pub))
           and time.monotonic() < deadline):
        time.sleep(0.05)
    time.sleep(SETTLE_S)
    frame = 'camera_color_optical_frame'
    mapper = DeviceClockMapper()        # as the node's capture thread maps a recording's times
    published, publish_ms = 0, []
    with RealSenseSource(RealSenseConfig(rosbag_filename=recording, rosbag_loop=True)) as source:
        info = source.info
        assert info is not None
        color_info = camera_info_message(camera_info_from_intrinsics(info.color_intrinsics),
                                         frame)
        depth_info = camera_info_message(
            camera_info_from_intrinsics(info.output_depth_intrinsics), frame)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                bundle = source.read(min(0.5, max(0.01, end - time.monotonic())))
            except FrameTimeoutError:
                continue        # e.g. the loop rewinding; the node's capture thread waits too
            stamp = mapper.update(bundle.color_time_ms, time.time_ns())
            depth_stamp = mapper.map(bundle.depth_time_ms)
            t0 = time.perf_counter()
            color_pub.publish(plain_image(bundle.color, 'rgb8', frame, stamp))
            set_stamp(color_info.header, stamp)
            color_info_pub.publish(color_info)
            color_s = time.perf_counter() - t0
            depth = bundle.depth    # aligned here, after the colour went out, as in the node
            t0 = time.perf_counter()
            depth_pub.publish(plain_image(depth, '16UC1', frame, depth_stamp))
            set_stamp(depth_info.header, depth_stamp)
            depth_info_pub.publish(depth_info)
            publish_ms.append((color_s + time.perf_counter() - t0) * 1e3)
            published += 1
    time.sleep(0.5)
    print(json.dumps({'published': published,
                      'publish_ms_median': float(np.median(publish_ms))}), flush=True)
    node.destroy_node()
    rclpy.shutdown()


# --- subscriber (this process) -----------------------------------------------------------------


class Subscriber:
    """Records (receive time, header stamp) of every colour and depth image."""

    def __init__(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        self.node = Node('bench_camera_subscriber')
        self.records: dict[str, list[tuple[int, int]]] = {'color': [], 'depth': [],
                                                          'reliable': []}
        self.diagnostics: list[tuple[int, int]] = []       # (stamp_ns, frames published)
        self.node.create_subscription(Image, COLOR_TOPIC, self._callback('color'),
                                      qos_profile_sensor_data)
        self.node.create_subscription(Image, DEPTH_TOPIC, self._callback('depth'),
                                      qos_profile_sensor_data)
        self.node.create_subscription(Image, RELIABLE_TOPIC, self._callback('reliable'), 10)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()
        self._rclpy = rclpy

    def _callback(self, name: str):
        records = self.records[name]

        def callback(msg: Any) -> None:
            now = time.time_ns()
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            records.append((now, stamp))
        return callback

    def _on_diag(self, msg: Any) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if 'frames published' in values:
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                self.diagnostics.append((stamp, int(values['frames published'])))

    def reset(self) -> None:
        for records in self.records.values():
            records.clear()
        self.diagnostics.clear()

    def close(self) -> None:
        self._executor.shutdown()
        self.node.destroy_node()


def _latency_stats(lat_ms: np.ndarray) -> dict[str, float]:
    if lat_ms.size == 0:
        return {'median_ms': float('nan'), 'p95_ms': float('nan'), 'max_ms': float('nan')}
    return {'median_ms': round(float(np.median(lat_ms)), 3),
            'p95_ms': round(float(np.percentile(lat_ms, 95)), 3),
            'max_ms': round(float(lat_ms.max()), 3)}


def _analyse(records: dict[str, list[tuple[int, int]]], published: int,
             window: tuple[int, int] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {'published': published}
    per_stamp: dict[int, dict[str, int]] = {}
    for name, rows in records.items():
        if window is not None:
            rows = [r for r in rows if window[0] < r[1] <= window[1]]
        if not rows:
            continue
        arr = np.array([(now - stamp) / 1e6 for now, stamp in rows])
        out[name] = dict(_latency_stats(arr), received=len(rows),
                         delivered=round(min(1.0, len(rows) / published), 4)
                         if published else None)
        for now, stamp in rows:
            per_stamp.setdefault(stamp, {})[name] = now
    both = [max(v.values()) - s for s, v in per_stamp.items() if len(v) == len(records)]
    if len(records) > 1 and both:
        out['color_and_depth'] = _latency_stats(np.array(both) / 1e6)
    return out


def _run_publisher(sub: Subscriber, variant: str, seconds: float,
                   recording: Path | None = None) -> dict[str, Any]:
    """A publisher variant in its own process (synthetic frames, or ``plain_playback``)."""
    sub.reset()
    command = [sys.executable, __file__, '--publisher', variant, '--seconds', str(seconds)]
    if recording is not None:
        command += ['--recording', str(recording)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f'publisher {variant} failed:\n{proc.stderr[-2000:]}')
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    time.sleep(0.2)
    if variant == 'plain_color_reliable':
        records = {'color': list(sub.records['reliable'])}
    else:
        records = {'color': list(sub.records['color'])}
    if variant not in ('plain_color', 'plain_color_reliable'):
        records['depth'] = list(sub.records['depth'])
    result = _analyse(records, report['published'])
    result['publish_call_ms_median'] = round(report['publish_ms_median'], 3)
    return result


def _make_recording(folder: Path) -> Path:
    from craik_perception.bag_writer import RecordingWriter, SyntheticCamera, box_scene
    from craik_perception.image_conversion import Intrinsics

    camera = SyntheticCamera(depth=Intrinsics(WIDTH, HEIGHT, 385.0, 385.0, 320.0, 240.0))
    path = folder / 'bench_640x480.db3'
    scenes = [box_scene(camera, index=i, box_center_m=(-0.05 + 0.001 * i, 0.0))
              for i in range(RECORDING_FRAMES)]
    with RecordingWriter(path, camera) as writer:
        for scene in scenes:
            writer.write(scene.color, scene.depth_raw)
    return path


def _run_node(sub: Subscriber, recording: Path, seconds: float) -> dict[str, Any]:
    sub.reset()
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    proc = subprocess.Popen(
        [sys.executable, '-m', 'craik_perception.realsense_node', '--ros-args',
         '-p', f'rosbag_filename:={recording}', '-p', 'rosbag_loop:=true',
         '-p', 'diagnostics_period:=0.5'],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 30.0
        while not sub.records['color'] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(SETTLE_S)
        start = len(sub.diagnostics)
        time.sleep(seconds)
        diags = list(sub.diagnostics[start:])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    if len(diags) < 2:
        raise RuntimeError('node_playback: no diagnostics from the node')
    (t0, n0), (t1, n1) = diags[0], diags[-1]
    records = {'color': list(sub.records['color']), 'depth': list(sub.records['depth'])}
    return _analyse(records, n1 - n0, window=(t0, t1))


def _median_over_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ('color', 'depth', 'color_and_depth'):
        rows = [r[key] for r in runs if key in r]
        if rows:
            out[key] = {k: round(float(np.median([row[k] for row in rows if row[k] is not None])),
                                 4) for k in rows[0] if k != 'received'}
    if all('publish_call_ms_median' in r for r in runs):
        out['publish_call_ms'] = round(float(np.median(
            [r['publish_call_ms_median'] for r in runs])), 3)
    return out


def _copy_costs() -> dict[str, float]:
    """Per-frame cost of the Python-side copies (colour 640x480 rgb8), in ms, in-process."""
    import array

    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    from craik_perception.ros_image import fill_image

    color = np.random.default_rng(1).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)

    def timed(fn, n=50):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return round(float(np.median(times)) * 1e3, 4)

    def via_bytes():
        msg = Image()
        msg.data = color.tobytes()
        return serialize_message(msg)

    def via_numpy():
        msg = Image()
        fill_image(msg, color, 'rgb8', 'f', 0)
        return serialize_message(msg)

    small = color[:48, :64]
    return {
        'tobytes': timed(color.tobytes),
        'data_setter_from_bytes': timed(lambda: setattr(Image(), 'data', color.tobytes())),
        # The setter iterates element by element for anything but bytes/list: a 64x48 image
        # (1/100 of the pixels) is enough to see it.
        'data_setter_from_numpy_64x48': timed(
            lambda: setattr(Image(), 'data', small.reshape(-1)), 5),
        'array_frombytes_memoryview': timed(
            lambda: array.array('B').frombytes(memoryview(color).cast('B'))),
        'serialize_via_bytes': timed(via_bytes),
        'serialize_via_fill_image': timed(via_numpy),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--seconds', type=float, default=5.0)
    parser.add_argument('--only', nargs='*', choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument('--out', type=Path, default=ROOT / 'bench' / 'results' / 'camera.json',
                        help='where the JSON goes (also printed)')
    parser.add_argument('--publisher', choices=SYNTHETIC + ('plain_playback',),
                        help=argparse.SUPPRESS)
    parser.add_argument('--recording', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publisher == 'plain_playback':
        playback_publisher_main(args.recording, args.seconds)
        return 0
    if args.publisher:
        publisher_main(args.publisher, args.seconds)
        return 0

    from craik_bringup.graph import reserve_ros_domain

    os.environ['ROS_DOMAIN_ID'] = str(reserve_ros_domain())
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    import rclpy
    rclpy.init()
    sub = Subscriber()
    results: dict[str, Any] = {}
    recording = None
    tmp = tempfile.TemporaryDirectory(prefix='craik-bench-camera-')
    try:
        if set(PLAYBACK) & set(args.only):
            recording = _make_recording(Path(tmp.name))
        for run in range(args.runs):
            # Interleave the variants so that background load hits them alike.
            for variant in args.only:
                if variant == 'node_playback':
                    assert recording is not None
                    outcome = _run_node(sub, recording, args.seconds)
                elif variant == 'plain_playback':
                    outcome = _run_publisher(sub, variant, args.seconds, recording)
                else:
                    outcome = _run_publisher(sub, variant, args.seconds)
                results.setdefault(variant, []).append(outcome)
                print(f'[bench_camera] run {run + 1}/{args.runs} {variant}: '
                      f'{json.dumps(_median_over_runs([outcome]))}', file=sys.stderr)
        copies = _copy_costs()
    finally:
        sub.close()
        rclpy.shutdown()
        tmp.cleanup()
    medians = {v: _median_over_runs(r) for v, r in results.items()}
    report = {
        'bench': 'camera',
        'command': ' '.join(['python', *sys.argv]), 'git_commit': git_commit(ROOT),
        'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'machine': f'{platform.machine()} {os.cpu_count()} cores',
        'load_avg_1min': round(os.getloadavg()[0], 2), 'python': platform.python_version(),
        'what': 'header stamp -> subscriber callback in another process, 640x480 @ 30 Hz, '
                'sensor-data QoS unless the variant says otherwise, Fast DDS, localhost',
        'runs': args.runs, 'seconds_per_run': args.seconds,
        'like_for_like': {name: {'node_path': node, 'plain_rclpy': plain, 'same': same,
                                 node: medians[node], plain: medians[plain]}
                          for name, (node, plain, same) in LIKE_FOR_LIKE.items()
                          if node in medians and plain in medians},
        'median_of_runs': medians,
        'copy_costs_ms': copies,
        'runs_detail': results,
    }
    text = json.dumps(report, indent=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + '\n')
    print(text)
    print(f'[bench_camera] wrote {args.out}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
