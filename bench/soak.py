"""Soak: goals back to back through the simulated graph for a fixed time (JSON + plot).

    python bench/soak.py [--minutes 30] [--task reach] [--backend world_model] [--mapping]
        [--max-steps 15] [--out bench/results/soak.json] [--plot bench/results/soak.png]

The sim graph (sim + franka_controller + mpc_planner, optionally gaussian_mapper) runs on a ROS
domain and robot address of its own; a client resets episode after episode (seeds from
--seed-base up) and sends each goal through /planner/reach_goal, as `craik eval` does. Recorded:

* every goal's outcome (status, steps, wall time, executed steps per second of the goal's wall
  time — at most 1 / step_period — and plans per second of planning time, as `craik eval`
  reports it, with the median planning time of its steps);
* the resident memory (RSS) of each node's process group every --sample-s seconds, and its
  growth after the warm-up (the first --warmup-fraction of the run, at least 2 min when the run
  is long enough): median of the last tenth of the samples over the median of the first tenth
  after the warm-up, minus one;
* franky communication errors: every distinct error franka_controller reports on /franka/status
  with ERROR_CONNECTION_LOST or a libfranka communication-constraints message, and how often the
  controller was seen disconnected;
* stuck goals: no result within the goal's timeout plus 30 s (the goal is then canceled and
  the soak goes on), and goals whose server went away.

Targets (issue #17): < 5 % RSS growth after warm-up, 0 communication errors, no stuck goal.
The JSON (command, git commit, machine, date inside) goes to --out and stdout; --plot draws
RSS per node, plans per second and outcomes over time. A node that dies ends the soak with
exit code 1 (named, with its log tail) and a report up to that point.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import platform
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

GOAL_TIMEOUT_S = 60.0
STUCK_MARGIN_S = 30.0
PAGE_KB = os.sysconf('SC_PAGE_SIZE') / 1024.0


def group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in process group ``pgid`` (a node and what it
    started), MB."""
    total_pages = 0
    for entry in os.scandir('/proc'):
        if not entry.name.isdigit():
            continue
        try:
            with open(f'/proc/{entry.name}/stat') as f:
                stat = f.read()
            # Fields after the command (which may hold spaces), in parentheses.
            fields = stat[stat.rindex(')') + 2:].split()
            if int(fields[2]) != pgid:      # field 5: pgrp
                continue
            with open(f'/proc/{entry.name}/statm') as f:
                total_pages += int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue   # the process ended while we looked
    return total_pages * PAGE_KB / 1024.0


def growth(samples: list[float], warmup: int) -> float | None:
    """Median of the last tenth over the median of the first tenth after ``warmup`` samples,
    minus one; None with too few samples."""
    kept = samples[warmup:]
    if len(kept) < 10:
        return None
    tenth = max(1, len(kept) // 10)
    first, last = statistics.median(kept[:tenth]), statistics.median(kept[-tenth:])
    return last / first - 1.0 if first > 0 else None


class ControllerErrors:
    """Distinct communication errors franka_controller reports on /franka/status."""

    def __init__(self, client: Any) -> None:
        """Counts from :meth:`arm` on (before it the controller is still connecting to a
        simulator that is starting up)."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from craik_interfaces.msg import ControllerStatus

        self._codes = ControllerStatus
        self.lock = threading.Lock()
        self.errors: dict[tuple[int, int], str] = {}    # error stamp -> message
        self.disconnected_samples = 0
        self.since: float | None = None   # wall-clock s
        client.node.create_subscription(
            ControllerStatus, '/franka/status', self._on_status,
            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))

    def arm(self) -> None:
        self.since = time.time()

    def _on_status(self, msg: Any) -> None:
        if self.since is None:
            return
        text = msg.last_error.lower()
        communication = (msg.last_error_code == self._codes.ERROR_CONNECTION_LOST
                         or 'communication_constraints' in text
                         or 'communication constraints' in text)
        with self.lock:
            stamp = (msg.last_error_stamp.sec, msg.last_error_stamp.nanosec)
            if communication and stamp[0] + stamp[1] * 1e-9 >= self.since:
                self.errors.setdefault(stamp, msg.last_error)
            if msg.state == self._codes.STATE_DISCONNECTED:
                self.disconnected_samples += 1

    def snapshot(self) -> tuple[list[str], int]:
        with self.lock:
            return list(self.errors.values()), self.disconnected_samples


def run_goal(client: Any, task: str, seed: int, max_steps: int) -> dict[str, Any]:
    """One episode; what the soak records of it."""
    from builtin_interfaces.msg import Duration

    from craik_bringup.sim_client import STATUS_NAMES, GoalLostError
    from craik_interfaces.action import ReachGoal

    started = time.time()
    reset = client.reset(task, seed)
    goal = ReachGoal.Goal(goal_image=reset.goal_image, goal_depth=reset.goal_depth,
                          max_steps=max_steps, timeout=Duration(sec=int(GOAL_TIMEOUT_S)))
    handle, run = client.send_goal(goal)
    record: dict[str, Any] = {'seed': seed, 'start_s': started}
    try:
        result = client.wait_result(handle, timeout_s=GOAL_TIMEOUT_S + STUCK_MARGIN_S)
        record['status'] = STATUS_NAMES.get(result.status, f'status {result.status}')
        record['steps'] = int(result.steps)
    except TimeoutError:
        record['status'] = 'stuck'
        handle.cancel_goal_async()
    except GoalLostError as exc:
        record['status'] = 'server_lost'
        record['message'] = str(exc)
    wall = time.time() - started
    planning = sorted(float(f.planning_time) for f in run.feedback)
    record.update(wall_s=wall, feedback=len(run.feedback),
                  steps_per_s=len(run.feedback) / wall if wall > 0 else 0.0,
                  plans_per_s=len(planning) / sum(planning) if sum(planning) > 0 else 0.0,
                  median_planning_s=statistics.median(planning) if planning else None,
                  final_distance_m=float(client.latest_ground_truth().distance))
    return record


def soak(args: argparse.Namespace, say: Any = print) -> tuple[dict[str, Any], int]:
    """Run the soak; returns (report, exit code)."""
    from craik_bringup.graph import (
        Graph,
        GraphError,
        git_commit,
        private_robot_ip,
        reserve_ros_domain,
        sim_graph,
    )
    from craik_bringup.sim_client import SimClient

    commit = git_commit()    # what is checked out now, not after a run of half an hour
    domain = reserve_ros_domain()
    planner = {'backend': args.backend, 'oracle_task': args.task}
    nodes = sim_graph(private_robot_ip(domain), planner=planner, mapping=args.mapping)
    log_dir = Path(tempfile.mkdtemp(prefix='craik-soak-'))
    rss: dict[str, list[float]] = {spec.node_name: [] for spec in nodes}
    rss_t: list[float] = []
    goals: list[dict[str, Any]] = []
    exit_code, failure = 0, None
    start = time.time()
    end = start + 60.0 * args.minutes
    with Graph(nodes, log_dir, domain_id=domain, say=say) as graph, \
            SimClient('craik_soak', domain_id=domain) as client:
        errors = ControllerErrors(client)
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                rss_t.append(time.time() - start)
                for name, proc in list(graph.processes.items()):
                    rss[name].append(group_rss_mb(proc.pid))
                stop.wait(args.sample_s)

        try:
            client.wait_ready(timeout_s=300.0, check=graph.check_alive)
            errors.arm()
            say(f'[soak] graph ready after {time.time() - start:.0f} s; goals until '
                f'{args.minutes:g} min (logs: {log_dir})')
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            seed = args.seed_base
            while time.time() < end:
                graph.check_alive()
                record = run_goal(client, args.task, seed, args.max_steps)
                record['start_s'] -= start
                goals.append(record)
                say(f"[soak] {record['start_s'] / 60:5.1f} min  {args.task}/{seed}: "
                    f"{record['status']:10s} {record['feedback']:2d} steps, "
                    f"{record['plans_per_s']:.1f} plans/s, {record['steps_per_s']:.1f} "
                    'steps/s; RSS '
                    + ', '.join(f'{n} {v[-1]:.0f}' for n, v in rss.items() if v) + ' MB')
                seed += 1
        except (GraphError, TimeoutError) as exc:
            exit_code, failure = 1, f'{type(exc).__name__}: {exc}'
            say(f'[soak] stopped: {failure}')
        finally:
            stop.set()
        comm_errors, disconnected = errors.snapshot()
    duration = time.time() - start
    warmup_s = args.warmup_fraction * duration
    if duration >= 10 * 60:
        warmup_s = max(warmup_s, 120.0)
    warmup = sum(1 for t in rss_t if t < warmup_s)
    outcomes: dict[str, int] = {}
    for g in goals:
        outcomes[g['status']] = outcomes.get(g['status'], 0) + 1
    rates = [g['plans_per_s'] for g in goals if g['feedback'] > 0]
    step_rates = [g['steps_per_s'] for g in goals if g['feedback'] > 0]
    report = {
        'command': ' '.join(['python', *sys.argv]),
        'git_commit': commit,
        'machine': f'{platform.node()} {platform.machine()} {os.cpu_count()} cores',
        'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'settings': {'minutes': args.minutes, 'task': args.task, 'backend': args.backend,
                     'mapping': args.mapping, 'max_steps': args.max_steps,
                     'seed_base': args.seed_base, 'goal_timeout_s': GOAL_TIMEOUT_S,
                     'sample_s': args.sample_s, 'warmup_s': round(warmup_s, 1)},
        'duration_s': round(duration, 1),
        'goals': len(goals),
        'outcomes': outcomes,
        'stuck_goals': outcomes.get('stuck', 0) + outcomes.get('server_lost', 0),
        'communication_errors': len(comm_errors),
        'communication_error_messages': comm_errors[:20],
        'controller_disconnected_samples': disconnected,
        'plans_per_s_median': statistics.median(rates) if rates else None,
        'steps_per_s_median': statistics.median(step_rates) if step_rates else None,
        'rss_mb': {name: {'first': v[0] if v else None, 'after_warmup':
                          v[warmup] if len(v) > warmup else None,
                          'last': v[-1] if v else None, 'max': max(v) if v else None,
                          'growth_after_warmup': growth(v, warmup)}
                   for name, v in rss.items()},
        'targets': {'rss_growth_below': 0.05, 'communication_errors': 0, 'stuck_goals': 0},
        'failure': failure,
        'log_dir': str(log_dir),
        'series': {'rss_t_s': [round(t, 1) for t in rss_t],
                   'rss_mb': {n: [round(x, 1) for x in v] for n, v in rss.items()},
                   'goals': goals},
    }
    growths = [r['growth_after_warmup'] for r in report['rss_mb'].values()]
    report['meets_targets'] = bool(
        report['stuck_goals'] == 0 and report['communication_errors'] == 0
        and all(g is not None and g < 0.05 for g in growths) and failure is None)
    return report, exit_code


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    series = report['series']
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    t_min = [t / 60.0 for t in series['rss_t_s']]
    for name, values in series['rss_mb'].items():
        axes[0].plot(t_min[:len(values)], values, label=name)
    warmup = report['settings']['warmup_s'] / 60.0
    for ax in axes:
        ax.axvline(warmup, color='grey', linestyle=':', linewidth=1)
    axes[0].set_ylabel('RSS (MB)')
    axes[0].legend(loc='center right', fontsize=8)
    axes[0].set_title(f"soak: {report['settings']['task']} goals, "
                      f"{report['settings']['backend']}, {report['duration_s'] / 60:.0f} min "
                      f"({report['machine']})", fontsize=10)
    goals = series['goals']
    start = [g['start_s'] / 60.0 for g in goals]
    axes[1].plot(start, [g['plans_per_s'] for g in goals], '.', markersize=4,
                 label='plans / s of planning time')
    axes[1].plot(start, [g['steps_per_s'] for g in goals], 'x', markersize=4,
                 label='executed steps / s')
    axes[1].set_ylabel('rate per goal (1/s)')
    axes[1].legend(loc='center right', fontsize=8)
    statuses = sorted({g['status'] for g in goals})
    for i, status in enumerate(statuses):
        xs = [s for s, g in zip(start, goals, strict=True) if g['status'] == status]
        axes[2].plot(xs, [i] * len(xs), '|', markersize=12, label=status)
    axes[2].set_yticks(range(len(statuses)), statuses)
    axes[2].set_xlabel('time since the graph started (min); dotted: end of warm-up')
    axes[2].set_ylabel('goal outcome')
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--minutes', type=float, default=30.0)
    parser.add_argument('--task', choices=['reach', 'push'], default='reach')
    parser.add_argument('--backend', choices=['world_model', 'oracle'], default='world_model')
    parser.add_argument('--mapping', action='store_true', help='run the gaussian_mapper too')
    parser.add_argument('--max-steps', type=int, default=15)
    parser.add_argument('--seed-base', type=int, default=700000)
    parser.add_argument('--sample-s', type=float, default=10.0, help='RSS sampling period')
    parser.add_argument('--warmup-fraction', type=float, default=0.2)
    parser.add_argument('--out', type=Path, default=None)
    parser.add_argument('--plot', type=Path, default=None)
    args = parser.parse_args()
    if not 0 < args.minutes <= 24 * 60 or args.max_steps < 1 or args.sample_s <= 0 or \
            not 0 <= args.warmup_fraction < 1:
        parser.error('--minutes in (0, 1440], --max-steps >= 1, --sample-s > 0, '
                     '--warmup-fraction in [0, 1)')
    report, code = soak(args)
    text = json.dumps(report, indent=1)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + '\n')
    if args.plot is not None:
        plot(report, args.plot)
    summary = {k: v for k, v in report.items() if k != 'series'}
    print(json.dumps(summary, indent=1))
    return code


if __name__ == '__main__':
    sys.exit(main())
