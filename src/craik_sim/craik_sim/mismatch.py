"""Execute action sequences through franky on franky-sim and in the fast environment.

Used by the mismatch test and bench/bench_sim.py: both start from the same episode; each action
(dx, dy, dz, g) becomes, on franky-sim, a relative franky CartesianMotion by d (expressed in the
end-effector frame, whose axes are base (x, -y, -z) with the gripper pointing down) at
DEFAULT_DYNAMICS_FACTOR, and each step lasts STEP_DURATION_S of simulated time; the TCP ground
truth is compared at the end of every sequence.
"""

from __future__ import annotations

import time

import numpy as np

from craik_sim.fast_env import FastEnv
from craik_sim.motion import DEFAULT_DYNAMICS_FACTOR, DOWN_ROTATION, STEP_DURATION_S
from craik_sim.sim_runtime import SimRuntime
from craik_sim.tasks import clip_to_workspace


def random_sequences(seed: int, count: int, length: int) -> list[np.ndarray]:
    """Action sequences [length, 4] that stay inside the workspace (no clipping)."""
    rng = np.random.default_rng(seed)
    home = np.array([0.45, 0.0, 0.30])
    out = []
    for _ in range(count):
        pos = home.copy()
        seq: list[list[float]] = []
        while len(seq) < length:
            d = rng.uniform(-0.05, 0.05, size=3)
            nxt, clipped = clip_to_workspace(pos + d)
            if clipped or nxt[2] < 0.12:
                continue
            pos = nxt
            seq.append([*d, 0.0])
        out.append(np.array(seq))
    return out


def run_franky(runtime: SimRuntime, task: str, seed: int, actions: np.ndarray) -> np.ndarray:
    """TCP ground truth [3] after executing actions through franky (runtime must be started)."""
    import franky

    runtime.reset_episode(task, seed)
    robot = franky.Robot(runtime.hostname, realtime_config=franky.RealtimeConfig.Ignore)
    robot.relative_dynamics_factor = DEFAULT_DYNAMICS_FACTOR
    for a in actions:
        start = runtime.snapshot()[1]
        d_ee = DOWN_ROTATION.T @ a[:3]
        robot.move(franky.CartesianMotion(franky.Affine(d_ee), franky.ReferenceType.Relative))
        while runtime.snapshot()[1] - start < STEP_DURATION_S - 0.0005:
            time.sleep(0.002)
    return runtime.ground_truth().ee_pos


def run_fast(env: FastEnv, task: str, seed: int, actions: np.ndarray) -> np.ndarray:
    env.reset(task, seed)
    for a in actions:
        env.step(a)
    return env.ground_truth().ee_pos
