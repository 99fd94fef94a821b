"""A real RealSense camera (lab robot only: pytest --hardware src/craik_perception)."""

import numpy as np
import pytest

from craik_perception.pipeline import RealSenseSource, list_cameras
from craik_perception.profiles import RealSenseConfig

pytestmark = pytest.mark.hardware


def test_live_camera_streams_aligned_frames():
    cameras = list_cameras()
    assert cameras, 'no RealSense camera connected'
    config = RealSenseConfig(serial_no=cameras[0].serial)
    with RealSenseSource(config) as source:
        info = source.info
        assert info is not None and not info.device.is_playback
        numbers = []
        for _ in range(60):
            bundle = source.read(5.0)
            numbers.append(bundle.color_frame_number)
            assert bundle.color.shape == (480, 640, 3) and bundle.color.dtype == np.uint8
            assert bundle.depth.shape == (480, 640) and bundle.depth.dtype == np.uint16
        assert numbers == sorted(numbers)
        assert np.count_nonzero(bundle.depth) > 0.3 * bundle.depth.size
