"""Preprocessing: resizing, depth units, and explicit rejection of bad input."""

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from craik_world_model.config import get_preset
from craik_world_model.observation import (
    ObservationError,
    depth_frames_to_model,
    gripper_from_width,
    prepare_observation,
    proprio_to_model,
    rgb_frames_to_model,
)

CFG = get_preset('cpu').model  # 64x64


def test_rgb8_camera_frame_is_resized_to_model_input():
    rgb = np.zeros((480, 640, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    out = rgb_frames_to_model(rgb, CFG)
    assert out.shape == (3, 64, 64) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], 1.0)
    np.testing.assert_allclose(out[1:], 0.0)


def test_model_sized_frames_pass_unchanged():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    out = rgb_frames_to_model(rgb, CFG)
    np.testing.assert_allclose(out, rgb.transpose(0, 3, 1, 2) / 255.0, atol=1e-6)


@pytest.mark.parametrize('frame, message', [
    (np.zeros((480, 640, 4), np.uint8), 'rgba'),
    (np.zeros((3, 480, 640), np.uint8), 'channel-first'),
    (np.zeros((480, 640), np.uint8), 'single-channel'),
    (np.zeros((480, 640, 3), np.uint16), 'dtype'),
    (np.full((480, 640, 3), 2.0, np.float32), r'\[0, 1\]'),
    (np.zeros((32, 32, 3), np.uint8), 'smaller than the model input'),
    (np.zeros((100, 640, 3), np.uint8), 'aspect'),
])
def test_bad_rgb_is_rejected_with_a_reason(frame, message):
    with pytest.raises(ObservationError, match=message):
        rgb_frames_to_model(frame, CFG)


def test_nan_rgb_is_rejected():
    frame = np.zeros((480, 640, 3), np.float32)
    frame[5, 5, 1] = np.nan
    with pytest.raises(ObservationError, match='NaN'):
        rgb_frames_to_model(frame, CFG)


def test_depth_millimetres_become_metres_and_holes_stay_holes():
    depth = np.full((480, 640), 1500, dtype=np.uint16)
    depth[:, :320] = 0      # left half: no return
    out = depth_frames_to_model(depth, CFG)
    assert out.shape == (1, 64, 64)
    np.testing.assert_allclose(out[0, :, 33:], 1.5, rtol=1e-6)
    np.testing.assert_allclose(out[0, :, :31], 0.0)


def test_sparse_holes_do_not_pull_depth_towards_zero():
    depth = np.full((480, 640), 800, dtype=np.uint16)
    depth[::3, ::3] = 0      # 1 in 9 pixels missing
    out = depth_frames_to_model(depth, CFG)
    np.testing.assert_allclose(out, 0.8, rtol=1e-5)


@pytest.mark.parametrize('depth, units, message', [
    (np.zeros((480, 640), np.float32), 'mm', 'uint16'),
    (np.zeros((480, 640), np.uint16), 'm', 'millimetres'),
    (np.full((480, 640), -1.0, np.float32), 'm', 'negative'),
    (np.full((480, 640), np.nan, np.float32), 'm', 'NaN'),
    (np.zeros((480, 640, 3), np.uint16), 'mm', 'single-channel'),
    (np.zeros((480, 640), np.uint16), 'inches', 'units'),
])
def test_bad_depth_is_rejected(depth, units, message):
    with pytest.raises(ObservationError, match=message):
        depth_frames_to_model(depth, CFG, units)


def test_depth_must_be_aligned_with_colour():
    with pytest.raises(ObservationError, match='aligned'):
        prepare_observation(np.zeros((480, 640, 3), np.uint8), np.zeros((240, 320), np.uint16),
                            np.zeros(4), CFG)


def test_goal_without_depth_or_proprio():
    rgb, depth, proprio = prepare_observation(np.zeros((480, 640, 3), np.uint8), None, None, CFG)
    assert rgb.shape == (1, 3, 64, 64)
    assert depth.shape == (1, 1, 64, 64) and not depth.any()
    assert proprio.shape == (1, 4) and not proprio.any()


@pytest.mark.parametrize('proprio, message', [
    (np.zeros(3), 'shape'), (np.array([0.5, 0.0, np.nan, 0.0]), 'NaN'),
])
def test_bad_proprio_is_rejected(proprio, message):
    with pytest.raises(ObservationError, match=message):
        proprio_to_model(proprio, CFG)


def test_gripper_convention():
    np.testing.assert_allclose(gripper_from_width([0.08, 0.04, 0.0, 0.1]), [0.0, 0.5, 1.0, 0.0])


@settings(max_examples=25, deadline=None)
@given(h=st.integers(64, 200), w=st.integers(64, 300), value=st.integers(0, 255),
       mm=st.integers(1, 60000))
def test_constant_frames_keep_their_value_at_any_size(h, w, value, mm):
    if not 0.5 <= w / h <= 2.0:
        return
    rgb = np.full((h, w, 3), value, np.uint8)
    out = rgb_frames_to_model(rgb, CFG)
    np.testing.assert_allclose(out, value / 255.0, atol=1e-5)
    depth = depth_frames_to_model(np.full((h, w), mm, np.uint16), CFG)
    np.testing.assert_allclose(depth, mm / 1000.0, rtol=1e-5)
