"""Accuracy and cost of the class-agnostic object state, per scene variation (JSON on stdout).

For each variation, seeded episodes of the fast simulator (640x480, the sim node's camera) are
rendered and measured against ground truth:

- observations: every cube and distractor after ``--steps`` random exploration actions (the arm
  moving among the objects, pushing some), the arm masked by kinematics: position error of the
  nearest extracted object (m), objects missed (> 3 cm off) and objects extracted where none is;
  and the same for the planner's estimator that followed every frame from the episode's start
  (``tracked_objects``: objects the arm hides registered from their templates, lost ones kept
  where they were last seen);
- reach goals: the TCP read from the goal frame's depth against the goal state's (m);
- push goals: the target cube's goal position read from the goal frame (m; the gripper stands
  right behind it and hides part of it), and after the episode's first observation has shown
  the cube whole and its template placed the goal's cube (what the planner plans towards);
- time per observation (back-projection + masking + clustering), with the colour-keyed
  locator's seeds for comparison: none, it needs no depth (the baseline is its failure: it only
  knows the two nominal cube colours).

    python bench/bench_object_state.py [--episodes 20] [--seed-base 950000] [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import sys
import time
from typing import Any

import numpy as np

from craik_bringup.graph import git_commit
from craik_sim.exploration import ExplorationConfig, ExplorationPolicy
from craik_sim.fast_env import FastEnv, FastEnvConfig
from craik_sim.variation import parse_variations
from craik_world_model.object_state import (
    CameraModel,
    ObjectStateEstimator,
    backproject,
    extract_objects,
)

ROOT = Path(__file__).resolve().parents[1]
VARIATIONS = 'nominal,lighting+camera-pose,cube-colours+cube-sizes+distractors=2,table,all'
MISSED_M = 0.03


def _truth(env: FastEnv) -> np.ndarray:
    spec, gt = env.spec, env.ground_truth()
    live = [env.data.qpos[a:a + 3] for a in env.handles.distractor_qpos]
    distractors = [p[:2] for p, on in zip(live, spec.distractor_active, strict=True) if on]
    return np.array([c[:2] for c in gt.cube_pos] + distractors)


def _nearest_slot_error(rows: np.ndarray, position: np.ndarray) -> float:
    """Distance (m) from ``position [2]`` to the nearest present slot of ``rows [K, 9]``."""
    present = rows[rows[:, 2] > 0.5, :2]
    return float(np.min(np.linalg.norm(present - position, axis=1))) if len(present) else 1.0


def _stats(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    return {'median_m': float(np.median(v)), 'p90_m': float(np.percentile(v, 90)),
            'max_m': float(v.max()), 'count': int(len(v))}


def measure(env: FastEnv, variation: Any, seeds: list[int], steps: int) -> dict[str, Any]:
    errors, missed, extra, times = [], 0, 0, []
    tcp_errors, goal_errors, registered_errors = [], [], []
    tracked_errors, tracked_missed, tracked_times = [], 0, []
    for seed in seeds:
        obs = env.reset('push', seed, variation)
        camera = CameraModel.from_calibration(env.camera)
        # The planner's estimator follows the same frames from the episode's start (objects
        # tracked: templates, last positions).
        tracker = ObjectStateEstimator(camera)
        tracker.goal(env.goal_rgb, env.goal_depth_m, obs.gripper_width_m)
        tracked = tracker.observation(obs.rgb, obs.depth_m, obs.q, obs.gripper_width_m)
        policy = ExplorationPolicy(np.random.default_rng([seed, 11]), ExplorationConfig())
        for _ in range(steps):
            obs, _ = env.step(policy.act(env.ground_truth()))
            t0 = time.perf_counter()
            tracked = tracker.observation(obs.rgb, obs.depth_m, obs.q, obs.gripper_width_m)
            tracked_times.append(time.perf_counter() - t0)
        slots = tracked[tracked[:, 2] > 0.5, :2]
        for t in _truth(env):
            e = float(np.min(np.linalg.norm(slots - t, axis=1))) if len(slots) else 1.0
            tracked_missed += e > MISSED_M
            tracked_errors.append(min(e, 1.0))
        estimator = ObjectStateEstimator(camera)
        t0 = time.perf_counter()
        points, colours = backproject(obs.depth_m, env.observation_camera.intrinsics.matrix,
                                      env.camera.parent_from_camera, obs.rgb,
                                      estimator.config.max_points)
        found = extract_objects(points, colours, estimator.config,
                                estimator.arm.capsules(obs.q, obs.gripper_width_m))
        times.append(time.perf_counter() - t0)
        truth = _truth(env)
        for t in truth:
            e = float(np.min(np.linalg.norm(found.positions - t, axis=1))) if len(found) \
                else float('inf')
            missed += e > MISSED_M
            errors.append(min(e, 1.0))
        for f in found.positions:
            extra += bool(np.min(np.linalg.norm(truth - f, axis=1)) > MISSED_M)
        spec = env.spec
        rows, _ = estimator.goal(env.goal_rgb, env.goal_depth_m, obs.gripper_width_m)
        goal_cube = spec.goal_cube_pos[spec.target_cube, :2]
        goal_errors.append(_nearest_slot_error(rows, goal_cube))
        # The episode's first observation (arm at home) shows the cubes whole: their templates
        # place the goal's partly hidden cube.
        first = env.reset('push', seed, variation)
        estimator.observation(first.rgb, first.depth_m, first.q, first.gripper_width_m)
        assert estimator.goal_rows is not None
        registered_errors.append(_nearest_slot_error(estimator.goal_rows, goal_cube))
        env.reset('reach', seed, variation)
        # The reach episode's own (moved) camera.
        estimator.camera = CameraModel.from_calibration(env.camera)
        _, tcp = estimator.goal(env.goal_rgb, env.goal_depth_m, 0.08)
        tcp_errors.append(float(np.linalg.norm(tcp - env.spec.goal_tcp_pos))
                          if tcp is not None else 1.0)
    return {'observation_objects': {**_stats(errors), 'missed': missed, 'extra': extra},
            'tracked_objects': {**_stats(tracked_errors), 'missed': tracked_missed},
            'reach_goal_tcp': _stats(tcp_errors), 'push_goal_target': _stats(goal_errors),
            'push_goal_target_after_first_observation': _stats(registered_errors),
            'extract_ms_median': float(np.median(times) * 1e3),
            'tracked_observation_ms_median': float(np.median(tracked_times) * 1e3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--episodes', type=int, default=20)
    parser.add_argument('--seed-base', type=int, default=950_000)
    parser.add_argument('--steps', type=int, default=8, help='exploration actions first')
    parser.add_argument('--variations', default=VARIATIONS)
    args = parser.parse_args()
    seeds = list(range(args.seed_base, args.seed_base + args.episodes))
    report: dict[str, Any] = {
        'benchmark': 'object_state', 'command': ' '.join(['python', *sys.argv]),
        'git_commit': git_commit(ROOT), 'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'machine': f'{platform.machine()} {os.cpu_count()} cores', 'seeds': [seeds[0], seeds[-1]],
        'exploration_steps': args.steps, 'image': [640, 480], 'variations': {}}
    with FastEnv(FastEnvConfig(image_width=640, image_height=480)) as env:
        for name, variation in parse_variations(args.variations).items():
            result = measure(env, variation, seeds, args.steps)
            report['variations'][name] = result
            print(f'{name}: {json.dumps(result)}', file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
