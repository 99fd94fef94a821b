"""`craik goal` (craik_bringup.goal_command): arguments, goal files, exit codes, and the command
against real ReachGoal action servers and camera publishers over DDS (no ROS graph needed).

The action server here is a real rclpy ActionServer in a context of its own, scripted per test
(result status, steps, whether it accepts goals and cancels); the server that dies mid-goal is
test/reach_goal_echo_server.py in its own process. Ctrl-C is a real SIGINT / SIGTERM to a
`craik goal` subprocess.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
import io
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
from PIL import Image as PilImage
import pytest
import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image

from craik_bringup import goal_command as gc
from craik_interfaces.action import ReachGoal
from craik_perception.image_conversion import decode_image

Result = ReachGoal.Result
ECHO_SERVER = Path(__file__).resolve().parents[3] / 'test' / 'reach_goal_echo_server.py'


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='craik goal')
    gc.configure_parser(parser)
    return parser.parse_args(argv)


def run_goal(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = gc.run(parse(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def _rgb(width: int = 64, height: int = 48) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 4 % 256, y * 5 % 256, (x + y) % 256], axis=-1).astype(np.uint8)


def _depth_mm(width: int = 64, height: int = 48) -> np.ndarray:
    depth = (np.arange(width * height, dtype=np.int64).reshape(height, width) * 37 % 3000
             + 300).astype(np.uint16)
    depth[0, 0], depth[0, 1] = 0, 65535        # no return; the far end of 16UC1
    return depth


@pytest.fixture
def goal_files(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A colour + depth goal in the snapshot format."""
    rgb, depth = _rgb(), _depth_mm()
    color_path, depth_path = tmp_path / 'goal.png', tmp_path / 'goal_depth.png'
    gc.save_goal_images(rgb, depth, color_path, depth_path)
    return color_path, depth_path, rgb, depth


# ---- arguments ------------------------------------------------------------------------------

def test_image_or_snapshot_is_required_and_not_both(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ['--image', 'a.png', '--snapshot', 'b.png']):
        with pytest.raises(SystemExit) as exc:
            parse(argv)
        assert exc.value.code == 2
    assert 'not allowed with argument' in capsys.readouterr().err


@pytest.mark.parametrize('argv, message', [
    (['--timeout', '-1'], 'argument --timeout: must be >= 0'),
    (['--timeout', 'nan'], 'argument --timeout: must be >= 0'),
    (['--timeout', 'soon'], "argument --timeout: not a number: 'soon'"),
    (['--max-steps', '-3'], 'argument --max-steps: must be >= 0'),
    (['--max-steps', '2.5'], "argument --max-steps: not a number: '2.5'"),
    (['--max-steps', str(2**32)], 'at most 4294967295'),
    (['--tolerance', '-0.1'], 'argument --tolerance: must be >= 0'),
    (['--tolerance', 'inf'], 'argument --tolerance: must be >= 0'),
    (['--server-timeout', '0'], 'argument --server-timeout: must be > 0'),
    (['--cancel-timeout', '-2'], 'argument --cancel-timeout: must be > 0'),
])
def test_bad_numbers_are_usage_errors(argv: list[str], message: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(['--image', 'goal.png', *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_defaults_send_zero_fields() -> None:
    args = parse(['--image', 'goal.png'])
    assert (args.timeout, args.max_steps, args.tolerance, args.depth) == (None, None, None, None)
    assert args.server_timeout == 10.0 and args.action == '/planner/reach_goal'
    snap = parse(['--snapshot', 'x.png'])
    assert snap.color_topic == '/camera/camera/color/image_raw'
    assert snap.depth_topic == '/camera/camera/aligned_depth_to_color/image_raw'


@pytest.mark.parametrize('argv, message', [
    (['--snapshot', 'x.png', '--max-steps', '3'], '--max-steps cannot be used with --snapshot'),
    (['--snapshot', 'x.png', '--depth', 'd.png', '--timeout', '1'],
     '--depth, --timeout cannot be used with --snapshot'),
    (['--image', 'x.png', '--depth-out', 'd.png'], '--depth-out cannot be used with --image'),
])
def test_options_of_the_other_mode_are_refused(argv: list[str], message: str) -> None:
    code, out, err = run_goal(argv)
    assert code == gc.EXIT_USAGE and out == ''
    assert message in err


# ---- goal files -----------------------------------------------------------------------------

def test_goal_request_carries_the_files_and_limits(goal_files: Any) -> None:
    color_path, depth_path, rgb, depth = goal_files
    request, notes = gc.build_goal_request(color_path, depth_path, energy_tolerance=0.05,
                                           max_steps=7, timeout_s=2.5)
    assert notes == []
    img, dep = request.goal_image, request.goal_depth
    assert (img.encoding, img.width, img.height, img.step) == ('rgb8', 64, 48, 64 * 3)
    assert (dep.encoding, dep.width, dep.height, dep.step) == ('16UC1', 64, 48, 64 * 2)
    np.testing.assert_array_equal(decode_image(img.encoding, img.width, img.height, img.step,
                                               img.data), rgb)
    np.testing.assert_array_equal(decode_image(dep.encoding, dep.width, dep.height, dep.step,
                                               dep.data, is_bigendian=dep.is_bigendian), depth)
    assert (request.energy_tolerance, request.max_steps) == (0.05, 7)
    assert request.timeout == gc.DurationFields(2, 500_000_000)
    colour_only, _ = gc.build_goal_request(color_path)
    assert colour_only.goal_depth.width == colour_only.goal_depth.height == 0
    assert len(colour_only.goal_depth.data) == 0
    assert colour_only.timeout == gc.DurationFields(0, 0)


@pytest.mark.parametrize('seconds, fields', [
    (0.0, (0, 0)), (1.5, (1, 500_000_000)), (2.9999999999, (3, 0)), (120.0, (120, 0))])
def test_duration_fields_are_normalised(seconds: float, fields: tuple[int, int]) -> None:
    assert gc.duration_fields(seconds) == gc.DurationFields(*fields)


def test_missing_and_non_image_files_are_named(tmp_path: Path, goal_files: Any) -> None:
    color_path, depth_path, _, _ = goal_files
    text = tmp_path / 'notes.png'
    text.write_text('not an image')
    truncated = tmp_path / 'truncated.png'
    data = color_path.read_bytes()
    truncated.write_bytes(data[:len(data) // 2])
    cases = [
        ((tmp_path / 'missing.png', None), 'goal image {p}: no such file'),
        ((tmp_path, None), 'goal image {p}: not a file'),
        ((text, None), 'goal image {p}: not an image file'),
        ((truncated, None), 'goal image {p}: cannot read the image'),
        ((color_path, tmp_path / 'missing_depth.png'), 'goal depth {p}: no such file'),
        ((color_path, text), 'goal depth {p}: not an image file'),
        ((color_path, tmp_path / 'missing.npy'), 'goal depth {p}: no such file'),
    ]
    for (image, depth), message in cases:
        named = depth if depth is not None else image
        with pytest.raises(gc.GoalInputError) as exc:
            gc.build_goal_request(image, depth)
        assert message.format(p=named) in str(exc.value)


def test_depth_must_match_the_colour_image(tmp_path: Path, goal_files: Any) -> None:
    color_path, _, rgb, _ = goal_files
    small = tmp_path / 'small_depth.png'
    PilImage.fromarray(np.full((40, 64), 800, '<u2')).save(small)
    with pytest.raises(gc.GoalInputError, match=r'is 64x40 but goal image .* is 64x48: the '
                                                r'depth must be aligned'):
        gc.build_goal_request(color_path, small)


def test_depth_must_be_16_bit_millimetres(tmp_path: Path, goal_files: Any) -> None:
    color_path, depth_path, _, _ = goal_files
    eight_bit = tmp_path / 'depth8.png'
    PilImage.fromarray(np.full((48, 64), 80, np.uint8)).save(eight_bit)
    with pytest.raises(gc.GoalInputError, match=r'an 8-bit image \(mode L\); a goal depth must '
                                                r'be a 16-bit single-channel PNG'):
        gc.build_goal_request(color_path, eight_bit)
    with pytest.raises(gc.GoalInputError, match=r'a colour image \(mode RGB\)'):
        gc.build_goal_request(color_path, color_path)
    zeros = tmp_path / 'zeros.png'
    PilImage.fromarray(np.zeros((48, 64), '<u2')).save(zeros)
    with pytest.raises(gc.GoalInputError, match='every pixel is 0'):
        gc.build_goal_request(color_path, zeros)
    # A depth image given as the colour image says what it probably is.
    with pytest.raises(gc.GoalInputError, match=r'single-channel I;16 image, not a colour '
                                                r'image \(a depth image\? pass it with --depth'):
        gc.build_goal_request(depth_path)


def test_npy_depth_metres_and_millimetres(tmp_path: Path, goal_files: Any) -> None:
    color_path, _, _, depth = goal_files
    metres = tmp_path / 'depth_m.npy'
    np.save(metres, depth.astype(np.float64) / 1000.0)
    request, _ = gc.build_goal_request(color_path, metres)
    assert (request.goal_depth.encoding, request.goal_depth.step) == ('32FC1', 64 * 4)
    np.testing.assert_allclose(request.goal_depth.data, depth / 1000.0, rtol=1e-6)
    mm = tmp_path / 'depth_mm.npy'
    np.save(mm, depth)
    assert gc.build_goal_request(color_path, mm)[0].goal_depth.encoding == '16UC1'
    # The planner's own checks run on the goal as it would be sent.
    nan = depth.astype(np.float32) / 1000.0
    nan[5, 5] = np.nan
    np.save(tmp_path / 'nan.npy', nan)
    with pytest.raises(gc.GoalInputError, match=r'the planner would reject this goal: '
                                                r'goal_depth \(32FC1\) contains NaN'):
        gc.build_goal_request(color_path, tmp_path / 'nan.npy')
    np.save(tmp_path / 'negative.npy', -np.ones((48, 64), np.float32))
    with pytest.raises(gc.GoalInputError, match=r'values in \[-1, -1\] m'):
        gc.build_goal_request(color_path, tmp_path / 'negative.npy')
    np.save(tmp_path / 'cube.npy', np.ones((48, 64, 1), np.float32))
    with pytest.raises(gc.GoalInputError, match=r'shape \[48, 64, 1\]; a depth array must be'):
        gc.build_goal_request(color_path, tmp_path / 'cube.npy')
    np.save(tmp_path / 'int.npy', np.ones((48, 64), np.int32))
    with pytest.raises(gc.GoalInputError, match='dtype int32; expected uint16'):
        gc.build_goal_request(color_path, tmp_path / 'int.npy')
    (tmp_path / 'text.npy').write_text('no')
    with pytest.raises(gc.GoalInputError, match='not a NumPy .npy array'):
        gc.build_goal_request(color_path, tmp_path / 'text.npy')


def test_colour_conversions_are_reported(tmp_path: Path) -> None:
    rgb = _rgb()
    opaque = tmp_path / 'opaque.png'
    PilImage.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(opaque)
    array, notes = gc.load_color_image(opaque)
    np.testing.assert_array_equal(array, rgb)
    assert notes == [f'goal image {opaque}: converted from RGBA to RGB']
    clear = tmp_path / 'clear.png'
    PilImage.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 10, np.uint8)])).save(clear)
    assert 'transparency is dropped' in gc.load_color_image(clear)[1][0]
    grey = tmp_path / 'grey.png'
    PilImage.fromarray(rgb[..., 0]).save(grey)
    array, notes = gc.load_color_image(grey)
    assert array.shape == (48, 64, 3) and 'converted from L to RGB' in notes[0]
    jpeg = tmp_path / 'goal.jpg'
    PilImage.fromarray(rgb).save(jpeg, quality=95)
    array, notes = gc.load_color_image(jpeg)
    assert notes == [] and array.shape == (48, 64, 3)


def test_run_rejects_bad_files_before_any_ros(tmp_path: Path, goal_files: Any) -> None:
    color_path, _, _, _ = goal_files
    code, out, err = run_goal(['--image', str(tmp_path / 'nope.png')])
    assert code == gc.EXIT_USAGE and out == ''
    assert err == f'craik goal: error: goal image {tmp_path / "nope.png"}: no such file\n'
    code, _, err = run_goal(['--image', str(color_path), '--depth', str(color_path)])
    assert code == gc.EXIT_USAGE and 'a colour image (mode RGB)' in err


# ---- the snapshot format ------------------------------------------------------------------

def test_snapshot_png_round_trip(goal_files: Any) -> None:
    color_path, depth_path, rgb, depth = goal_files
    # A 16-bit greyscale PNG: IHDR bit depth 16, colour type 0; colour: 8-bit RGB (type 2).
    assert depth_path.read_bytes()[24:26] == bytes([16, 0])
    assert color_path.read_bytes()[24:26] == bytes([8, 2])
    with PilImage.open(depth_path) as image:
        assert image.mode == 'I;16' and image.size == (64, 48)
        np.testing.assert_array_equal(np.asarray(image), depth)
    with PilImage.open(color_path) as image:
        assert image.mode == 'RGB'
        np.testing.assert_array_equal(np.asarray(image), rgb)
    request, _ = gc.build_goal_request(color_path, depth_path)
    back = request.goal_depth
    np.testing.assert_array_equal(decode_image(back.encoding, back.width, back.height, back.step,
                                               back.data), depth)
    assert sorted(p.name for p in color_path.parent.iterdir()) == ['goal.png', 'goal_depth.png']


def test_snapshot_paths_are_checked(tmp_path: Path) -> None:
    rgb, depth = _rgb(), _depth_mm()
    cases = [
        ((tmp_path / 'a.jpg', tmp_path / 'a_depth.png'), 'must be a .png file'),
        ((tmp_path / 'a.png', tmp_path / 'a_depth.tif'), 'must be a .png file'),
        ((tmp_path / 'no' / 'a.png', tmp_path / 'd.png'), 'does not exist'),
        ((tmp_path / 'a.png', tmp_path / 'a.png'), 'the same file'),
    ]
    for (color, dep), message in cases:
        with pytest.raises(gc.GoalInputError, match=message):
            gc.save_goal_images(rgb, depth, color, dep)
    with pytest.raises(gc.GoalInputError, match='aligned to the colour image'):
        gc.save_goal_images(rgb, depth[:40], tmp_path / 'a.png', tmp_path / 'b.png')
    assert list(tmp_path.iterdir()) == []
    assert gc.default_depth_path(Path('/x/goal.png')) == Path('/x/goal_depth.png')


def test_camera_frames_convert_to_the_snapshot_format() -> None:
    rgb = _rgb()
    np.testing.assert_array_equal(gc.color_frame_to_rgb('bgr8', rgb[..., ::-1]), rgb)
    with pytest.raises(ValueError, match='mono8'):
        gc.color_frame_to_rgb('mono8', rgb[..., 0])
    metres = np.array([[0.5, np.nan, -1.0], [70.0, 0.0004, 1.2344]], np.float32)
    mm, notes = gc.depth_frame_to_mm('32FC1', metres)
    np.testing.assert_array_equal(mm, [[500, 0, 0], [65535, 0, 1234]])
    assert notes == ['2 depth pixels were NaN, infinite or negative: written as 0 (no depth)',
                     '1 depth pixels beyond 65.535 m: written as 65535 mm']
    raw = _depth_mm()
    assert gc.depth_frame_to_mm('16UC1', raw)[0] is not raw
    np.testing.assert_array_equal(gc.depth_frame_to_mm('16UC1', raw)[0], raw)


def test_depth_frame_nearest_in_stamp() -> None:
    assert gc.nearest_stamp(100, [10, 90, 130]) == (1, 10)
    assert gc.nearest_stamp(110, [90, 130]) == (0, 20)       # a tie: the earlier
    with pytest.raises(ValueError):
        gc.nearest_stamp(0, [])
    frames = gc._FrameBuffer()

    def image(stamp_ns: int, value: int) -> Image:
        msg = Image(width=1, height=1, encoding='16UC1', step=2, data=bytes([value, 0]))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        return msg

    frames.on_color(image(1_000_000_000, 1))
    frames.on_depth(image(960_000_000, 2))
    assert frames.pair(50_000_000) is None      # a nearer depth frame may still come
    frames.on_depth(image(1_010_000_000, 3))
    color, depth, skew = frames.pair(50_000_000)
    assert (color.data[0], depth.data[0], skew) == (1, 3, 10_000_000)
    assert frames.pair(5_000_000) is None
    assert 'nearest pair is 10.0 ms apart (--max-skew 5.0 ms)' in frames.why_not(5_000_000, 'c',
                                                                                 'd')


# ---- exit codes and progress lines --------------------------------------------------------

def test_every_result_status_has_its_own_exit_code() -> None:
    constants = gc.status_constants()
    assert set(constants) == set(gc.STATUS_EXIT_CODES), 'a ReachGoal status without exit code'
    codes = {name: gc.exit_code_for_status(value) for name, value in constants.items()}
    assert codes == gc.STATUS_EXIT_CODES
    assert codes['STATUS_REACHED'] == 0
    assert len(set(codes.values())) == len(codes), 'two statuses share an exit code'
    others = {gc.EXIT_ERROR, gc.EXIT_USAGE, gc.EXIT_NO_SERVER, gc.EXIT_GOAL_REFUSED,
              gc.EXIT_NO_RESULT, gc.EXIT_CANCEL_UNCONFIRMED, gc.EXIT_NO_CAMERA,
              gc.EXIT_INTERRUPTED}
    assert not others & set(codes.values()) and len(others) == 8
    assert gc.exit_code_for_status(200) == gc.EXIT_UNKNOWN
    assert gc.status_name(Result.STATUS_ROBOT_FAULT) == 'robot_fault'
    assert gc.status_name(200) == 'status 200'


def test_exit_status_help_lists_every_code() -> None:
    listed = {int(n) for n in re.findall(r'(?:^|\s{2,})(\d+)\s{1,3}\S', gc.EXIT_STATUS_HELP,
                                         re.MULTILINE)}
    defined = {value for name, value in vars(gc).items() if name.startswith('EXIT_')
               and isinstance(value, int)}
    assert listed == defined


def test_progress_and_result_lines() -> None:
    line = gc.format_feedback(3, 0.04567, [0.0123, -0.05, 0.0, 1.0], 0.0834)
    assert line == ('step   3  energy 0.0457  action dx +0.0123 dy -0.0500 dz +0.0000 m  '
                    'gripper 1.00  planning 83 ms')
    assert gc.format_result(Result.STATUS_MAX_STEPS, '3 steps without reaching the goal', 3,
                            0.5) == ('result: max_steps after 3 steps, final energy 0.5000: 3 '
                                     'steps without reaching the goal')
    assert gc.format_result(Result.STATUS_UNKNOWN, '', 0, float('nan')) == \
        'result: unknown after 0 steps, final energy nan'


# ---- against real action servers ------------------------------------------------------------

class ScriptedServer:
    """A ReachGoal action server in this process (a context of its own): feedback every
    ``step_s`` for ``steps`` steps, then ``status``; honours cancels if ``accept_cancel``."""

    def __init__(self, status: int = Result.STATUS_REACHED, steps: int = 3,
                 step_s: float = 0.05, accept_goal: bool = True,
                 accept_cancel: bool = True, answer_delays: tuple[float, ...] = ()) -> None:
        self.status, self.steps, self.step_s = status, steps, step_s
        self.answer_delays = list(answer_delays)   # seconds before answering goal 1, 2, ...
        self.accept_goal, self.accept_cancel = accept_goal, accept_cancel
        self.goals: list[Any] = []
        self.results: list[Any] = []
        self.cancel_requests = 0
        self._stop = threading.Event()
        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node('scripted_reach_goal_server', context=self.context)
        self._server = ActionServer(
            self.node, ReachGoal, '/planner/reach_goal', self._execute,
            goal_callback=self._on_goal, cancel_callback=self._on_cancel,
            callback_group=ReentrantCallbackGroup())
        self._executor = MultiThreadedExecutor(num_threads=3, context=self.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()

    def _on_goal(self, _: Any) -> GoalResponse:
        if self.answer_delays:
            time.sleep(self.answer_delays.pop(0))
        return GoalResponse.ACCEPT if self.accept_goal else GoalResponse.REJECT

    def _on_cancel(self, _: Any) -> CancelResponse:
        self.cancel_requests += 1
        return CancelResponse.ACCEPT if self.accept_cancel else CancelResponse.REJECT

    def _execute(self, handle: ServerGoalHandle) -> Any:
        self.goals.append(handle.request)
        result = Result(status=self.status, message=f'scripted {self.status}',
                        steps=self.steps, final_energy=0.125)
        for step in range(1, self.steps + 1):
            if handle.is_cancel_requested:
                handle.canceled()
                result = Result(status=Result.STATUS_CANCELED, message='canceled; holding',
                                steps=step - 1, final_energy=0.25)
                break
            if self._stop.is_set():
                handle.abort()
                result = Result(status=Result.STATUS_PLANNER_ERROR, message='stopped')
                break
            feedback = ReachGoal.Feedback(step=step, best_energy=1.0 / step,
                                          planning_time=0.01 * step)
            feedback.commanded_action = [0.01, -0.02, 0.005 * step, 0.0]
            handle.publish_feedback(feedback)
            time.sleep(self.step_s)
        else:
            if self.status == Result.STATUS_REACHED:
                handle.succeed()
            else:
                handle.abort()
        self.results.append(result)
        return result

    def close(self) -> None:
        self._stop.set()
        time.sleep(2 * self.step_s)
        self._executor.shutdown(timeout_sec=5.0)
        self._server.destroy()     # not done by destroy_node: the next test would discover it
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)
        self.context.destroy()


@pytest.fixture
def server() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(**kwargs: Any) -> ScriptedServer:
        servers.append(ScriptedServer(**kwargs))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


class GoalProcess:
    """`craik goal ...` in a subprocess (the console script's code path: cli.main)."""

    def __init__(self, *argv: str, sigint_ignored: bool = False) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        command = [sys.executable, '-m', 'craik_bringup.cli', 'goal', *argv]
        if sigint_ignored:   # as a script's background job (`craik goal ... &`) starts it
            command = ['bash', '-c', 'trap "" INT; exec "$@"', 'bash', *command]
        self.proc = subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.proc.stdout, self.out),
                                               (self.proc.stderr, self.err))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def wait_for(self, prefix: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(line.startswith(prefix) for line in self.out):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.02)
        return False

    def finish(self, timeout_s: float) -> int:
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            pytest.fail(f'craik goal did not exit within {timeout_s} s:\n{self.text()}')
        for reader in self._readers:
            reader.join(timeout=5)
        return self.proc.returncode

    def text(self) -> str:
        return ''.join(self.out) + '--- stderr ---\n' + ''.join(self.err)


@pytest.mark.parametrize('status, code', [(Result.STATUS_REACHED, gc.EXIT_REACHED),
                                          (Result.STATUS_MAX_STEPS, gc.EXIT_MAX_STEPS),
                                          (Result.STATUS_ROBOT_FAULT, gc.EXIT_ROBOT_FAULT)])
def test_feedback_is_printed_and_the_exit_code_follows_the_result(
        server: Callable[..., ScriptedServer], goal_files: Any, status: int, code: int) -> None:
    color_path, depth_path, rgb, depth = goal_files
    srv = server(status=status, steps=3)
    rc, out, err = run_goal(['--image', str(color_path), '--depth', str(depth_path),
                             '--max-steps', '3', '--timeout', '2.5', '--tolerance', '0.05',
                             '--server-timeout', '30'])
    assert rc == code, out + err
    steps = [line for line in out.splitlines() if line.startswith('step')]
    assert steps == [gc.format_feedback(i, 1.0 / i, [0.01, -0.02, 0.005 * i, 0.0], 0.01 * i)
                     for i in (1, 2, 3)]
    assert out.splitlines()[-1] == gc.format_result(status, f'scripted {status}', 3, 0.125)
    assert 'sending goal to /planner/reach_goal: 64x48 rgb8, depth 16UC1, max_steps 3, ' \
           'timeout 2.5 s, tolerance 0.05' in out
    goal = srv.goals[0]
    assert (goal.goal_image.encoding, goal.goal_image.width, goal.goal_image.height) == \
        ('rgb8', 64, 48)
    assert bytes(goal.goal_image.data) == rgb.tobytes()
    assert goal.goal_depth.encoding == '16UC1' and goal.goal_depth.step == 128
    assert bytes(goal.goal_depth.data) == depth.astype('<u2').tobytes()
    assert (goal.max_steps, goal.timeout.sec, goal.timeout.nanosec) == (3, 2, 500_000_000)
    assert goal.energy_tolerance == pytest.approx(0.05)


def test_refused_goal_and_missing_server(server: Callable[..., ScriptedServer],
                                         goal_files: Any) -> None:
    color_path = str(goal_files[0])
    start = time.monotonic()
    rc, out, err = run_goal(['--image', color_path, '--server-timeout', '0.5'])
    assert rc == gc.EXIT_NO_SERVER and time.monotonic() - start < 10
    assert 'no action server on /planner/reach_goal within 0.5 s' in err
    srv = server(accept_goal=False)
    rc, out, err = run_goal(['--image', color_path, '--server-timeout', '30'])
    assert rc == gc.EXIT_GOAL_REFUSED, out + err
    assert '/planner/reach_goal refused the goal' in err and srv.goals == []


def test_goal_is_sent_again_without_a_goal_response_and_a_late_answer_is_canceled(
        server: Callable[..., ScriptedServer], goal_files: Any) -> None:
    # The first goal response comes only after the client sent the goal again (as a response
    # lost to discovery would never come): the second goal runs, the first is canceled.
    srv = server(steps=3, answer_delays=(gc.GOAL_RESEND_S + 1.0,))
    rc, out, err = run_goal(['--image', str(goal_files[0]), '--server-timeout', '30'])
    assert rc == gc.EXIT_REACHED, out + err
    assert 'no goal response within 3 s' in err and 'sending the goal again' in err
    assert 'an earlier request of this goal was accepted late; canceling it' in err
    assert len(srv.goals) == 2 and srv.cancel_requests == 1
    deadline = time.monotonic() + 10      # the canceled goal ends after the client's exit
    while len(srv.results) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(r.status for r in srv.results) == [Result.STATUS_REACHED,
                                                     Result.STATUS_CANCELED]
    assert [line[:8] for line in out.splitlines() if line.startswith('step')] == \
        ['step   1', 'step   2', 'step   3']


@pytest.mark.parametrize(('sig', 'sigint_ignored'), [
    (signal.SIGINT, False), (signal.SIGTERM, False),
    (signal.SIGINT, True)])     # started with SIGINT ignored: `kill -INT` still cancels
def test_interrupt_cancels_the_goal(server: Callable[..., ScriptedServer], goal_files: Any,
                                    sig: signal.Signals, sigint_ignored: bool) -> None:
    srv = server(steps=2000, step_s=0.05)
    client = GoalProcess('--image', str(goal_files[0]), '--server-timeout', '30',
                         sigint_ignored=sigint_ignored)
    assert client.wait_for('step   2', 60), client.text()
    client.proc.send_signal(sig)
    rc = client.finish(30)
    assert rc == gc.EXIT_INTERRUPTED, client.text()
    assert srv.cancel_requests == 1
    assert [r.status for r in srv.results] == [Result.STATUS_CANCELED]
    assert 'craik goal: interrupted; canceling the goal' in ''.join(client.err)
    assert client.out[-1].startswith('result: canceled after'), client.text()
    assert client.out[-1].rstrip().endswith('canceled; holding')


def test_refused_cancel_is_reported_within_the_cancel_timeout(
        server: Callable[..., ScriptedServer], goal_files: Any) -> None:
    srv = server(steps=2000, step_s=0.05, accept_cancel=False)
    client = GoalProcess('--image', str(goal_files[0]), '--server-timeout', '30',
                         '--cancel-timeout', '3')
    assert client.wait_for('step', 60), client.text()
    client.proc.send_signal(signal.SIGINT)
    rc = client.finish(30)
    assert rc == gc.EXIT_CANCEL_UNCONFIRMED, client.text()
    assert srv.cancel_requests == 1 and srv.results == []     # still running
    assert ('cancel not confirmed: the planner refused to cancel the goal; the goal may still '
            'be running') in ''.join(client.err)


def test_server_that_dies_mid_goal_is_no_result(goal_files: Any) -> None:
    echo = subprocess.Popen([sys.executable, str(ECHO_SERVER)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert echo.stdout is not None and echo.stdout.readline().strip() == 'ready'
        client = GoalProcess('--image', str(goal_files[0]), '--max-steps', '100000',
                             '--server-timeout', '30')
        assert client.wait_for('step', 60), client.text()
        echo.send_signal(signal.SIGINT)
        echo.wait(timeout=15)
        rc = client.finish(60)
    finally:
        if echo.poll() is None:
            echo.kill()
            echo.wait(timeout=10)
    assert rc == gc.EXIT_NO_RESULT, client.text()
    assert 'the action server /planner/reach_goal went away before sending a result' in \
        ''.join(client.err)


# ---- snapshot against a real camera publisher ---------------------------------------------

class CameraStandIn:
    """Every 100 ms: a depth frame with stamp k * 100 ms (1000 + k mm), one stamped 40 ms
    later (2000 + k mm), then the colour frame of stamp k * 100 ms (value k): the depth frame
    nearest the colour frame is not the newest one."""

    def __init__(self, width: int = 32, height: int = 24) -> None:
        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node('camera_stand_in', context=self.context)
        self._color = self.node.create_publisher(Image, gc.COLOR_TOPIC, qos_profile_sensor_data)
        self._depth = self.node.create_publisher(Image, gc.DEPTH_TOPIC, qos_profile_sensor_data)
        self.size = (width, height)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish, daemon=True)
        self._thread.start()

    def _image(self, encoding: str, value: int, stamp_ns: int) -> Image:
        width, height = self.size
        if encoding == 'rgb8':
            data = np.full((height, width, 3), value % 256, np.uint8)
            data[..., 1] = 7
        else:
            data = np.full((height, width), value, '<u2')
        msg = Image(width=width, height=height, encoding=encoding,
                    step=width * data.itemsize * (3 if encoding == 'rgb8' else 1))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        msg.header.frame_id = 'camera_color_optical_frame'
        msg.data = data.tobytes()
        return msg

    def _publish(self) -> None:
        k = 1
        while not self._stop.is_set():
            stamp = k * 100_000_000
            self._depth.publish(self._image('16UC1', 1000 + k, stamp))
            self._depth.publish(self._image('16UC1', 2000 + k, stamp + 40_000_000))
            time.sleep(0.01)
            self._color.publish(self._image('rgb8', k, stamp))
            time.sleep(0.09)
            k += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.context.destroy()


def test_snapshot_writes_a_colour_and_depth_pair(tmp_path: Path) -> None:
    camera = CameraStandIn()
    try:
        rc, out, err = run_goal(['--snapshot', str(tmp_path / 'view.png'), '--max-skew',
                                 '0.02', '--frame-timeout', '30'])
    finally:
        camera.close()
    assert rc == gc.EXIT_OK, out + err
    with PilImage.open(tmp_path / 'view.png') as image:
        assert (image.mode, image.size) == ('RGB', (32, 24))
        rgb = np.asarray(image)
    with PilImage.open(tmp_path / 'view_depth.png') as image:
        assert (image.mode, image.size) == ('I;16', (32, 24))
        depth = np.asarray(image)
    k = int(rgb[0, 0, 0])
    assert (rgb[..., 1] == 7).all() and (rgb[..., 0] == k).all()
    # The depth frame with the colour frame's stamp, not the newer one 40 ms later.
    assert (depth == 1000 + k).all(), f'colour {k}, depth {depth[0, 0]}'
    assert f'wrote {tmp_path / "view.png"} (32x24 RGB) and {tmp_path / "view_depth.png"}' in out
    assert 'stamps 0.0 ms apart' in out
    request, _ = gc.build_goal_request(tmp_path / 'view.png', tmp_path / 'view_depth.png')
    assert request.goal_depth.encoding == '16UC1'


def test_snapshot_without_a_camera_says_what_is_missing(tmp_path: Path) -> None:
    rc, out, err = run_goal(['--snapshot', str(tmp_path / 'view.png'), '--depth-out',
                             str(tmp_path / 'd.png'), '--frame-timeout', '0.5'])
    assert rc == gc.EXIT_NO_CAMERA and out == ''
    assert ('no colour + depth frame pair within 0.5 s: no colour frame on '
            '/camera/camera/color/image_raw') in err
    assert list(tmp_path.iterdir()) == []
