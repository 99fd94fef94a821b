"""`craik doctor`: what this machine has, and whether craik can run on it.

The first thing a lab engineer runs on the robot PC. Each check reports what it found; checks
marked required make the command exit non-zero, and the summary names every missing piece.
Heavy or crash-prone probes (DDS exchange, offscreen rendering) run in child processes with a
timeout so that one broken library cannot take the report down with it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import asdict, dataclass
import importlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import textwrap
import uuid

# Probe subprocesses must finish within this many seconds (DDS discovery takes ~1-3 s).
PROBE_TIMEOUT_S = 20.0


@dataclass
class CheckResult:
    """Outcome of one doctor check."""

    name: str
    ok: bool
    detail: str
    required: bool = True


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return '?'


def _run_probe(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=PROBE_TIMEOUT_S, env=env)


def check_python() -> CheckResult:
    ok = sys.version_info >= (3, 10)
    return CheckResult('python', ok, f'{platform.python_implementation()} '
                       f'{platform.python_version()} ({sys.executable})'
                       + ('' if ok else ' - craik needs Python >= 3.10'))


def _probe_failure(probe: subprocess.CompletedProcess[str]) -> str:
    lines = (probe.stderr.strip() or probe.stdout.strip() or 'no output').splitlines()
    # rcl reports a missing or mismatched rmw with an [ERROR] line and exits the process.
    errors = [line for line in lines if '[ERROR]' in line or 'Error' in line]
    return (errors or lines)[-1][:300] + f' (exit code {probe.returncode})'


# rcl terminates the whole process when the requested rmw is missing, so every ROS probe runs
# in a child process.
_RCLPY_PROBE = """
import rclpy
rclpy.init()
print(rclpy.get_rmw_implementation_identifier())
rclpy.shutdown()
"""


def check_rclpy() -> CheckResult:
    requested = os.environ.get('RMW_IMPLEMENTATION', '(default)')
    probe = _run_probe(_RCLPY_PROBE)
    if probe.returncode != 0:
        return CheckResult('rclpy / rmw', False, f"cannot initialise rclpy with rmw '{requested}'"
                           f': {_probe_failure(probe)}')
    rmw = probe.stdout.strip().splitlines()[-1]
    return CheckResult('rclpy / rmw', True, f'rclpy {_version("ros-rclpy")}, rmw {rmw}')


def check_ros_distro() -> CheckResult:
    distro = os.environ.get('ROS_DISTRO')
    domain = os.environ.get('ROS_DOMAIN_ID', '0')
    scope = os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE', 'SUBNET')
    return CheckResult('ROS distro', distro is not None,
                       f'{distro}, ROS_DOMAIN_ID={domain}, discovery {scope}' if distro else
                       'ROS_DISTRO is not set: source env.bash (or /opt/ros/<distro>/setup.bash)')


_INTERFACES_PROBE = """
from craik_interfaces.action import ReachGoal
print(len([n for n in dir(ReachGoal.Result) if n.startswith('STATUS_')]))
"""


def check_interfaces() -> CheckResult:
    probe = _run_probe(_INTERFACES_PROBE)
    if probe.returncode != 0:
        return CheckResult('craik_interfaces', False, 'not importable (is the workspace built '
                           f'and install/setup.bash sourced?): {_probe_failure(probe)}')
    return CheckResult('craik_interfaces', True,
                       f'ReachGoal with {probe.stdout.split()[-1]} status codes')


_DDS_PUBLISHER = """
import sys, time
import rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node('craik_doctor_publisher')
pub = node.create_publisher(String, sys.argv[1], 10)
deadline = time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    pub.publish(String(data=sys.argv[2]))
    rclpy.spin_once(node, timeout_sec=0.1)
rclpy.shutdown()
"""

_DDS_SUBSCRIBER = """
import sys, time
import rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node('craik_doctor_subscriber')
got = []
node.create_subscription(String, sys.argv[1],
                         lambda m: got.append(time.monotonic()) if m.data == sys.argv[2] else None,
                         10)
start = time.monotonic()
while not got and time.monotonic() - start < float(sys.argv[3]):
    rclpy.spin_once(node, timeout_sec=0.1)
rclpy.shutdown()
print(f'{got[0] - start:.2f}' if got else 'none')
"""


def check_dds_loopback() -> CheckResult:
    """Two nodes in two child processes must exchange a message over DDS."""
    token = uuid.uuid4().hex
    topic = f'/craik_doctor_{token[:8]}'
    wait_s = str(PROBE_TIMEOUT_S - 5.0)
    publisher = subprocess.Popen(
        [sys.executable, '-c', textwrap.dedent(_DDS_PUBLISHER), topic, token, wait_s],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        probe = subprocess.run(
            [sys.executable, '-c', textwrap.dedent(_DDS_SUBSCRIBER), topic, token, wait_s],
            capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    finally:
        publisher.kill()
        publisher.wait()
    if probe.returncode != 0:
        return CheckResult('DDS loopback', False, f'subscriber failed: {_probe_failure(probe)}')
    seconds = probe.stdout.strip().splitlines()[-1]
    if seconds == 'none':
        return CheckResult('DDS loopback', False, f'no message between two processes within '
                           f'{wait_s} s (discovery blocked? check ROS_DOMAIN_ID, '
                           'ROS_AUTOMATIC_DISCOVERY_RANGE and the firewall)')
    return CheckResult('DDS loopback', True, f'message between two processes after {seconds} s')


def check_torch() -> CheckResult:
    import torch

    if torch.cuda.is_available():
        gpu = f'CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}'
    else:
        gpu = 'CPU only (no CUDA device)'
    return CheckResult('torch', True, f'{torch.__version__}, {gpu}, '
                       f'{torch.get_num_threads()} threads')


def check_mapping() -> CheckResult:
    """What the gaussian_mapper renders and refines with on this machine."""
    import torch

    version = _version('gsplat')
    if not torch.cuda.is_available():
        where = f'gsplat {version} installed, unused' if version != '?' else 'gsplat absent'
        return CheckResult('mapping', True, 'CPU renderer (craik_mapping.render, pure PyTorch); '
                           f'no live refinement without CUDA ({where}: its rasterizer needs '
                           'CUDA)', required=False)
    if version == '?':
        return CheckResult('mapping', False, 'CUDA present but gsplat is not installed: the map '
                           'renders on the CPU and is not refined', required=False)
    return CheckResult('mapping', True, f'gsplat {version} on CUDA: rendering and refinement '
                       '(20 steps per keyframe)', required=False)


def check_onnxruntime() -> CheckResult:
    import onnxruntime

    return CheckResult('onnxruntime', True, f'{onnxruntime.__version__}, providers: '
                       f'{", ".join(onnxruntime.get_available_providers())}')


def check_tensorrt() -> CheckResult:
    try:
        import tensorrt
    except ImportError as exc:
        return CheckResult('TensorRT', False, f"not available ({exc}); the robot graph's "
                           'planner (runtime tensorrt) needs runtime:=onnxruntime here',
                           required=False)
    return CheckResult('TensorRT', True, str(tensorrt.__version__), required=False)


_RENDER_PROBE = """
import mujoco
m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><light pos="0 0 2"/>'
                                   '<geom type="sphere" size=".1"/></worldbody></mujoco>')
d = mujoco.MjData(m)
mujoco.mj_forward(m, d)
with mujoco.Renderer(m, 32, 32) as r:
    r.update_scene(d)
    img = r.render()
print(img.shape, int(img.max()))
"""


def check_mujoco() -> CheckResult:
    import mujoco

    backend = os.environ.get('MUJOCO_GL', '(unset: glfw, needs a display)')
    try:
        probe = _run_probe(_RENDER_PROBE)
    except subprocess.TimeoutExpired:
        return CheckResult('MuJoCo', False, f'{mujoco.__version__}, offscreen render with '
                           f'MUJOCO_GL={backend} hung')
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ['no output'])[-1]
        return CheckResult('MuJoCo', False, f'{mujoco.__version__}, offscreen render with '
                           f'MUJOCO_GL={backend} failed: {last}')
    return CheckResult('MuJoCo', True, f'{mujoco.__version__}, offscreen rendering via {backend}')


def check_franky() -> CheckResult:
    import franky

    sim = _version('franky-sim')
    return CheckResult('franky', True, f'franky-control {_version("franky-control")} '
                       f'({os.path.dirname(franky.__file__)}); franky-sim '
                       f'{sim if sim != "?" else "not installed (only needed in simulation)"}')


def check_pinocchio() -> CheckResult:
    import pinocchio

    return CheckResult('pinocchio', True, pinocchio.__version__)


# libfranka runs its 1 kHz loop at sched_get_priority_max(SCHED_FIFO), which is 99 on Linux.
LIBFRANKA_RT_PRIORITY = 99


def realtime_readiness(kernel_version: str, sys_realtime: str | None, rtprio_limit: int,
                       privileged: bool) -> CheckResult:
    """Whether libfranka can run with ``realtime_config: enforce`` (the lab robot): a
    PREEMPT_RT kernel (``uname -v`` / /sys/kernel/realtime) and the right to SCHED_FIFO at
    priority 99 (RLIMIT_RTPRIO, or root). Not required: the simulator runs without."""
    rt_kernel = 'PREEMPT_RT' in kernel_version or (sys_realtime or '').strip() == '1'
    may_schedule = privileged or rtprio_limit >= LIBFRANKA_RT_PRIORITY
    found = (f'kernel {"PREEMPT_RT" if rt_kernel else "not real-time"} '
             f'({kernel_version.strip() or "?"}); real-time priority '
             + ('allowed (root)' if privileged else f'limit {rtprio_limit}'))
    if rt_kernel and may_schedule:
        return CheckResult('real-time', True, found + '; the FR3 can run with realtime_config: '
                           'enforce', required=False)
    fixes = []
    if not rt_kernel:
        fixes.append('install a PREEMPT_RT kernel')
    if not may_schedule:
        fixes.append(f'allow priority {LIBFRANKA_RT_PRIORITY} (a group with "rtprio 99" and '
                     '"memlock 102400" in /etc/security/limits.conf, then log in again)')
    return CheckResult('real-time', False, found + '; for the lab robot: ' + ' and '.join(fixes)
                       + ' (docs/lab_guide.md); the simulator runs without', required=False)


def check_realtime() -> CheckResult:
    import resource

    try:
        with open('/sys/kernel/realtime') as f:
            sys_realtime: str | None = f.read()
    except OSError:
        sys_realtime = None
    soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    limit = LIBFRANKA_RT_PRIORITY if soft == resource.RLIM_INFINITY else int(soft)
    return realtime_readiness(platform.uname().version, sys_realtime, limit, os.geteuid() == 0)


def check_realsense() -> CheckResult:
    # Through craik_perception's loader: pyrealsense2 loaded before ROS 2's Fast DDS corrupts
    # the process (craik_perception.librealsense), and doctor also talks DDS.
    from craik_perception.librealsense import new_context, rs

    devices = new_context().query_devices()
    names = [f'{d.get_info(rs.camera_info.name)} #{d.get_info(rs.camera_info.serial_number)}'
             for d in devices]
    cameras = ', '.join(names) if names else 'no camera connected'
    return CheckResult('pyrealsense2', True, f'{_version("pyrealsense2")}; {cameras}')


CHECKS: list[tuple[str, Callable[[], CheckResult], bool]] = [
    ('python', check_python, True),
    ('rclpy / rmw', check_rclpy, True),
    ('ROS distro', check_ros_distro, True),
    ('craik_interfaces', check_interfaces, True),
    ('DDS loopback', check_dds_loopback, True),
    ('torch', check_torch, True),
    ('mapping', check_mapping, False),
    ('onnxruntime', check_onnxruntime, True),
    ('TensorRT', check_tensorrt, False),
    ('MuJoCo', check_mujoco, True),
    ('franky', check_franky, True),
    ('pinocchio', check_pinocchio, True),
    ('real-time', check_realtime, False),
    ('pyrealsense2', check_realsense, True),
]


def run_checks(skip: set[str] | None = None) -> list[CheckResult]:
    """Run every check, turning an exception (a missing module, a crash) into a failed row."""
    results = []
    for name, check, required in CHECKS:
        if skip and name in skip:
            continue
        try:
            result = check()
        except ImportError as exc:
            result = CheckResult(name, False, f'not importable: {exc}')
        except Exception as exc:  # noqa: BLE001 (report anything, never die mid-report)
            result = CheckResult(name, False, f'{type(exc).__name__}: {exc}')
        result.required = required
        results.append(result)
    return results


def format_table(results: list[CheckResult]) -> str:
    """Render results as a fixed-width table (no terminal library needed)."""
    width = max(len(r.name) for r in results)
    lines = [f'{"check":<{width}}  status   detail', f'{"-" * width}  -------  {"-" * 50}']
    for r in results:
        status = 'ok' if r.ok else ('MISSING' if r.required else 'absent')
        lines.append(f'{r.name:<{width}}  {status:<7}  {r.detail}')
    return '\n'.join(lines)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--json', action='store_true', help='print the results as JSON')
    parser.add_argument('--skip', action='append', default=[], metavar='CHECK',
                        help='skip a check by name (repeatable)')


def run(args: argparse.Namespace) -> int:
    results = run_checks(set(args.skip))
    missing = [r.name for r in results if r.required and not r.ok]
    if args.json:
        print(json.dumps({'ok': not missing, 'missing': missing,
                          'checks': [asdict(r) for r in results]}, indent=2))
    else:
        print(format_table(results))
        print()
        if missing:
            print(f'craik doctor: MISSING required pieces: {", ".join(missing)}')
        else:
            print('craik doctor: all required pieces present')
    return 1 if missing else 0
