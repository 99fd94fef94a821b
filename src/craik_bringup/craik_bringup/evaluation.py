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
import os
from pathlib import Path
import statistics
import sys
import time
from typing import Any

import numpy as np

from craik_bringup.graph import (
    Graph,
    GraphError,
    NodeSpec,
    git_commit,
    sim_graph,
    workspace_root,
)
from craik_sim.variation import (
    add_variation_arguments,
    parse_variations,
    variation_config,
    variation_name,
)

DEFAULT_MODEL = 'models/craik_wm_geo'

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


def format_table(summary: dict[str, dict[str, dict[str, Any]]], task: str) -> str:
    """Markdown table: one row per variation and variant."""
    lines = [f'| variation ({task}) | variant | episodes | success | final dist. median (m) | '
             'initial dist. median (m) | steps mean | plans/s median |',
             '|---|---|---|---|---|---|---|---|']
    for name, by_variant in summary.items():
        for variant, s in by_variant.items():
            if not s:
                continue
            lines.append(f"| {name} | {variant} | {s['episodes']} | {s['success_rate']:.0%} | "
                         f"{s['final_distance_m_median']:.3f} | "
                         f"{s['initial_distance_m_median']:.3f} | {s['steps_mean']:.1f} | "
                         f"{s['planning_rate_hz_median']:.1f} |")
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


def save_energy_plot(path: Path, episodes: list[Any], title: str) -> None:
    """Planner energy per step, one line per episode, relative to the episode's first step
    (``episodes``: anything with ``seed``, ``success`` and ``energies``)."""
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for episode in episodes:
        energies = np.asarray(episode.energies, dtype=float)
        if len(energies) < 2 or not energies[0] > 0:
            continue
        ax.plot(np.arange(1, len(energies) + 1), energies / energies[0], linewidth=1.2,
                linestyle='-' if episode.success else '--',
                label=f'{episode.seed}' + ('' if episode.success else ' (failed)'))
    ax.set_xlabel('MPC step')
    ax.set_ylabel('best plan energy / its value at step 1')
    ax.set_ylim(bottom=0.0)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if len(episodes) <= 10 and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2, title='seed (dashed: failed)', title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_episode(client: Any, variant: str, task: str, seed: int, max_steps: int,
                out_dir: Path, variation: dict[str, Any], name: str = 'nominal'
                ) -> EpisodeResult:
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
    save_side_by_side(out_dir / f'{variant}_{task}_{name}_{seed}.png',
                      image_to_array(reset.goal_image),
                      client.latest_color(),
                      f'{variant} {task}/{seed}: {result.status}, {gt.distance * 100:.1f} cm')
    return result


def planner_file_parameters() -> dict[str, Any]:
    """config/mpc_planner.yaml's parameters (what the planner runs with before overrides)."""
    import yaml

    path = workspace_root() / 'config' / 'mpc_planner.yaml'
    try:
        data = yaml.safe_load(path.read_text())
        return dict(data['mpc_planner']['ros__parameters'])
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return {}


def reset_request(variation: Any) -> dict[str, Any]:
    """The /sim/reset_episode fields of a craik_sim VariationConfig."""
    return {'vary_lighting': variation.lighting, 'vary_cube_colours': variation.cube_colours,
            'vary_cube_sizes': variation.cube_sizes, 'vary_camera_pose': variation.camera_jitter,
            'vary_table': variation.table_texture, 'distractors': variation.distractors}


def provenance(model_dir: Path) -> dict[str, Any]:
    """What a report was measured with: git commit, model hash, machine, date, command."""
    import platform

    from craik_world_model.checkpoint import sha256_file

    info: dict[str, Any] = {'command': ' '.join(['craik', *sys.argv[1:]]),
                            'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
                            'machine': f'{platform.node()} {platform.machine()} '
                                       f'{os.cpu_count()} cores',
                            'git_commit': git_commit()}
    weights = model_dir / 'model.safetensors'
    if weights.is_file():
        info['model_sha256'] = sha256_file(weights)
    return info


def evaluate(task: str, episodes: int, seed_base: int, variants: list[str], out_dir: Path,
             max_steps: int, variations: dict[str, Any], planner: dict[str, Any],
             robot_ip: str = '127.0.0.1', say: Any = print,
             mapping: bool = False) -> dict[str, Any]:
    """Run the evaluation; returns the report (also written to ``out_dir``).

    ``variations``: name -> craik_sim VariationConfig; every variant runs every variation on
    the same seeds (the seed fixes the layout and goal; the variation only how it looks).
    """
    from craik_bringup.sim_client import SimClient

    out_dir.mkdir(parents=True, exist_ok=True)
    model_dir = workspace_root() / str(planner.get('model_dir', DEFAULT_MODEL))
    results: dict[str, dict[str, list[EpisodeResult]]] = {name: {} for name in variations}
    skipped: dict[str, str] = {}
    nodes = sim_graph(robot_ip, planner={**VARIANTS[variants[0]], **planner,
                                         'oracle_task': task}, mapping=mapping)
    planner_spec = nodes.pop()
    planner_settings: dict[str, Any] = {}
    with Graph(nodes, out_dir / 'logs', say=say) as graph, SimClient('craik_eval') as client:
        for variant in variants:
            overrides = {**VARIANTS[variant], **planner, 'oracle_task': task}
            if overrides['backend'] == 'world_model' and not (model_dir / 'manifest.json'
                                                              ).exists():
                skipped[variant] = f'no exported world model at {model_dir}'
                say(f'[eval] skipping {variant}: {skipped[variant]}')
                continue
            planner_settings[variant] = {**planner_file_parameters(), **overrides}
            graph.start_node(NodeSpec(planner_spec.package, planner_spec.executable,
                                      planner_spec.node_name, overrides))
            client.wait_ready(check=graph.check_alive)
            for name, variation in variations.items():
                runs = results[name].setdefault(variant, [])
                for i in range(episodes):
                    seed = seed_base + i
                    # A dead node (simulator, controller) would turn every remaining episode
                    # into a fault: stop the evaluation and say which node died and why.
                    graph.check_alive()
                    episode = run_episode(client, variant, task, seed, max_steps, out_dir,
                                          reset_request(variation), name)
                    runs.append(episode)
                    say(f'[eval] {variant:11s} {name} {task}/{seed}: {episode.status:9s} '
                        f'{"success" if episode.success else "failure"}, final '
                        f'{episode.final_distance_m * 100:5.1f} cm (from '
                        f'{episode.initial_distance_m * 100:.1f}), {episode.steps} steps, '
                        f'{episode.planning_rate_hz:.1f} plans/s')
                save_energy_plot(out_dir / f'energy_{variant}_{task}_{name}.png', runs,
                                 f'{variant} / {task} / {name}')
            graph.stop_node(planner_spec.node_name)
    summary = {name: {variant: summarize(eps) for variant, eps in by_variant.items()}
               for name, by_variant in results.items()}
    report = {'task': task, 'episodes': episodes, 'seed_base': seed_base,
              'variations': {name: asdict(v) for name, v in variations.items()},
              'planner': planner_settings, 'provenance': provenance(model_dir),
              'summary': summary, 'skipped': skipped,
              'episodes_detail': {name: {v: [asdict(e) for e in eps] for v, eps in by.items()}
                                  for name, by in results.items()}}
    (out_dir / 'report.json').write_text(json.dumps(report, indent=2, default=list))
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
    add_variation_arguments(parser)
    parser.add_argument('--variations', default=None, metavar='LIST',
                        help='evaluate several variations in one run: comma-separated, each '
                        'nominal, all, or switches joined by + (lighting, camera-pose, '
                        'cube-colours, cube-sizes, table, distractors=N), e.g. '
                        "'nominal,lighting+camera-pose,cube-colours+cube-sizes+distractors=2"
                        ",all'; default: the one the --vary-* switches give")


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
    try:
        if args.variations:
            variations = parse_variations(args.variations)
        else:
            single = variation_config(args)
            variations = {variation_name(single): single}
    except ValueError as exc:
        print(f'craik eval: {exc}', file=sys.stderr)
        return 2
    try:
        report = evaluate(args.task, args.episodes, args.seed_base, variants, out,
                          args.max_steps, variations, planner, robot_ip=args.robot_ip)
    except (GraphError, TimeoutError, RuntimeError, FileNotFoundError) as exc:
        print(f'craik eval: {exc}', file=sys.stderr)
        return 1
    print()
    print(report['table'])
    for variant, why in report['skipped'].items():
        print(f'(skipped {variant}: {why})')
    print(f'\nreport: {out}/report.md, report.json and pictures')
    return 0
