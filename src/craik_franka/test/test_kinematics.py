"""FR3 kinematics (pinocchio) against known poses; no robot needed."""

import numpy as np
import pytest

from craik_franka.kinematics import (
    HELD_ORIENTATION_XYZW,
    HOME_JOINT_POSITIONS,
    Fr3Kinematics,
    matrix_to_quaternion,
    quaternion_to_matrix,
    rotation_angle,
)


@pytest.fixture(scope='module')
def kin() -> Fr3Kinematics:
    return Fr3Kinematics()


def test_home_pose_is_the_held_orientation_above_the_table(kin):
    position, rotation = kin.fk(np.array(HOME_JOINT_POSITIONS))
    # The FR3 home TCP pose as franky / libfranka report it (O_T_EE with the Franka Hand).
    assert position == pytest.approx([0.5545, 0.0, 0.5214], abs=1e-3)
    assert rotation_angle(rotation, quaternion_to_matrix(HELD_ORIENTATION_XYZW)) < 1e-6
    # Gripper pointing down: the TCP z axis is -z of the base.
    assert rotation[:, 2] == pytest.approx([0.0, 0.0, -1.0], abs=1e-9)


def test_quaternion_round_trip():
    q = np.array([0.1, -0.7, 0.2, 0.6])
    q /= np.linalg.norm(q)
    back = matrix_to_quaternion(quaternion_to_matrix(q))
    assert np.allclose(back, q) or np.allclose(back, -q)


def test_joint_limits_are_the_fr3_ones(kin):
    assert kin.lower[3] == pytest.approx(-3.0770)
    assert kin.upper[3] == pytest.approx(-0.1169)
    assert kin.lower[5] == pytest.approx(0.4398)
    assert kin.within_limits(np.array(HOME_JOINT_POSITIONS), margin=0.05)
    assert not kin.within_limits(np.array([0, 0, 0, 0.0, 0, 1.57, 0]))


def test_ik_recovers_a_nearby_pose_within_limits(kin):
    q0 = np.array(HOME_JOINT_POSITIONS)
    target, rotation = kin.fk(q0 + np.array([0.2, -0.1, 0.1, 0.2, 0.0, -0.1, 0.0]))
    sol = kin.ik(target, rotation, q0, margin=0.05)
    assert sol.success
    assert kin.within_limits(sol.q, 0.05)
    reached, reached_rot = kin.fk(sol.q)
    assert np.linalg.norm(reached - target) < 1e-4
    assert rotation_angle(reached_rot, rotation) < 1e-3


def test_ik_fails_out_of_reach(kin):
    rotation = quaternion_to_matrix(HELD_ORIENTATION_XYZW)
    sol = kin.ik(np.array([1.5, 0.0, 0.3]), rotation, np.array(HOME_JOINT_POSITIONS), margin=0.05)
    assert not sol.success
    assert sol.position_error > 0.3


def test_flange_to_tcp_matches_the_franka_hand(kin):
    transform = kin.flange_to_tcp()
    assert transform[:3, 3] == pytest.approx([0.0, 0.0, 0.1034], abs=1e-6)
    # -45 deg about z, as libfranka's F_T_EE for the Franka Hand.
    assert np.arctan2(transform[1, 0], transform[0, 0]) == pytest.approx(-np.pi / 4)


def test_jacobian_matches_finite_differences(kin):
    q = np.array(HOME_JOINT_POSITIONS) + 0.1
    jac = kin.jacobian(q)
    eps = 1e-6
    for i in range(7):
        dq = np.zeros(7)
        dq[i] = eps
        numeric = (kin.fk(q + dq)[0] - kin.fk(q - dq)[0]) / (2 * eps)
        assert jac[:3, i] == pytest.approx(numeric, abs=1e-6)


def test_missing_urdf_names_the_field(tmp_path):
    with pytest.raises(ValueError, match='urdf_path'):
        Fr3Kinematics(tmp_path / 'nope.urdf')


def _resident_mb() -> float:
    import os
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def test_matrix_to_quaternion_does_not_grow_memory():
    # The controller converts every state it publishes; pinocchio.Quaternion(matrix) leaked
    # 80 bytes per call (16 MB over these calls).
    rotation = quaternion_to_matrix((0.1, -0.7, 0.2, 0.6))
    for _ in range(2000):
        matrix_to_quaternion(rotation)
    before = _resident_mb()
    for _ in range(200_000):
        matrix_to_quaternion(rotation)
    assert _resident_mb() - before < 4.0
