"""The `craik` command line.

Subcommands live in the package that owns the capability; this module only knows their names,
a one-line help, and the module that implements them. A command module provides
``configure_parser(parser: argparse.ArgumentParser) -> None`` and
``run(args: argparse.Namespace) -> int``, and ``INTERMIXED_ARGS = True`` if options may stand
between its positional arguments (``argparse``'s ``parse_intermixed_args``). Modules are
imported only when their command runs, so `craik doctor` works even when, say, torch is broken.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import importlib
import signal
import sys
import threading


@dataclass(frozen=True)
class Command:
    """A `craik` subcommand: its help line and the module that implements it."""

    help: str
    module: str


COMMANDS: dict[str, Command] = {
    'doctor': Command('check this machine: ROS 2, DDS, torch, MuJoCo, franky, RealSense',
                      'craik_bringup.doctor'),
    'collect': Command('collect world-model training episodes (fast sim)', 'craik_sim.collect'),
    'train': Command('train the world model (also under torchrun)', 'craik_world_model.train'),
    'train-objects': Command('add object slots (locator + dynamics) to a trained world model',
                             'craik_world_model.object_training'),
    'wm-eval': Command('evaluate a world model (held-out)', 'craik_world_model.evaluate'),
    'wm-export': Command('export a world model to ONNX', 'craik_world_model.export'),
    'wm-geometry': Command("make a world model's object slots geometric (depth, any object)",
                           'craik_world_model.geometric_model'),
    'wm-convert': Command('rosbag2 MCAP to episodes', 'craik_world_model.mcap_convert'),
    'record-synthetic': Command('write a RealSense recording of a synthetic scene (tests, demos)',
                                'craik_perception.record_synthetic'),
    'demo': Command('run the simulated lab and a few goal-image episodes (make demo)',
                    'craik_bringup.demo'),
    'calibrate': Command("closed-loop MPC in the fast simulator; the world model's stop "
                         'tolerance', 'craik_bringup.fast_loop'),
    'eval': Command('closed-loop evaluation: learned model vs random shooting vs oracle',
                    'craik_bringup.evaluation'),
    'launch': Command('start a graph of config/graphs/ (sim, robot, replay) without ros2 launch',
                      'craik_bringup.launch_command'),
    'goal': Command('send a goal image to the planner (or --snapshot the camera as a goal)',
                    'craik_bringup.goal_command'),
    'record': Command('record topics to a rosbag2 MCAP file', 'craik_bringup.bag_record'),
    'replay': Command('republish a rosbag2 MCAP file with its original timing',
                      'craik_bringup.bag_replay'),
    'replay-plan': Command('run the planner offline over a recorded episode and compare it with '
                           'the recording', 'craik_bringup.replay_plan'),
    'view': Command('serve a browser view of the running graph (robot, camera, goal, plan, '
                    'map)', 'craik_bringup.web_view'),
}


def build_parser(commands: dict[str, Command] | None = None) -> argparse.ArgumentParser:
    """Build the argument parser; only the chosen subcommand's module is imported later."""
    parser = argparse.ArgumentParser(
        prog='craik',
        description='craik: world-model planning for a Franka FR3 (ROS 2).')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name, command in (commands or COMMANDS).items():
        sub.add_parser(name, help=command.help, add_help=False)
    return parser


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f'signal {signum}')


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `craik` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ('-h', '--help') or argv[0] not in COMMANDS:
        if argv and argv[0] not in ('-h', '--help'):
            parser.print_usage(sys.stderr)
            print(f"craik: unknown command '{argv[0]}' (choose from {', '.join(COMMANDS)})",
                  file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    # `kill` (SIGTERM) unwinds like Ctrl-C, so commands that start ROS nodes (eval, demo) stop
    # them on the way out instead of leaving them running. A process started in the background
    # by a script inherits SIGINT ignored; `kill -INT` must still cancel a goal or stop a graph.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    module = importlib.import_module(COMMANDS[name].module)
    sub_parser = argparse.ArgumentParser(prog=f'craik {name}', description=COMMANDS[name].help)
    module.configure_parser(sub_parser)
    if getattr(module, 'INTERMIXED_ARGS', False):
        args = sub_parser.parse_intermixed_args(rest)
    else:
        args = sub_parser.parse_args(rest)
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        print(f'craik {name}: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
