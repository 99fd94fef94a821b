"""`craik eval`: closed-loop evaluation of the planners on the simulated task suite.

Starts the simulated graph (sim, franka_controller, mpc_planner), and for each planner variant
runs seeded episodes through the public interfaces: /sim/reset_episode gives the goal image,
/planner/reach_goal executes it, /sim/ground_truth judges it (the planner never sees it, except
the oracle variant, which exists to bound what a perfect model could do). Variants:

- ``world_model``: the learned model with CEM (what runs on the robot);
- ``random``: the same model with random shooting (one round of uniform samples);
- ``oracle``: CEM on privileged simulator state with an analytic model.

Writes ``report.json``, ``report.md`` (the table) and pictures (goal vs final frame per
episode, energy per step per variant) to the output directory.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
import json
from pathlib import Path
import statistics
import sys
import time
from typing import Any

import numpy as np

from craik_bringup.graph import Graph, GraphError, NodeSpec, sim_graph, workspace_root

VARIANTS: dict[str, dict[str, Any]] = {
    'world_model': {'backend': 'world_model', 'method': 'cem'},
    'random': {'backend': 'world_model', 'method': 'random'},
    'oracle': {'backend': 'oracle', 'method': 'cem'},
}


@dataclass
class EpisodeResult:
    """One evaluated episode."""

    variant: str
    task: str
    seed: int
    status: str
    message: str
    success: bool            # from simulator ground truth
    final_distance_m: float  # from simulator ground truth
    initial_distance_m: float
    steps: int
    planning_rate_hz: float  # plans per second of planning time
    wall_time_s: float
    energies: list[float]


def summarize(episodes: list[EpisodeResult]) -> dict[str, Any]:
    """Success rate, final distance, steps and planning rate of one variant's episodes."""
    if not episodes:
        return {}
    rates = [e.planning_rate_hz for e in episodes if e.planning_rate_hz > 0]
    return {
        'episodes': len(episodes),
        'success_rate': sum(e.success for e in episodes) / len(episodes),
        'final_distance_m_median': statistics.median(e.final_distance_m for e in episodes),
        'final_distance_m_mean': statistics.fmean(e.final_distance_m for e in episodes),
        'initial_distance_m_median': statistics.median(e.initial_distance_m for e in episodes),
        'steps_mean': statistics.fmean(e.steps for e in episodes),
        'planning_rate_hz_median': statistics.median(rates) if rates else 0.0,
    }


def format_table(summary: dict[str, dict[str, Any]], task: str) -> str:
    lines = [f'| variant ({task}) | episodes | success | final dist. median (m) | '
             'initial dist. median (m) | steps mean | plans/s median |',
             '|---|---|---|---|---|---|---|']
    for variant, s in summary.items():
        if not s:
            continue
        lines.append(f"| {variant} | {s['episodes']} | {s['success_rate']:.0%} | "
                     f"{s['final_distance_m_median']:.3f} | {s['initial_distance_m_median']:.3f}"
                     f" | {s['steps_mean']:.1f} | {s['planning_rate_hz_median']:.1f} |")
    return '\n'.join(lines)


def save_side_by_side(path: Path, goal: np.ndarray, final: np.ndarray | None,
                      caption: str) -> None:
    """Goal frame | achieved final frame, with a caption line."""
    from PIL import Image as PilImage
    from PIL import ImageDraw

    h, w = goal.shape[:2]
    canvas = PilImage.new('RGB', (2 * w + 10, h + 24), (255, 255, 255))
    canvas.paste(PilImage.fromarray(goal), (0, 24))
    if final is not None:
        final_img = PilImage.fromarray(final).resize((w, h))
        canvas.paste(final_img, (w + 10, 24))
    ImageDraw.Draw(canvas).text((4, 4), f'goal | final   {caption}', fill=(0, 0, 0))
    canvas.save(path)


def save_energy_plot(path: Path, episodes: list[EpisodeResult], title: str) -> None:
    """Best energy per step, one line per episode (normalised to each episode's first step)."""
    from PIL import Image as PilImage
    from PIL import ImageDraw

    width, height, margin = 480, 300, 36
    canvas = PilImage.new('RGB', (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((margin, 6), f'{title}: energy / first-step energy per step', fill=(0, 0, 0))
    draw.line([(margin, height - margin), (width - 8, height - margin)], fill=(0, 0, 0))
    draw.line([(margin, 20), (margin, height - margin)], fill=(0, 0, 0))
    max_steps = max((len(e.energies) for e in episodes), default=1)
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
    for i, episode in enumerate(episodes):
        if len(episode.energies) < 2 or not episode.energies[0] > 0:
            continue
        values = np.array(episode.energies) / episode.energies[0]
        xs = margin + np.arange(len(values)) / max(max_steps - 1, 1) * (width - margin - 16)
        ys = (height - margin) - np.clip(values, 0, 1.5) / 1.5 * (height - margin - 28)
        draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)),
                  fill=colours[i % len(colours)], width=2)
    draw.text((4, height - margin - 8), '0', fill=(0, 0, 0))
    draw.text((width - 60, height - margin + 6), f'step {max_steps}', fill=(0, 0, 0))
    canvas.save(path)


def run_episode(client: Any, variant: str, task: str, seed: int, max_steps: int,
                out_dir: Path, variation: dict[str, Any]) -> EpisodeResult:
    from craik_bringup.sim_client import image_to_array
    from craik_interfaces.action import ReachGoal

    reset = client.reset(task, seed, **variation)
    initial = float(client.latest_ground_truth().distance)
    goal = ReachGoal.Goal(goal_image=reset.goal_image, goal_depth=reset.goal_depth,
                          max_steps=max_steps)
    run = client.reach_goal(goal)
    time.sleep(0.3)   # let the arm settle and the ground truth catch up
    gt = client.latest_ground_truth()
    planning = sum(f.planning_time for f in run.feedback)
    result = EpisodeResult(
        variant=variant, task=task, seed=seed, status=run.status_name,
        message=run.result.message, success=bool(gt.success),
        final_distance_m=float(gt.distance), initial_distance_m=initial,
        steps=int(run.result.steps),
        planning_rate_hz=len(run.feedback) / planning if planning > 0 else 0.0,
        wall_time_s=run.wall_time_s, energies=[float(f.best_energy) for f in run.feedback])
    save_side_by_side(out_dir / f'{variant}_{task}_{seed}.png', image_to_array(reset.goal_image),
                      client.latest_color(),
                      f'{variant} {task}/{seed}: {result.status}, {gt.distance * 100:.1f} cm')
    return result


def evaluate(task: str, episodes: int, seed_base: int, variants: list[str], out_dir: Path,
             max_steps: int, variation: dict[str, Any], planner: dict[str, Any],
             robot_ip: str = '127.0.0.1', say: Any = print) -> dict[str, Any]:
    """Run the evaluation; returns the report (also written to ``out_dir``)."""
    from craik_bringup.sim_client import SimClient

    out_dir.mkdir(parents=True, exist_ok=True)
    model_dir = workspace_root() / str(planner.get('model_dir', 'models/craik_wm_cpu'))
    results: dict[str, list[EpisodeResult]] = {}
    skipped: dict[str, str] = {}
    nodes = sim_graph(robot_ip, planner={**VARIANTS[variants[0]], **planner,
                                         'oracle_task': task})
    planner_spec = nodes.pop()
    with Graph(nodes, out_dir / 'logs', say=say) as graph, SimClient('craik_eval') as client:
        for variant in variants:
            overrides = {**VARIANTS[variant], **planner, 'oracle_task': task}
            if overrides['backend'] == 'world_model' and not (model_dir / 'manifest.json'
                                                              ).exists():
                skipped[variant] = f'no exported world model at {model_dir}'
                say(f'[eval] skipping {variant}: {skipped[variant]}')
                continue
            graph.start_node(NodeSpec(planner_spec.package, planner_spec.executable,
                                      planner_spec.node_name, overrides))
            client.wait_ready(check=graph.check_alive)
            results[variant] = []
            for i in range(episodes):
                seed = seed_base + i
                # A dead node (simulator, controller) would turn every remaining episode into
                # a fault: stop the evaluation and say which node died and why.
                graph.check_alive()
                episode = run_episode(client, variant, task, seed, max_steps, out_dir,
                                      variation)
                results[variant].append(episode)
                say(f'[eval] {variant:11s} {task}/{seed}: {episode.status:9s} '
                    f'{"success" if episode.success else "failure"}, final '
                    f'{episode.final_distance_m * 100:5.1f} cm (from '
                    f'{episode.initial_distance_m * 100:.1f}), {episode.steps} steps, '
                    f'{episode.planning_rate_hz:.1f} plans/s')
            graph.stop_node(planner_spec.node_name)
            save_energy_plot(out_dir / f'energy_{variant}_{task}.png', results[variant],
                             f'{variant} / {task}')
    summary = {variant: summarize(eps) for variant, eps in results.items()}
    report = {'task': task, 'episodes': episodes, 'seed_base': seed_base,
              'variation': variation, 'planner': planner, 'summary': summary,
              'skipped': skipped,
              'episodes_detail': {v: [asdict(e) for e in eps] for v, eps in results.items()}}
    (out_dir / 'report.json').write_text(json.dumps(report, indent=2))
    table = format_table(summary, task)
    (out_dir / 'report.md').write_text(f'# craik eval: {task}\n\n{table}\n')
    report['table'] = table
    return report


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--task', choices=['reach', 'push'], default='reach')
    parser.add_argument('--episodes', type=int, default=5, help='episodes per variant')
    parser.add_argument('--seed-base', type=int, default=1000,
                        help='episode seeds are seed_base .. seed_base + episodes - 1')
    parser.add_argument('--variants', default='world_model,random,oracle',
                        help=f'comma-separated subset of {",".join(VARIANTS)}')
    parser.add_argument('--max-steps', type=int, default=30)
    parser.add_argument('--out', type=Path, default=None,
                        help='report directory (default reports/eval-<task>-<time>)')
    parser.add_argument('--model-dir', default=None, help='exported world model directory')
    parser.add_argument('--runtime', default=None, help='onnxruntime | torch | tensorrt')
    parser.add_argument('--robot-ip', default='127.0.0.1',
                        help='loopback address of the simulated FR3')
    for flag in ('lighting', 'cube-colours', 'cube-sizes', 'camera-pose'):
        parser.add_argument(f'--vary-{flag}', action='store_true',
                            help=f'episode variation: {flag.replace("-", " ")}')
    parser.add_argument('--distractors', type=int, default=0, help='distractor objects')


def run(args: argparse.Namespace) -> int:
    variants = [v.strip() for v in args.variants.split(',') if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        print(f'craik eval: unknown variant(s) {unknown}; choose from {", ".join(VARIANTS)}',
              file=sys.stderr)
        return 2
    if args.episodes < 1:
        print('craik eval: --episodes must be >= 1', file=sys.stderr)
        return 2
    out = args.out or workspace_root() / 'reports' / \
        f'eval-{args.task}-{time.strftime("%Y%m%d-%H%M%S")}'
    planner: dict[str, Any] = {}
    if args.model_dir:
        planner['model_dir'] = args.model_dir
    if args.runtime:
        planner['runtime'] = args.runtime
    variation = {'vary_lighting': args.vary_lighting,
                 'vary_cube_colours': args.vary_cube_colours,
                 'vary_cube_sizes': args.vary_cube_sizes,
                 'vary_camera_pose': args.vary_camera_pose, 'distractors': args.distractors}
    try:
        report = evaluate(args.task, args.episodes, args.seed_base, variants, out,
                          args.max_steps, variation, planner, robot_ip=args.robot_ip)
    except (GraphError, TimeoutError, RuntimeError, FileNotFoundError) as exc:
        print(f'craik eval: {exc}', file=sys.stderr)
        return 1
    print()
    print(report['table'])
    for variant, why in report['skipped'].items():
        print(f'(skipped {variant}: {why})')
    print(f'\nreport: {out}/report.md, report.json and pictures')
    return 0
