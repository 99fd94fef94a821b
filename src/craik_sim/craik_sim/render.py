"""Offscreen RGB-D rendering of the calibrated camera (MuJoCo, EGL).

The projection is set from the calibration's intrinsics (fx, fy, cx, cy) rather than MuJoCo's
fovy, so a rendered pixel is exactly where `CameraCalibration.project` puts the 3D point, at any
resolution (640x480 for the node, scaled intrinsics for 64x64 training frames). One render pass
yields both colour and the z-depth along the optical axis (metres), like an aligned RealSense
depth stream.

A renderer owns a GL context that is current on the thread that created it: create and use it on
one thread (the node's render thread, or the fast environment's thread).
"""

from __future__ import annotations

import mujoco
import numpy as np

from craik_sim.calibration import CameraCalibration


class CameraRenderer:
    """Renders RGB (uint8 [H, W, 3]) and depth (float32 [H, W], metres, 0 = no return)."""

    def __init__(self, model: mujoco.MjModel, calibration: CameraCalibration,
                 camera_id: int, shadows: bool = True) -> None:
        k = calibration.intrinsics
        if k.width > model.vis.global_.offwidth or k.height > model.vis.global_.offheight:
            raise ValueError(
                f'render size {k.width}x{k.height} exceeds the model offscreen buffer '
                f'{model.vis.global_.offwidth}x{model.vis.global_.offheight}')
        self.calibration = calibration
        self._model = model
        self._gl: mujoco.GLContext | None = mujoco.GLContext(k.width, k.height)
        self._gl.make_current()
        self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        self._scene = mujoco.MjvScene(model, maxgeom=1000)
        self._option = mujoco.MjvOption()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._camera.fixedcamid = camera_id
        self._viewport = mujoco.MjrRect(0, 0, k.width, k.height)
        self._rgb = np.empty((k.height, k.width, 3), dtype=np.uint8)
        self._depth = np.empty((k.height, k.width), dtype=np.float32)
        self.shadows = shadows

    def render(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        """Render the camera view of `data` (kinematics must be current: mj_kinematics/forward).

        Returns (rgb [H, W, 3] uint8, depth [H, W] float32 metres; 0 where nothing is within
        the calibration's depth range). The arrays are new copies.
        """
        k = self.calibration.intrinsics
        mujoco.mjv_updateScene(self._model, data, self._option, None, self._camera,
                               mujoco.mjtCatBit.mjCAT_ALL, self._scene)
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self.shadows
        near = self._scene.camera[0].frustum_near
        far = self._scene.camera[0].frustum_far
        # Pinhole frustum at the near plane; the image spans pixel edges -0.5 .. W-0.5.
        left = (-0.5 - k.cx) / k.fx * near
        right = (k.width - 0.5 - k.cx) / k.fx * near
        top = (k.cy + 0.5) / k.fy * near
        bottom = -(k.height - 0.5 - k.cy) / k.fy * near
        for cam in self._scene.camera:
            cam.frustum_center = (left + right) / 2
            cam.frustum_width = (right - left) / 2
            cam.frustum_bottom = bottom
            cam.frustum_top = top
            cam.orthographic = 0
        mujoco.mjr_render(self._viewport, self._scene, self._context)
        mujoco.mjr_readPixels(self._rgb, self._depth, self._viewport, self._context)
        rgb = np.flipud(self._rgb).copy()
        z_buffer = np.flipud(self._depth)
        depth = (near / (1.0 - z_buffer * (1.0 - near / far))).astype(np.float32)
        depth[(depth < self.calibration.depth_min_m) | (depth > self.calibration.depth_max_m)] = 0
        return rgb, depth

    def close(self) -> None:
        """Release the GL context (idempotent)."""
        if self._gl is not None:
            self._context.free()
            self._gl.free()
            self._gl = None

    def __enter__(self) -> CameraRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def depth_to_millimetres(depth_m: np.ndarray) -> np.ndarray:
    """float metres [H, W] -> uint16 millimetres (RealSense 16UC1); 0 stays 0 (no return)."""
    return np.clip(np.rint(depth_m * 1000.0), 0, 65535).astype(np.uint16)
