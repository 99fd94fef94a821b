"""`craik view` end to end: the command in its own process and ROS domain, the graph's topics
published by this test, the page loaded in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven through Selenium).

What is published is a real simulator frame: the fast environment's 640x480 camera image of a
push episode, the robot's joint positions in that frame, the goal state's render as the
imagined goal, a straight planned path from the TCP to the goal TCP, and a Gaussian map
stand-in (the depth back-projected through the calibrated camera, packed by the
gaussian_mapper node's own ``cloud_message``). The page must show

* each topic as received in its status panel;
* the camera image and the imagined goal, pixel for pixel (read back from the page's <img>
  elements, and the camera image also from a screenshot of where it is on screen);
* the robot in the 3D canvas, following /joint_states: turning joint 1 changes the canvas,
  while nothing else does between two screenshots of the same state.

The screenshot is written to the test's tmp_path and, when ``CRAIK_WEB_VIEW_SCREENSHOT`` names
a file, there too (that is how bench/results/web_view.png is made).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
import io
import os
from pathlib import Path
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest

CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
CHROMEDRIVER = shutil.which('chromedriver') or '/usr/bin/chromedriver'
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip('needs Debian chromium and chromium-driver (/usr/bin/chromium, '
                '/usr/bin/chromedriver), which `make setup` installs when run as root',
                allow_module_level=True)
webdriver = pytest.importorskip('selenium.webdriver',
                                reason='needs selenium (scripts/requirements.txt)')

pytestmark = pytest.mark.slow

WINDOW = (1400, 900)
PANEL_LEFT_PX = 980        # the control panel floats right of this; the 3D canvas is left of it
GOAL_SIZE = (128, 96)      # the imagined goal as a world model decodes it: small


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


@dataclass
class SimFrame:
    """One simulated moment, as the graph would publish it."""

    rgb: np.ndarray          # [480, 640, 3]
    goal_rgb: np.ndarray     # [96, 128, 3]
    q: np.ndarray            # [7]
    gripper_width_m: float
    path: np.ndarray         # [9, 3] TCP -> goal TCP
    means: np.ndarray        # [N, 3] the map stand-in
    colours: np.ndarray      # [N, 3] in [0, 1]


@pytest.fixture(scope='module')
def frame() -> SimFrame:
    from craik_franka.kinematics import quaternion_to_matrix
    from craik_sim.fast_env import FastEnv, FastEnvConfig

    with FastEnv(FastEnvConfig(image_width=640, image_height=480)) as env:
        obs = env.reset('push', seed=3)
        goal_rgb, _ = env.render_state(env.goal_q)
        goal_tcp = np.asarray(env.spec.goal_tcp_pos, dtype=float)
        calibration = env.calibration
    assert obs.rgb is not None and obs.depth_m is not None
    k = calibration.intrinsics
    v, u = np.mgrid[0:480:3, 0:640:3]
    d = obs.depth_m[v, u]
    ok = (d > 0.1) & (d < 3.0)
    cam = np.stack([(u[ok] - k.cx) / k.fx * d[ok], (v[ok] - k.cy) / k.fy * d[ok], d[ok]], axis=1)
    world = cam @ quaternion_to_matrix(calibration.rotation_xyzw).T + np.asarray(
        calibration.translation)
    table = (world[:, 2] < 0.12) & (world[:, 0] > 0.15) & (np.abs(world[:, 1]) < 0.55)
    h, w = goal_rgb.shape[0] // GOAL_SIZE[1], goal_rgb.shape[1] // GOAL_SIZE[0]
    goal_small = goal_rgb.reshape(GOAL_SIZE[1], h, GOAL_SIZE[0], w, 3).mean(axis=(1, 3))
    return SimFrame(rgb=np.ascontiguousarray(obs.rgb), goal_rgb=np.rint(goal_small).astype(
        np.uint8), q=np.asarray(obs.q, dtype=float), gripper_width_m=float(obs.gripper_width_m),
        path=np.linspace(obs.ee_pos, goal_tcp, 9), means=world[table].astype(np.float32),
        colours=obs.rgb[v, u][ok][table] / 255.0)


class Publisher:
    """The graph's side: publishes the frame's topics at 10 Hz from a thread; ``q`` may change."""

    def __init__(self, domain: int, frame: SimFrame) -> None:
        from geometry_msgs.msg import Point
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image, JointState, PointCloud2
        from std_msgs.msg import Header
        from visualization_msgs.msg import Marker, MarkerArray

        from craik_mapping.gaussian_mapper_node import cloud_message

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node('web_view_test_graph', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.q = frame.q.copy()
        self._frame = frame
        pub = self.node.create_publisher
        self._camera = pub(Image, '/camera/camera/color/image_raw', qos_profile_sensor_data)
        self._goal = pub(Image, '/planner/imagined_goal', 10)
        self._joints = pub(JointState, '/joint_states', 10)
        self._markers = pub(MarkerArray, '/planner/plan_markers', 10)
        self._cloud = pub(PointCloud2, '/mapping/gaussians', 1)

        def image(rgb: np.ndarray) -> Any:
            return Image(height=rgb.shape[0], width=rgb.shape[1], encoding='rgb8',
                         step=3 * rgb.shape[1], data=rgb.tobytes())

        self._camera_msg, self._goal_msg = image(frame.rgb), image(frame.goal_rgb)
        marker = Marker(ns='planned_ee_path', id=0, type=Marker.LINE_STRIP, action=Marker.ADD)
        marker.header.frame_id = 'fr3_link0'
        marker.scale.x = 0.005
        marker.color.r, marker.color.g, marker.color.b, marker.color.a = 0.1, 0.8, 0.2, 1.0
        marker.pose.orientation.w = 1.0
        marker.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in frame.path]
        self._markers_msg = MarkerArray(markers=[marker])
        n = len(frame.means)
        self._cloud_msg = cloud_message(frame.means, frame.colours,
                                        np.full(n, 0.004, np.float32),
                                        np.full(n, 0.9, np.float32), Header(frame_id='fr3_link0'))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        from sensor_msgs.msg import JointState

        tick = 0
        while not self._stop.is_set():
            half = self._frame.gripper_width_m / 2
            self._joints.publish(JointState(
                name=[f'fr3_joint{i}' for i in range(1, 8)] + ['fr3_finger_joint1',
                                                               'fr3_finger_joint2'],
                position=[float(v) for v in self.q] + [half, half]))
            self._camera.publish(self._camera_msg)
            self._goal.publish(self._goal_msg)
            self._markers.publish(self._markers_msg)
            if tick % 10 == 0:
                self._cloud.publish(self._cloud_msg)
            tick += 1
            self.executor.spin_once(timeout_sec=0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)


class CraikView:
    """`craik view` as a user starts it, on a free port, in the test's own ROS domain."""

    def __init__(self, domain: int) -> None:
        self.port = free_port()
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED='1')
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'craik_bringup.cli', 'view', '--port', str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self._serving = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith('craik view: serving'):
                self._serving.set()

    def wait_serving(self, timeout_s: float = 90.0) -> str:
        assert self._serving.wait(timeout_s), f'craik view did not start:\n{self.log()}'
        match = re.search(r'http://[^/\s]+:(\d+)/', ''.join(self.lines))
        assert match and int(match.group(1)) == self.port, self.log()
        return f'http://127.0.0.1:{self.port}/'

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)

    def log(self) -> str:
        return ''.join(self.lines)


@pytest.fixture
def view(fresh_ros_domain: int) -> Iterator[CraikView]:
    process = CraikView(fresh_ros_domain)
    yield process
    process.stop()


@pytest.fixture
def graph(fresh_ros_domain: int, frame: SimFrame) -> Iterator[Publisher]:
    publisher = Publisher(fresh_ros_domain, frame)
    yield publisher
    publisher.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage',
                '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
                f'--window-size={WINDOW[0]},{WINDOW[1]}', '--hide-scrollbars'):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    # The page's viewport exactly WINDOW (the window size includes the browser's frame).
    driver.execute_cdp_cmd('Emulation.setDeviceMetricsOverride', {
        'width': WINDOW[0], 'height': WINDOW[1], 'deviceScaleFactor': 1, 'mobile': False})
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


# Every <img> of the panel with its label (the text of the box around it) and pixels sampled
# at the centres of a cols x rows grid over its natural size.
READ_IMAGES_JS = """
const [cols, rows] = arguments;
const out = [];
for (const img of document.querySelectorAll('img')) {
  if (!img.complete || !img.naturalWidth) continue;
  const box = img.parentElement && img.parentElement.parentElement;
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const px = [];
  for (let j = 0; j < rows; j++) for (let i = 0; i < cols; i++) {
    const x = Math.floor((i + 0.5) * c.width / cols), y = Math.floor((j + 0.5) * c.height / rows);
    const d = ctx.getImageData(x, y, 1, 1).data; px.push(d[0], d[1], d[2]);
  }
  const r = img.getBoundingClientRect();
  out.push({label: box ? box.textContent.trim() : '', w: img.naturalWidth,
            h: img.naturalHeight, px: px, rect: [r.left, r.top, r.width, r.height]});
}
return out;
"""
GRID = (32, 24)


def _sampled(rgb: np.ndarray, cols: int, rows: int, scale: int = 1) -> np.ndarray:
    h, w = rgb.shape[0] * scale, rgb.shape[1] * scale
    xs = (np.floor((np.arange(cols) + 0.5) * w / cols) // scale).astype(int)
    ys = (np.floor((np.arange(rows) + 0.5) * h / rows) // scale).astype(int)
    return rgb[ys][:, xs].reshape(-1, 3).astype(float)


def _wait_for(condition: Any, timeout_s: float, what: str, view: CraikView) -> Any:
    end = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < end:
        last = condition()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f'timed out after {timeout_s:.0f} s waiting for {what}; last: {last!r}\n'
                f'craik view log:\n{view.log()}')


def _screenshot(driver: Any) -> np.ndarray:
    from PIL import Image as PILImage

    return np.asarray(PILImage.open(io.BytesIO(driver.get_screenshot_as_png())).convert('RGB'))


def test_page_shows_live_camera_image_goal_robot_plan_and_map(
        view: CraikView, graph: Publisher, browser: Any, frame: SimFrame,
        tmp_path: Path) -> None:
    url = view.wait_serving()
    browser.get(url)
    # The page is viser's client: a WebGL canvas for the 3D scene.
    assert _wait_for(lambda: browser.execute_script(
        "const c = document.querySelector('canvas');"
        "return !!(c && (c.getContext('webgl2') || c.getContext('webgl')));"),
        60, 'a WebGL canvas', view)

    # 1. The status panel lists every topic as received, with what the view made of it.
    def status() -> str | None:
        text = browser.execute_script('return document.body.innerText') or ''
        wanted = (r'/joint_states: [\d.]+ Hz, gripper', r'image_raw: [\d.]+ Hz, 640×480 rgb8',
                  r'imagined_goal: [\d.]+ Hz, 128×96 rgb8',
                  r'plan_markers: [\d.]+ Hz, 1 path\(s\)',
                  rf'gaussians: [\d.]+ Hz, {len(frame.means)} Gaussians')
        return text if all(re.search(w, text) for w in wanted) else None

    text = _wait_for(status, 90, 'every topic in the status panel', view)
    assert 'not shown' not in text, text

    # 2. The camera image and the imagined goal, as published (JPEG at quality 90).
    def images() -> dict[str, Any] | None:
        found = {item['label']: item for item in browser.execute_script(READ_IMAGES_JS, *GRID)}
        camera, goal = found.get('camera'), found.get('imagined goal')
        if not (camera and goal and camera['w'] == 640 and goal['w'] == 256):
            return None
        return {'camera': camera, 'goal': goal}

    shown = _wait_for(images, 60, 'the camera image and the goal on the page', view)
    camera_px = np.asarray(shown['camera']['px'], dtype=float).reshape(-1, 3)
    goal_px = np.asarray(shown['goal']['px'], dtype=float).reshape(-1, 3)
    camera_err = np.abs(camera_px - _sampled(frame.rgb, *GRID)).mean()
    goal_err = np.abs(goal_px - _sampled(frame.goal_rgb, *GRID, scale=2)).mean()
    assert camera_err < 6.0, f'camera image differs from the published one by {camera_err:.1f}'
    assert goal_err < 6.0, f'imagined goal differs from the published one by {goal_err:.1f}'
    # A control: the comparison tells images apart (the goal state is not the current one).
    other = np.abs(camera_px - _sampled(frame.rgb[::-1], *GRID)).mean()
    assert other > 4 * camera_err, (other, camera_err)

    # Close viser's "software WebGL" notice: it would cover the 3D view in the screenshot.
    browser.execute_script(
        "document.querySelectorAll('.mantine-Notification-closeButton, "
        "[class*=Notification] button').forEach(b => b.click());")
    time.sleep(2.0)

    # ... and the camera image is visible on screen where the page lays it out. The layout is
    # read again with each screenshot, for up to 10 s while the page settles after the notice
    # closes: one comparison made once, right after it, differed by 53 in a CI run (the cause
    # was not pinned down: the notice fading, or the panel moving under a rectangle read
    # before it closed).
    from PIL import Image as PILImage

    def camera_on_screen() -> tuple[float, np.ndarray, tuple[int, ...]]:
        camera = next(item for item in browser.execute_script(READ_IMAGES_JS, *GRID)
                      if item['label'] == 'camera')
        rect = tuple(int(round(v)) for v in camera['rect'])
        left, top, width, height = rect
        shot = _screenshot(browser)
        expected = np.asarray(PILImage.fromarray(frame.rgb).resize((width, height),
                                                                   PILImage.BILINEAR),
                              dtype=float)
        on_screen = shot[top:top + height, left:left + width].astype(float)
        if on_screen.shape != expected.shape:   # not inside the window (yet)
            return float('inf'), shot, rect
        return float(np.abs(on_screen - expected)[2:-2, 2:-2].mean()), shot, rect

    settle_end = time.monotonic() + 10.0
    screen_err, shot, rect = camera_on_screen()
    while screen_err >= 12.0 and time.monotonic() < settle_end:
        time.sleep(0.5)
        screen_err, shot, rect = camera_on_screen()
    left, top, width, height = rect
    assert width >= 300 and left + width <= shot.shape[1] and top + height <= shot.shape[0]
    assert screen_err < 12.0, f'camera image on screen differs by {screen_err:.1f}'

    # 3. The robot: the 3D canvas changes when (and only when) /joint_states does.
    canvas_a = shot[:, :PANEL_LEFT_PX].astype(int)
    time.sleep(1.5)
    canvas_a2 = _screenshot(browser)[:, :PANEL_LEFT_PX].astype(int)
    still = int((np.abs(canvas_a - canvas_a2).max(axis=2) > 40).sum())
    graph.q = frame.q + np.array([0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])

    def moved() -> int | None:
        canvas_b = _screenshot(browser)[:, :PANEL_LEFT_PX].astype(int)
        changed = int((np.abs(canvas_a - canvas_b).max(axis=2) > 40).sum())
        return changed if changed > 3000 else None

    changed = _wait_for(moved, 60, 'the robot to turn with joint 1', view)
    assert still < changed / 20, f'the canvas changes by itself: {still} vs {changed} pixels'

    # Back to the frame's pose for the picture.
    graph.q = frame.q.copy()
    _wait_for(lambda: int((np.abs(canvas_a - _screenshot(browser)[:, :PANEL_LEFT_PX]
                                  .astype(int)).max(axis=2) > 40).sum()) < max(still, 50) * 4,
              60, 'the robot to turn back', view)
    png = browser.get_screenshot_as_png()
    (tmp_path / 'web_view.png').write_bytes(png)
    if os.environ.get('CRAIK_WEB_VIEW_SCREENSHOT'):
        Path(os.environ['CRAIK_WEB_VIEW_SCREENSHOT']).write_bytes(png)

    assert view.stop() == 0, view.log()
    assert 'Traceback' not in view.log(), view.log()
