"""A stand-in for franky.Robot / franky.Gripper that records every motion it is given.

It speaks the subset of franky's API that RobotSession uses, teleports to each commanded pose
(solving IK so that the joint state stays consistent) and can pretend to move at any commanded
velocity, so that tests can check what would have reached a real robot. Faults can be injected:
an exception for the next move / join_motion / state read, and error flags in the state.
"""

from __future__ import annotations

from dataclasses import dataclass
import time
from types import SimpleNamespace

import franky
import numpy as np

from craik_franka.kinematics import HELD_ORIENTATION_XYZW, HOME_JOINT_POSITIONS, Fr3Kinematics


@dataclass
class RecordedMove:
    translation: np.ndarray  # [3]
    quaternion: np.ndarray  # [4] x y z w
    reference_type: object
    relative_dynamics_factor: float
    global_factor: float


class _Limit:
    def __init__(self) -> None:
        self.value: object = None

    def set(self, value: object) -> None:
        self.value = value


class FakeRobot:
    """Records motions; the arm jumps to each target (a motion 'finishes' at once)."""

    kin = Fr3Kinematics()

    def __init__(self, hostname: str, **kwargs: object) -> None:
        self.hostname = hostname
        self.kwargs = kwargs
        self.moves: list[RecordedMove] = []
        self.q = np.array(HOME_JOINT_POSITIONS)
        self.commanded_velocity = np.zeros(3)
        self.relative_dynamics_factor = 1.0
        self.collision_behavior: tuple = ()
        self.stops = 0
        # Injected faults: raised once by the next call of that kind, then cleared.
        self.fail_move: Exception | None = None
        self.fail_join: Exception | None = None
        self.fail_state: Exception | None = None
        self.current_errors = '[]'
        self.robot_mode = franky.RobotMode.Idle
        for name in ('translation', 'rotation', 'elbow'):
            for kind in ('velocity', 'acceleration', 'jerk'):
                setattr(self, f'{name}_{kind}_limit', _Limit())

    def set_collision_behavior(self, *args: object) -> None:
        self.collision_behavior = args

    @staticmethod
    def _raise(error: Exception | None) -> None:
        if error is not None:
            raise error

    def move(self, motion: franky.CartesianMotion, asynchronous: bool = False) -> None:
        error, self.fail_move = self.fail_move, None
        self._raise(error)
        pose = motion.target.pose.end_effector_pose
        move = RecordedMove(np.array(pose.translation), np.array(pose.quaternion),
                            motion.reference_type, motion.relative_dynamics_factor.velocity,
                            float(self.relative_dynamics_factor))
        self.moves.append(move)
        rotation = self.kin.fk(self.q)[1]
        sol = self.kin.ik(move.translation, rotation, self.q, margin=None)
        if sol.success:
            self.q = sol.q

    def join_motion(self, timeout: float | None = None) -> bool:
        error, self.fail_join = self.fail_join, None
        self._raise(error)
        return True

    def stop(self) -> None:
        self.stops += 1

    def recover_from_errors(self) -> bool:
        self.current_errors = '[]'
        self.robot_mode = franky.RobotMode.Idle
        return True

    @property
    def state(self) -> SimpleNamespace:
        error, self.fail_state = self.fail_state, None
        self._raise(error)
        position, rotation = self.kin.fk(self.q)
        from craik_franka.kinematics import matrix_to_quaternion
        pose = franky.Affine(position, matrix_to_quaternion(rotation))
        return SimpleNamespace(
            q=self.q.copy(), dq=np.zeros(7), O_T_EE=pose, O_T_EE_d=pose,
            O_dP_EE_d=franky.Twist(self.commanded_velocity, np.zeros(3)),
            time=SimpleNamespace(to_sec=time.monotonic), robot_mode=self.robot_mode,
            current_errors=self.current_errors, last_motion_errors='[]',
            F_T_EE=franky.Affine(self.kin.flange_to_tcp()))


class FakeGripper:
    def __init__(self, hostname: str) -> None:
        self.width = 0.08
        self.commands: list[tuple[str, float]] = []

    def _done(self) -> SimpleNamespace:
        return SimpleNamespace(wait=lambda timeout=None: True, get=lambda: True)

    def move_async(self, width: float, speed: float) -> SimpleNamespace:
        self.commands.append(('move', width))
        self.width = width
        return self._done()

    def grasp_async(self, width: float, speed: float, force: float, epsilon_inner: float,
                    epsilon_outer: float) -> SimpleNamespace:
        self.commands.append(('grasp', width))
        self.width = width
        return self._done()


HELD = np.array(HELD_ORIENTATION_XYZW)
