"""Crafted model directories and recordings are refused with a specific error, nothing run.

Each payload would create a marker file if it were unpickled or otherwise executed (the control
tests show that it does); every refusal test asserts the craik error and that the marker is
absent. ONNX graphs whose external data points outside the export directory must be refused
before onnxruntime is asked to open them (a session would read the outside file).
"""

from __future__ import annotations

import json
from pathlib import Path
import pickle
import struct

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
import onnxruntime
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
import torch

from craik_world_model import checkpoint
from craik_world_model.checkpoint import (
    MANIFEST,
    CheckpointError,
    load_model,
    save_model,
    write_manifest,
)
from craik_world_model.config import FORMAT_VERSION, to_json
from craik_world_model.export import ENCODER_FILE, EXPORT_META, MODEL_FILE
from craik_world_model.mcap_convert import ConversionError, convert_recording
from craik_world_model.runtime import OnnxRuntime, check_onnx_external_data, load_runtime


class _CreatesFile:
    """Unpickling this calls ``open(marker, 'w')``: the file appears iff the pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 (pickle protocol)
        return (open, (str(self.marker), 'w'))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    path = tmp_path / 'outside' / 'EXECUTED'
    path.parent.mkdir()
    return path


def _model_dir(tmp_path: Path, config, weights: bytes, name: str = MODEL_FILE) -> Path:
    """A model directory as the planner gets it: export.json, the weights, a manifest that
    lists both with their correct sha256 (so the refusal is not the checksum's)."""
    d = tmp_path / 'model'
    d.mkdir(exist_ok=True)
    meta = {'format': 'craik_world_model_export', 'format_version': FORMAT_VERSION,
            'model_config': json.loads(to_json(config)), 'horizons': []}
    (d / EXPORT_META).write_text(json.dumps(meta))
    (d / name).write_bytes(weights)
    write_manifest(d)
    return d


# --- pickles in model files -------------------------------------------------------------------


@pytest.mark.parametrize('protocol', [2, 4, 5])
def test_control_the_pickle_payload_creates_the_marker(marker, protocol):
    pickle.loads(pickle.dumps(_CreatesFile(marker), protocol=protocol))  # noqa: S301
    assert marker.exists()


def test_control_the_torch_save_payload_creates_the_marker(tmp_path, marker):
    path = tmp_path / 'payload.pt'
    torch.save({'encoder.weight': _CreatesFile(marker)}, path)
    torch.load(path, weights_only=False)  # noqa: S614 (what craik must never do)
    assert marker.exists()


@pytest.mark.parametrize('protocol', [0, 2, 4, 5])
def test_pickle_renamed_safetensors_is_refused_unexecuted(tmp_path, marker, tiny_config,
                                                          protocol):
    d = _model_dir(tmp_path, tiny_config, pickle.dumps(_CreatesFile(marker), protocol=protocol))
    # Protocol 0 has no pickle opcode header; it is refused as "not a safetensors file".
    message = 'not a safetensors file' if protocol == 0 else 'refusing pickled weights'
    with pytest.raises(CheckpointError, match=message):
        load_model(d / MODEL_FILE)
    with pytest.raises(CheckpointError, match=message):
        load_runtime(d, backend='torch')
    assert not marker.exists()


def test_torch_save_archive_is_refused_unexecuted(tmp_path, marker, tiny_config):
    pt = tmp_path / 'payload.pt'
    torch.save({'encoder.weight': _CreatesFile(marker)}, pt)
    d = _model_dir(tmp_path, tiny_config, pt.read_bytes())
    with pytest.raises(CheckpointError, match='torch.save archive'):
        load_runtime(d, backend='torch')
    assert not marker.exists()


@pytest.mark.parametrize('suffix', ['.pt', '.pth', '.ckpt', '.bin', '.pkl'])
def test_pickle_suffixes_are_refused_unopened(tmp_path, marker, tiny_config, suffix):
    pt = tmp_path / f'payload{suffix}'
    torch.save({'encoder.weight': _CreatesFile(marker)}, pt)
    write_manifest(tmp_path, [pt.name])
    with pytest.raises(CheckpointError, match=rf'refusing pickled weights \({suffix}\)'):
        load_model(pt)
    assert not marker.exists()


def test_safetensors_header_pointing_past_the_file_is_refused(tmp_path, tiny_config):
    header = json.dumps({'w': {'dtype': 'F32', 'shape': [1 << 20], 'data_offsets': [0, 1 << 22]}})
    d = _model_dir(tmp_path, tiny_config,
                   struct.pack('<Q', len(header)) + header.encode() + b'\x00' * 8)
    with pytest.raises(CheckpointError, match='cannot read safetensors file'):
        load_model(d / MODEL_FILE)


# --- sha256 manifest ----------------------------------------------------------------------------


def test_wrong_sha256_is_refused_before_the_file_is_parsed(tmp_path, tiny_model, monkeypatch):
    path = save_model(tmp_path / 'model' / MODEL_FILE, tiny_model)
    (tmp_path / 'model' / MANIFEST).write_text(f'{"0" * 64}  {MODEL_FILE}\n')
    opened = []
    monkeypatch.setattr(checkpoint, 'safe_open', lambda *a, **k: opened.append(a))
    with pytest.raises(CheckpointError, match=r'sha256 [0-9a-f]{64} does not match the '
                                              r'manifest \(0{64}\)'):
        load_model(path)
    assert opened == []


def test_pickle_with_a_wrong_sha256_is_refused_unexecuted(tmp_path, marker, tiny_config):
    # The manifest lists the sha256 of these bytes; the pickle written over them differs.
    d = _model_dir(tmp_path, tiny_config, b'the weights the manifest lists')
    (d / MODEL_FILE).write_bytes(b'\x00' * 8 + b'{' + pickle.dumps(_CreatesFile(marker)))
    with pytest.raises(CheckpointError, match='does not match the manifest'):
        load_runtime(d, backend='torch')
    assert not marker.exists()


def test_tampered_export_meta_and_bad_manifest_lines_are_refused(tmp_path, tiny_config):
    d = _model_dir(tmp_path, tiny_config, b'weights')
    (d / EXPORT_META).write_text((d / EXPORT_META).read_text().replace('[]', '[8]'))
    with pytest.raises(CheckpointError, match=f'{EXPORT_META}: sha256'):
        load_runtime(d, backend='onnxruntime')
    (d / MANIFEST).write_text('not-a-hash  export.json\n')
    with pytest.raises(CheckpointError, match='not a sha256sum line'):
        load_runtime(d, backend='onnxruntime')


def test_onnx_with_a_wrong_sha256_never_reaches_onnxruntime(tmp_path, tiny_config,
                                                            monkeypatch):
    d = _model_dir(tmp_path, tiny_config, b'weights')
    onnx.save(_add_graph(None), str(d / ENCODER_FILE))
    write_manifest(d)
    onnx.save(_add_graph(None, value=2.0), str(d / ENCODER_FILE))
    sessions = _forbid_sessions(monkeypatch)
    with pytest.raises(CheckpointError, match=f'{ENCODER_FILE}: sha256'):
        OnnxRuntime(d)
    assert sessions == []


# --- ONNX external data -----------------------------------------------------------------------


def _external(tensor: TensorProto, location: str, length: int) -> TensorProto:
    tensor.ClearField('raw_data')
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (('location', location), ('offset', '0'), ('length', str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _add_graph(location: str | None, value: float = 0.0, in_subgraph: bool = False
               ) -> onnx.ModelProto:
    """y = x + w (w: 4 float32); w stored at ``location`` when given, either as an initializer
    or (``in_subgraph``) as a Constant inside an If branch."""
    w = numpy_helper.from_array(np.full(4, value, np.float32), 'w')
    if location is not None:
        _external(w, location, 16)
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [4])
    if not in_subgraph:
        graph = helper.make_graph([helper.make_node('Add', ['x', 'w'], ['y'])], 'g', [x], [y],
                                  [w])
    else:
        wo = helper.make_tensor_value_info('w_out', TensorProto.FLOAT, [4])
        branch = helper.make_graph([helper.make_node('Constant', [], ['w_out'], value=w)],
                                   'branch', [], [wo])
        cond = numpy_helper.from_array(np.array(True), 'cond')
        graph = helper.make_graph(
            [helper.make_node('If', ['cond'], ['wv'], then_branch=branch, else_branch=branch),
             helper.make_node('Add', ['x', 'wv'], ['y'])], 'g', [x], [y], [cond])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 18)])


def _forbid_sessions(monkeypatch) -> list:
    created: list = []

    def no_session(*args, **kwargs):
        created.append(args)
        raise AssertionError('onnxruntime was asked to open a refused graph')

    monkeypatch.setattr(onnxruntime, 'InferenceSession', no_session)
    return created


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / 'secret.bin'
    path.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    return path


def _export_with(tmp_path: Path, config, graph: onnx.ModelProto) -> Path:
    d = _model_dir(tmp_path, config, b'weights')
    onnx.save(graph, str(d / ENCODER_FILE))
    write_manifest(d)
    return d


@pytest.mark.parametrize('in_subgraph', [False, True])
def test_external_data_outside_the_directory_is_refused(tmp_path, tiny_config, secret,
                                                        monkeypatch, in_subgraph):
    d = _export_with(tmp_path, tiny_config, _add_graph('../secret.bin', in_subgraph=in_subgraph))
    sessions = _forbid_sessions(monkeypatch)
    with pytest.raises(CheckpointError, match=r"tensor 'w' .*'\.\./secret\.bin'.* outside the "
                                              'export directory'):
        OnnxRuntime(d)
    assert sessions == []


def test_absolute_external_data_path_is_refused(tmp_path, tiny_config, secret, monkeypatch):
    d = _export_with(tmp_path, tiny_config, _add_graph(str(secret)))
    sessions = _forbid_sessions(monkeypatch)
    with pytest.raises(CheckpointError, match='absolute path'):
        OnnxRuntime(d)
    assert sessions == []


def test_external_data_symlink_leaving_the_directory_is_refused(tmp_path, tiny_config, secret,
                                                                monkeypatch):
    d = _model_dir(tmp_path, tiny_config, b'weights')
    (d / 'w.bin').symlink_to(secret)
    onnx.save(_add_graph('w.bin'), str(d / ENCODER_FILE))
    write_manifest(d, [EXPORT_META, MODEL_FILE, ENCODER_FILE, 'w.bin'])
    sessions = _forbid_sessions(monkeypatch)
    with pytest.raises(CheckpointError, match='outside the export directory'):
        OnnxRuntime(d)
    assert sessions == []


def test_external_data_inside_must_be_in_the_manifest_and_match(tmp_path, tiny_config):
    d = _model_dir(tmp_path, tiny_config, b'weights')
    onnx.save(_add_graph('w.bin'), str(d / ENCODER_FILE))
    (d / 'w.bin').write_bytes(np.full(4, 3.0, np.float32).tobytes())
    write_manifest(d, [EXPORT_META, MODEL_FILE, ENCODER_FILE])
    with pytest.raises(CheckpointError, match=f'w.bin, which .*{MANIFEST} does not list'):
        check_onnx_external_data(d / ENCODER_FILE, d)
    write_manifest(d, ['w.bin'])
    check_onnx_external_data(d / ENCODER_FILE, d)  # verified data inside the directory is fine
    session = onnxruntime.InferenceSession(str(d / ENCODER_FILE),
                                           providers=['CPUExecutionProvider'])
    np.testing.assert_array_equal(session.run(None, {'x': np.zeros(4, np.float32)})[0],
                                  np.full(4, 3.0, np.float32))
    (d / 'w.bin').write_bytes(np.full(4, 9.0, np.float32).tobytes())
    with pytest.raises(CheckpointError, match='external data w.bin has sha256'):
        check_onnx_external_data(d / ENCODER_FILE, d)


def test_a_pickle_named_onnx_is_refused_unexecuted(tmp_path, tiny_config, marker, monkeypatch):
    d = _model_dir(tmp_path, tiny_config, b'weights')
    (d / ENCODER_FILE).write_bytes(pickle.dumps(_CreatesFile(marker)))
    write_manifest(d)
    sessions = _forbid_sessions(monkeypatch)
    with pytest.raises(CheckpointError, match='not a readable ONNX model'):
        OnnxRuntime(d)
    assert sessions == [] and not marker.exists()


# --- MCAP recordings ----------------------------------------------------------------------------


def _small_bag(path: Path) -> Path:
    """A rosbag2 MCAP directory with 200 end-effector poses; returns its .mcap file."""
    ts = get_typestore(Stores.ROS2_KILTED)
    t_ = ts.types
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection('/franka/ee_pose', 'geometry_msgs/msg/PoseStamped',
                                     typestore=ts)
        for k in range(200):
            msg = t_['geometry_msgs/msg/PoseStamped'](
                header=t_['std_msgs/msg/Header'](
                    stamp=t_['builtin_interfaces/msg/Time'](sec=k, nanosec=0),
                    frame_id='fr3_link0'),
                pose=t_['geometry_msgs/msg/Pose'](
                    position=t_['geometry_msgs/msg/Point'](x=0.4, y=0.0, z=0.2),
                    orientation=t_['geometry_msgs/msg/Quaternion'](x=1.0, y=0.0, z=0.0, w=0.0)))
            writer.write(conn, (k + 1) * 10**9,
                         ts.serialize_cdr(msg, 'geometry_msgs/msg/PoseStamped'))
    return next(path.glob('*.mcap'))


@pytest.mark.parametrize('keep', [0.5, 0.9, 0.1])
def test_truncated_mcap_is_refused_naming_the_file(tmp_path, keep):
    mcap = _small_bag(tmp_path / 'bag')
    # The intact bag is read (and lacks the camera topics); the cut one is not read at all.
    with pytest.raises(ConversionError, match='no messages on /camera'):
        convert_recording(tmp_path / 'bag')
    data = mcap.read_bytes()
    mcap.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(ConversionError, match=f'{mcap.name}: truncated MCAP file'):
        convert_recording(tmp_path / 'bag')
    with pytest.raises(ConversionError, match='truncated MCAP file'):
        convert_recording(mcap)


def test_pickle_named_mcap_is_refused_unexecuted(tmp_path, marker):
    bag = tmp_path / 'payload.mcap'
    bag.write_bytes(pickle.dumps(_CreatesFile(marker)))
    with pytest.raises(ConversionError, match='payload.mcap: not an MCAP file'):
        convert_recording(bag)
    assert not marker.exists()


def test_crafted_mcap_records_are_refused(tmp_path):
    magic = b'\x89MCAP0\r\n'
    footer = b'\x02' + struct.pack('<Q', 20) + b'\x00' * 20  # no summary: read from the start
    huge = tmp_path / 'huge.mcap'
    # A framed file whose header record claims 2**62 bytes: refused, not allocated.
    huge.write_bytes(magic + b'\x01' + struct.pack('<Q', 1 << 62) + b'\x00' * 32 + footer
                     + magic)
    with pytest.raises(ConversionError, match='huge.mcap: cannot read MCAP file .*HEADER record '
                                              'has length 4611686018427387904 that exceeds'):
        convert_recording(huge)


def test_crafted_message_definition_is_refused_unexecuted(tmp_path, marker):
    from mcap.writer import Writer as McapWriter
    path = tmp_path / 'crafted.mcap'
    with open(path, 'wb') as f:
        writer = McapWriter(f)
        writer.start(profile='ros2', library='test')
        schema = writer.register_schema(
            name='geometry_msgs/msg/PoseStamped', encoding='ros2msg',
            data=f"int32 X=__import__('os').system('touch {marker}')\nstring s\n".encode())
        channel = writer.register_channel(topic='/franka/ee_pose', message_encoding='cdr',
                                          schema_id=schema)
        writer.add_message(channel_id=channel, log_time=1, publish_time=1,
                           data=b'\x00\x01\x00\x00' + b'\x00' * 16)
        writer.finish()
    with pytest.raises(ConversionError, match='crafted.mcap: cannot read MCAP file'):
        convert_recording(path)
    assert not marker.exists()
