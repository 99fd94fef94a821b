"""Goal and command fuzzing counts (JSON): how many generated goals, plans, commands, streamed
targets and command sequences went through the planner's validation and the controller's
envelope, what was accepted, what was rejected and why, and how many out-of-envelope commands
got through (must be 0).

    python bench/fuzz_goals.py [--count 20000] [--seed 0] [--out bench/results/fuzzing.json]

The strategies and checks are the ones CI runs (src/craik_planner/test/goal_fuzzing.py,
plan_fuzzing.py; src/craik_franka/test/command_fuzzing.py; the tests test_goal_fuzzing.py,
test_plan_output_fuzzing.py, test_command_fuzzing.py run them derandomized at the CI example
counts recorded under "ci"). Here they run for --count examples in total, split between the
targets in the proportions of CI, from --seed (so a run explores other examples than CI). A
failed check does not stop the run: it is counted under out_of_envelope (and its first lines
kept under failures), so the JSON says how many there were. Not a test; nothing is timed
against a threshold. The JSON (with the command, git commit, machine and date) goes to --out and
to stdout.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable, Iterable
import json
import os
from pathlib import Path
import platform
import sys
import time
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _tests in ('craik_planner', 'craik_franka'):
    sys.path.insert(0, str(ROOT / 'src' / _tests / 'test'))

import command_fuzzing  # noqa: E402
import goal_fuzzing  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402
import plan_fuzzing  # noqa: E402

from craik_bringup.graph import git_commit  # noqa: E402

Outcome = tuple[str, str]   # (accepted | rejected | other, reason or what happened)


def _goal(outcome: str) -> Outcome:
    if outcome == 'accepted':
        return 'accepted', ''
    return 'rejected', outcome.removeprefix('rejected: ')


def _planner_output(outcome: str) -> Outcome:
    if outcome.startswith('sent'):
        return 'accepted', outcome
    if outcome == 'reached':
        return 'other', 'goal reached (nothing sent, arm held)'
    return 'rejected', outcome


def _envelope(outcome: str) -> Outcome:
    outcome = outcome.removeprefix('stream header ok, then ').removeprefix('stream ')
    return ('accepted', '') if outcome == 'accepted' else ('rejected', outcome)


def _session(outcome: str) -> Outcome:
    if outcome.startswith('accepted'):
        return 'accepted', outcome
    if ': rejected ' in outcome:
        return 'rejected', outcome.split(': rejected ', 1)[1]
    return 'other', outcome


# name -> (what it is, strategy, check returning the outcomes of one example, classify, CI
# examples of its test)
TARGETS: dict[str, tuple[str, Any, Callable[[Any], Iterable[str]], Callable[[str], Outcome],
                         int]] = {
    'reach_goal_validation': (
        'ReachGoal goals (images, depth, tolerances, steps, timeouts) through '
        'craik_planner.goal_validation.validate_goal',
        goal_fuzzing.goal_specs(), lambda spec: [goal_fuzzing.check_goal(spec)], _goal,
        goal_fuzzing.CI_EXAMPLES),
    'plan_to_target': (
        'MPC episodes on misbehaving backends (NaN/inf/huge energies, NaN latents), each '
        'action through step_target (plan -> /franka/target); one input per step',
        plan_fuzzing.episode_specs(), plan_fuzzing.check_episode, _planner_output,
        plan_fuzzing.CI_EXAMPLES['plan_to_target']),
    'step_target': (
        'arbitrary actions, poses and previous targets through step_target',
        plan_fuzzing.step_specs(), lambda spec: [plan_fuzzing.check_step_target(spec)],
        _planner_output, plan_fuzzing.CI_EXAMPLES['step_target']),
    'envelope': (
        'motion commands from arm states across the workspace through SafetyEnvelope.check '
        '(real Fr3Kinematics)',
        command_fuzzing.command_cases(), lambda case: [command_fuzzing.check_command(*case)],
        _envelope, command_fuzzing.CI_EXAMPLES['envelope']),
    'streamed_targets': (
        '/franka/target messages (frames, stamps) through streamed_command, then the envelope',
        command_fuzzing.stream_cases(), lambda case: [command_fuzzing.check_stream(*case)],
        _envelope, command_fuzzing.CI_EXAMPLES['stream']),
    'session_sequences': (
        'sequences of commands, streamed targets, cancels, holds, ticks, faults, reconnects '
        'through RobotSession with franky recorded at Robot.move; one input per op',
        command_fuzzing.sequences, lambda ops: command_fuzzing.SessionHarness().run(ops),
        _session, command_fuzzing.CI_EXAMPLES['session']),
}


def run_target(strategy: Any, check: Callable[[Any], Iterable[str]],
               classify: Callable[[str], Outcome], examples: int, seed: int
               ) -> dict[str, Any]:
    """Generate ``examples`` examples, check each, tally what happened."""
    accepted: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    other: Counter[str] = Counter()
    failures: list[str] = []
    counts = {'examples': 0, 'inputs': 0}

    @hypothesis_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(value=strategy)
    def body(value: Any) -> None:
        counts['examples'] += 1
        try:
            outcomes = list(check(value))
        except Exception as exc:  # noqa: BLE001 (counted: every failed check is a finding)
            failures.append(f'{type(exc).__name__}: {str(exc)[:400]} on {value!r:.400}')
            counts['inputs'] += 1
            return
        counts['inputs'] += len(outcomes)
        for outcome in outcomes:
            kind, reason = classify(outcome)
            {'accepted': accepted, 'rejected': rejected, 'other': other}[kind][reason] += 1

    start = time.perf_counter()
    body()
    result: dict[str, Any] = {'examples': counts['examples'], 'inputs': counts['inputs'],
                              'accepted': sum(accepted.values())}
    kinds = {kind: n for kind, n in accepted.most_common() if kind}
    if kinds:
        result['accepted_by_kind'] = kinds
    result.update({
        'rejected': sum(rejected.values()), 'rejected_by_reason': dict(rejected.most_common()),
        'out_of_envelope': len(failures), 'failures': failures[:10],
        'seconds': round(time.perf_counter() - start, 1)})
    if other:
        result['other'] = dict(other.most_common())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--count', type=int, default=20000,
                        help='examples in total, split like CI (default 20000)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', type=Path, default=ROOT / 'bench' / 'results' / 'fuzzing.json',
                        help='where the JSON goes (also printed)')
    args = parser.parse_args()
    ci_total = sum(target[4] for target in TARGETS.values())
    out: dict[str, Any] = {
        'benchmark': 'fuzzing', 'command': ' '.join(['python', *sys.argv]),
        'git_commit': git_commit(ROOT), 'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'machine': f'{platform.machine()} {os.cpu_count()} cores',
        'load_avg_1min': round(os.getloadavg()[0], 2), 'seed': args.seed,
        'examples_requested': args.count,
        'definitions': {
            'examples': 'hypothesis examples generated',
            'inputs': 'goals, commands, plan steps or session ops checked (an episode or a '
                      'sequence holds several)',
            'accepted': 'would reach the controller (planner targets) or franky (commands), '
                        'each re-checked independently',
            'rejected': 'refused, with the reason (field, Reason code or message)',
            'out_of_envelope': 'failed checks: an accepted input outside the envelope, a '
                               'rejection without (the right) reason, an unexpected exception; '
                               'must be 0'}}
    targets: dict[str, Any] = {}
    for name, (what, strategy, check, classify, ci) in TARGETS.items():
        examples = max(1, round(args.count * ci / ci_total))
        print(f'[fuzz_goals] {name}: {examples} examples', file=sys.stderr)
        targets[name] = {'what': what, **run_target(strategy, check, classify, examples,
                                                    args.seed)}
    out['examples'] = sum(t['examples'] for t in targets.values())
    out['inputs'] = sum(t['inputs'] for t in targets.values())
    out['accepted'] = sum(t['accepted'] for t in targets.values())
    out['rejected'] = sum(t['rejected'] for t in targets.values())
    out['out_of_envelope'] = sum(t['out_of_envelope'] for t in targets.values())
    out['targets'] = targets
    out['ci'] = {'examples_per_run': ci_total + goal_fuzzing.NODE_CI_EXAMPLES,
                 'per_target': {name: target[4] for name, target in TARGETS.items()},
                 'node_execute_callback': goal_fuzzing.NODE_CI_EXAMPLES,
                 'settings': 'derandomize=True, deadline=None, database=None'}
    text = json.dumps(out, indent=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + '\n')
    print(text)
    print(f'[fuzz_goals] wrote {args.out}', file=sys.stderr)


if __name__ == '__main__':
    main()
