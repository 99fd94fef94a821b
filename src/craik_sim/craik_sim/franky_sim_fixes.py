"""A fix for franky-sim's per-tick memory leak, applied before its server runs.

franky-sim 1.0.4 converts the Cartesian pose command of every 1 kHz tick of a Cartesian motion
to a quaternion with ``pinocchio.Quaternion(rotation_matrix)``. With eigenpy 3.13 that
constructor leaks 80 bytes per call (measured: 200 000 calls grow the resident memory by
16 MB; ``Quaternion(w, x, y, z)``, ``SE3(R, t)`` and ``SE3ToXYZQUAT`` leak nothing). The sim node
grew by ~2.4 MB per minute of goals in the 30-minute soak because of it.

``apply()`` gives franky-sim's robot server a ``pin`` whose ``Quaternion(matrix)`` goes through
``SE3ToXYZQUAT`` instead; every other name is pinocchio's own. It is idempotent and refuses to
run against a franky-sim whose robot server no longer looks like the one it was written for, so
an upgrade is noticed instead of silently patched wrongly.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pinocchio as pin

_PATCHED_MODULE = 'franky_sim.franka_robot_server'


class MatrixQuaternion:
    """The quaternion of a rotation matrix [3, 3], with pinocchio.Quaternion's x, y, z, w."""

    __slots__ = ('x', 'y', 'z', 'w')

    def __init__(self, rotation: np.ndarray) -> None:
        xyzquat = pin.SE3ToXYZQUAT(pin.SE3(np.asarray(rotation, dtype=float), np.zeros(3)))
        self.x, self.y, self.z, self.w = (float(v) for v in xyzquat[3:])


class _PinocchioWithoutMatrixQuaternion(types.ModuleType):
    """pinocchio, except ``Quaternion(R)`` of a 3x3 matrix, which leaks in eigenpy 3.13."""

    def __init__(self) -> None:
        super().__init__('pinocchio', 'pinocchio with a non-leaking Quaternion(matrix)')

    def __getattr__(self, name: str) -> Any:
        return getattr(pin, name)

    @staticmethod
    def Quaternion(*args: Any) -> Any:  # noqa: N802 (pinocchio's name)
        if len(args) == 1 and np.shape(args[0]) == (3, 3):
            return MatrixQuaternion(args[0])
        return pin.Quaternion(*args)


def apply() -> None:
    """Install the fix in franky-sim's robot server module (idempotent)."""
    import franky_sim.franka_robot_server as server_module

    current = getattr(server_module, 'pin', None)
    if isinstance(current, _PinocchioWithoutMatrixQuaternion):
        return
    if current is not pin:
        raise RuntimeError(
            f'{_PATCHED_MODULE} no longer imports pinocchio as `pin`; the franky-sim version '
            'changed, so check whether its Quaternion(matrix) leak (craik_sim.franky_sim_fixes) '
            'still needs this fix')
    server_module.pin = _PinocchioWithoutMatrixQuaternion()


def is_applied() -> bool:
    """Whether franky-sim's robot server uses the fixed quaternion conversion."""
    import franky_sim.franka_robot_server as server_module

    return isinstance(getattr(server_module, 'pin', None), _PinocchioWithoutMatrixQuaternion)
