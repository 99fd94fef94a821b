"""Fault classification, the recovery policy (whitelist + rate bound) and reconnection backoff."""

import pytest

from craik_franka.faults import (
    DEFAULT_RECOVERABLE_ERRORS,
    LIBFRANKA_ERRORS,
    Backoff,
    Fault,
    FaultKind,
    RecoveryPolicy,
    RecoveryPolicyConfig,
    error_names,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def reflex(*names: str) -> Fault:
    return Fault(FaultKind.CONTROL, f'motion aborted by reflex! {list(names)}', tuple(names))


def test_error_names_are_parsed_from_libfranka_text():
    text = ('libfranka: Move command aborted: motion aborted by reflex! ["cartesian_reflex", '
            '"joint_position_limits_violation"]\ncontrol_command_success_rate: 0.97')
    assert error_names(text) == ('cartesian_reflex', 'joint_position_limits_violation')
    assert error_names('libfranka: UDP receive: Timeout') == ()
    assert error_names('[]') == ()


def test_whitelist_is_made_of_real_libfranka_errors():
    assert set(DEFAULT_RECOVERABLE_ERRORS) <= set(LIBFRANKA_ERRORS)
    assert len(LIBFRANKA_ERRORS) == 41
    for dangerous in ('joint_position_limits_violation', 'self_collision_avoidance_violation',
                      'power_limit_violation', 'instability_detected'):
        assert dangerous not in DEFAULT_RECOVERABLE_ERRORS


def test_only_whitelisted_control_faults_are_recovered():
    policy = RecoveryPolicy(RecoveryPolicyConfig(), FakeClock())
    assert policy.decide(reflex('cartesian_reflex')).allowed
    mixed = policy.decide(reflex('cartesian_reflex', 'joint_position_limits_violation'))
    assert not mixed.allowed and 'joint_position_limits_violation' in mixed.reason
    assert not policy.decide(reflex()).allowed
    lost = Fault(FaultKind.CONNECTION_LOST, 'UDP receive: Timeout')
    assert not policy.decide(lost).allowed
    stopped = Fault(FaultKind.USER_STOPPED, 'user stop', ('cartesian_reflex',))
    assert not policy.decide(stopped).allowed


def test_recoveries_are_rate_bounded():
    clock = FakeClock()
    policy = RecoveryPolicy(RecoveryPolicyConfig(max_recoveries=2, window=10.0,
                                                 min_interval=1.0), clock)
    fault = reflex('joint_reflex')
    assert policy.decide(fault).allowed
    policy.record()
    clock.now += 0.5
    decision = policy.decide(fault)
    assert not decision.allowed and 'interval' in decision.reason
    clock.now += 1.0
    assert policy.decide(fault).allowed
    policy.record()
    clock.now += 2.0
    decision = policy.decide(fault)
    assert not decision.allowed and 'limit 2' in decision.reason
    clock.now += 10.0  # both attempts left the window
    assert policy.decide(fault).allowed
    policy.record()
    policy.reset()
    assert policy.decide(fault).allowed


def test_policy_config_validates():
    with pytest.raises(ValueError, match='recoverable_errors'):
        RecoveryPolicyConfig(recoverable_errors=('made_up_error',))
    with pytest.raises(ValueError, match='max_recoveries'):
        RecoveryPolicyConfig(max_recoveries=-1)
    with pytest.raises(ValueError, match='window'):
        RecoveryPolicyConfig(window=float('nan'))


def test_backoff_doubles_up_to_the_maximum_and_resets():
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)
