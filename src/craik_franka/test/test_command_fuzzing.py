"""Command fuzzing: nothing outside the safety envelope would ever reach franky.

Generated motion commands and arm states go through ``SafetyEnvelope.check`` with the real
Fr3Kinematics; generated /franka/target messages through ``streamed_command`` (the node's header
check) and then the envelope; generated sequences of commands, streamed targets, cancels, holds,
monitor ticks, gripper jobs, arm drift, reflexes, lost connections and recoveries through the
real RobotSession. For the sequences, franky.Robot and franky.Gripper are replaced by the
recorders of fake_franky.py at the very last call boundary (``Robot.move`` and the gripper's
``move_async``/``grasp_async``): that is the only place a recorder stands in for the real code.

Every accepted command and every recorded motion is checked independently of the envelope's
code (command_fuzzing.assert_within_envelope: finite, inside the workspace box, within the
per-command step, joint limits along the path, held orientation); every rejection has a Reason
and a message, and the reason the contract decides before inverse kinematics. Derandomized: CI
runs the same examples every time.
"""

from command_fuzzing import (
    CI_EXAMPLES,
    KIN,
    SessionHarness,
    check_command,
    check_stream,
    command_cases,
    sequences,
    stream_cases,
)
import franky
from hypothesis import HealthCheck, event, given, settings
import numpy as np
import pytest

from craik_franka.envelope import Mode, MotionCommand, Reason, Rejection, streamed_command
from craik_franka.kinematics import HOME_JOINT_POSITIONS
from craik_franka.robot_session import Outcome, SessionState


def fuzz(name: str) -> settings:
    return settings(max_examples=CI_EXAMPLES[name], deadline=None, derandomize=True,
                    database=None, suppress_health_check=[HealthCheck.too_slow,
                                                          HealthCheck.data_too_large])


@pytest.mark.timeout(300)
@fuzz('envelope')
@given(case=command_cases())
def test_every_command_the_envelope_accepts_is_inside_it_and_every_rejection_has_its_reason(
        case):
    command, state = case
    event(check_command(command, state))


@pytest.mark.timeout(300)
@fuzz('stream')
@given(case=stream_cases())
def test_streamed_targets_with_foreign_frames_or_bad_stamps_never_reach_the_envelope(case):
    spec, state = case
    event(check_stream(spec, state))


@pytest.mark.timeout(300)
@fuzz('session')
@given(ops=sequences)
def test_no_command_sequence_gets_anything_outside_the_envelope_to_franky(ops):
    harness = SessionHarness()
    for label in harness.run(ops):
        event(label)


@pytest.mark.parametrize('sec,nanosec', [(-1, 0), (-2**31, 999_999_999), (5, 10**9),
                                         (1, 2**32 - 1)])
def test_an_invalid_stamp_is_rejected_stale_instead_of_raising(sec, nanosec):
    """Found by the fuzzing: rclpy's Time.from_msg raised ValueError on a negative stamp, in the
    /franka/target callback, which took franka_controller's executor (and the node) down."""
    result = streamed_command('fr3_link0', sec, nanosec, 10**18, 0.5, (0.5, 0.0, 0.3), None,
                              0.0)
    assert isinstance(result, Rejection) and result.reason == Reason.STALE
    assert 'not a valid time' in result.message


def test_the_session_harness_reaches_franky_at_all():
    """The property above must not pass vacuously: plausible commands do move the fake arm."""
    harness = SessionHarness()
    harness.run([('near', 0, seed, 'action') for seed in range(20)])
    assert harness.labels['accepted'] >= 5, harness.labels
    moves = harness.robots[0].moves
    assert len(moves) >= 5
    assert not np.allclose(KIN.fk(harness.robots[0].q)[0], KIN.fk(np.array(
        HOME_JOINT_POSITIONS))[0])


def test_a_hold_with_the_arm_outside_the_box_stops_the_motion_instead_of_going_there():
    """The hold's last resort (no braking point inside the box): franky's stop(), no motion."""
    harness = SessionHarness()
    labels = harness.run([('near', 0, 3, 'action'), ('drift', (0.6, 0, 0, 0, 0, 0, 0)),
                          ('drift', (0.6, 0, 0, 0, 0, 0, 0)), ('drift', (0.6, 0, 0, 0, 0, 0, 0)),
                          ('velocity', (0.0, 0.0, 0.0)), ('cancel',)])
    assert labels[0] == 'accepted', labels
    assert labels[-1] == 'cancel (stop)', labels
    assert len(harness.robots[0].moves) == 1     # only the command; the hold sent no motion


def test_a_realtime_refusal_at_motion_start_faults_the_session_with_the_fix():
    """libfranka checks for realtime scheduling when a motion starts, not on connect: on a
    kernel without it the first command fails with RealtimeException. The session must fault
    with what to do (not crash, not retry the motion), and refuse commands until recovered."""
    harness = SessionHarness()
    harness.robots[0].fail_move = franky.RealtimeException(
        'libfranka: Running kernel does not have realtime capabilities.')
    handle = harness.session.submit(MotionCommand(int(Mode.RELATIVE), (0.01, 0.0, 0.0)), 'test')
    assert not isinstance(handle, Rejection), handle
    assert handle.done() and handle.outcome == Outcome.ROBOT_FAULT, handle.outcome
    assert 'realtime' in handle.message and 'PREEMPT_RT' in handle.message, handle.message
    snapshot = harness.session.snapshot()
    assert snapshot.state == SessionState.FAULTED and 'realtime_config' in snapshot.fault_reason
    again = harness.session.submit(MotionCommand(int(Mode.RELATIVE), (0.01, 0.0, 0.0)), 'test')
    assert isinstance(again, Rejection) and again.reason == Reason.ROBOT_FAULTED
    assert harness.robots[0].moves == []
    harness.close()
