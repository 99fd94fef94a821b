"""franky-sim's Cartesian-motion quaternion leak fix (craik_sim.franky_sim_fixes)."""

import os

import franky_sim.franka_robot_server as server_module
import numpy as np
import pinocchio as pin
import pytest

from craik_sim import franky_sim_fixes


def _resident_mb() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    return np.asarray(pin.Quaternion(q[3], q[0], q[1], q[2]).toRotationMatrix())


def test_apply_is_idempotent_and_keeps_the_rest_of_pinocchio():
    franky_sim_fixes.apply()
    franky_sim_fixes.apply()
    assert franky_sim_fixes.is_applied()
    patched = server_module.pin
    assert patched.SE3 is pin.SE3
    assert patched.log6 is pin.log6
    # Quaternion from coefficients is pinocchio's own.
    assert isinstance(patched.Quaternion(1.0, 0.0, 0.0, 0.0), pin.Quaternion)


def test_quaternion_of_a_matrix_matches_pinocchio():
    franky_sim_fixes.apply()
    rng = np.random.default_rng(3)
    for _ in range(50):
        rotation = _random_rotation(rng)
        ours = server_module.pin.Quaternion(rotation)
        theirs = pin.Quaternion(rotation)
        a = np.array([ours.x, ours.y, ours.z, ours.w])
        b = np.array([theirs.x, theirs.y, theirs.z, theirs.w])
        assert np.allclose(a, b, atol=1e-12) or np.allclose(a, -b, atol=1e-12)


def test_the_servers_quaternion_conversion_does_not_grow_memory():
    # What franky-sim's robot server runs on every 1 kHz tick of a Cartesian motion; unfixed,
    # these calls grow the process by 16 MB.
    franky_sim_fixes.apply()
    rotation = _random_rotation(np.random.default_rng(4))
    for _ in range(2000):
        server_module.pin.Quaternion(rotation)
    before = _resident_mb()
    for _ in range(200_000):
        server_module.pin.Quaternion(rotation)
    assert _resident_mb() - before < 4.0


def test_a_changed_franky_sim_is_refused(monkeypatch):
    monkeypatch.setattr(server_module, 'pin', object())
    with pytest.raises(RuntimeError, match='franky-sim version changed'):
        franky_sim_fixes.apply()
