"""`craik collect`: world-model training episodes from the fast environment.

    craik collect --task push --episodes 100 --out data/push64

Episode i uses seed `--seed + i`; re-running the same command resumes (episodes already in the
index with a valid checksum are kept; a run with different settings is refused unless
--overwrite). Prints the fraction of steps with robot-cube contact at the end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
from typing import Any

import numpy as np

from craik_sim.episodes import (
    INDEX_NAME,
    EpisodeDataset,
    EpisodeFormatError,
    EpisodeInfo,
    write_episode,
    write_index,
)
from craik_sim.exploration import ExplorationConfig, ExplorationPolicy
from craik_sim.fast_env import FastEnv, FastEnvConfig
from craik_sim.motion import STEP_DURATION_S
from craik_sim.render import depth_to_millimetres
from craik_sim.scene import SceneConfig, SceneError, VariationConfig
from craik_sim.tasks import TASK_NAMES
from craik_sim.variation import add_variation_arguments, variation_config, variation_summary


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--task', required=True, choices=TASK_NAMES)
    parser.add_argument('--episodes', type=int, required=True, help='number of episodes')
    parser.add_argument('--out', required=True, type=Path, help='dataset directory')
    parser.add_argument('--steps', type=int, default=30, help='actions per episode')
    parser.add_argument('--seed', type=int, default=0, help='seed of the first episode')
    parser.add_argument('--width', type=int, default=64, help='observation width (px)')
    parser.add_argument('--height', type=int, default=64, help='observation height (px)')
    parser.add_argument('--cubes', type=int, default=2, help='cubes on the table')
    parser.add_argument('--push-probability', type=float, default=0.6,
                        help='share of exploration segments aimed at cubes')
    add_variation_arguments(parser)
    parser.add_argument('--overwrite', action='store_true',
                        help='start over when DIR holds a dataset with other settings')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {'task': args.task, 'steps': args.steps, 'seed': args.seed, 'width': args.width,
            'height': args.height, 'cubes': args.cubes,
            'push_probability': args.push_probability, 'variation': variation_summary(args),
            'step_duration_s': STEP_DURATION_S}


def collect_episode(env: FastEnv, task: str, seed: int, steps: int,
                    variation: VariationConfig,
                    exploration: ExplorationConfig,
                    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Run one exploration episode; returns (arrays per episodes.SCHEMA, metadata)."""
    obs = env.reset(task, seed, variation)
    policy = ExplorationPolicy(np.random.default_rng([seed, 7919]), exploration)
    frames = [obs]
    truths = [env.ground_truth()]
    actions, applied, contact = [], [], []
    success = False
    for _ in range(steps):
        action = policy.act(truths[-1])
        obs, info = env.step(action)
        frames.append(obs)
        truths.append(env.ground_truth())
        actions.append(action)
        applied.append(info.applied_displacement)
        contact.append(info.contact)
        success = info.success
    cam = env.observation_camera
    arrays = {
        'rgb': np.stack([f.rgb for f in frames]).astype(np.uint8),  # type: ignore[misc]
        'depth': np.stack([depth_to_millimetres(f.depth_m) for f in frames]),  # type: ignore
        'ee_pos': np.stack([f.ee_pos for f in frames]).astype(np.float32),
        'ee_quat': np.stack([f.ee_quat_xyzw for f in frames]).astype(np.float32),
        'q': np.stack([f.q for f in frames]).astype(np.float32),
        'gripper_width': np.array([f.gripper_width_m for f in frames], dtype=np.float32),
        'actions': np.array(actions, dtype=np.float32).reshape(-1, 4),
        'applied_displacement': np.array(applied, dtype=np.float32).reshape(-1, 3),
        'contact': np.array(contact, dtype=bool),
        'cube_pos': np.stack([t.cube_pos for t in truths]).astype(np.float32),
        'cube_quat': np.stack([t.cube_quat_xyzw for t in truths]).astype(np.float32),
        'goal_rgb': np.asarray(env.goal_rgb, dtype=np.uint8),
        'goal_depth': depth_to_millimetres(np.asarray(env.goal_depth_m)),
        'intrinsics': cam.intrinsics.matrix.astype(np.float64),
        'extrinsics': cam.parent_from_camera.astype(np.float64),
    }
    metadata = dict(env.spec.to_metadata(), success=bool(success),
                    step_duration_s=env.config.step_duration_s,
                    dynamics_factor=env.config.dynamics_factor,
                    camera={'width': cam.intrinsics.width, 'height': cam.intrinsics.height,
                            'frame_id': cam.child_frame, 'parent_frame': cam.parent_frame})
    return arrays, metadata


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.episodes < 1 or args.steps < 1:
        print('craik collect: --episodes and --steps must be >= 1', file=sys.stderr)
        return 2
    try:
        variation = variation_config(args)
        if variation.distractors > SceneConfig().max_distractors:
            raise SceneError(f'--distractors must be at most {SceneConfig().max_distractors} '
                             f'in this scene, got {variation.distractors}')
    except SceneError as err:
        print(f'craik collect: {err}', file=sys.stderr)
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    settings = _settings(args)
    done: dict[int, EpisodeInfo] = {}
    if (out / INDEX_NAME).exists():
        try:
            existing = EpisodeDataset(out)
        except EpisodeFormatError as err:
            print(f'craik collect: {err}', file=sys.stderr)
            return 2
        if existing.config != json.loads(json.dumps(settings)) and not args.overwrite:
            print(f'craik collect: {out} holds a dataset collected with other settings '
                  f'({existing.config}); use another --out or --overwrite', file=sys.stderr)
            return 2
        if existing.config == json.loads(json.dumps(settings)):
            bad = {p.split(':')[0] for p in existing.verify()}
            done = {int(e.id.split('_')[1]): e for e in existing.episodes if e.id not in bad}
    exploration = ExplorationConfig(push_probability=args.push_probability)
    config = FastEnvConfig(scene=SceneConfig(cube_count=args.cubes),
                           image_width=args.width, image_height=args.height)
    todo = [i for i in range(args.episodes) if i not in done]
    if len(done):
        print(f'craik collect: resuming, {len(done)} of {args.episodes} episodes present')
    with FastEnv(config) as env:
        bar = tqdm(total=args.episodes, initial=args.episodes - len(todo), unit='ep',
                   disable=args.no_progress, desc=f'collect {args.task}')
        for i in todo:
            arrays, metadata = collect_episode(env, args.task, args.seed + i, args.steps,
                                               variation, exploration)
            done[i] = write_episode(out, i, arrays, metadata)
            write_index(out, list(done.values()), settings)
            bar.set_postfix(contact=f'{np.mean(arrays["contact"]):.2f}')
            bar.update(1)
        bar.close()
    dataset = EpisodeDataset(out)
    selected = [e for e in dataset.episodes if int(e.id.split('_')[1]) < args.episodes]
    steps = sum(e.num_steps for e in selected)
    contact = sum(e.contact_fraction * e.num_steps for e in selected) / max(1, steps)
    print(f'craik collect: {len(selected)} episodes, {steps} steps in {out}; '
          f'robot-cube contact in {contact:.1%} of steps; '
          f'success {sum(e.success for e in selected)}/{len(selected)}')
    return 0
