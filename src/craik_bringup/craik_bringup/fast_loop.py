"""`craik calibrate`: closed-loop MPC in the fast simulator, and the stop tolerance it implies.

The `mpc_planner` node ends a goal as reached when the world model's energy of the current
observation is at most ``energy_tolerance``. That number depends on the model, so it is measured
here rather than guessed: seeded episodes of the task run closed loop in the fast MuJoCo
environment (same scene, camera, action space and step as the ROS graph, no ROS, several times
faster than real time), with the learned model planning every step and no early stop. Every step
records the energy of the observation and the simulator's ground-truth distance to the goal.
For each candidate tolerance the success rate is replayed as if each episode had stopped at
its first step under the tolerance. The largest tolerance whose replayed success rate is within
``--slack`` of the best stops soonest without losing episodes; the recommendation is ``--margin``
(0.75) times that, to stay clear of the edge on new episodes.

    craik calibrate --task reach --episodes 20 --seed-base 500000 [--model models/craik_wm_geo]

It prints a per-episode table and the energy-vs-distance bands, and with ``--json`` writes the
whole report. The planner settings default to config/mpc_planner.yaml's. Seeds should differ
from those of `craik eval` so the tolerance is not fitted on the evaluation episodes.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import json
from pathlib import Path
import sys
import time
from typing import Any

import numpy as np

from craik_bringup.graph import workspace_root
from craik_sim.variation import add_variation_arguments, variation_config, variation_summary

# Distance bands of the energy table, m.
BANDS_M = (0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, np.inf)


@dataclass
class EpisodeTrace:
    """One closed-loop episode: per observation, the energy and the true distance."""

    seed: int
    energies: list[float]
    distances_m: list[float]
    plan_s: list[float]

    @property
    def final_distance_m(self) -> float:
        return self.distances_m[-1]


def stop_index(trace: EpisodeTrace, tolerance: float) -> int:
    """The observation at which the planner would stop (the last one if it never does)."""
    for i, e in enumerate(trace.energies):
        if e <= tolerance:
            return i
    return len(trace.energies) - 1


def replay_success(traces: list[EpisodeTrace], tolerance: float, success_m: float
                   ) -> tuple[float, float]:
    """(success rate, mean observations used) if every episode stopped at ``tolerance``."""
    wins, used = 0, 0
    for t in traces:
        i = stop_index(t, tolerance)
        wins += t.distances_m[i] < success_m
        used += i + 1
    return wins / len(traces), used / len(traces)


def recommend_tolerance(traces: list[EpisodeTrace], success_m: float, slack: float,
                        margin: float = 0.75) -> dict[str, Any]:
    """``margin`` x the largest tolerance whose replayed success is within ``slack`` of the best.

    The largest such tolerance sits at the edge where stops start to come too early on these
    episodes; the margin keeps new episodes on the safe side of it.
    """
    energies = np.unique(np.concatenate([t.energies for t in traces]))
    # Candidates: midpoints between observed energies (and below the smallest: never stop).
    candidates = np.concatenate([[energies[0] * 0.5], (energies[:-1] + energies[1:]) / 2])
    rates = [replay_success(traces, float(c), success_m) for c in candidates]
    best = max(r for r, _ in rates)
    edge = float(candidates[max(i for i, (r, _) in enumerate(rates) if r >= best - slack)])
    tolerance = edge * margin
    rate, used = replay_success(traces, tolerance, success_m)
    never = replay_success(traces, -np.inf, success_m)
    return {'tolerance': tolerance, 'largest_tolerance': edge, 'margin': margin,
            'replayed_success_rate': rate, 'replayed_mean_steps': used - 1,
            'best_replayed_success_rate': best, 'success_rate_without_stop': never[0]}


def energy_bands(traces: list[EpisodeTrace]) -> list[dict[str, Any]]:
    """Energy quantiles of the observations, by true distance to the goal."""
    e = np.concatenate([t.energies for t in traces])
    d = np.concatenate([t.distances_m for t in traces])
    rows = []
    for lo, hi in zip(BANDS_M[:-1], BANDS_M[1:], strict=True):
        sel = (d >= lo) & (d < hi)
        row: dict[str, Any] = {'from_m': lo, 'to_m': None if np.isinf(hi) else hi,
                               'observations': int(sel.sum())}
        if sel.any():
            q = np.percentile(e[sel], [10, 50, 90])
            row.update(energy_p10=float(q[0]), energy_median=float(q[1]),
                       energy_p90=float(q[2]))
        rows.append(row)
    return rows


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``craik calibrate``."""
    parser.add_argument('--task', choices=('reach', 'push'), default='reach')
    parser.add_argument('--episodes', type=int, default=20)
    parser.add_argument('--seed-base', type=int, default=500_000,
                        help='episode i uses seed SEED_BASE + i (keep apart from craik eval)')
    parser.add_argument('--model', default='models/craik_wm_geo', help='export directory')
    parser.add_argument('--runtime', default='onnxruntime', choices=('onnxruntime', 'torch'))
    parser.add_argument('--threads', type=int, default=0, help='runtime threads (0: default)')
    parser.add_argument('--max-steps', type=int, default=30, help='steps per episode')
    parser.add_argument('--method', choices=('cem', 'mppi', 'random'), default='cem')
    parser.add_argument('--samples', type=int, default=256)
    parser.add_argument('--horizon', type=int, default=8)
    parser.add_argument('--iterations', type=int, default=4)
    parser.add_argument('--elites', type=int, default=32, help='CEM elites (< --samples)')
    parser.add_argument('--image-size', default='640x480',
                        help='rendered camera WxH (the sim node publishes 640x480)')
    parser.add_argument('--slack', type=float, default=0.0,
                        help='accept this much lower replayed success for a larger tolerance')
    parser.add_argument('--margin', type=float, default=0.75,
                        help='recommend this fraction of the largest successful tolerance')
    add_variation_arguments(parser)
    parser.add_argument('--json', metavar='FILE', help='write the report here')
    parser.add_argument('--quiet', action='store_true', help='no per-episode lines')


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise ValueError(f'--image-size must look like 640x480, got {text!r}') from None
    return w, h


def planner_config(args: argparse.Namespace) -> Any:
    """The planner settings of the command line (raises ValueError naming a bad one)."""
    from craik_planner.planning import PlannerConfig

    return PlannerConfig(method=args.method, num_samples=args.samples, horizon=args.horizon,
                         max_iterations=args.iterations, num_elites=args.elites)


def run_episode(env: Any, backend: Any, seed: int, planner: Any, args: argparse.Namespace
                ) -> EpisodeTrace:
    """One closed-loop episode without early stop (``planner``: a PlannerConfig)."""
    from craik_planner.mpc import MpcConfig, MpcEpisode, Observation
    from craik_world_model.object_state import CameraModel
    from craik_world_model.observation import gripper_from_width

    obs = env.reset(args.task, seed, variation_config(args))
    if hasattr(backend, 'set_camera'):
        # The episode's camera (moved when that variation is on), as its calibration says.
        backend.set_camera(CameraModel.from_calibration(env.camera))
    gripper = float(gripper_from_width(obs.gripper_width_m))
    goal = backend.encode_goal(env.goal_rgb, env.goal_depth_m, gripper=gripper)
    episode = MpcEpisode(backend, goal, MpcConfig(planner=planner, energy_tolerance=1e-12,
                                                  max_steps=args.max_steps, seed=seed))
    trace = EpisodeTrace(seed, [], [], [])
    for step in range(args.max_steps + 1):
        observation = Observation(obs.rgb, obs.depth_m, obs.ee_pos,
                                  float(gripper_from_width(obs.gripper_width_m)), obs.time_s,
                                  joint_positions=obs.q)
        z = backend.encode_observation(observation)
        trace.energies.append(backend.state_energy(z, goal))
        trace.distances_m.append(env.evaluate()[1])
        if step == args.max_steps:
            break
        t0 = time.perf_counter()
        outcome = episode.step(z, gripper=observation.gripper)
        trace.plan_s.append(time.perf_counter() - t0)
        obs, _ = env.step(outcome.action)
    return trace


def run(args: argparse.Namespace) -> int:
    """``craik calibrate``."""
    try:
        width, height = _parse_size(args.image_size)
        if args.episodes < 1 or args.max_steps < 1:
            raise ValueError('--episodes and --max-steps must be >= 1')
        planner = planner_config(args)
        if not 0.0 < args.margin <= 1.0:
            raise ValueError(f'--margin must be in (0, 1], got {args.margin}')
    except ValueError as exc:
        print(f'craik calibrate: {exc}', file=sys.stderr)
        return 2
    from craik_planner.backends import WorldModelBackend
    from craik_sim.fast_env import FastEnv, FastEnvConfig
    from craik_sim.tasks import SUCCESS_THRESHOLD_M

    model_dir = Path(args.model)
    if not model_dir.is_absolute() and not model_dir.exists():
        model_dir = workspace_root() / model_dir
    try:
        backend = WorldModelBackend.load(str(model_dir), args.runtime, threads=args.threads)
    except (OSError, ValueError) as exc:
        print(f'craik calibrate: cannot load the world model at {model_dir}: {exc}',
              file=sys.stderr)
        return 1
    print(f'craik calibrate: {args.episodes} {args.task} episodes in the fast simulator '
          f'({width}x{height}), {args.method} {args.samples}x{args.horizon}, '
          f'{args.iterations} iterations, model {model_dir}', file=sys.stderr)
    traces: list[EpisodeTrace] = []
    with FastEnv(FastEnvConfig(image_width=width, image_height=height)) as env:
        for i in range(args.episodes):
            t0 = time.monotonic()
            trace = run_episode(env, backend, args.seed_base + i, planner, args)
            traces.append(trace)
            if not args.quiet:
                ok = 'success' if trace.final_distance_m < SUCCESS_THRESHOLD_M else 'miss'
                print(f'  [{i + 1}/{args.episodes}] seed {trace.seed}: '
                      f'{trace.distances_m[0] * 100:.1f} -> {trace.final_distance_m * 100:.1f} cm'
                      f' ({ok}), energy {trace.energies[0]:.4f} -> {trace.energies[-1]:.4f}, '
                      f'{time.monotonic() - t0:.1f} s', file=sys.stderr, flush=True)
    finals = np.array([t.final_distance_m for t in traces])
    plan_s = np.concatenate([t.plan_s for t in traces])
    recommendation = recommend_tolerance(traces, SUCCESS_THRESHOLD_M, args.slack, args.margin)
    report = {
        'task': args.task, 'episodes': args.episodes, 'seed_base': args.seed_base,
        'model': str(model_dir), 'runtime': args.runtime, 'max_steps': args.max_steps,
        'planner': {'method': args.method, 'samples': args.samples, 'horizon': args.horizon,
                    'iterations': args.iterations},
        'image_size': [width, height], 'success_threshold_m': SUCCESS_THRESHOLD_M,
        'variation': variation_summary(args),
        'success_rate_at_max_steps': float(np.mean(finals < SUCCESS_THRESHOLD_M)),
        'final_distance_m_median': float(np.median(finals)),
        'plans_per_s': float(1.0 / np.median(plan_s)),
        'recommended': recommendation, 'energy_by_distance': energy_bands(traces),
        'traces': [{'seed': t.seed, 'energies': t.energies, 'distances_m': t.distances_m}
                   for t in traces]}
    print(f"success after {args.max_steps} steps: {report['success_rate_at_max_steps']:.0%} "
          f"(median final distance {report['final_distance_m_median'] * 100:.1f} cm), "
          f"{report['plans_per_s']:.1f} plans/s")
    print('energy by true distance to the goal:')
    print(f"  {'distance':>12} {'obs':>5} {'p10':>8} {'median':>8} {'p90':>8}")
    for row in report['energy_by_distance']:
        to = f"{row['to_m'] * 100:.0f}" if row['to_m'] is not None else 'inf'
        band = f"{row['from_m'] * 100:.0f}-{to} cm"
        if row['observations']:
            print(f"  {band:>12} {row['observations']:>5} {row['energy_p10']:>8.4f} "
                  f"{row['energy_median']:>8.4f} {row['energy_p90']:>8.4f}")
        else:
            print(f'  {band:>12} {0:>5}')
    r = recommendation
    print(f"recommended energy_tolerance: {r['tolerance']:.4f} (stopping there: "
          f"{r['replayed_success_rate']:.0%} success after {r['replayed_mean_steps']:.1f} "
          f"steps on average; never stopping: {r['success_rate_without_stop']:.0%})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + '\n')
        print(f'wrote {args.json}')
    return 0
