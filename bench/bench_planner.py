"""Planning rate of the MPC step on this machine (JSON on stdout).

One planner step is what the `mpc_planner` node does for every executed action: encode the
latest 640x480 RGB-D observation (for a model with geometric object slots, also extract the
objects from its depth: rendered frames of a varied push episode then), then CEM/MPPI over
the world model's batched rollout + energy (warm-started from the previous step's plan),
without a deadline so that every iteration runs.
Reported per runtime and method: the median step time (p10/p90), plans/s = 1 / median, and the
share spent in encoding and in the rollout graph. Baseline in the same run: the same planner on
eager PyTorch. The issue's target: >= 5 plans/s at 256 samples x horizon 8 on 2 CPU cores with
onnxruntime.

    python bench/bench_planner.py [--model models/craik_wm_geo] [--samples 256] [--horizon 8]
        [--iterations 4] [--threads 2] [--steps 20] [--runs 3]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import os
from pathlib import Path
import platform
import sys
import time
from typing import Any

import numpy as np
import torch

from craik_bringup.graph import git_commit
from craik_planner.action_space import ActionBounds
from craik_planner.backends import WorldModelBackend
from craik_planner.mpc import MpcConfig, MpcEpisode, Observation
from craik_planner.planning import PlannerConfig
from craik_world_model.runtime import WorldModelRuntime, load_runtime

ROOT = Path(__file__).resolve().parents[1]


class _TimedRuntime:
    """Wraps a runtime and accumulates the time spent in encode and rollout calls."""

    def __init__(self, runtime: WorldModelRuntime) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.encode_s = 0.0
        self.rollout_s = 0.0
        self.rollout_calls = 0

    def encode(self, *args: Any, **kwargs: Any) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self.runtime.encode(*args, **kwargs)
        finally:
            self.encode_s += time.perf_counter() - t0

    def rollout_energy(self, *args: Any) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self.runtime.rollout_energy(*args)
        finally:
            self.rollout_s += time.perf_counter() - t0
            self.rollout_calls += 1

    def energy(self, z: np.ndarray, goal: np.ndarray) -> float:
        return self.runtime.energy(z, goal)

    def with_geometry(self, *args: Any, **kwargs: Any) -> np.ndarray:
        return self.runtime.with_geometry(*args, **kwargs)


def _sim_observations(count: int, seed: int) -> tuple[list[Observation], Any, Any]:
    """Rendered 640x480 observations of a varied push episode (arm moving), its goal frame and
    camera: what a geometric model's object extraction needs to do real work on."""
    from craik_sim.fast_env import FastEnv, FastEnvConfig
    from craik_sim.scene import VariationConfig
    from craik_world_model.object_state import CameraModel
    from craik_world_model.observation import gripper_from_width

    variation = VariationConfig(lighting=True, camera_jitter=True, cube_colours=True,
                                cube_sizes=True, table_texture=True, distractors=2)
    out = []
    with FastEnv(FastEnvConfig(image_width=640, image_height=480)) as env:
        obs = env.reset('push', seed, variation)
        goal = (env.goal_rgb, env.goal_depth_m)
        camera = CameraModel.from_calibration(env.camera)
        for i in range(count):
            out.append(Observation(obs.rgb, obs.depth_m, obs.ee_pos,
                                   float(gripper_from_width(obs.gripper_width_m)), float(i),
                                   joint_positions=obs.q))
            obs, _ = env.step([0.03, 0.02 * (-1) ** i, -0.04, 1.0])
    return out, goal, camera


def _observations(count: int, seed: int) -> list[Observation]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        depth = rng.uniform(0.3, 3.0, (480, 640)).astype(np.float32)
        out.append(Observation(rgb, depth, np.array([0.5, 0.0, 0.3]) + 0.01 * i, 0.0, float(i)))
    return out


def bench_steps(runtime: WorldModelRuntime, method: str, args: argparse.Namespace
                ) -> dict[str, Any]:
    """``args.runs`` episodes of ``args.steps`` MPC steps; statistics over all steps."""
    timed = _TimedRuntime(runtime)
    backend = WorldModelBackend(timed)
    if backend.geometric:
        observations, (goal_rgb, goal_depth), camera = _sim_observations(4, seed=900001)
        backend.set_camera(camera)
        goal = backend.encode_goal(goal_rgb, goal_depth, gripper=1.0)
    else:
        observations = _observations(4, seed=1)
        goal = backend.encode_goal(observations[0].rgb[::-1].copy(), None)
    planner = PlannerConfig(method=method, num_samples=args.samples, horizon=args.horizon,
                            max_iterations=args.iterations)
    # Tolerance below any energy: every step plans.
    config = MpcConfig(planner=planner, energy_tolerance=1e-12, max_steps=10_000)
    times: list[float] = []
    for run in range(args.runs + 1):          # run 0 warms up
        episode = MpcEpisode(backend, goal, config, ActionBounds())
        timed.encode_s = timed.rollout_s = 0.0
        timed.rollout_calls = 0
        run_times = []
        for k in range(args.steps):
            obs = observations[k % len(observations)]
            t0 = time.perf_counter()
            episode.step(backend.encode_observation(obs))
            run_times.append(time.perf_counter() - t0)
        if run > 0:
            times += run_times
            encode_share = timed.encode_s / sum(run_times)
            rollout_share = timed.rollout_s / sum(run_times)
            calls_per_step = timed.rollout_calls / args.steps
    q = np.percentile(times, [10, 50, 90])
    return {'step_ms_median': float(q[1] * 1e3), 'step_ms_p10': float(q[0] * 1e3),
            'step_ms_p90': float(q[2] * 1e3), 'plans_per_s': float(1.0 / q[1]),
            'encode_share': float(encode_share), 'rollout_share': float(rollout_share),
            'rollout_calls_per_step': float(calls_per_step), 'timed_steps': len(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default=str(ROOT / 'models' / 'craik_wm_geo'),
                        help='export directory (craik wm-export / craik wm-geometry)')
    parser.add_argument('--samples', type=int, default=256)
    parser.add_argument('--horizon', type=int, default=8)
    parser.add_argument('--iterations', type=int, default=4,
                        help='CEM/MPPI iterations per step (config/mpc_planner.yaml)')
    parser.add_argument('--threads', type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument('--steps', type=int, default=20, help='MPC steps per run')
    parser.add_argument('--runs', type=int, default=3, help='timed runs (after one warm-up)')
    parser.add_argument('--methods', default='cem,mppi,random')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = Path(args.model)
    if not (model_dir / 'export.json').exists():
        print(f'bench_planner: {model_dir} is not a world-model export (craik wm-export)',
              file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        'benchmark': 'mpc_planner_step', 'samples': args.samples, 'horizon': args.horizon,
        'iterations': args.iterations, 'model': str(model_dir), 'threads': args.threads,
        'machine': platform.processor() or platform.machine(), 'cpu_count': os.cpu_count(),
        'load_average_1min_before': os.getloadavg()[0], 'runtimes': {},
        'command': ' '.join(['python', *sys.argv]), 'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'git_commit': git_commit(ROOT)}
    runtimes: list[tuple[str, Callable[[], WorldModelRuntime]]] = [
        ('torch_eager', lambda: load_runtime(model_dir, 'torch')),
        ('onnxruntime', lambda: load_runtime(model_dir, 'onnxruntime', threads=args.threads)),
    ]
    for name, make in runtimes:
        runtime = make()
        report['runtimes'][name] = {}
        for method in args.methods.split(','):
            result = bench_steps(runtime, method, args)
            report['runtimes'][name][method] = result
            print(f'{name} {method}: {json.dumps(result)}', file=sys.stderr)
    for method, result in report['runtimes']['onnxruntime'].items():
        base = report['runtimes']['torch_eager'][method]['step_ms_median']
        result['speedup_vs_torch_eager'] = base / result['step_ms_median']
    report['load_average_1min_after'] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
