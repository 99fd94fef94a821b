"""Nothing outside the envelope ever reaches franky: RobotSession over a recording fake robot.

Arbitrary command sequences (NaN, inf, huge, tiny, wrong modes, interleaved cancels, fake
velocities that put braking points outside the box) go through RobotSession; every motion the
fake franky Robot receives must be a finite absolute pose inside the workspace box with the held
orientation, within the per-command step of where the arm was, at an allowed dynamics factor.
"""

import time

from command_strategies import commands as envelope_commands
from fake_franky import HELD, FakeGripper, FakeRobot
import franky
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from craik_franka.config import FrankaControllerConfig
from craik_franka.envelope import Mode, MotionCommand, Rejection
from craik_franka.robot_session import MotionHandle, RobotSession, SessionState

CONFIG = FrankaControllerConfig(robot_ip='fake', monitor_rate=500.0)


@pytest.fixture(scope='module')
def session_and_robot():
    robots: list[FakeRobot] = []

    def factory(hostname: str, **kwargs: object) -> FakeRobot:
        robots.append(FakeRobot(hostname, **kwargs))
        return robots[-1]

    session = RobotSession(CONFIG, robot_factory=factory, gripper_factory=FakeGripper)
    session.start()
    assert session.wait_until_ready(10.0)
    yield session, robots[0]
    session.close()


def test_limits_and_thresholds_are_sent_explicitly(session_and_robot):
    _session, robot = session_and_robot
    assert robot.kwargs['realtime_config'] == franky.RealtimeConfig.Ignore
    assert robot.relative_dynamics_factor == pytest.approx(CONFIG.hold_dynamics_factor)
    assert robot.translation_velocity_limit.value == CONFIG.translation_velocity_limit
    assert robot.translation_acceleration_limit.value == CONFIG.translation_acceleration_limit
    assert robot.translation_jerk_limit.value == CONFIG.translation_jerk_limit
    assert robot.rotation_velocity_limit.value == CONFIG.rotation_velocity_limit
    assert robot.elbow_jerk_limit.value == CONFIG.elbow_jerk_limit
    lower_tau, upper_tau, lower_f, upper_f = robot.collision_behavior
    assert tuple(lower_tau) == CONFIG.contact_torque_thresholds
    assert tuple(upper_tau) == CONFIG.collision_torque_thresholds
    assert tuple(lower_f) == CONFIG.contact_force_thresholds
    assert tuple(upper_f) == CONFIG.collision_force_thresholds


step = st.one_of(
    envelope_commands.map(lambda c: ('submit', c, None)),
    st.tuples(st.just('cancel'), st.none(),
              st.tuples(*[st.floats(min_value=-3.0, max_value=3.0)] * 3)))


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_property_nothing_outside_the_envelope_reaches_franky(session_and_robot, steps):
    session, robot = session_and_robot
    envelope = session.envelope
    box_min = np.array(CONFIG.workspace_min)
    box_max = np.array(CONFIG.workspace_max)
    for kind, command, velocity in steps:
        assert session.snapshot().state != SessionState.FAULTED
        before = len(robot.moves)
        position_before = robot.kin.fk(robot.q)[0]
        if kind == 'submit':
            assert isinstance(command, MotionCommand)
            result = session.submit(command, 'test')
            new = robot.moves[before:]
            if isinstance(result, Rejection):
                assert not new, f'a rejected command reached franky: {result}'
                continue
            assert isinstance(result, MotionHandle)
            assert len(new) == 1
            limit = envelope.step_limit(Mode(command.mode))
            assert np.all(np.abs(new[0].translation - position_before) <= limit + 1e-9)
            assert np.array_equal(new[0].translation, result.target)
        else:
            robot.commanded_velocity = np.array(velocity)
            active = session.active
            if active is not None:
                session.cancel(active)
            robot.commanded_velocity = np.zeros(3)
            new = robot.moves[before:]
        for move in new:
            assert np.all(np.isfinite(move.translation))
            assert np.all(move.translation >= box_min) and np.all(move.translation <= box_max)
            assert np.array_equal(move.quaternion, HELD)
            assert move.reference_type == franky.ReferenceType.Absolute
            assert 0.0 < move.relative_dynamics_factor <= 1.0
            assert move.global_factor == pytest.approx(CONFIG.hold_dynamics_factor)
        time.sleep(0.002)  # let the monitor finish handles now and then
