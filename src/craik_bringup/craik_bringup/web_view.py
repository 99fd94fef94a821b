"""`craik view`: the running graph in a web browser, for machines without rviz2.

Subscribes to what config/rviz/craik.rviz shows and serves it as a local web page (viser:
three.js over a websocket; ``craik_bringup.web_scene`` builds the scene from arrays):

=================================  ==============================  ===========================
topic                              type                            shown as
=================================  ==============================  ===========================
/joint_states                      sensor_msgs/JointState          the FR3 (simulator meshes)
/camera/camera/color/image_raw     sensor_msgs/Image               image "camera"
/planner/imagined_goal             sensor_msgs/Image               image "imagined goal"
/planner/plan_markers              visualization_msgs/MarkerArray  line strips (planned path)
/mapping/gaussians                 sensor_msgs/PointCloud2         a point per Gaussian
=================================  ==============================  ===========================

Every subscription is best effort (it connects to reliable and best-effort publishers alike);
only the newest message of each topic is kept, and the page is refreshed ``--rate`` times a
second, so a slow browser never backs up the graph. A message the view cannot show (unknown
encoding, a frame other than fr3_link0, missing fields) is reported in the panel and the log,
never drawn wrongly. To look at a recording, replay it (``craik replay BAG``) and run
``craik view`` beside it: the view only sees topics.
"""

from __future__ import annotations

import argparse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
import os
import sys
import time
from typing import Any

from craik_bringup.web_scene import (
    FIXED_FRAME,
    Gaussians,
    MarkerPaths,
    RobotModel,
    ViewError,
    WebScene,
    display_image,
    joint_positions,
    unpack_gaussians,
)

JOINT_STATES_TOPIC = '/joint_states'
CAMERA_TOPIC = '/camera/camera/color/image_raw'
IMAGINED_GOAL_TOPIC = '/planner/imagined_goal'
PLAN_MARKERS_TOPIC = '/planner/plan_markers'
GAUSSIANS_TOPIC = '/mapping/gaussians'


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of `craik view`."""
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to serve on (default 127.0.0.1, this machine only; '
                             '0.0.0.0 serves every network interface)')
    parser.add_argument('--port', type=int, default=8080,
                        help='port to serve on (default 8080; the next free one if taken)')
    parser.add_argument('--rate', type=float, default=10.0,
                        help='page refreshes per second (default 10)')
    parser.add_argument('--max-points', type=int, default=100_000,
                        help='most Gaussians of the map drawn (a uniform sample beyond; '
                             'default 100000)')
    parser.add_argument('--image-width', type=int, default=640,
                        help='images wider than this are shrunk for the page (default 640)')
    parser.add_argument('--no-robot', action='store_true',
                        help='do not load the FR3 meshes (no MuJoCo / franky-sim needed)')


@dataclass
class _Topic:
    """The newest message of a topic, what became of it, and when messages arrived."""

    name: str
    message: Any = None
    fresh: bool = False
    received: deque[float] = field(default_factory=lambda: deque(maxlen=50))
    summary: str = ''
    error: str = ''

    def rate_hz(self, now: float, window_s: float = 2.0) -> float:
        recent = [t for t in self.received if now - t <= window_s]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def line(self, now: float) -> str:
        if not self.received:
            return f'- `{self.name}`: waiting'
        age = now - self.received[-1]
        text = f'- `{self.name}`: {self.rate_hz(now):.1f} Hz'
        if age > 2.0:
            text += f', last {age:.0f} s ago'
        if self.summary:
            text += f', {self.summary}'
        if self.error:
            text += f' — **not shown: {self.error}**'
        return text


def _make_node(scene: WebScene, args: argparse.Namespace) -> Any:
    """The rclpy node (imported here so that `--help` needs no ROS)."""
    from rclpy.node import Node
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, JointState, PointCloud2
    from visualization_msgs.msg import MarkerArray

    class WebViewNode(Node):
        """Keeps the newest message of each topic; a timer puts them on the page."""

        def __init__(self) -> None:
            super().__init__('craik_view')
            self.scene = scene
            self.image_width = int(args.image_width)
            self.topics = {name: _Topic(name) for name in (
                JOINT_STATES_TOPIC, CAMERA_TOPIC, IMAGINED_GOAL_TOPIC, PLAN_MARKERS_TOPIC,
                GAUSSIANS_TOPIC)}
            self.plans = MarkerPaths()      # expiry on the monotonic clock
            self._shown_paths: set[str] = set()
            self._logged: set[tuple[str, str]] = set()
            self._last_status = 0.0
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                             reliability=ReliabilityPolicy.BEST_EFFORT)
            for name, msg_type in ((JOINT_STATES_TOPIC, JointState), (CAMERA_TOPIC, Image),
                                   (IMAGINED_GOAL_TOPIC, Image),
                                   (PLAN_MARKERS_TOPIC, MarkerArray),
                                   (GAUSSIANS_TOPIC, PointCloud2)):
                self.create_subscription(msg_type, name, self._keeper(name), qos)
            self.create_timer(1.0 / args.rate, self.refresh)

        def _keeper(self, name: str) -> Callable[[Any], None]:
            topic = self.topics[name]

            def keep(msg: Any) -> None:
                topic.received.append(time.monotonic())
                if name == PLAN_MARKERS_TOPIC:
                    self._take_markers(msg)     # every array counts (deletions, namespaces)
                topic.message, topic.fresh = msg, True
            return keep

        def _report(self, topic: _Topic, error: str) -> None:
            topic.error = error
            if error and (topic.name, error) not in self._logged:
                self._logged.add((topic.name, error))
                self.get_logger().warning(f'{topic.name}: {error}')

        def refresh(self) -> None:
            now = time.monotonic()
            for name, show in ((JOINT_STATES_TOPIC, self._show_joints),
                               (CAMERA_TOPIC, self._show_image),
                               (IMAGINED_GOAL_TOPIC, self._show_image),
                               (GAUSSIANS_TOPIC, self._show_gaussians)):
                topic = self.topics[name]
                if not topic.fresh:
                    continue
                topic.fresh = False
                try:
                    show(topic)
                    topic.error = ''
                except (ViewError, ValueError) as exc:
                    self._report(topic, str(exc))
            self._show_paths(now)
            if now - self._last_status >= 0.5:
                self._last_status = now
                lines = [topic.line(now) for topic in self.topics.values()]
                domain = os.environ.get('ROS_DOMAIN_ID', '0')
                self.scene.set_status(f'**craik view** (ROS domain {domain})\n\n'
                                      + '\n'.join(lines))

        def _show_joints(self, topic: _Topic) -> None:
            msg = topic.message
            q, width = joint_positions(list(msg.name), list(msg.position))
            self.scene.set_joints(q, width)
            grip = 'gripper ?' if width is None else f'gripper {max(width, 0.0) * 100:.1f} cm'
            topic.summary = grip

        def _show_image(self, topic: _Topic) -> None:
            msg = topic.message
            rgb = display_image(msg.encoding, msg.width, msg.height, msg.step, msg.data,
                                is_bigendian=msg.is_bigendian, max_width=self.image_width)
            key = 'camera' if topic.name == CAMERA_TOPIC else 'goal'
            self.scene.set_image(key, rgb)
            topic.summary = f'{msg.width}×{msg.height} {msg.encoding}'

        def _show_gaussians(self, topic: _Topic) -> None:
            msg = topic.message
            if msg.header.frame_id not in ('', FIXED_FRAME):
                raise ViewError(f'frame {msg.header.frame_id!r} is not {FIXED_FRAME} (the view '
                                'has no /tf)')
            fields = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
            gaussians: Gaussians = unpack_gaussians(fields, msg.point_step,
                                                    msg.width * msg.height, msg.data,
                                                    msg.is_bigendian)
            shown = self.scene.set_gaussians(gaussians)
            topic.summary = (f'{len(gaussians)} Gaussians' if shown == len(gaussians)
                             else f'{shown} of {len(gaussians)} Gaussians drawn')

        def _take_markers(self, msg: Any) -> None:
            topic = self.topics[PLAN_MARKERS_TOPIC]
            ignored, errors = self.plans.update(msg.markers, time.monotonic())
            topic.summary = (f'{len(self.plans.paths)} path(s)'
                             + (f', {ignored} marker(s) not line strips ignored' if ignored
                                else ''))
            self._report(topic, '; '.join(errors))

        def _show_paths(self, now: float) -> None:
            self.plans.expire(now)
            for key in self._shown_paths - set(self.plans.paths):
                self.scene.set_plan(key, None)
            topic = self.topics[PLAN_MARKERS_TOPIC]
            if topic.fresh:
                topic.fresh = False
                for key, (points, color, _) in self.plans.paths.items():
                    self.scene.set_plan(key, points, color)
            self._shown_paths = set(self.plans.paths)

    return WebViewNode()


def run(args: argparse.Namespace) -> int:
    """Serve the page until interrupted (Ctrl-C or SIGTERM)."""
    if args.rate <= 0 or args.max_points < 1 or args.image_width < 16:
        print('craik view: --rate must be > 0, --max-points >= 1 and --image-width >= 16',
              file=sys.stderr)
        return 2
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from craik_perception.dds_profile import apply_large_data_profile

    dds = apply_large_data_profile(os.environ)
    robot = None
    if not args.no_robot:
        try:
            robot = RobotModel()
        except (ImportError, ValueError, OSError) as exc:
            print(f'craik view: no robot model ({type(exc).__name__}: {exc}); showing the '
                  'rest', file=sys.stderr)
    scene = WebScene(args.host, args.port, robot=robot, max_points=args.max_points)
    rclpy.init()
    node = None
    try:
        node = _make_node(scene, args)
        host = 'localhost' if args.host in ('127.0.0.1', '0.0.0.0') else args.host
        print(f'craik view: serving http://{host}:{scene.port}/ (ROS domain '
              f"{os.environ.get('ROS_DOMAIN_ID', '0')}; {dds}); Ctrl-C stops", flush=True)
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        scene.close()
    return 0
