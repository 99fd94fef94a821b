"""craik_sim figures (JSON): fast-env steps/s vs real time; sim-node camera rate under the
1 kHz franky-sim loop with franky moving the robot; the fast env's mismatch to franky.

    python bench/bench_sim.py [--runs 3] [--steps 40] [--camera-seconds 60]
        [--mismatch-sequences 4] [--out bench/results/sim.json]

Baseline in the same run: the fast env without rendering (physics + control only), and the
franky-sim loop rate with the camera off. Mismatch: random 6-step action sequences from home
(``craik_sim.mismatch``, the sequences of the mismatch test), executed through franky on
franky-sim and in the fast env; the final TCP distance between the two. The JSON (with the
command, git commit, machine and date) goes to --out and to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np

from craik_bringup.graph import git_commit

ROOT = Path(__file__).resolve().parents[1]


def fast_env_rate(width: int, height: int, render: bool, steps: int) -> float:
    from craik_sim.fast_env import FastEnv, FastEnvConfig
    from craik_sim.motion import STEP_DURATION_S
    rng = np.random.default_rng(0)
    with FastEnv(FastEnvConfig(image_width=width, image_height=height, render=render)) as env:
        env.reset('push', 0)
        env.step([0.0, 0.0, 0.0, 0.0])
        start = time.perf_counter()
        for _ in range(steps):
            env.step([*rng.uniform(-0.03, 0.03, 3), 1.0])
        elapsed = time.perf_counter() - start
    return steps * STEP_DURATION_S / elapsed


def camera_run(rate_hz: float, seconds: float) -> dict[str, float]:
    """Run the sim runtime with franky moving back and forth; count frames and franky errors."""
    import franky

    from craik_sim.sim_runtime import SimConfig, SimRuntime
    frames: list[float] = []
    rt = SimRuntime(SimConfig(rate_hz=rate_hz), on_frame=lambda f: frames.append(time.time()))
    rt.start()
    errors: list[str] = []
    moves = 0
    try:
        robot = franky.Robot('127.0.0.1', realtime_config=franky.RealtimeConfig.Ignore)
        robot.relative_dynamics_factor = 0.1
        time.sleep(1.0)
        frames.clear()
        steps0, t0 = rt.steps, time.time()
        sign = 1.0
        while time.time() - t0 < seconds:
            try:
                robot.move(franky.CartesianMotion(franky.Affine(np.array([0.0, 0.05 * sign, 0.0])),
                                                  franky.ReferenceType.Relative))
                moves += 1
            except Exception as err:  # noqa: BLE001 (counted: any franky error is a failure)
                errors.append(repr(err))
                robot.recover_from_errors()
            sign = -sign
        wall = time.time() - t0
        sim_s = (rt.steps - steps0) / 1000.0
    finally:
        rt.stop()
    return {'camera_hz': len(frames) / wall if rate_hz else 0.0, 'realtime_factor': sim_s / wall,
            'franky_errors': float(len(errors)), 'moves': float(moves)}


def mismatch(sequences: int, length: int = 6) -> dict[str, Any]:
    """Final TCP distance (mm) between franky on franky-sim and the fast env, per sequence."""
    from craik_sim.fast_env import FastEnv, FastEnvConfig
    from craik_sim.mismatch import random_sequences, run_fast, run_franky
    from craik_sim.sim_runtime import SimConfig, SimRuntime

    gaps = []
    rt = SimRuntime(SimConfig(rate_hz=0.1), on_frame=lambda frame: None)   # camera ~off
    rt.start()
    try:
        with FastEnv(FastEnvConfig(render=False)) as env:
            for i, actions in enumerate(random_sequences(seed=1, count=sequences,
                                                         length=length)):
                gap = run_franky(rt, 'reach', i, actions) - run_fast(env, 'reach', i, actions)
                gaps.append(float(np.linalg.norm(gap)) * 1e3)
    finally:
        rt.stop()
    return {'sequences': sequences, 'steps': length, 'final_tcp_gap_mm': gaps,
            'median_mm': float(np.median(gaps)), 'test_threshold_mm': 10.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--steps', type=int, default=40)
    parser.add_argument('--camera-seconds', type=float, default=60.0)
    parser.add_argument('--mismatch-sequences', type=int, default=4)
    parser.add_argument('--out', type=Path, default=ROOT / 'bench' / 'results' / 'sim.json',
                        help='where the JSON goes (also printed)')
    args = parser.parse_args()
    out: dict[str, object] = {
        'benchmark': 'sim', 'command': ' '.join(['python', *sys.argv]),
        'git_commit': git_commit(ROOT), 'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'machine': f'{platform.machine()} {os.cpu_count()} cores',
        'load_avg_1min': round(os.getloadavg()[0], 2),
        'runs': args.runs, 'unit': 'multiple of real time'}
    for name, (w, h, render) in {'fast_env_no_render': (64, 64, False),
                                 'fast_env_64x64': (64, 64, True),
                                 'fast_env_640x480': (640, 480, True)}.items():
        out[name] = statistics.median(fast_env_rate(w, h, render, args.steps)
                                      for _ in range(args.runs))
    results = {}
    for name, rate in {'camera_off': 0.1, 'camera_15hz': 15.0}.items():
        runs = [camera_run(rate, args.camera_seconds) for _ in range(args.runs)]
        results[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        results[name]['franky_errors_total'] = sum(r['franky_errors'] for r in runs)
    out['sim_node'] = results
    out['camera_seconds'] = args.camera_seconds
    if args.mismatch_sequences:
        out['franky_vs_fast_env'] = mismatch(args.mismatch_sequences)
    text = json.dumps(out, indent=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + '\n')
    print(text)
    print(f'[bench_sim] wrote {args.out}', file=sys.stderr)


if __name__ == '__main__':
    main()
