"""Inverse kinematics of the FR3 TCP on the MuJoCo scene model (damped least squares).

Uses a private MjData so that solving never touches a running simulation's state. The solver is
the same scheme franky-sim uses for Cartesian commands (damped pseudo-inverse, LOCAL error),
warm-started from a given configuration, with joint limits respected.
"""

from __future__ import annotations

import mujoco
import numpy as np

from craik_sim.scene import SceneHandles


class IKError(ValueError):
    """The target pose is not reachable (the message gives the residual)."""


class TcpIK:
    """Damped least-squares IK for the TCP site, position + orientation."""

    def __init__(self, model: mujoco.MjModel, handles: SceneHandles, damping: float = 1e-4):
        self._model = model
        self._data = mujoco.MjData(model)
        self._h = handles
        self._damping = damping
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        joint_ids = [int(model.dof_jntid[d]) for d in handles.arm_dof]
        self._lower = model.jnt_range[joint_ids, 0]
        self._upper = model.jnt_range[joint_ids, 1]

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP position [3] and rotation [3, 3] at arm configuration q [7]."""
        self._data.qpos[self._h.arm_qpos] = q
        mujoco.mj_kinematics(self._model, self._data)
        return (self._data.site_xpos[self._h.tcp_site].copy(),
                self._data.site_xmat[self._h.tcp_site].reshape(3, 3).copy())

    def solve(self, target_pos: np.ndarray, target_rot: np.ndarray, q0: np.ndarray,
              iterations: int = 50, tolerance: float = 1e-5) -> tuple[np.ndarray, float]:
        """Joint configuration [7] reaching the pose, and the final error norm (m + rad)."""
        m, d, h = self._model, self._data, self._h
        q = np.array(q0, dtype=float)
        err_norm = np.inf
        for _ in range(iterations):
            d.qpos[h.arm_qpos] = q
            mujoco.mj_kinematics(m, d)
            pos = d.site_xpos[h.tcp_site]
            rot = d.site_xmat[h.tcp_site].reshape(3, 3)
            err_pos = target_pos - pos
            err_rot_mat = target_rot @ rot.T
            err_rot = 0.5 * np.array([err_rot_mat[2, 1] - err_rot_mat[1, 2],
                                      err_rot_mat[0, 2] - err_rot_mat[2, 0],
                                      err_rot_mat[1, 0] - err_rot_mat[0, 1]])
            err = np.concatenate([err_pos, err_rot])
            err_norm = float(np.linalg.norm(err))
            if err_norm < tolerance:
                break
            mujoco.mj_comPos(m, d)
            mujoco.mj_jacSite(m, d, self._jacp, self._jacr, h.tcp_site)
            jac = np.vstack([self._jacp[:, h.arm_dof], self._jacr[:, h.arm_dof]])  # [6, 7]
            dq = jac.T @ np.linalg.solve(jac @ jac.T + self._damping * np.eye(6), err)
            q = np.clip(q + dq, self._lower, self._upper)
        return q, err_norm

    def track(self, target_pos: np.ndarray, target_rot: np.ndarray,
              q: np.ndarray) -> np.ndarray:
        """One damped least-squares step from q towards the pose (for waypoints that move a few
        millimetres per call: warm-started, one step keeps the residual at micrometres)."""
        m, d, h = self._model, self._data, self._h
        d.qpos[h.arm_qpos] = q
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        rot = d.site_xmat[h.tcp_site].reshape(3, 3)
        e = target_rot @ rot.T
        err = np.array([*(target_pos - d.site_xpos[h.tcp_site]), 0.5 * (e[2, 1] - e[1, 2]),
                        0.5 * (e[0, 2] - e[2, 0]), 0.5 * (e[1, 0] - e[0, 1])])
        mujoco.mj_jacSite(m, d, self._jacp, self._jacr, h.tcp_site)
        jac = np.vstack([self._jacp[:, h.arm_dof], self._jacr[:, h.arm_dof]])  # [6, 7]
        dq = jac.T @ np.linalg.solve(jac @ jac.T + self._damping * np.eye(6), err)
        return np.clip(q + dq, self._lower, self._upper)

    def solve_or_raise(self, target_pos: np.ndarray, target_rot: np.ndarray, q0: np.ndarray,
                       max_error: float = 1e-3) -> np.ndarray:
        """Like solve(), but raises IKError when the pose is not reached within max_error."""
        q, err = self.solve(target_pos, target_rot, q0, iterations=200)
        if err > max_error:
            raise IKError(f'TCP pose {np.round(target_pos, 3).tolist()} not reachable '
                          f'(residual {err:.4f})')
        return q
