"""The camera and the controller for the mapper node test, in a process of their own.

Usage: ``python camera_stand_in.py FRAMES.npz [--timeout-s S]`` with ROS_DOMAIN_ID set.

Publishes each frame of FRAMES.npz (arrays ``rgb [F,H,W,3] uint8``, ``depth_m [F,H,W]``,
``q [F,7]``, ``gripper_width_m [F]``, ``intrinsics [3,3]``) as the camera node and the
franka_controller publish them: colour, aligned depth and camera info (sensor-data QoS) and
/joint_states, and resends a frame until the mapper's cloud is stamped with it (the node stamps
the cloud with its last integrated frame). Exits 0 when every frame was integrated, 1 with the
reason otherwise.

Why a process and not the test's own node: Fast DDS reads its XML profile once per process, when
the first participant is created. In a pytest process where earlier tests created participants,
the camera's large-data profile (a shared-memory segment that holds 640x480 frames) could no
longer take effect and not one frame reached the mapper; a camera is its own process anyway.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2
from std_msgs.msg import Header

from craik_mapping.gaussian_mapper_node import (
    COLOR_INFO_TOPIC,
    COLOR_TOPIC,
    DEPTH_TOPIC,
    GAUSSIANS_TOPIC,
)
from craik_perception.dds_profile import apply_large_data_profile

RESEND_S = 3.0


class CameraStandIn(Node):
    """Publishes recorded frames and watches the mapper's cloud stamps."""

    def __init__(self) -> None:
        super().__init__('mapper_test_camera')
        self.color = self.create_publisher(Image, COLOR_TOPIC, qos_profile_sensor_data)
        self.depth = self.create_publisher(Image, DEPTH_TOPIC, qos_profile_sensor_data)
        self.info = self.create_publisher(CameraInfo, COLOR_INFO_TOPIC, qos_profile_sensor_data)
        self.joints = self.create_publisher(
            JointState, '/joint_states', QoSProfile(depth=50,
                                                    reliability=ReliabilityPolicy.RELIABLE))
        self.last_cloud_stamp = None
        self.create_subscription(PointCloud2, GAUSSIANS_TOPIC, self._on_cloud, 1)

    def _on_cloud(self, cloud: PointCloud2) -> None:
        self.last_cloud_stamp = cloud.header.stamp

    def publish(self, rgb: np.ndarray, depth_m: np.ndarray, q: np.ndarray, width_m: float,
                intrinsics: np.ndarray) -> object:
        """Publish one frame; returns its stamp."""
        header = Header(stamp=self.get_clock().now().to_msg(),
                        frame_id='camera_color_optical_frame')
        h, w = depth_m.shape
        self.joints.publish(JointState(
            header=header,
            name=[f'fr3_joint{i}' for i in range(1, 8)] + ['fr3_finger_joint1',
                                                           'fr3_finger_joint2'],
            position=[float(v) for v in q] + [float(width_m) / 2] * 2))
        self.info.publish(CameraInfo(header=header, width=w, height=h,
                                     k=[float(v) for v in intrinsics.ravel()]))
        self.color.publish(Image(header=header, height=h, width=w, encoding='rgb8',
                                 step=3 * w, data=rgb.tobytes()))
        depth_mm = np.clip(np.rint(depth_m * 1000), 0, 65535).astype(np.uint16)
        self.depth.publish(Image(header=header, height=h, width=w, encoding='16UC1',
                                 step=2 * w, data=depth_mm.tobytes()))
        return header.stamp

    def integrate(self, frame: dict[str, np.ndarray], intrinsics: np.ndarray,
                  deadline: float) -> bool:
        """Publish ``frame`` until the cloud carries its stamp; False at ``deadline``."""
        while time.monotonic() < deadline:
            stamp = self.publish(frame['rgb'], frame['depth_m'], frame['q'],
                                 float(frame['gripper_width_m']), intrinsics)
            resend = time.monotonic() + RESEND_S
            while time.monotonic() < resend:
                rclpy.spin_once(self, timeout_sec=0.05)
                if self.last_cloud_stamp == stamp:
                    return True
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('frames', help='.npz with rgb, depth_m, q, gripper_width_m, intrinsics')
    parser.add_argument('--timeout-s', type=float, default=60.0, help='per frame')
    args = parser.parse_args()
    with np.load(args.frames, allow_pickle=False) as data:
        recording = {name: data[name] for name in data.files}
    print(apply_large_data_profile(os.environ), flush=True)
    rclpy.init()
    node = CameraStandIn()
    try:
        count = len(recording['rgb'])
        for i in range(count):
            frame = {name: recording[name][i] for name in
                     ('rgb', 'depth_m', 'q', 'gripper_width_m')}
            if not node.integrate(frame, recording['intrinsics'],
                                  time.monotonic() + args.timeout_s):
                print(f'frame {i + 1}/{count} was not integrated within {args.timeout_s} s',
                      flush=True)
                return 1
            print(f'frame {i + 1}/{count} integrated', flush=True)
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main())
