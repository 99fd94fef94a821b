"""bag_files without ROS: bags written here are read back by bag_files, rosbags and mcap; the
replay schedule; damaged bags are refused with the specific reason."""

from __future__ import annotations

from pathlib import Path
import shutil

from mcap.reader import make_reader
from mcap.writer import Writer
from mcap_ros2.decoder import DecoderFactory
import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.msg import get_types_from_msg
import yaml

from craik_bringup import bag_files
from craik_bringup.bag_files import BagError, BagWriter, qos_dict

TS = get_typestore(Stores.ROS2_KILTED)
T0_NS = 1_700_000_000_000_000_000
IMAGE, JOINTS, POSE = 'sensor_msgs/msg/Image', 'sensor_msgs/msg/JointState', \
    'geometry_msgs/msg/PoseStamped'
# An action-derived type as rosidl names it (underscores, nested types named in full).
FEEDBACK_TYPE = 'demo_pkg/action/Move_FeedbackMessage'
FEEDBACK_DEF = """demo_pkg/action/Move_Feedback feedback
uint8[16] goal_id
================================================================================
MSG: demo_pkg/action/Move_Feedback
uint32 step
float32[4] commanded_action
"""


def _definition(type_name: str) -> tuple[str, str]:
    msgdef, _ = TS.generate_msgdef(type_name, ros_version=2)
    return msgdef, TS.hash_rihs01(type_name)


def _header(t_ns: int, frame: str = '') -> object:
    ty = TS.types
    return ty['std_msgs/msg/Header'](stamp=ty['builtin_interfaces/msg/Time'](
        sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id=frame)


def _image(k: int, t_ns: int) -> bytes:
    pixels = np.full((6, 8, 3), k, np.uint8)                               # [H, W, 3]
    msg = TS.types[IMAGE](header=_header(t_ns, 'camera_color_optical_frame'), height=6,
                          width=8, encoding='rgb8', is_bigendian=0, step=24,
                          data=pixels.reshape(-1))
    return TS.serialize_cdr(msg, IMAGE)


def _joints(k: int, t_ns: int) -> bytes:
    msg = TS.types[JOINTS](header=_header(t_ns), name=['fr3_joint1'],
                           position=np.array([0.01 * k]), velocity=np.zeros(1),
                           effort=np.zeros(1))
    return TS.serialize_cdr(msg, JOINTS)


def _pose(x: float) -> bytes:
    ty = TS.types
    msg = ty[POSE](header=_header(T0_NS, 'fr3_link0'), pose=ty['geometry_msgs/msg/Pose'](
        position=ty['geometry_msgs/msg/Point'](x=x, y=0.0, z=0.5),
        orientation=ty['geometry_msgs/msg/Quaternion'](x=0.0, y=0.0, z=0.0, w=1.0)))
    return TS.serialize_cdr(msg, POSE)


def _feedback_types() -> object:
    ts = get_typestore(Stores.EMPTY)
    ts.register(get_types_from_msg(FEEDBACK_DEF, FEEDBACK_TYPE))
    return ts


def write_bag(path: Path, compression: str = 'zstd') -> dict[str, list[tuple[int, int]]]:
    """A bag with a camera, a joint stream, a latched pose and an action feedback topic;
    returns (log time, publish time) of every message written, per topic."""
    written: dict[str, list[tuple[int, int]]] = {}
    fb_ts = _feedback_types()
    with BagWriter(path, compression=compression) as bag:
        for topic, type_name, qos in (
                ('/camera/camera/color/image_raw', IMAGE, [qos_dict('best_effort', depth=5)]),
                ('/joint_states', JOINTS, [qos_dict('reliable')]),
                ('/calibration/camera_pose', POSE,
                 [qos_dict('reliable', 'transient_local', depth=1)])):
            bag.add_topic(topic, type_name, *_definition(type_name), qos)
        bag.add_topic('/planner/reach_goal/_action/feedback', FEEDBACK_TYPE, FEEDBACK_DEF,
                      fb_ts.hash_rihs01(FEEDBACK_TYPE), [qos_dict()])
        events = [(T0_NS + 1_000_000, '/calibration/camera_pose', _pose(0.7))]
        for k in range(20):
            t = T0_NS + 10_000_000 + k * 33_000_000 + (k % 3) * 4_000_000   # uneven gaps
            events.append((t, '/camera/camera/color/image_raw', _image(k, t - 2_000_000)))
        for k in range(50):
            t = T0_NS + 5_000_000 + k * 20_000_000
            events.append((t, '/joint_states', _joints(k, t)))
        fb = fb_ts.types[FEEDBACK_TYPE](
            feedback=fb_ts.types['demo_pkg/action/Move_Feedback'](
                step=3, commanded_action=np.array([0.01, 0.0, -0.02, 0.0], np.float32)),
            goal_id=np.arange(16, dtype=np.uint8))
        events.append((T0_NS + 500_000_000, '/planner/reach_goal/_action/feedback',
                       fb_ts.serialize_cdr(fb, FEEDBACK_TYPE)))
        for t, topic, data in sorted(events, key=lambda e: e[0]):
            bag.write(topic, data, t, t - 700_000)
            written.setdefault(topic, []).append((t, t - 700_000))
    return written


def test_bag_reads_back_with_bag_files_rosbags_and_mcap(tmp_path):
    path = tmp_path / 'session'
    written = write_bag(path)
    assert sorted(p.name for p in path.iterdir()) == ['metadata.yaml', 'session_0.mcap']
    bag = bag_files.open_bag(path)
    assert {t: i.message_count for t, i in bag.topics.items()} == \
        {t: len(v) for t, v in written.items()}
    assert bag.topics['/calibration/camera_pose'].offered_qos[0]['durability'] == \
        'transient_local'
    assert bag.topics['/joint_states'].type_hash == TS.hash_rihs01(JOINTS)
    scan = bag_files.scan_bag(bag)
    assert np.all(np.diff(scan.log_times_ns) >= 0) and len(scan.topics) == 72
    # bag_files decodes with the bag's own definitions (also the action-derived type).
    images = [(m, msg) for m, msg in bag_files.iter_decoded(
        bag, ['/camera/camera/color/image_raw'])]
    assert [int(bytes(msg.data)[0]) for _, msg in images] == list(range(20))
    assert all(m.log_time_ns - m.publish_time_ns == 700_000 for m, _ in images)
    (_, fb), = bag_files.iter_decoded(bag, ['/planner/reach_goal/_action/feedback'])
    assert fb.feedback.step == 3 and list(fb.goal_id) == list(range(16))
    np.testing.assert_allclose(fb.feedback.commanded_action, [0.01, 0.0, -0.02, 0.0], atol=1e-7)

    # rosbags: the high-level reader checks every definition against its type hash.
    with AnyReader([path]) as reader:
        got: dict[str, list[int]] = {}
        for conn, t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            got.setdefault(conn.topic, []).append(t)
            if conn.topic == '/joint_states':
                assert msg.position[0] == pytest.approx(0.01 * (len(got[conn.topic]) - 1))
            if conn.topic == '/calibration/camera_pose':
                assert msg.pose.position.x == pytest.approx(0.7)
    assert got == {t: [lt for lt, _ in v] for t, v in written.items()}
    with Reader(path) as reader:
        assert reader.message_count == 72
        assert reader.duration == scan.log_times_ns[-1] - scan.log_times_ns[0] + 1
        qos = {c.topic: c.ext.offered_qos_profiles[0] for c in reader.connections}
        assert qos['/camera/camera/color/image_raw'].reliability.name == 'BEST_EFFORT'

    # mcap + mcap_ros2: plain ROS types decode straight from the file.
    with open(path / 'session_0.mcap', 'rb') as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        assert reader.get_header().profile == 'ros2'
        seen = [(channel.topic, message.log_time, message.publish_time, decoded)
                for _, channel, message, decoded in reader.iter_decoded_messages(
                    topics=['/joint_states', '/camera/camera/color/image_raw'])]
        metadata = {m.name: m.metadata for m in reader.iter_metadata()}
    joints = [s for s in seen if s[0] == '/joint_states']
    assert [(lt, pt) for _, lt, pt, _ in joints] == written['/joint_states']
    assert [d.position[0] for *_, d in joints] == pytest.approx([0.01 * k for k in range(50)])
    assert 'serialized_metadata' in metadata['rosbag2']


def test_metadata_yaml_is_rosbag2_version_9(tmp_path):
    written = write_bag(tmp_path / 'b', compression='lz4')
    info = yaml.safe_load((tmp_path / 'b' / 'metadata.yaml').read_text())[
        'rosbag2_bagfile_information']
    assert info['version'] == 9 and info['storage_identifier'] == 'mcap'
    assert info['relative_file_paths'] == ['b_0.mcap'] == [f['path'] for f in info['files']]
    assert info['message_count'] == sum(len(v) for v in written.values())
    first = min(t for v in written.values() for t, _ in v)
    last = max(t for v in written.values() for t, _ in v)
    assert info['starting_time']['nanoseconds_since_epoch'] == first
    assert info['duration']['nanoseconds'] == last - first
    topics = {t['topic_metadata']['name']: t for t in info['topics_with_message_count']}
    camera = topics['/camera/camera/color/image_raw']['topic_metadata']
    assert camera['type'] == IMAGE and camera['serialization_format'] == 'cdr'
    assert camera['offered_qos_profiles'][0]['reliability'] == 'best_effort'
    assert camera['type_description_hash'].startswith('RIHS01_')


def test_a_bag_is_never_overwritten(tmp_path):
    write_bag(tmp_path / 'b')
    before = (tmp_path / 'b' / 'b_0.mcap').read_bytes()
    with pytest.raises(BagError, match='exists already'):
        BagWriter(tmp_path / 'b')
    assert (tmp_path / 'b' / 'b_0.mcap').read_bytes() == before
    with pytest.raises(BagError, match='not a ROS type name'):
        BagWriter(tmp_path / 'c').add_topic('/x', 'Image', 'uint8 a\n')


def test_replay_schedule_scales_relative_log_times():
    t = np.array([5_000_000_000, 5_010_000_000, 5_030_000_000, 5_030_000_000, 5_100_000_000])
    s = bag_files.replay_schedule(t, rate=1.0)
    np.testing.assert_allclose(s.offsets_s, [0.0, 0.01, 0.03, 0.03, 0.1])
    # Loop: the next pass starts one median (non-zero) gap after the last message.
    assert s.period_s == pytest.approx(0.1 + 0.02)
    assert s.offset(1, loop=2) == pytest.approx(0.01 + 2 * 0.12)
    fast = bag_files.replay_schedule(t, rate=2.0)
    np.testing.assert_allclose(fast.offsets_s, s.offsets_s / 2)
    assert bag_files.replay_schedule([7], 1.0).period_s == pytest.approx(0.1)
    for rate in (0.0, -1.0, float('nan'), float('inf')):
        with pytest.raises(ValueError, match='rate'):
            bag_files.replay_schedule(t, rate)
    with pytest.raises(ValueError, match='ascending'):
        bag_files.replay_schedule(t[::-1], 1.0)


def test_replay_qos_keeps_latched_and_best_effort():
    latched = bag_files.replay_qos([qos_dict('reliable', 'transient_local', depth=1)])
    assert (latched['reliability'], latched['durability'], latched['depth']) == \
        ('reliable', 'transient_local', 10)
    mixed = bag_files.replay_qos([qos_dict('reliable'), qos_dict('best_effort', depth=50)])
    assert (mixed['reliability'], mixed['durability'], mixed['depth']) == \
        ('best_effort', 'volatile', 50)


# --- damaged bags -----------------------------------------------------------------------------


@pytest.fixture
def good_bag(tmp_path) -> Path:
    write_bag(tmp_path / 'good')
    return tmp_path / 'good'


def _copy(good: Path, tmp_path: Path, name: str) -> Path:
    bad = tmp_path / name
    shutil.copytree(good, bad)
    (bad / 'good_0.mcap').rename(bad / f'{name}_0.mcap')
    meta = (bad / 'metadata.yaml').read_text().replace('good_0.mcap', f'{name}_0.mcap')
    (bad / 'metadata.yaml').write_text(meta)
    return bad


def test_truncated_file_is_refused(good_bag, tmp_path):
    bad = _copy(good_bag, tmp_path, 'cut')
    data = (bad / 'cut_0.mcap').read_bytes()
    (bad / 'cut_0.mcap').write_bytes(data[:len(data) // 2])
    with pytest.raises(BagError, match=r'cut_0.mcap: truncated MCAP file .*no closing magic'):
        bag_files.open_bag(bad)


def test_wrong_magic_is_refused(good_bag, tmp_path):
    bad = _copy(good_bag, tmp_path, 'magic')
    data = bytearray((bad / 'magic_0.mcap').read_bytes())
    data[:8] = b'SQLite f'
    (bad / 'magic_0.mcap').write_bytes(bytes(data))
    with pytest.raises(BagError, match='not an MCAP file .bad magic'):
        bag_files.open_bag(bad)


def test_corrupt_chunk_is_refused_before_use(good_bag, tmp_path):
    bad = _copy(good_bag, tmp_path, 'chunk')
    data = bytearray((bad / 'chunk_0.mcap').read_bytes())
    # Damage the middle of the (compressed) chunk data; both magics and the summary stay.
    mid = len(data) // 3
    data[mid:mid + 64] = bytes(64)
    (bad / 'chunk_0.mcap').write_bytes(bytes(data))
    with pytest.raises(BagError, match=r'chunk_0.mcap: damaged MCAP'):
        info = bag_files.open_bag(bad)
        bag_files.scan_bag(info)


def test_missing_metadata_is_named(good_bag, tmp_path):
    bad = _copy(good_bag, tmp_path, 'nometa')
    (bad / 'metadata.yaml').unlink()
    with pytest.raises(BagError, match=r'missing metadata.yaml \(it holds nometa_0.mcap'):
        bag_files.open_bag(bad)
    # The file itself still opens on its own.
    assert bag_files.open_bag(bad / 'nometa_0.mcap').message_count == 72
    with pytest.raises(BagError, match='no such bag'):
        bag_files.open_bag(tmp_path / 'nothing')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(BagError, match='not a rosbag2 directory'):
        bag_files.open_bag(tmp_path / 'empty')


def test_metadata_that_disagrees_with_the_file_is_refused(good_bag, tmp_path):
    bad = _copy(good_bag, tmp_path, 'meta')
    meta = (bad / 'metadata.yaml').read_text()
    (bad / 'metadata.yaml').write_text(meta.replace('type: sensor_msgs/msg/JointState',
                                                    'type: sensor_msgs/msg/Imu'))
    with pytest.raises(BagError, match='says /joint_states is sensor_msgs/msg/Imu'):
        bag_files.open_bag(bad)
    (bad / 'metadata.yaml').write_text(meta.replace('meta_0.mcap', 'gone_0.mcap'))
    with pytest.raises(BagError, match='lists gone_0.mcap, which is missing'):
        bag_files.open_bag(bad)


def _raw_mcap(path: Path, schema_name: str, definition: str, schema: bool = True) -> Path:
    with open(path, 'wb') as f:
        w = Writer(f)
        w.start(profile='ros2', library='test')
        schema_id = w.register_schema(schema_name, 'ros2msg', definition.encode()) \
            if schema else 0
        channel = w.register_channel('/x', 'cdr', schema_id)
        w.add_message(channel, log_time=1, data=b'\x00\x01\x00\x00', publish_time=1)
        w.finish()
    return path


def test_missing_schema_unknown_type_and_bad_definition_are_named(tmp_path):
    no_schema = _raw_mcap(tmp_path / 'a.mcap', 'std_msgs/msg/Empty', '', schema=False)
    with pytest.raises(BagError, match='topic /x has no schema'):
        bag_files.open_bag(no_schema)
    unknown = _raw_mcap(tmp_path / 'b.mcap', 'Empty', 'uint8 structure_needs_at_least_one\n')
    with pytest.raises(BagError, match="unknown type 'Empty'"):
        bag_files.open_bag(unknown)
    malformed = _raw_mcap(tmp_path / 'c.mcap', 'demo/msg/Bad', 'notatype!! x\n')
    with pytest.raises(BagError, match='malformed message definition for demo/msg/Bad'):
        bag_files.open_bag(malformed)
