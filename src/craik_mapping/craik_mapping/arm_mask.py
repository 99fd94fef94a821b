"""Which pixels of a frame are the robot: its kinematic model at the measured joint positions,
seen through the calibrated camera.

The FR3 and its hand are modelled as capsules around the links (craik_world_model's
``ArmModel``, from the URDF's kinematics). A pixel is the robot when the point its depth
back-projects to lies within a capsule (plus a margin), or when it lies within ``dilate_px`` of
such a pixel: depth at a silhouette mixes arm and background ("flying pixels"), and those points
must not become scene either.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage
import torch

from craik_mapping.gaussian_map import GaussianMap, MappingError, check_camera
from craik_world_model.object_state import ArmModel, Capsule, points_in_capsules


class RobotShape:
    """The FR3's volume as capsules in its links' frames, for masking it out of the map.

    craik_world_model's ``ArmModel`` capsules run along the lines between joint origins, which
    the FR3's actuator housings stand well off (the shoulder's reaches 19 cm off its joint
    axis). These were fitted to the FR3 meshes (franky-sim's MJCF, whose body frames are the
    URDF's link frames): three capsules per link, each enclosing every vertex of its part, plus
    ArmModel's finger capsules, which follow the gripper opening. The mapping tests check that
    every mesh vertex of the simulated FR3 lies inside them along a push.
    """

    # (frame, a [3], b [3] in the frame, radius), metres.
    LINK_CAPSULES = (
        ('fr3_link0', (0.009, 0.053, 0.06), (0.025, 0.033, 0.091), 0.115),
        ('fr3_link0', (-0.101, 0.008, 0.044), (-0.082, 0.016, 0.076), 0.104),
        ('fr3_link0', (-0.02, -0.076, -0.005), (-0.022, -0.039, 0.148), 0.097),
        ('fr3_link1', (0.008, -0.124, -0.032), (-0.02, -0.035, 0.08), 0.082),
        ('fr3_link1', (0.0, 0.006, -0.139), (0.001, -0.017, -0.158), 0.075),
        ('fr3_link1', (-0.055, -0.025, -0.062), (0.056, -0.024, -0.061), 0.099),
        ('fr3_link2', (-0.02, 0.081, 0.04), (0.01, -0.036, 0.124), 0.079),
        ('fr3_link2', (-0.056, -0.063, 0.025), (0.057, -0.06, 0.024), 0.105),
        ('fr3_link2', (0.001, -0.14, -0.005), (0.002, -0.157, 0.018), 0.077),
        ('fr3_link3', (0.033, 0.016, 0.038), (-0.046, -0.032, -0.123), 0.083),
        ('fr3_link3', (0.084, 0.078, 0.01), (0.094, 0.078, 0.004), 0.094),
        ('fr3_link3', (0.048, 0.037, -0.059), (0.055, 0.024, -0.072), 0.1),
        ('fr3_link4', (-0.049, -0.035, 0.017), (-0.129, 0.122, -0.032), 0.083),
        ('fr3_link4', (-0.001, -0.009, 0.078), (0.009, -0.004, 0.078), 0.094),
        ('fr3_link4', (-0.034, 0.062, 0.037), (-0.029, 0.071, 0.026), 0.102),
        ('fr3_link5', (-0.002, 0.088, -0.129), (0.001, 0.066, -0.185), 0.061),
        ('fr3_link5', (-0.005, -0.006, -0.221), (0.006, -0.007, -0.221), 0.075),
        ('fr3_link5', (0.001, 0.102, 0.053), (-0.002, 0.093, -0.09), 0.098),
        ('fr3_link6', (0.092, 0.064, 0.001), (0.065, 0.065, 0.002), 0.062),
        ('fr3_link6', (0.075, -0.023, 0.015), (0.089, -0.021, -0.004), 0.064),
        ('fr3_link6', (0.013, 0.064, 0.025), (-0.017, -0.043, 0.037), 0.066),
        ('fr3_link7', (-0.046, 0.017, 0.091), (0.015, -0.047, 0.091), 0.048),
        ('fr3_link7', (0.036, -0.008, 0.081), (0.059, 0.033, 0.085), 0.041),
        ('fr3_link7', (-0.006, 0.038, 0.081), (0.03, 0.06, 0.086), 0.041),
        ('fr3_hand', (0.002, -0.003, -0.01), (-0.001, 0.108, 0.043), 0.073),
        ('fr3_hand', (0.0, -0.077, 0.017), (0.0, -0.07, 0.009), 0.078),
    )

    def __init__(self) -> None:
        self.arm = ArmModel()
        model = self.arm._model
        self._frames = {row[0]: model.getFrameId(row[0]) for row in self.LINK_CAPSULES}

    def capsules(self, q: np.ndarray, gripper_width_m: float) -> list[Capsule]:
        """Capsules in fr3_link0 at joint positions ``q [7]`` and the gripper opening."""
        arm = self.arm.capsules(q, gripper_width_m)  # also places the frames for ``q``
        data = self.arm._data
        out = arm[-2:]  # the fingers, at the measured opening
        for name, a, b, radius in self.LINK_CAPSULES:
            placement = data.oMf[self._frames[name]]
            rot, origin = np.array(placement.rotation), np.array(placement.translation)
            out.append(Capsule(origin + rot @ np.asarray(a), origin + rot @ np.asarray(b),
                               radius))
        return out


def arm_pixel_mask(depth_m: npt.ArrayLike, intrinsics: npt.ArrayLike,
                   world_from_camera: npt.ArrayLike, capsules: list[Capsule],
                   margin_m: float = 0.02, dilate_px: int = 2) -> npt.NDArray[np.bool_]:
    """``[H, W]`` bool: True where the pixel sees the robot (``capsules`` in the world frame of
    ``world_from_camera``; depth in metres, 0 = no return)."""
    depth = np.asarray(depth_m)
    if depth.ndim != 2 or depth.dtype.kind != 'f':
        raise MappingError(f'depth must be a [H, W] float image in metres, got {depth.shape} '
                           f'{depth.dtype}')
    if not (np.isfinite(margin_m) and 0.0 <= margin_m <= 0.2):
        raise MappingError(f'margin_m must be in [0, 0.2] m, got {margin_m}')
    if not 0 <= dilate_px <= 32:
        raise MappingError(f'dilate_px must be in 0..32, got {dilate_px}')
    h, w = depth.shape
    k, t = check_camera(intrinsics, world_from_camera, w, h)
    mask = np.zeros((h, w), dtype=bool)
    rows, cols = np.nonzero(np.isfinite(depth) & (depth > 0))
    if rows.size == 0 or not capsules:
        return mask
    z = depth[rows, cols].astype(np.float64)
    cam = np.stack([(cols + 0.5 - k[0, 2]) / k[0, 0] * z, (rows + 0.5 - k[1, 2]) / k[1, 1] * z,
                    z], axis=1)
    points = cam @ t[:3, :3].T + t[:3, 3]
    inside = points_in_capsules(points, capsules, margin_m)
    mask[rows[inside], cols[inside]] = True
    if dilate_px > 0 and mask.any():
        mask = ndimage.binary_dilation(mask, iterations=dilate_px)
    return mask


def remove_robot(gmap: GaussianMap, capsules: list[Capsule], margin_m: float = 0.0) -> int:
    """Remove the map's Gaussians inside the robot's ``capsules`` (+ ``margin_m``): where the
    arm is now, nothing else can be. Returns how many were removed."""
    if len(gmap) == 0 or not capsules:
        return 0
    means = gmap.means.detach().cpu().numpy().astype(np.float64)
    inside = points_in_capsules(means, capsules, margin_m)
    return gmap.remove(torch.from_numpy(inside).to(gmap.device))
