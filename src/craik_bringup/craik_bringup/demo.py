"""`craik demo` (`make demo`): the simulated lab end to end, for a newcomer.

Starts the simulated FR3 (franky-sim + camera), franka_controller and mpc_planner, runs a few
seeded `reach` episodes through /planner/reach_goal with the shipped world model (and, for
comparison, the oracle), then prints the results table and where the report is.
"""

from __future__ import annotations

import argparse
import sys
import time

from craik_bringup.evaluation import VARIANTS, evaluate
from craik_bringup.graph import GraphError, workspace_root
from craik_sim.scene import VariationConfig


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--episodes', type=int, default=3, help='reach episodes per variant')
    parser.add_argument('--seed-base', type=int, default=2000)
    parser.add_argument('--variants', default='world_model,oracle',
                        help=f'comma-separated subset of {",".join(VARIANTS)}')
    parser.add_argument('--robot-ip', default='127.0.0.1')


def run(args: argparse.Namespace) -> int:
    out = workspace_root() / 'reports' / f'demo-{time.strftime("%Y%m%d-%H%M%S")}'
    variants = [v for v in args.variants.split(',') if v]
    print('[demo] craik: goal-image MPC with a learned world model on a simulated Franka FR3')
    print(f'[demo] {args.episodes} reach episodes per planner ({", ".join(variants)}); each '
          'episode resets the simulated lab, renders a goal image and sends it to '
          '/planner/reach_goal. Success is judged from simulator ground truth (3 cm).')

    def say(msg: str) -> None:
        print(f'[demo] {msg}' if not msg.startswith('[') else msg, flush=True)

    try:
        report = evaluate('reach', args.episodes, args.seed_base, variants, out,
                          max_steps=30, variations={'nominal': VariationConfig()},
                          planner={}, robot_ip=args.robot_ip,
                          say=say, mapping=True)
    except (GraphError, TimeoutError, RuntimeError, FileNotFoundError) as exc:
        print(f'[demo] failed: {exc}', file=sys.stderr)
        return 1
    print()
    print(report['table'])
    for variant, why in report['skipped'].items():
        print(f'(skipped {variant}: {why})')
    print(f'\n[demo] report with goal-vs-final pictures and energy plots: {out}')
    return 0 if report['summary'] else 1
