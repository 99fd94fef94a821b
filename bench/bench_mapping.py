"""Gaussian-map quality and speed on simulated pushes (JSON to --out and stdout).

    python bench/bench_mapping.py [--seeds 10 11 12] [--refine-iterations 40]
        [--out bench/results/mapping.json] [--picture bench/results/mapping_view.png]

For each seed, craik_mapping integrates a scripted push (craik_mapping.sim_sequences, 640x480,
the robot masked by its kinematics) except its last two frames, then renders the map
- from the camera at the last frame, which was not integrated (a later frame), and
- from a second camera 15 degrees around the table (the same push, rendered by a second
  simulator instance from there; nothing from it is integrated),
and compares with the simulator's images over the scene's pixels (depth within range, not the
robot): PSNR of colour and median absolute depth error, and the share of those pixels the map
covers (alpha >= 0.5). The same after `--refine-iterations` CPU refinement steps. Speed:
integration (arm mask + integrate) per frame at 640x480 with 2 torch threads, median over all
frames; the baseline in the same run is back-projecting the frame alone (the part no map can
skip). The mapping code was tuned on seeds 3 and 5; the default seeds are others.
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
import torch

from craik_bringup.graph import git_commit

ROOT = Path(__file__).resolve().parent.parent
ORBIT_DEG = 15.0
TABLE_CENTRE = np.array([0.5, 0.0, 0.0])


def orbit(calibration: Any, degrees: float) -> Any:
    """The camera moved ``degrees`` about the vertical axis through the table centre, looking at
    the same point of the table as before."""
    from craik_sim.calibration import look_at_optical

    pose = calibration.parent_from_camera
    angle = np.radians(degrees)
    rot_z = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0],
                      [0.0, 0.0, 1.0]])
    position = TABLE_CENTRE + rot_z @ (pose[:3, 3] - TABLE_CENTRE)
    # Where the optical axis met the table plane, turned with the camera.
    axis = pose[:3, 2]
    hit = pose[:3, 3] + axis * (-pose[2, 3] / axis[2])
    target = TABLE_CENTRE + rot_z @ (hit - TABLE_CENTRE)
    return calibration.with_pose(position, look_at_optical(position, target))


def scene_metrics(gmap: Any, frame: Any, robot: Any) -> dict[str, float]:
    """PSNR (dB), median |depth error| (mm) and coverage of the map's render of ``frame``."""
    from craik_mapping.arm_mask import arm_pixel_mask
    from craik_mapping.render import render

    h, w = frame.depth_m.shape
    view = render(gmap, frame.intrinsics, frame.world_from_camera, w, h, backend='torch')
    mask = arm_pixel_mask(frame.depth_m, frame.intrinsics, frame.world_from_camera,
                          robot.capsules(frame.q, frame.gripper_width_m))
    scene = (frame.depth_m > 0) & (frame.depth_m <= gmap.config.max_depth_m) & ~mask
    rendered = view.depth_m()
    covered = scene & (rendered > 0)
    mse = float(np.mean((view.colour.numpy()[scene] - frame.rgb[scene] / 255.0) ** 2))
    return {'psnr_db': round(-10.0 * np.log10(max(mse, 1e-12)), 2),
            'depth_error_median_mm': round(float(np.median(
                np.abs(rendered - frame.depth_m)[covered])) * 1000.0, 2),
            'coverage': round(float(covered.sum() / max(1, scene.sum())), 4)}


def run_seed(seed: int, refine_iterations: int, picture: Path | None) -> dict[str, Any]:
    from craik_mapping.arm_mask import RobotShape, arm_pixel_mask, remove_robot
    from craik_mapping.gaussian_map import GaussianMap, check_frame
    from craik_mapping.refine import RefineConfig, Refiner
    from craik_mapping.sim_sequences import push_sequence
    from craik_sim.calibration import default_calibration_path, load_calibration

    nominal = load_calibration(default_calibration_path())
    frames = push_sequence(seed)
    aside = push_sequence(seed, calibration=orbit(nominal, ORBIT_DEG))
    robot = RobotShape()
    gmap = GaussianMap()
    refiner = Refiner(gmap, RefineConfig(window=8, render_scale=0.25, densify_grad=0.0,
                                         backend='torch'))
    integrate_s, backproject_s = [], []
    for frame in frames[:-2]:
        t0 = time.perf_counter()
        capsules = robot.capsules(frame.q, frame.gripper_width_m)
        mask = arm_pixel_mask(frame.depth_m, frame.intrinsics, frame.world_from_camera, capsules)
        checked = check_frame(frame.rgb, frame.depth_m, frame.intrinsics,
                              frame.world_from_camera, mask, gmap.config)
        gmap.integrate_frame(checked)
        remove_robot(gmap, capsules)
        integrate_s.append(time.perf_counter() - t0)
        refiner.add_keyframe(checked)
        t0 = time.perf_counter()
        d = torch.from_numpy(frame.depth_m)
        rows, cols = torch.nonzero(d > 0, as_tuple=True)
        z = d[rows, cols]
        _ = torch.stack([cols * z, rows * z, z], dim=1) @ torch.eye(3)
        backproject_s.append(time.perf_counter() - t0)
    result: dict[str, Any] = {
        'seed': seed, 'frames': len(frames), 'integrated_frames': len(frames) - 2,
        'gaussians': len(gmap), 'map_memory_mb': round(gmap.memory_bytes() / 2**20, 2),
        'integrate_ms_median': round(statistics.median(integrate_s) * 1000, 1),
        'backproject_ms_median': round(statistics.median(backproject_s) * 1000, 1),
        'later_frame': scene_metrics(gmap, frames[-1], robot),
        'view_15deg': scene_metrics(gmap, aside[-1], robot),
    }
    if picture is not None:
        save_picture(gmap, frames[-1], aside[-1], picture)
    t0 = time.perf_counter()
    stats = refiner.refine(refine_iterations, seed=seed)
    result['refined'] = {
        'iterations': refine_iterations, 'seconds': round(time.perf_counter() - t0, 1),
        'loss_first': round(stats.loss_first, 4), 'loss_last': round(stats.loss_last, 4),
        'gaussians': len(gmap), 'later_frame': scene_metrics(gmap, frames[-1], robot),
        'view_15deg': scene_metrics(gmap, aside[-1], robot)}
    return result


def save_picture(gmap: Any, later: Any, aside: Any, path: Path) -> None:
    """Camera frames beside the map's renders of them (neither frame was integrated)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from craik_mapping.render import render

    fig, axes = plt.subplots(2, 2, figsize=(12, 9.2))
    for row, (frame, label) in enumerate(((later, 'later frame (not integrated)'),
                                          (aside, f'camera {ORBIT_DEG:.0f}° around the table'))):
        h, w = frame.depth_m.shape
        view = render(gmap, frame.intrinsics, frame.world_from_camera, w, h, backend='torch')
        for col, (image, title) in enumerate(((frame.rgb, f'simulated camera: {label}'),
                                              (view.colour_uint8(), 'Gaussian map render'))):
            ax = axes[row, col]
            ax.imshow(image, extent=(0, w, h, 0))
            ax.set_title(title)
            ax.set_xlabel('u (px)')
            ax.set_ylabel('v (px)')
    fig.suptitle(f'craik_mapping: {len(gmap)} Gaussians from a simulated push (robot masked '
                 'out by its kinematics)')
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[10, 11, 12])
    parser.add_argument('--refine-iterations', type=int, default=40)
    parser.add_argument('--out', type=Path, default=ROOT / 'bench/results/mapping.json')
    parser.add_argument('--picture', type=Path, default=ROOT / 'bench/results/mapping_view.png')
    args = parser.parse_args()
    torch.set_num_threads(2)
    runs = []
    for i, seed in enumerate(args.seeds):
        print(f'[bench_mapping] seed {seed} ({i + 1}/{len(args.seeds)})', file=sys.stderr)
        runs.append(run_seed(seed, args.refine_iterations, args.picture if i == 0 else None))

    def median(*keys: str) -> float:
        values = []
        for run in runs:
            value: Any = run
            for key in keys:
                value = value[key]
            values.append(value)
        return round(statistics.median(values), 2)

    integrate = median('integrate_ms_median')
    summary = {
        'integrate_ms_median': integrate,
        'integrated_frames_per_s': round(1000.0 / integrate, 2),
        'backproject_ms_median': median('backproject_ms_median'),
        'integrate_vs_backproject': round(integrate / median('backproject_ms_median'), 1),
        'gaussians_median': median('gaussians'), 'map_memory_mb_median': median('map_memory_mb'),
        'later_frame_psnr_db': median('later_frame', 'psnr_db'),
        'later_frame_depth_error_mm': median('later_frame', 'depth_error_median_mm'),
        'view_15deg_psnr_db': median('view_15deg', 'psnr_db'),
        'view_15deg_depth_error_mm': median('view_15deg', 'depth_error_median_mm'),
        'refined_later_frame_psnr_db': median('refined', 'later_frame', 'psnr_db'),
        'refined_view_15deg_psnr_db': median('refined', 'view_15deg', 'psnr_db'),
    }
    report = {
        'benchmark': 'mapping', 'command': ' '.join(['python', *sys.argv]),
        'git_commit': git_commit(ROOT), 'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'machine': f'{platform.machine()} {os.cpu_count()} cores, torch threads 2, CPU renderer',
        'resolution': [640, 480], 'tuned_on_seeds': [3, 5], 'seeds': args.seeds,
        'summary': summary, 'runs': runs,
        'not_measured': 'gsplat refinement and rendering on CUDA (no GPU was lent to this '
                        'session)',
    }
    text = json.dumps(report, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + '\n')
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
