"""Stream profile requests and their validation against offered profiles (no camera, no ROS)."""

import pytest

from craik_perception.profiles import (
    COLOR_FORMATS,
    FilterConfig,
    OfferedProfile,
    ProfileNotSupportedError,
    RealSenseConfig,
    StreamProfile,
    select_profile,
)

D435_COLOR = [OfferedProfile('color', w, h, fps, fmt)
              for (w, h) in ((1920, 1080), (1280, 720), (640, 480), (424, 240))
              for fps in (6, 15, 30) for fmt in ('rgb8', 'bgr8', 'yuyv')]
D435_DEPTH = [OfferedProfile('depth', w, h, fps, 'z16')
              for (w, h) in ((1280, 720), (848, 480), (640, 480)) for fps in (6, 15, 30, 90)]
OFFERED = D435_COLOR + D435_DEPTH


@pytest.mark.parametrize('text', ['640,480,30', '640x480x30', ' 640, 480, 30 ', '640 480 30'])
def test_profile_parses_driver_syntax(text):
    assert StreamProfile.parse(text) == StreamProfile(640, 480, 30)


@pytest.mark.parametrize('text', ['640,480', '640,480,30,1', 'a,b,c', '640,-480,30', ''])
def test_bad_profile_text_names_the_parameter(text):
    with pytest.raises(ValueError, match='rgb_camera.color_profile'):
        StreamProfile.parse(text, 'rgb_camera.color_profile')


def test_profile_fields_are_validated():
    with pytest.raises(ValueError, match='fps'):
        StreamProfile(640, 480, -1)
    with pytest.raises(ValueError, match='width'):
        StreamProfile(True, 480, 30)   # type: ignore[arg-type]


def test_select_prefers_rgb8_among_formats():
    chosen = select_profile('color', StreamProfile(1280, 720, 15), OFFERED, COLOR_FORMATS)
    assert chosen == OfferedProfile('color', 1280, 720, 15, 'rgb8')


def test_select_takes_bgr8_when_it_is_all_there_is():
    offered = [OfferedProfile('color', 640, 480, 30, 'bgr8')]
    assert select_profile('color', StreamProfile(), offered, COLOR_FORMATS).format == 'bgr8'


def test_wildcards_take_the_profile_closest_to_640x480_at_30():
    chosen = select_profile('depth', StreamProfile(0, 0, 0), OFFERED, ('z16',))
    assert (chosen.width, chosen.height, chosen.fps) == (640, 480, 30)
    chosen = select_profile('depth', StreamProfile(848, 480, 0), OFFERED, ('z16',))
    assert (chosen.width, chosen.fps) == (848, 30)


def test_missing_profile_lists_what_is_supported():
    with pytest.raises(ProfileNotSupportedError) as err:
        select_profile('depth', StreamProfile(640, 480, 60), OFFERED, ('z16',),
                       source='camera D435 123')
    text = str(err.value)
    assert 'depth profile 640x480@60 is not offered by camera D435 123' in text
    for item in ('1280x720@30 (z16)', '848x480@90 (z16)', '640x480@6 (z16)'):
        assert item in text
    assert 'rgb8' not in text      # only the stream asked about


def test_unusable_format_is_explained():
    offered = [OfferedProfile('color', 640, 480, 30, 'yuyv')]
    with pytest.raises(ProfileNotSupportedError, match='none in a usable format'):
        select_profile('color', StreamProfile(), offered, COLOR_FORMATS)


def test_config_defaults_are_valid_and_live():
    cfg = RealSenseConfig()
    assert not cfg.is_playback
    assert cfg.describe_source() == 'the first RealSense camera'
    assert cfg.filters.enabled == ()


@pytest.mark.parametrize('kwargs, field', [
    ({'serial_no': '123', 'rosbag_filename': 'a.bag'}, 'exclusive'),
    ({'serial_no': '12 34'}, 'serial_no'),
    ({'rosbag_filename': 'capture.mp4'}, 'rosbag_filename'),
    ({'depth_units': 0.5}, 'depth_units'),
    ({'depth_units': -0.001}, 'depth_units'),
    ({'frame_timeout': 0.0}, 'frame_timeout'),
    ({'reconnect_delay': -1.0}, 'reconnect_delay'),
])
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        RealSenseConfig(**kwargs)


def test_recordings_of_both_formats_are_accepted():
    assert RealSenseConfig(rosbag_filename='/data/run.bag').is_playback
    assert RealSenseConfig(rosbag_filename='/data/run.DB3').describe_source() == (
        'recording /data/run.DB3')


def test_filters_run_in_librealsense_order():
    assert FilterConfig(hole_filling=True, spatial=True).enabled == ('spatial', 'hole_filling')
