"""numpy <-> sensor_msgs conversions through rclpy's real serialisation (no DDS)."""

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image

from craik_perception.image_conversion import (
    ImageSizeError,
    Intrinsics,
    UnsupportedEncodingError,
    camera_info_from_intrinsics,
)
from craik_perception.ros_image import (
    camera_info_fields,
    camera_info_message,
    fill_image,
    image_to_array,
    stamp_to_ns,
    to_image,
)


def _wire(msg, msg_type):
    return deserialize_message(serialize_message(msg), msg_type)


@pytest.mark.parametrize('encoding, array', [
    ('rgb8', np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)),
    ('16UC1', np.random.default_rng(1).integers(0, 65535, (48, 64), dtype=np.uint16)),
])
def test_images_survive_the_wire(encoding, array):
    msg = to_image(array, encoding, 'camera_color_optical_frame', 1_700_000_000_123_456_789)
    received = _wire(msg, Image)
    assert received.encoding == encoding
    assert (received.width, received.height) == (64, 48)
    assert received.step == 64 * array.itemsize * (3 if array.ndim == 3 else 1)
    assert received.header.frame_id == 'camera_color_optical_frame'
    assert stamp_to_ns(received.header.stamp) == 1_700_000_000_123_456_789
    np.testing.assert_array_equal(image_to_array(received, [encoding]), array)


def test_a_reused_message_takes_the_new_frame():
    msg = Image()
    fill_image(msg, np.zeros((2, 3, 3), np.uint8), 'rgb8', 'f', 1)
    fill_image(msg, np.full((4, 5), 7, np.uint16), '16UC1', 'g', 2)
    received = _wire(msg, Image)
    assert (received.width, received.height, received.encoding) == (5, 4, '16UC1')
    assert np.all(image_to_array(received) == 7)


def test_non_contiguous_arrays_are_published_correctly():
    array = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)[:, ::2]
    received = _wire(to_image(array, 'rgb8', 'f', 0), Image)
    np.testing.assert_array_equal(image_to_array(received), array)


def test_received_images_are_validated():
    bad = Image(width=4, height=2, encoding='rgb8', step=12)
    bad.data = bytes(23)
    with pytest.raises(ImageSizeError):
        image_to_array(bad)
    good = Image(width=4, height=2, encoding='bgr8', step=12)
    good.data = bytes(24)
    with pytest.raises(UnsupportedEncodingError, match='expected rgb8'):
        image_to_array(good, ['rgb8'])


def test_camera_info_round_trip():
    fields = camera_info_from_intrinsics(
        Intrinsics(640, 480, 615.0, 616.0, 320.5, 240.5, 'brown_conrady',
                   (0.1, -0.2, 0.0, 0.001, 0.03)))
    received = _wire(camera_info_message(fields, 'camera_color_optical_frame', 5), CameraInfo)
    assert received.header.frame_id == 'camera_color_optical_frame'
    back = camera_info_fields(received)
    assert back.distortion_model == 'plumb_bob'
    assert back.d == pytest.approx(fields.d)
    assert back.k == pytest.approx(fields.k) and back.p == pytest.approx(fields.p)
    assert back.r == pytest.approx(fields.r)
