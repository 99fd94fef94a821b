"""Benchmark of the franka_controller core (RobotSession) against franky-sim; prints JSON.

Figures (median over --runs runs, each against a fresh franky-sim server in its own process):
  * latency from a command arriving (RobotSession.submit, envelope + IK included) to the motion
    starting (first robot state whose commanded TCP velocity is non-zero towards the target),
    from rest and while moving (preemption); baseline: a bare franky Robot.move of the same
    motion, measured the same way in the same run;
  * following a 10 Hz stream of targets on a circle: tracking error (measured TCP to the
    reference path at the same instant, and to the latest target), commanded jerk, the lowest
    speed while streaming; baseline: the same targets executed stop-and-go (each one finished
    before the next is sent), i.e. what a controller without preemption would do.
franky-sim runs its 1 kHz loop in Python and may run slower than real time on a loaded machine;
the measured real-time factor (robot seconds per wall second) is reported with the figures.
Robot-clock quantities (jerk, speeds) are in robot time, latencies in wall-clock time.

    python bench/bench_franka.py [--runs 3] [--out bench/results/franka.json]

The JSON (with the command, git commit, machine and date) goes to --out and to stdout.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import math
import os
from pathlib import Path
import platform
import statistics
import sys
import threading
import time
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'src' / 'craik_franka' / 'test'))

import franky  # noqa: E402
from franky_sim_server import FrankySimServer  # noqa: E402

from craik_bringup.graph import git_commit  # noqa: E402
from craik_franka.config import FrankaControllerConfig  # noqa: E402
from craik_franka.envelope import Mode, MotionCommand, Rejection  # noqa: E402
from craik_franka.kinematics import HELD_ORIENTATION_XYZW, Fr3Kinematics  # noqa: E402
from craik_franka.robot_session import MotionHandle, RobotSession  # noqa: E402

FACTOR = 0.2  # dynamics factor of every benchmark motion
STREAM_HZ = 10.0
STREAM_STEPS = 40
CIRCLE_RADIUS = 0.04  # m
CIRCLE_PERIOD = 4.0  # s of wall-clock time per revolution (about 0.06 m/s along the circle)
KIN = Fr3Kinematics()


class Sampler:
    """Polls (wall, robot_time, commanded position, commanded velocity, measured position)."""

    def __init__(self, read: Callable[[], tuple[float, np.ndarray, np.ndarray, np.ndarray]],
                 period: float = 0.0005) -> None:
        self._read = read
        self._period = period
        self.rows: list[tuple[float, float, np.ndarray, np.ndarray, np.ndarray]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = None
        while not self._stop.is_set():
            try:
                robot_time, cmd_p, cmd_v, meas_p = self._read()
            except Exception:  # noqa: BLE001 (a bench reader must not die mid-run)
                time.sleep(self._period)
                continue
            if robot_time != last:
                last = robot_time
                self.rows.append((time.monotonic(), robot_time, cmd_p, cmd_v, meas_p))
            time.sleep(self._period)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def first_after(self, t0: float, predicate: Callable[[np.ndarray], bool]
                    ) -> tuple[float, float] | None:
        """(wall, robot time) of the first sample after wall time t0 whose commanded velocity
        satisfies the predicate."""
        for wall, rt, _p, v, _m in self.rows:
            if wall >= t0 and predicate(v):
                return wall, rt
        return None

    def robot_time_at(self, wall: float) -> float:
        """Robot time of the last sample at or before a wall-clock time."""
        before = [rt for w, rt, _p, _v, _m in self.rows if w <= wall]
        return before[-1] if before else math.nan


def franky_reader(robot: Any) -> Callable[[], tuple[float, np.ndarray, np.ndarray, np.ndarray]]:
    def read() -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        st = robot.state
        return (float(st.time.to_sec()), np.array(st.O_T_EE_d.translation),
                np.array(st.O_dP_EE_d.linear), KIN.fk(np.array(st.q))[0])
    return read


def session_reader(session: RobotSession) -> Callable[
        [], tuple[float, np.ndarray, np.ndarray, np.ndarray]]:
    def read() -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        r = session.snapshot().reading
        assert r is not None
        return r.robot_time, r.commanded_position, r.commanded_velocity, r.ee_position
    return read


def realtime_factor(rows: list) -> float:
    if len(rows) < 2:
        return math.nan
    return (rows[-1][1] - rows[0][1]) / (rows[-1][0] - rows[0][0])


# ---- latency ----------------------------------------------------------------------------------

def latency_pair(start: Callable[[np.ndarray], None], sampler: Sampler,
                 position: Callable[[], np.ndarray]) -> dict[str, float]:
    """Latency from the command call to a commanded velocity towards the new target, from rest
    and while moving (preemption), in wall-clock ms and in robot-clock ms."""

    def measure(target: np.ndarray, axis: int) -> tuple[float, float]:
        t0 = time.monotonic()
        rt0 = sampler.robot_time_at(t0)
        start(target)
        hit = None
        while hit is None and time.monotonic() - t0 < 5.0:
            time.sleep(0.001)
            hit = sampler.first_after(t0, lambda v: v[axis] > 1e-4)
        if hit is None:
            return math.nan, math.nan
        return (hit[0] - t0) * 1e3, (hit[1] - rt0) * 1e3

    time.sleep(0.3)  # the sampler has a history to date the command by
    rest_wall, rest_robot = measure(position() + np.array([0.0, 0.10, 0.0]), 1)
    time.sleep(0.25)  # now moving along +y at speed
    turn_wall, turn_robot = measure(position() + np.array([0.05, 0.0, 0.0]), 0)
    time.sleep(1.0)
    return {'from_rest_wall_ms': rest_wall, 'from_rest_robot_ms': rest_robot,
            'preempt_wall_ms': turn_wall, 'preempt_robot_ms': turn_robot}


def bench_latency_session(server: FrankySimServer) -> dict[str, float]:
    session = RobotSession(FrankaControllerConfig(robot_ip=server.hostname, monitor_rate=1000.0))
    session.start()
    assert session.wait_until_ready(20.0)
    try:
        def start(target: np.ndarray) -> None:
            result = session.submit(MotionCommand(int(Mode.ABSOLUTE), tuple(target),
                                                  dynamics_factor=FACTOR), 'bench')
            assert isinstance(result, MotionHandle), str(result)

        def position() -> np.ndarray:
            reading = session.snapshot().reading
            assert reading is not None
            return reading.ee_position

        with Sampler(session_reader(session)) as sampler:
            result = latency_pair(start, sampler, position)
        return {**result, 'rtf': realtime_factor(sampler.rows)}
    finally:
        session.close()


def raw_robot(server: FrankySimServer) -> Any:
    cfg = FrankaControllerConfig()
    robot = franky.Robot(server.hostname, realtime_config=franky.RealtimeConfig.Ignore)
    robot.relative_dynamics_factor = cfg.hold_dynamics_factor
    robot.translation_velocity_limit.set(cfg.translation_velocity_limit)
    robot.translation_acceleration_limit.set(cfg.translation_acceleration_limit)
    robot.translation_jerk_limit.set(cfg.translation_jerk_limit)
    return robot


def bench_latency_franky(server: FrankySimServer) -> dict[str, float]:
    robot = raw_robot(server)
    lock = threading.Lock()

    def start(target: np.ndarray) -> None:
        motion = franky.CartesianMotion(
            franky.Affine(target, np.array(HELD_ORIENTATION_XYZW)),
            franky.ReferenceType.Absolute, relative_dynamics_factor=FACTOR / 0.3)
        with lock:
            robot.move(motion, asynchronous=True)

    def read() -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        with lock:
            return franky_reader(robot)()

    def position() -> np.ndarray:
        with lock:
            return KIN.fk(np.array(robot.state.q))[0]

    with Sampler(read) as sampler:
        result = latency_pair(start, sampler, position)
    robot.join_motion(timeout=5.0)
    return {**result, 'rtf': realtime_factor(sampler.rows)}


# ---- streaming --------------------------------------------------------------------------------

def circle(center: np.ndarray, t: float) -> np.ndarray:
    angle = 2.0 * math.pi * t / CIRCLE_PERIOD
    # A circle in the y-z plane, starting on the +y side of the center.
    return center + CIRCLE_RADIUS * np.array([0.0, math.cos(angle), math.sin(angle)])


def jerk_stats(rows: list, t_from: float, t_to: float) -> dict[str, float]:
    """Jerk of the commanded TCP path, on a uniform 10 ms robot-clock grid."""
    sel = [(rt, p) for wall, rt, p, _v, _m in rows if t_from <= wall <= t_to]
    if len(sel) < 20:
        return {'max_jerk': math.nan, 'rms_jerk': math.nan}
    rt = np.array([s[0] for s in sel])
    pos = np.array([s[1] for s in sel])
    dt = 0.01
    grid = np.arange(rt[0], rt[-1], dt)
    resampled = np.stack([np.interp(grid, rt, pos[:, i]) for i in range(3)], axis=1)
    jerk = np.diff(resampled, n=3, axis=0) / dt ** 3  # [T-3, 3]
    norm = np.linalg.norm(jerk, axis=1)
    return {'max_jerk': float(norm.max()), 'rms_jerk': float(np.sqrt(np.mean(norm ** 2)))}


def stream_metrics(sampler: Sampler, center: np.ndarray, t0: float, t_end: float,
                   targets: list[tuple[float, np.ndarray]]) -> dict[str, float]:
    rows = [r for r in sampler.rows if t0 + 0.5 <= r[0] <= t_end]
    path_err, target_err, speeds = [], [], []
    for wall, _rt, _cp, cmd_v, meas in rows:
        path_err.append(float(np.linalg.norm(meas - circle(center, wall - t0))))
        latest = [p for t, p in targets if t <= wall]
        if latest:
            target_err.append(float(np.linalg.norm(meas - latest[-1])))
        speeds.append(float(np.linalg.norm(cmd_v)))
    out = {
        'path_error_median_mm': 1e3 * statistics.median(path_err),
        'path_error_p95_mm': 1e3 * float(np.percentile(path_err, 95)),
        'target_error_median_mm': 1e3 * statistics.median(target_err),
        # Lowest commanded TCP speed while streaming, relative to the median: near 0 means the
        # arm stopped between targets.
        'min_speed_over_median': min(speeds) / statistics.median(speeds),
        'rtf': realtime_factor(rows),
    }
    out.update(jerk_stats(sampler.rows, t0 + 0.5, t_end))
    return out


def run_stream(session: RobotSession, preemptive: bool) -> dict[str, float]:
    reading = session.snapshot().reading
    assert reading is not None
    center = reading.ee_position - np.array([0.0, CIRCLE_RADIUS, 0.0])
    # Move to the circle's start first.
    first = session.submit(MotionCommand(int(Mode.ABSOLUTE), tuple(circle(center, 0.0)),
                                         dynamics_factor=FACTOR), 'bench')
    assert isinstance(first, MotionHandle) and first.wait(10.0)
    time.sleep(0.5)
    targets: list[tuple[float, np.ndarray]] = []
    rejected = 0
    with Sampler(session_reader(session)) as sampler:
        t0 = time.monotonic()
        for k in range(1, STREAM_STEPS + 1):
            target = circle(center, k / STREAM_HZ)
            result = session.submit(MotionCommand(int(Mode.STREAMED), tuple(target),
                                                  dynamics_factor=FACTOR), 'stream')
            if isinstance(result, Rejection):
                rejected += 1
            else:
                targets.append((time.monotonic(), target))
                if not preemptive:
                    result.wait(10.0)  # stop-and-go: finish each target before the next
            if preemptive:
                time.sleep(max(0.0, t0 + k / STREAM_HZ - time.monotonic()))
        t_end = time.monotonic()
        if isinstance(result, MotionHandle):
            result.wait(10.0)
    metrics = stream_metrics(sampler, center, t0, t_end, targets)
    metrics['rejected'] = rejected
    metrics['duration_s'] = t_end - t0
    return metrics


def bench_stream(server: FrankySimServer) -> dict[str, dict[str, float]]:
    session = RobotSession(FrankaControllerConfig(robot_ip=server.hostname, monitor_rate=500.0))
    session.start()
    assert session.wait_until_ready(20.0)
    try:
        return {'preemptive': run_stream(session, True),
                'stop_and_go_baseline': run_stream(session, False)}
    finally:
        session.close()


def median_dicts(runs: list[dict]) -> dict:
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = [r[key] for r in runs]
        if isinstance(values[0], dict):
            out[key] = median_dicts(values)
        else:
            finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
            out[key] = round(statistics.median(finite), 4) if finite else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--out', type=Path, default=ROOT / 'bench' / 'results' / 'franka.json',
                        help='where the JSON goes (also printed)')
    args = parser.parse_args()
    latency_runs, stream_runs = [], []
    for _ in range(args.runs):
        with FrankySimServer() as server:
            latency_runs.append({'session': bench_latency_session(server)})
        with FrankySimServer() as server:
            latency_runs[-1]['franky_baseline'] = bench_latency_franky(server)
        with FrankySimServer() as server:
            stream_runs.append(bench_stream(server))
    report = {
        'benchmark': 'franka_controller (RobotSession) on franky-sim',
        'command': ' '.join(['python', *sys.argv]), 'git_commit': git_commit(ROOT),
        'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'machine': f'{platform.machine()} {os.cpu_count()} cores',
        'load_avg_1min': round(os.getloadavg()[0], 2), 'python': platform.python_version(),
        'runs': args.runs,
        'statistic': 'median over runs',
        'dynamics_factor': FACTOR,
        'latency_ms': median_dicts(latency_runs),
        'stream_10hz_circle': {
            'radius_m': CIRCLE_RADIUS, 'period_s': CIRCLE_PERIOD, 'steps': STREAM_STEPS,
            **median_dicts(stream_runs)},
        'units': {'latency': 'ms (wall clock and robot clock)', 'error': 'mm',
                  'jerk': 'm/s^3 of the commanded TCP path, robot clock',
                  'rtf': 'robot seconds per wall second (franky-sim speed)'},
    }
    text = json.dumps(report, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + '\n')
    print(text)
    print(f'[bench_franka] wrote {args.out}', file=sys.stderr)


if __name__ == '__main__':
    main()
