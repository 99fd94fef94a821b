"""Calibration YAML: parsing, validation errors, scaling, and the render/projection agreement."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from craik_sim.calibration import (
    CalibrationError,
    calibration_from_dict,
    default_calibration_path,
    load_calibration,
    look_at_optical,
    save_calibration,
)
from craik_sim.scene import validate_camera_in_scene


@pytest.fixture
def calibration():
    return load_calibration(default_calibration_path())


def test_default_calibration_is_a_d435(calibration):
    k = calibration.intrinsics
    assert (k.width, k.height) == (640, 480)
    assert k.fx == pytest.approx(615.0) and k.fy == pytest.approx(615.0)
    assert calibration.parent_frame == 'fr3_link0'
    assert calibration.child_frame == 'camera_color_optical_frame'
    r = calibration.rotation_matrix
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-5)
    # The optical axis points at the workspace (down and towards the robot).
    assert r[2, 2] < 0 and r[0, 2] < 0


def test_save_load_roundtrip(tmp_path: Path, calibration):
    save_calibration(calibration, tmp_path / 'c.yaml')
    again = load_calibration(tmp_path / 'c.yaml')
    assert again == calibration


def test_scaled_intrinsics_keep_the_rays(calibration):
    small = calibration.scaled(64, 64)
    k = small.intrinsics
    assert k.fx == pytest.approx(61.5) and k.fy == pytest.approx(615.0 * 64 / 480)
    point = np.array([[0.5, 0.1, 0.05]])
    u_big, v_big = calibration.project(point)[0]
    u_small, v_small = small.project(point)[0]
    assert (u_small + 0.5) == pytest.approx((u_big + 0.5) * 64 / 640)
    assert (v_small + 0.5) == pytest.approx((v_big + 0.5) * 64 / 480)


def _mutated(calibration, path, value):
    data = calibration.to_dict()
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize('path, value, message', [
    (('intrinsics', 'fx'), None, 'missing field intrinsics.fx'),
    (('intrinsics', 'fx'), -3.0, 'fx/fy must be > 0'),
    (('intrinsics', 'cx'), 900.0, 'principal point'),
    (('intrinsics', 'width'), 'wide', 'intrinsics.width'),
    (('intrinsics', 'distortion_coeffs'), [0.0, 0.1], 'needs 5 coefficients'),
    (('intrinsics', 'distortion_model'), 'fisheye9', 'distortion_model'),
    (('extrinsics', 'rotation_xyzw'), [0.0, 0.0, 0.0, 2.0], 'not a unit quaternion'),
    (('extrinsics', 'translation'), [1.0, 2.0], 'extrinsics.translation'),
    (('extrinsics',), None, 'missing field extrinsics'),
    (('depth', 'scale'), 0.01, 'does not match depth.units'),
    (('format_version',), 7, 'unsupported format_version'),
])
def test_malformed_calibrations_are_rejected_with_the_field(calibration, path, value, message):
    with pytest.raises(CalibrationError, match=message):
        calibration_from_dict(_mutated(calibration, path, value), 'test.yaml')


def test_unreadable_files(tmp_path: Path):
    with pytest.raises(CalibrationError, match='not found'):
        load_calibration(tmp_path / 'missing.yaml')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('intrinsics: [unclosed\n')
    with pytest.raises(CalibrationError, match='not valid YAML'):
        load_calibration(bad)
    bad.write_text(yaml.safe_dump([1, 2, 3]))
    with pytest.raises(CalibrationError, match='top level must be a mapping'):
        load_calibration(bad)


@pytest.mark.parametrize('position, target, message', [
    ((8.0, 0.0, 1.0), (0.5, 0.0, 0.0), 'outside the simulated lab'),
    ((0.5, 0.0, 1.0), (0.5, 0.3, 2.0), 'behind the camera'),
    ((1.3, 0.35, 0.62), (1.3, -3.0, 0.62), 'does not see the workspace'),
])
def test_cameras_outside_the_scene_are_rejected(calibration, position, target, message):
    cam = calibration.with_pose(np.array(position), look_at_optical(np.array(position),
                                                                    np.array(target)))
    with pytest.raises(CalibrationError, match=message):
        validate_camera_in_scene(cam)
