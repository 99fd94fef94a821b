"""Image decoding/encoding with specific errors, CameraInfo fields, depth units (no ROS)."""

import array

import numpy as np
import pytest

from craik_perception.image_conversion import (
    ENCODINGS,
    ImageDecodeError,
    ImageShapeError,
    ImageSizeError,
    ImageStepError,
    Intrinsics,
    UnsupportedDistortionError,
    UnsupportedEncodingError,
    bytes_per_pixel,
    camera_info_from_intrinsics,
    decode_image,
    depth_to_millimetres,
    encode_image,
)


def test_rgb8_round_trip_is_a_view():
    img = np.random.default_rng(0).integers(0, 255, (4, 5, 3), dtype=np.uint8)
    buf = encode_image(img, 'rgb8')
    assert (buf.width, buf.height, buf.step, buf.is_bigendian) == (5, 4, 15, 0)
    assert buf.data is img
    data = array.array('B', buf.data.tobytes())          # what rclpy hands a subscriber
    out = decode_image('rgb8', 5, 4, 15, data)
    np.testing.assert_array_equal(out, img)
    assert not out.flags['OWNDATA']


@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
def test_every_encoding_round_trips(encoding):
    dtype, channels = ENCODINGS[encoding]
    shape = (3, 7) if channels == 1 else (3, 7, channels)
    img = (np.arange(np.prod(shape)) % 200).astype(dtype).reshape(shape)
    buf = encode_image(img, encoding)
    assert bytes_per_pixel(encoding) * 7 == buf.step
    out = decode_image(encoding, buf.width, buf.height, buf.step, buf.data.tobytes())
    np.testing.assert_array_equal(out, img)


def test_padded_rows_are_sliced():
    img = np.arange(12, dtype=np.uint16).reshape(3, 4)
    padded = np.zeros((3, 6), np.uint16)
    padded[:, :4] = img
    out = decode_image('16UC1', 4, 3, 12, padded.tobytes())
    np.testing.assert_array_equal(out, img)


def test_big_endian_depth_is_swapped_to_host_order():
    img = np.array([[1, 256, 1000]], dtype=np.uint16)
    out = decode_image('16UC1', 3, 1, 6, img.astype('>u2').tobytes(), is_bigendian=1)
    np.testing.assert_array_equal(out, img)
    assert out.dtype == np.uint16


def test_copy_detaches_from_the_buffer():
    data = bytearray(12)
    out = decode_image('mono8', 4, 3, 4, data, copy=True)
    data[0] = 9
    assert out[0, 0] == 0


def test_unknown_encoding():
    with pytest.raises(UnsupportedEncodingError, match="'yuv422'.*supported: rgb8"):
        decode_image('yuv422', 2, 2, 4, bytes(8))


def test_wrong_encoding_for_the_caller():
    with pytest.raises(UnsupportedEncodingError, match="'bgr8' is not accepted.*expected rgb8"):
        decode_image('bgr8', 2, 2, 6, bytes(12), expected_encodings=['rgb8'])


def test_step_shorter_than_a_row():
    with pytest.raises(ImageStepError, match='step 5 is smaller than a row of 2 rgb8 pixels'):
        decode_image('rgb8', 2, 2, 5, bytes(10))


def test_step_not_a_whole_element():
    with pytest.raises(ImageStepError, match='multiple of the 2-byte'):
        decode_image('16UC1', 2, 2, 5, bytes(10))


def test_data_size_mismatch_says_what_was_expected():
    with pytest.raises(ImageSizeError, match='has 11 bytes.*step \\* height = 12'):
        decode_image('rgb8', 2, 2, 6, bytes(11))


@pytest.mark.parametrize('width, height', [(0, 4), (4, 0), (-1, 2), (20_000, 20_000)])
def test_bad_dimensions(width, height):
    with pytest.raises(ImageShapeError):
        decode_image('mono8', width, height, max(width, 1), bytes(4))


def test_all_decode_errors_are_value_errors():
    assert issubclass(ImageDecodeError, ValueError)
    for cls in (UnsupportedEncodingError, ImageShapeError, ImageStepError, ImageSizeError):
        assert issubclass(cls, ImageDecodeError)


def test_encode_rejects_mismatched_arrays():
    with pytest.raises(ImageShapeError, match='uint16'):
        encode_image(np.zeros((2, 2), np.float32), '16UC1')
    with pytest.raises(ImageShapeError, match=r'\[H, W, 3\]'):
        encode_image(np.zeros((2, 2, 4), np.uint8), 'rgb8')


def test_encode_makes_strided_arrays_contiguous():
    img = np.zeros((4, 8, 3), np.uint8)[:, ::2]
    buf = encode_image(img, 'rgb8')
    assert buf.data.flags['C_CONTIGUOUS'] and buf.step == 12


# --- CameraInfo ------------------------------------------------------------------------------


def _intr(model='none', coeffs=(0.0,) * 5):
    return Intrinsics(640, 480, 615.5, 614.25, 321.0, 239.5, model, coeffs)


def test_pinhole_camera_info():
    info = camera_info_from_intrinsics(_intr())
    assert (info.width, info.height, info.distortion_model) == (640, 480, 'plumb_bob')
    assert info.d == (0.0,) * 5
    assert info.k == (615.5, 0.0, 321.0, 0.0, 614.25, 239.5, 0.0, 0.0, 1.0)
    assert info.p == (615.5, 0.0, 321.0, 0.0, 0.0, 614.25, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert info.r == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert not info.approximate


def test_brown_conrady_is_plumb_bob_exactly():
    coeffs = (0.1, -0.2, 0.001, 0.002, 0.05)
    info = camera_info_from_intrinsics(_intr('brown_conrady', coeffs))
    assert info.distortion_model == 'plumb_bob' and info.d == coeffs and not info.approximate


@pytest.mark.parametrize('model', ['inverse_brown_conrady', 'modified_brown_conrady'])
def test_inverse_and_modified_brown_conrady_map_to_plumb_bob(model):
    zero = camera_info_from_intrinsics(_intr(model))
    assert zero.distortion_model == 'plumb_bob' and not zero.approximate
    info = camera_info_from_intrinsics(_intr(model, (0.1, 0.0, 0.0, 0.0, 0.0)))
    assert info.distortion_model == 'plumb_bob' and info.d[0] == 0.1 and info.approximate


def test_kannala_brandt_is_equidistant_with_four_coefficients():
    info = camera_info_from_intrinsics(_intr('kannala_brandt4', (0.1, 0.2, 0.3, 0.4, 0.0)))
    assert info.distortion_model == 'equidistant'
    assert info.d == (0.1, 0.2, 0.3, 0.4)


def test_ftheta_has_no_ros_model():
    with pytest.raises(UnsupportedDistortionError, match='ftheta'):
        camera_info_from_intrinsics(_intr('ftheta', (0.9, 0, 0, 0, 0)))


def test_intrinsics_are_validated():
    with pytest.raises(ValueError, match='fx/fy'):
        Intrinsics(640, 480, 0.0, 600.0, 320.0, 240.0)
    with pytest.raises(ValueError, match='5 values'):
        Intrinsics(640, 480, 600.0, 600.0, 320.0, 240.0, 'none', (0.0,))


def test_projection_matches_the_pinhole_model():
    px = _intr().project(np.array([[0.0, 0.0, 1.0], [0.1, -0.05, 0.5]]))
    np.testing.assert_allclose(px, [[321.0, 239.5], [321.0 + 123.1, 239.5 - 61.425]])


# --- depth -----------------------------------------------------------------------------------


def test_millimetre_depth_is_passed_through():
    raw = np.array([[0, 1000, 65535]], np.uint16)
    out, clipped = depth_to_millimetres(raw, 0.0010000000474974513)   # float32 0.001
    assert out is raw and clipped == 0


def test_d405_units_are_converted_and_rounded():
    raw = np.array([[0, 5004, 5005, 12345]], np.uint16)     # 0.1 mm units
    out, clipped = depth_to_millimetres(raw, 0.0001)
    np.testing.assert_array_equal(out, [[0, 500, 500, 1234]])
    assert out.dtype == np.uint16 and clipped == 0


def test_depth_beyond_the_range_is_saturated_and_counted():
    raw = np.array([[20000, 40000, 100]], np.uint16)          # 2.5 mm units
    out, clipped = depth_to_millimetres(raw, 0.0025)
    np.testing.assert_array_equal(out, [[50000, 65535, 250]])
    assert clipped == 1


def test_depth_units_must_be_positive_and_data_uint16():
    with pytest.raises(ValueError, match='depth_units'):
        depth_to_millimetres(np.zeros((1, 1), np.uint16), 0.0)
    with pytest.raises(ValueError, match='uint16'):
        depth_to_millimetres(np.zeros((1, 1), np.float32), 0.001)
