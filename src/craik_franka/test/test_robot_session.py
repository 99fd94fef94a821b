"""RobotSession against franky-sim over the real libfranka protocol (no ROS).

The simulator runs in its own process (franky_sim_server.py), so it can be killed to simulate a
lost robot and can inject libfranka reflexes, which franky-sim does not produce on its own.
"""

import time

import numpy as np
import pytest

from craik_franka.config import FrankaControllerConfig
from craik_franka.envelope import Mode, MotionCommand, Reason, Rejection
from craik_franka.kinematics import HELD_ORIENTATION_XYZW, quaternion_to_matrix, rotation_angle
from craik_franka.robot_session import MotionHandle, Outcome, RobotSession, SessionState

HELD = quaternion_to_matrix(HELD_ORIENTATION_XYZW)


def make_session(server, **overrides) -> RobotSession:
    session = RobotSession(FrankaControllerConfig(robot_ip=server.hostname, **overrides))
    session.start()
    assert session.wait_until_ready(20.0), session.snapshot().fault_reason
    assert wait_for(lambda: session.snapshot().gripper_available, 10.0)
    return session


@pytest.fixture
def session(sim_server):
    session = make_session(sim_server)
    yield session
    session.close()


def submit(session: RobotSession, target, mode=Mode.RELATIVE, **kwargs) -> MotionHandle:
    handle = session.submit(MotionCommand(int(mode), tuple(target), **kwargs), 'test')
    assert isinstance(handle, MotionHandle), str(handle)
    return handle


def finish(handle: MotionHandle, timeout: float = 15.0) -> Outcome:
    assert handle.wait(timeout), 'command did not end'
    assert handle.outcome is not None
    return handle.outcome


def position(session: RobotSession) -> np.ndarray:
    reading = session.snapshot().reading
    assert reading is not None
    return reading.ee_position.copy()


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def realtime_factor(session: RobotSession, duration: float = 0.5) -> float:
    """Robot-clock seconds per wall-clock second (franky-sim runs slower under load)."""
    t0, r0 = time.monotonic(), session.snapshot().reading.robot_time
    time.sleep(duration)
    t1, r1 = time.monotonic(), session.snapshot().reading.robot_time
    return min(1.0, (r1 - r0) / (t1 - t0))


def test_moves_reach_their_targets_with_the_held_orientation(session):
    tolerance = session.config.goal_tolerance
    for step in [(0.05, 0.0, 0.0), (0.0, -0.05, 0.0), (0.0, 0.0, -0.05), (-0.03, 0.04, 0.02)]:
        start = position(session)
        handle = submit(session, step)
        assert finish(handle) == Outcome.SUCCEEDED, handle.message
        assert np.allclose(handle.target, start + np.array(step), atol=1e-4)
        assert np.linalg.norm(handle.end_position - handle.target) <= tolerance
        assert np.linalg.norm(position(session) - handle.target) <= tolerance
        reading = session.snapshot().reading
        assert rotation_angle(reading.ee_rotation, HELD) < 0.01
    goal = np.array([0.45, 0.1, 0.35])
    handle = submit(session, goal, Mode.ABSOLUTE, dynamics_factor=0.3)
    assert finish(handle) == Outcome.SUCCEEDED, handle.message
    assert np.linalg.norm(position(session) - goal) <= tolerance


def test_gripper_closes_and_opens(session):
    handle = submit(session, (0.0, 0.0, 0.0), gripper=1.0)
    assert finish(handle) == Outcome.SUCCEEDED, handle.message
    assert session.snapshot().gripper_width < 0.005
    handle = submit(session, (0.0, 0.0, 0.01), gripper=0.0)
    assert finish(handle) == Outcome.SUCCEEDED, handle.message
    assert session.snapshot().gripper_width > 0.075


def test_preemption_continues_smoothly_to_the_new_target(session, speed_recorder):
    start = position(session)
    with speed_recorder(session) as rec:
        first = submit(session, start + np.array([0.0, 0.15, 0.0]), Mode.ABSOLUTE,
                       dynamics_factor=0.2)
        assert wait_for(lambda: position(session)[1] - start[1] > 0.02, 10.0)
        t_preempt = time.monotonic()
        second_goal = position(session) + np.array([0.05, 0.05, -0.03])
        second = submit(session, second_goal, Mode.ABSOLUTE, dynamics_factor=0.2)
        assert finish(second) == Outcome.SUCCEEDED, second.message
        t_end = time.monotonic()
    assert first.outcome == Outcome.PREEMPTED and 'preempted' in first.message
    # From the preemption until the arm is within 10 mm of the new target it never stops:
    # its speed stays above a fifth of the peak speed of that stretch (a stop-and-go would dip
    # to zero at the switch).
    arrival = next(t for t, _, p in rec.between(t_preempt, t_end)
                   if np.linalg.norm(p - second_goal) < 0.01)
    speeds = [speed for _, speed, _ in rec.between(t_preempt, arrival)]
    assert len(speeds) > 20
    assert min(speeds) > 0.2 * max(speeds), (min(speeds), max(speeds))


def test_cancel_decelerates_and_holds(session, speed_recorder):
    start = position(session)
    goal = start + np.array([0.0, 0.15, 0.0])
    with speed_recorder(session) as rec:
        handle = submit(session, goal, Mode.ABSOLUTE, dynamics_factor=0.2)
        assert wait_for(lambda: position(session)[1] - start[1] > 0.015, 10.0)
        session.cancel(handle)
        assert finish(handle) == Outcome.CANCELED
        assert 'holding' in handle.message
        time.sleep(1.0)  # the measured arm settles onto the hold point
        t_settled = time.monotonic()
        time.sleep(0.5)
    held = position(session)
    assert start[1] + 0.015 < held[1] < goal[1] - 0.05, 'did not stop well before the goal'
    after = [p for t, _, p in rec.samples if t > t_settled]
    assert len(after) > 20
    assert max(np.linalg.norm(p - held) for p in after) < 5e-4, 'did not hold position'
    # It decelerated along its way: no turning back.
    ys = [p[1] for _, _, p in rec.samples]
    assert max(ys) - held[1] < 1e-3
    assert session.snapshot().state == SessionState.IDLE


def test_repeated_holds_brake_once_and_never_pass_the_target(session, speed_recorder):
    """The stream watchdog asks for a hold every tick until the motion ends: each request after
    the first must leave the braking point alone (re-planning it from the current speed moved
    it ahead each time and the arm sped up), and no hold ends past the motion's target."""
    start = position(session)
    goal = start + np.array([0.0, 0.0, -0.06])
    with speed_recorder(session) as rec:
        handle = submit(session, goal, Mode.ABSOLUTE, dynamics_factor=0.2)
        assert wait_for(lambda: start[2] - position(session)[2] > 0.03, 10.0)
        t_hold = time.monotonic()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            session.hold('stream went silent')
            time.sleep(0.02)
        assert finish(handle) == Outcome.CANCELED
        time.sleep(0.5)
    held = position(session)
    assert held[2] >= goal[2] - 1e-3, f'held {held[2] - goal[2]:+.4f} m past the target'
    before = [speed for t, speed, _ in rec.between(t_hold - 0.1, t_hold)]
    after = [speed for t, speed, _ in rec.samples if t >= t_hold + 0.05]
    assert before and after and max(after) <= max(before) + 0.01, \
        f'the arm sped up while holding: {max(before):.3f} -> {max(after):.3f} m/s'


def test_rejected_command_does_not_disturb_the_running_one(session):
    running = submit(session, (0.05, 0.0, 0.0))
    for bad in [MotionCommand(0, (float('nan'), 0.0, 0.0)), MotionCommand(0, (0.0, 0.2, 0.0)),
                MotionCommand(0, (0.0, 0.0, 0.0), gripper=1.5)]:
        assert isinstance(session.submit(bad, 'test'), Rejection)
    assert finish(running) == Outcome.SUCCEEDED, running.message
    assert session.snapshot().rejected_commands == 3


def test_reflex_aborts_the_goal_and_is_recovered_automatically(session, sim_server):
    handle = submit(session, (0.0, 0.05, 0.0), dynamics_factor=0.1)
    time.sleep(0.2)
    sim_server.inject_fault('cartesian_reflex')
    assert finish(handle, 5.0) == Outcome.ROBOT_FAULT
    assert 'reflex' in handle.message and 'cartesian_reflex' in handle.message
    assert wait_for(lambda: session.snapshot().state == SessionState.IDLE, 5.0)
    snap = session.snapshot()
    assert snap.recoveries == 1
    assert snap.last_error is not None and 'cartesian_reflex' in snap.last_error.message
    handle = submit(session, (0.0, -0.02, 0.0))
    assert finish(handle) == Outcome.SUCCEEDED, handle.message


def test_unlisted_or_too_frequent_faults_need_an_operator(sim_server):
    session = make_session(sim_server, max_auto_recoveries=1)
    try:
        # Not whitelisted: faulted, commands rejected with the reason, operator recovery works.
        handle = submit(session, (0.0, 0.05, 0.0), dynamics_factor=0.1)
        time.sleep(0.2)
        sim_server.inject_fault('joint_position_limits_violation')
        assert finish(handle, 5.0) == Outcome.ROBOT_FAULT
        assert wait_for(lambda: session.snapshot().state == SessionState.FAULTED, 5.0)
        rejection = session.submit(MotionCommand(0, (0.0, 0.01, 0.0)), 'test')
        assert isinstance(rejection, Rejection) and rejection.reason == Reason.ROBOT_FAULTED
        assert 'joint_position_limits_violation' in rejection.message
        assert '/franka/recover' in rejection.message
        assert session.snapshot().recoveries == 0
        ok, text = session.recover()
        assert ok, text
        # Whitelisted, but the budget (1 per window) is spent after the first one.
        for expected in (SessionState.IDLE, SessionState.FAULTED):
            handle = submit(session, (0.0, -0.03, 0.0), dynamics_factor=0.1)
            time.sleep(0.2)
            sim_server.inject_fault('joint_reflex')
            assert finish(handle, 5.0) == Outcome.ROBOT_FAULT
            assert wait_for(lambda s=expected: session.snapshot().state == s, 5.0)
            if expected == SessionState.IDLE:
                time.sleep(1.1)  # past recovery_min_interval, so only the budget can refuse
        assert 'automatic recoveries' in session.snapshot().fault_reason
        assert session.recover()[0]
        assert finish(submit(session, (0.0, 0.01, 0.0))) == Outcome.SUCCEEDED
    finally:
        session.close()


def test_killed_robot_aborts_the_goal_within_2s_and_the_session_reconnects(session, sim_server):
    handle = submit(session, (0.0, 0.05, 0.0), dynamics_factor=0.1)
    time.sleep(0.2)
    sim_server.kill()
    killed = time.monotonic()
    assert handle.wait(2.0), 'the goal did not abort within 2 s of losing the robot'
    assert time.monotonic() - killed < 2.0
    assert handle.outcome == Outcome.ROBOT_FAULT
    assert 'connection lost' in handle.message
    snap = session.snapshot()
    assert snap.state == SessionState.DISCONNECTED and not snap.connected
    rejection = session.submit(MotionCommand(0, (0.0, 0.01, 0.0)), 'test')
    assert isinstance(rejection, Rejection) and rejection.reason == Reason.NOT_CONNECTED
    assert 'connection lost' in rejection.message and 'reconnecting' in rejection.message
    sim_server.start()
    assert session.wait_until_ready(30.0), session.snapshot().fault_reason
    assert session.snapshot().reconnects == 1
    handle = submit(session, (0.0, 0.0, -0.02))
    assert finish(handle) == Outcome.SUCCEEDED, handle.message
    assert wait_for(lambda: session.snapshot().gripper_available, 10.0)


def test_a_stalled_robot_aborts_the_goal_and_the_session_resumes(session, sim_server):
    handle = submit(session, (0.0, 0.05, 0.0), dynamics_factor=0.1)
    time.sleep(0.2)
    sim_server.pause(0.6)  # below libfranka's 1 s timeout: a stall, not (yet) a lost link
    assert handle.wait(2.0)
    assert handle.outcome == Outcome.ROBOT_FAULT and 'connection lost' in handle.message
    assert session.wait_until_ready(30.0), session.snapshot().fault_reason
    assert wait_for(lambda: not session.snapshot().moving, 10.0)
    held = position(session)
    time.sleep(0.5)
    assert np.linalg.norm(position(session) - held) < 1e-3
    handle = submit(session, (0.0, 0.0, -0.02))
    assert finish(handle) == Outcome.SUCCEEDED, handle.message


def test_lost_connection_is_detected_while_idle(session, sim_server):
    sim_server.kill()
    assert wait_for(lambda: session.snapshot().state == SessionState.DISCONNECTED, 3.0)
    assert 'connection lost' in session.snapshot().fault_reason


def test_streamed_targets_at_10hz_are_followed_without_stopping(session, speed_recorder):
    start = position(session)
    direction = np.array([0.0, 1.0, -0.5]) / np.linalg.norm([0.0, 1.0, -0.5])
    # franky-sim runs slower than real time on a loaded machine while the stream is paced by
    # the wall clock; the step is a third of what the arm can do per 100 ms at the simulator's
    # measured speed (6 mm at real time), so the arm can follow and must not stop in between.
    rtf = realtime_factor(session)
    step = 0.1 * (0.3 * session.config.translation_velocity_limit) * rtf / 3
    stream_speed = step / 0.1 / rtf  # m/s of robot time, the unit of the measured speed
    targets = [start + direction * step * (i + 1) for i in range(20)]
    rejected = []
    with speed_recorder(session) as rec:
        t_first = time.monotonic()
        for i, target in enumerate(targets):
            result = session.submit(MotionCommand(int(Mode.STREAMED), tuple(target),
                                                  dynamics_factor=0.3), 'stream')
            if isinstance(result, Rejection):
                rejected.append(result)
            time.sleep(max(0.0, t_first + 0.1 * (i + 1) - time.monotonic()))
        t_last = time.monotonic()
        assert isinstance(result, MotionHandle)
        assert finish(result) == Outcome.SUCCEEDED, result.message
    assert not rejected, rejected
    # Once the arm has picked up the stream's pace it never stops until the last target was
    # sent: its speed stays above a quarter of the stream speed, and it never moves backwards.
    t_up = next(t for t, speed, _ in rec.samples if t > t_first and speed > 0.5 * stream_speed)
    moving = rec.between(t_up, t_last)
    assert len(moving) > 50
    speeds = [speed for _, speed, _ in moving]
    assert min(speeds) > 0.25 * stream_speed, (min(speeds), stream_speed)
    progress = [float((p - start) @ direction) for _, _, p in moving]
    assert all(b >= a - 1e-4 for a, b in zip(progress, progress[1:], strict=False))
