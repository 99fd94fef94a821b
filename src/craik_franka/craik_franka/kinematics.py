"""FR3 kinematics with pinocchio: hand-TCP forward kinematics, inverse kinematics, joint limits.

The model is the FR3 URDF (arm + Franka Hand) with the finger joints locked, so it has the seven
arm joints ``fr3_joint1..7``. The end effector is ``fr3_hand_tcp``, the point between the
fingertips: the same frame libfranka reports as ``O_T_EE`` when the robot's end effector is
configured as the Franka Hand (``F_T_EE``: 0.1034 m along the flange z axis, rotated by -45 deg).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pinocchio as pin

ARM_JOINTS = tuple(f'fr3_joint{i}' for i in range(1, 8))
FINGER_JOINTS = ('fr3_finger_joint1', 'fr3_finger_joint2')
BASE_FRAME = 'fr3_link0'
TCP_FRAME = 'fr3_hand_tcp'
FLANGE_FRAME = 'fr3_link8'
DEFAULT_URDF = Path(__file__).resolve().parent / 'data' / 'fr3.urdf'

# The orientation the controller holds: the FR3 home orientation (q = 0, 0, 0, -pi/2, 0, pi/2,
# pi/4), gripper pointing straight down. As a quaternion (x, y, z, w) in fr3_link0: a rotation
# by pi about x, so the TCP z axis points along -z of the base and its x axis along +x.
HELD_ORIENTATION_XYZW = (1.0, 0.0, 0.0, 0.0)
HOME_JOINT_POSITIONS = (0.0, 0.0, 0.0, -np.pi / 2, 0.0, np.pi / 2, np.pi / 4)


def quaternion_to_matrix(xyzw: tuple[float, float, float, float] | np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] of a quaternion given as (x, y, z, w)."""
    x, y, z, w = (float(v) for v in xyzw)
    return np.asarray(pin.Quaternion(w, x, y, z).normalized().toRotationMatrix())


def matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) [4] of a rotation matrix [3, 3]."""
    # Not pin.Quaternion(rotation): with eigenpy 3.13 that constructor leaks 80 bytes per call,
    # and the controller converts every state it publishes.
    xyzquat = pin.SE3ToXYZQUAT(pin.SE3(np.asarray(rotation, dtype=float), np.zeros(3)))
    return np.asarray(xyzquat[3:], dtype=float)


def rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in radians of the rotation between two rotation matrices [3, 3]."""
    return float(np.linalg.norm(pin.log3(np.asarray(a).T @ np.asarray(b))))


@dataclass(frozen=True)
class IkResult:
    """Outcome of an inverse-kinematics solve."""

    success: bool
    q: np.ndarray  # [7] last iterate (the solution when success)
    position_error: float  # metres
    rotation_error: float  # radians
    iterations: int


class Fr3Kinematics:
    """Forward and inverse kinematics of the FR3 hand TCP in fr3_link0."""

    def __init__(self, urdf_path: str | Path | None = None) -> None:
        path = Path(urdf_path) if urdf_path else DEFAULT_URDF
        if not path.is_file():
            raise ValueError(f'urdf_path: no URDF at {path}')
        full = pin.buildModelFromUrdf(str(path))
        missing = [j for j in ARM_JOINTS if not full.existJointName(j)]
        if missing:
            raise ValueError(f'urdf_path: {path} lacks the FR3 joints {missing}')
        locked = [full.getJointId(j) for j in FINGER_JOINTS if full.existJointName(j)]
        self._model = pin.buildReducedModel(full, locked, pin.neutral(full))
        if not self._model.existFrame(TCP_FRAME):
            raise ValueError(f'urdf_path: {path} has no {TCP_FRAME} frame (FR3 with Franka Hand)')
        self._data = self._model.createData()
        self._tcp = self._model.getFrameId(TCP_FRAME)
        self._flange = self._model.getFrameId(FLANGE_FRAME)
        self.lower = np.array(self._model.lowerPositionLimit[:7], dtype=float)  # [7]
        self.upper = np.array(self._model.upperPositionLimit[:7], dtype=float)  # [7]

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP position [3] and rotation [3, 3] in fr3_link0 for joint positions q [7]."""
        pin.framesForwardKinematics(self._model, self._data, np.asarray(q, dtype=float))
        placement = self._data.oMf[self._tcp]
        return np.array(placement.translation), np.array(placement.rotation)

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """TCP Jacobian [6, 7] (linear; angular) in fr3_link0-aligned axes."""
        q = np.asarray(q, dtype=float)
        return np.array(pin.computeFrameJacobian(
            self._model, self._data, q, self._tcp, pin.ReferenceFrame.LOCAL_WORLD_ALIGNED))

    def flange_to_tcp(self) -> np.ndarray:
        """Transform [4, 4] from the flange (fr3_link8) to the TCP (libfranka's F_T_EE)."""
        q = np.array(HOME_JOINT_POSITIONS)
        pin.framesForwardKinematics(self._model, self._data, q)
        return np.array((self._data.oMf[self._flange].inverse() * self._data.oMf[self._tcp])
                        .homogeneous)

    def within_limits(self, q: np.ndarray, margin: float = 0.0) -> bool:
        """Whether q [7] is at least `margin` radians inside every joint limit."""
        q = np.asarray(q, dtype=float)
        return bool(np.all(q >= self.lower + margin) and np.all(q <= self.upper - margin))

    def ik(self, position: np.ndarray, rotation: np.ndarray, q_seed: np.ndarray, *,
           margin: float | None = None, position_tolerance: float = 1e-4,
           rotation_tolerance: float = 1e-3, max_iterations: int = 200) -> IkResult:
        """Damped least-squares IK for a TCP pose, starting from q_seed [7].

        With `margin` set, every iterate is kept `margin` radians inside the joint limits, so a
        success is a solution within the limits; with None the limits are ignored.
        """
        target = pin.SE3(np.asarray(rotation, dtype=float), np.asarray(position, dtype=float))
        q = np.array(q_seed, dtype=float)
        lo = self.lower + margin if margin is not None else None
        hi = self.upper - margin if margin is not None else None
        if lo is not None and hi is not None:
            q = np.clip(q, lo, hi)
        damping = 1e-6
        pos_err = rot_err = float('inf')
        for it in range(max_iterations):
            pin.framesForwardKinematics(self._model, self._data, q)
            current = self._data.oMf[self._tcp]
            pos_err = float(np.linalg.norm(target.translation - current.translation))
            rot_err = rotation_angle(current.rotation, target.rotation)
            if pos_err < position_tolerance and rot_err < rotation_tolerance:
                return IkResult(True, q, pos_err, rot_err, it)
            err = pin.log6(current.actInv(target)).vector  # [6] in the TCP frame
            jac = pin.computeFrameJacobian(self._model, self._data, q, self._tcp,
                                           pin.ReferenceFrame.LOCAL)  # [6, 7]
            step = jac.T @ np.linalg.solve(jac @ jac.T + damping * np.eye(6), err)
            norm = float(np.linalg.norm(step))
            if norm > 0.5:  # keep each iterate local; long jumps make DLS wander between branches
                step *= 0.5 / norm
            q = q + step
            if lo is not None and hi is not None:
                q = np.clip(q, lo, hi)
        return IkResult(False, q, pos_err, rot_err, max_iterations)
