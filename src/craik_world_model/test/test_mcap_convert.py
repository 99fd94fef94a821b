"""Robot recordings (rosbag2 MCAP, written here with rosbags) to world-model episodes."""

from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from craik_world_model.config import DataConfig, get_preset
from craik_world_model.data import load_episodes
from craik_world_model.episode_io import write_episodes
from craik_world_model.mcap_convert import (
    ConversionError,
    ConvertConfig,
    convert_recording,
    decode_color,
    decode_depth,
    mcap_files,
)

ROOT = Path(__file__).resolve().parents[3]
W, H = 80, 60
CAMERA_HZ, POSE_HZ, CMD_PERIOD = 10.0, 100.0, 0.5
DURATION = 4.0


def _typestore():
    ts = get_typestore(Stores.ROS2_KILTED)
    text = (ROOT / 'src/craik_interfaces/msg/CartesianTarget.msg').read_text()
    ts.register(get_types_from_msg(text, 'craik_interfaces/msg/CartesianTarget'))
    return ts


def ee_at(t: float) -> np.ndarray:
    return np.array([0.40 + 0.02 * t, -0.05 + 0.01 * t, 0.20])


def frame_colour(k: int) -> int:
    return (10 + 5 * k) % 256


def write_bag(path: Path, colour_encoding: str = 'rgb8', big_command: int | None = None,
              commands: bool = True) -> Path:
    ts = _typestore()
    t_ = ts.types
    time_msg, header_msg = t_['builtin_interfaces/msg/Time'], t_['std_msgs/msg/Header']

    def header(t: float, frame: str = '') -> object:
        return header_msg(stamp=time_msg(sec=int(t), nanosec=int(round((t % 1) * 1e9))),
                      frame_id=frame)

    messages = []  # (t, topic, msgtype, msg)
    for k in range(int(DURATION * CAMERA_HZ)):
        t = 0.2 + k / CAMERA_HZ
        rgb = np.zeros((H, W, 3), np.uint8)
        rgb[..., 0] = frame_colour(k)
        rgb[:, :W // 2, 1] = 200
        data = rgb[..., ::-1] if colour_encoding == 'bgr8' else rgb
        messages.append((t, '/camera/camera/color/image_raw', 'sensor_msgs/msg/Image',
                         t_['sensor_msgs/msg/Image'](
                             header=header(t, 'camera_color_optical_frame'), height=H, width=W,
                             encoding=colour_encoding, is_bigendian=0, step=W * 3,
                             data=np.ascontiguousarray(data).reshape(-1))))
        depth = np.full((H, W), 1000 + 10 * k, np.uint16)
        depth[:5, :5] = 0
        messages.append((t + 0.002, '/camera/camera/aligned_depth_to_color/image_raw',
                         'sensor_msgs/msg/Image', t_['sensor_msgs/msg/Image'](
                             header=header(t + 0.002), height=H, width=W, encoding='16UC1',
                             is_bigendian=0, step=W * 2,
                             data=depth.view(np.uint8).reshape(-1))))
    messages.append((0.1, '/camera/camera/color/camera_info', 'sensor_msgs/msg/CameraInfo',
                     t_['sensor_msgs/msg/CameraInfo'](
                         header=header(0.1), height=H, width=W, distortion_model='plumb_bob',
                         d=np.zeros(5), k=np.array([60.0, 0, 39.5, 0, 60.0, 29.5, 0, 0, 1]),
                         r=np.eye(3).reshape(-1), p=np.zeros(12), binning_x=0, binning_y=0,
                         roi=t_['sensor_msgs/msg/RegionOfInterest'](
                             x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))))
    for k in range(int(DURATION * POSE_HZ)):
        t = k / POSE_HZ
        p = ee_at(t)
        messages.append((t, '/franka/ee_pose', 'geometry_msgs/msg/PoseStamped',
                         t_['geometry_msgs/msg/PoseStamped'](
                             header=header(t, 'fr3_link0'), pose=t_['geometry_msgs/msg/Pose'](
                                 position=t_['geometry_msgs/msg/Point'](x=p[0], y=p[1], z=p[2]),
                                 orientation=t_['geometry_msgs/msg/Quaternion'](
                                     x=1.0, y=0.0, z=0.0, w=0.0)))))
        if k % 2 == 0:
            names = [f'fr3_joint{i}' for i in range(1, 8)] + ['fr3_finger_joint1',
                                                               'fr3_finger_joint2']
            messages.append((t, '/joint_states', 'sensor_msgs/msg/JointState',
                             t_['sensor_msgs/msg/JointState'](
                                 header=header(t), name=names,
                                 position=np.array([0.1] * 7 + [0.02, 0.02]),
                                 velocity=np.zeros(9), effort=np.zeros(9))))
    for k in range(int((DURATION - 0.4) / CMD_PERIOD)):
        t = 0.25 + k * CMD_PERIOD
        d = np.array([0.2 if k == big_command else 0.02, -0.01, 0.0])
        target = ee_at(t - 0.05) + d
        if commands:
            messages.append((t, '/franka/target', 'craik_interfaces/msg/CartesianTarget',
                             t_['craik_interfaces/msg/CartesianTarget'](
                                 header=header(t, 'fr3_link0'),
                                 position=t_['geometry_msgs/msg/Point'](
                                     x=target[0], y=target[1], z=target[2]),
                                 move_gripper=k >= 3, gripper=1.0, dynamics_factor=0.0)))
    messages.sort(key=lambda m: m[0])
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {}
        for t, topic, msgtype, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            writer.write(conns[topic], int(round((t + 1000.0) * 1e9)),
                         ts.serialize_cdr(msg, msgtype))
    return path


def test_commanded_steps(tmp_path):
    bag = write_bag(tmp_path / 'bag')
    assert mcap_files(bag) and mcap_files(bag)[0].suffix == '.mcap'
    episodes, report = convert_recording(bag, ConvertConfig(width=40, height=30))
    assert report.mode == 'commanded' and report.episodes == 1 and not report.cuts
    ep = episodes[0]
    n_cmd = int((DURATION - 0.4) / CMD_PERIOD)
    arrays = ep.arrays
    assert arrays['actions'].shape == (n_cmd, 4)
    assert arrays['rgb'].shape == (n_cmd + 1, 30, 40, 3)
    assert arrays['depth'].dtype == np.uint16
    # Frame before command k (at 0.25 + 0.5k) is camera frame 5k (at 0.2 + 0.5k).
    for k in range(n_cmd + 1):
        assert arrays['rgb'][k, 10, 30, 0] == frame_colour(5 * k)
        assert arrays['depth'][k, 20, 20] == 1000 + 50 * k
        np.testing.assert_allclose(arrays['ee_pos'][k], ee_at(0.2 + 0.5 * k), atol=1e-5)
    assert arrays['depth'][0, 0, 0] == 0                      # the hole stays a hole
    # Action = commanded target - measured ee at the frame (the command was aimed from
    # 50 ms later, when the arm had moved on by 0.05 s x 0.02 m/s... in the planner's clock).
    np.testing.assert_allclose(arrays['actions'][:, :3], [[0.02, -0.01, 0.0]] * n_cmd,
                               atol=1e-5)
    # The gripper command holds the measured state until the first gripper command.
    np.testing.assert_allclose(arrays['actions'][:, 3], [0.5, 0.5, 0.5] + [1.0] * (n_cmd - 3))
    np.testing.assert_allclose(arrays['gripper_width'], 0.04)
    # camera_info K scaled to the stored 40x30: fx 60 -> 30.
    assert arrays['intrinsics'][0, 0] == pytest.approx(30.0)
    view = ep.to_arrays()
    np.testing.assert_allclose(view.proprio[:, 3], 0.5)
    np.testing.assert_allclose(view.depth[1, 20, 20], 1.05, atol=1e-6)


def test_bgr8_is_converted_explicitly(tmp_path):
    bag = write_bag(tmp_path / 'bag', colour_encoding='bgr8')
    episodes, _ = convert_recording(bag, ConvertConfig(width=40, height=30))
    rgb = episodes[0].arrays['rgb']
    assert rgb[0, 10, 30, 0] == frame_colour(0) and rgb[0, 10, 30, 2] == 0


def test_unsupported_encoding_is_rejected(tmp_path):
    bag = write_bag(tmp_path / 'bag', colour_encoding='yuv422')
    with pytest.raises(ConversionError, match='yuv422'):
        convert_recording(bag, ConvertConfig(width=40, height=30))


def test_out_of_bounds_command_cuts_the_episode(tmp_path):
    bag = write_bag(tmp_path / 'bag', big_command=4)
    episodes, report = convert_recording(bag, ConvertConfig(width=40, height=30, min_steps=2))
    assert [e.arrays['actions'].shape[0] for e in episodes] == [4, 2]
    assert sum(report.cuts.values()) == 1 and 'bounds' in next(iter(report.cuts))
    # Nothing was clipped: every stored action is inside the bounds.
    for e in episodes:
        assert np.abs(e.arrays['actions'][:, :3]).max() <= 0.05


def test_without_commands_a_step_period_is_needed(tmp_path):
    bag = write_bag(tmp_path / 'bag', commands=False)
    with pytest.raises(ConversionError, match='step-period'):
        convert_recording(bag, ConvertConfig(width=40, height=30))
    episodes, report = convert_recording(bag, ConvertConfig(width=40, height=30,
                                                            step_period_s=0.5))
    assert report.mode == 'achieved'
    acts = episodes[0].arrays['actions']
    np.testing.assert_allclose(acts[:, :3], [[0.01, 0.005, 0.0]] * len(acts), atol=1e-5)


def test_converted_episodes_train_like_sim_episodes(tmp_path):
    bag = write_bag(tmp_path / 'bag')
    episodes, _ = convert_recording(bag, ConvertConfig(width=40, height=30))
    write_episodes(episodes, tmp_path / 'lab')
    loaded = load_episodes([tmp_path / 'lab'], get_preset('tiny').model, DataConfig())
    assert len(loaded) == 1 and loaded[0].rgb.shape[1:] == (16, 16, 3)


def test_missing_topics_and_files_are_named(tmp_path):
    with pytest.raises(ConversionError, match='no such file'):
        convert_recording(tmp_path / 'nothing.mcap')
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(ConversionError, match='no .mcap'):
        convert_recording(empty)
    broken = tmp_path / 'broken.mcap'
    broken.write_bytes(b'\x89MCAP0\r\n' + b'\x00' * 20)
    with pytest.raises(ConversionError, match='broken.mcap'):
        convert_recording(broken)


class _Msg:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def test_decoders_reject_short_buffers_and_handle_big_endian():
    with pytest.raises(ConversionError, match='bytes'):
        decode_color(_Msg(height=2, width=2, encoding='rgb8', step=6, data=b'\x00' * 5), 'x')
    be = np.array([[1000, 2000]], dtype='>u2')
    out = decode_depth(_Msg(height=1, width=2, encoding='16UC1', is_bigendian=1, step=4,
                            data=be.tobytes()), 'x')
    np.testing.assert_allclose(out, [[1.0, 2.0]])
    with pytest.raises(ConversionError, match='depth encoding'):
        decode_depth(_Msg(height=1, width=1, encoding='mono8', is_bigendian=0, step=1,
                          data=b'\x00'), 'x')
