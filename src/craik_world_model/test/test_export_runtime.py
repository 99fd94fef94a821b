"""ONNX export and the runtime backends: parity with eager PyTorch, validation, TensorRT skip.

Tolerances: onnxruntime and the torch backend match eager PyTorch to 1e-4 (absolute, float32;
measured ~1e-6); TensorRT FP16 engines to 5e-2 on energies and latents (relative to their
spread), checked only where TensorRT and a GPU exist.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from craik_world_model.checkpoint import CheckpointError, save_model
from craik_world_model.export import export_model, rollout_file
from craik_world_model.runtime import (
    BackendUnavailableError,
    OnnxRuntime,
    TensorRTRuntime,
    TorchRuntime,
    available_backends,
    engine_cache_key,
    engine_cache_path,
    load_runtime,
    tensorrt_unavailable_reason,
)

H = 3
ATOL = 1e-4


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    torch.manual_seed(0)
    from craik_world_model.config import get_preset
    from craik_world_model.model import WorldModel
    model = WorldModel(get_preset('tiny').model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    out = tmp_path_factory.mktemp('export')
    export_model(model.eval(), out, horizons=(H, 5))
    return model, out


def _inputs(config, n=16, seed=0):
    rng = np.random.default_rng(seed)
    s = config.image_size
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    depth = rng.integers(300, 3000, (48, 64), dtype=np.uint16)
    proprio = np.array([0.5, 0.1, 0.2, 0.3], np.float32)
    actions = rng.uniform(-0.05, 0.05, (n, H, 4)).astype(np.float32)
    actions[..., 3] = rng.uniform(0, 1, (n, H))
    assert s <= 48
    return rgb, depth, proprio, actions


def _eager(model, rgb, depth, proprio, actions, goal_rgb):
    from craik_world_model.observation import prepare_observation
    r, d, p = prepare_observation(rgb, depth, proprio, model.config)
    rg, dg, pg = prepare_observation(goal_rgb, None, None, model.config)
    with torch.no_grad():
        z0 = model.encode(torch.from_numpy(r), torch.from_numpy(d), torch.from_numpy(p))
        goal = model.encode_goal(torch.from_numpy(rg), torch.from_numpy(dg))
        e, finals = model.rollout_energy(z0, goal, torch.from_numpy(actions))
        img, dep = model.decode(finals[:2])
    return z0[0].numpy(), goal[0].numpy(), e.numpy(), finals.numpy(), img.numpy(), dep.numpy()


def test_export_directory_contents(exported):
    _, out = exported
    meta = json.loads((out / 'export.json').read_text())
    assert meta['horizons'] == [H, 5]
    for name in ('encoder.onnx', 'decoder.onnx', rollout_file(H), rollout_file(5),
                 'model.safetensors', 'export.json'):
        assert (out / name).is_file()
    sums = (out / 'SHA256SUMS').read_text()
    assert 'rollout_h3.onnx' in sums and 'model.safetensors' in sums


@pytest.mark.parametrize('backend', ['onnxruntime', 'torch'])
def test_backend_matches_eager_pytorch(exported, backend):
    model, out = exported
    rt = load_runtime(out, backend)
    rgb, depth, proprio, actions = _inputs(model.config)
    goal_rgb = rgb[::-1].copy()
    z0_e, goal_e, e_e, fin_e, img_e, dep_e = _eager(model, rgb, depth, proprio, actions, goal_rgb)
    z0 = rt.encode(rgb, depth, proprio)
    goal = rt.encode(goal_rgb)                      # RGB-only goal
    np.testing.assert_allclose(z0, z0_e, atol=ATOL)
    np.testing.assert_allclose(goal, goal_e, atol=ATOL)
    energies, finals = rt.rollout(z0, goal, actions)
    assert energies.dtype == np.float32 and energies.shape == (16,)
    np.testing.assert_allclose(energies, e_e, atol=ATOL)
    np.testing.assert_allclose(finals, fin_e, atol=ATOL)
    np.testing.assert_allclose(rt.rollout_energy(z0[None], goal, actions), energies, atol=1e-6)
    rgb_out, depth_out = rt.decode(finals[:2])
    assert rgb_out.shape == (2, 16, 16, 3) and rgb_out.dtype == np.uint8
    np.testing.assert_allclose(rgb_out, np.round(img_e.transpose(0, 2, 3, 1) * 255), atol=1)
    np.testing.assert_allclose(depth_out, dep_e[:, 0], atol=ATOL * 10)
    one_rgb, one_depth = rt.decode(finals[0])
    assert one_rgb.shape == (16, 16, 3) and one_depth.shape == (16, 16)


def test_onnx_batch_size_is_dynamic(exported):
    model, out = exported
    rt = OnnxRuntime(out, threads=1)
    z = rt.encode(*_inputs(model.config)[:3])
    for n in (1, 7, 300):
        a = np.zeros((n, 5, 4), np.float32)
        assert rt.rollout_energy(z, z, a).shape == (n,)


def test_torch_backend_from_a_model_file(tmp_path, exported):
    model, _ = exported
    path = save_model(tmp_path / 'm.safetensors', model)
    rt = TorchRuntime.from_checkpoint(path)
    z = rt.encode(*_inputs(model.config)[:3])
    # The torch backend takes any horizon.
    assert rt.rollout_energy(z, z, np.zeros((2, 7, 4), np.float32)).shape == (2,)


@pytest.mark.parametrize('actions, message', [
    (np.zeros((4, H, 3), np.float32), r'\[N, H, 4\]'),
    (np.full((4, H, 4), 0.06, np.float32), r'actions\[0, 0, 0\] = 0.0600 m exceeds'),
    (np.array([[[0, 0, 0, 1.5]] * H], np.float32), 'gripper'),
    (np.array([[[0, np.nan, 0, 0]] * H], np.float32), r'actions\[0, 0, 1\] is not finite'),
    (np.zeros((4, 4, 4), np.float32), 'horizon 4.*exported'),
])
def test_bad_actions_are_rejected_not_clipped(exported, actions, message):
    model, out = exported
    rt = load_runtime(out, 'onnxruntime')
    z = np.zeros(model.config.full_latent_dim, np.float32)
    with pytest.raises(ValueError, match=message):
        rt.rollout_energy(z, z, actions)


def test_bad_latents_and_images_are_rejected(exported):
    model, out = exported
    rt = load_runtime(out, 'onnxruntime')
    d = model.config.full_latent_dim
    a = np.zeros((2, H, 4), np.float32)
    with pytest.raises(ValueError, match='z0 must be a latent'):
        rt.rollout_energy(np.zeros(d + 1, np.float32), np.zeros(d, np.float32), a)
    z = np.zeros(d, np.float32)
    z[3] = np.nan
    with pytest.raises(ValueError, match='goal contains NaN'):
        rt.rollout_energy(np.zeros(d, np.float32), z, a)
    with pytest.raises(ValueError, match='rgba'):
        rt.encode(np.zeros((48, 64, 4), np.uint8))
    with pytest.raises(ValueError, match='latent must be'):
        rt.decode(np.zeros((2, 3), np.float32))


def test_tampered_export_is_refused(tmp_path, exported):
    import shutil
    _, out = exported
    copy = tmp_path / 'copy'
    shutil.copytree(out, copy)
    path = copy / rollout_file(H)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match='sha256'):
        OnnxRuntime(copy)
    with pytest.raises(CheckpointError, match='export.json'):
        load_runtime(tmp_path, 'onnxruntime')


def test_unknown_backend():
    with pytest.raises(ValueError, match='tensorrt'):
        load_runtime('.', 'openvino')


# --- TensorRT ---------------------------------------------------------------------------------


def test_engine_cache_key_changes_with_every_input():
    profile = {'actions': ((1, 8, 4), (256, 8, 4), (1024, 8, 4))}
    base = {'onnx_sha256': 'a' * 64, 'trt_version': '10.3.0', 'gpu_name': 'NVIDIA RTX 4090',
            'compute_capability': '8.9', 'fp16': True, 'profile': profile}
    key = engine_cache_key(**base)
    assert key == engine_cache_key(**base) and len(key) == 64
    changes = [{'onnx_sha256': 'b' * 64}, {'trt_version': '10.4.0'},
               {'gpu_name': 'NVIDIA Jetson Orin'}, {'compute_capability': '8.7'},
               {'fp16': False},
               {'profile': {'actions': ((1, 8, 4), (128, 8, 4), (1024, 8, 4))}}]
    keys = {engine_cache_key(**{**base, **c}) for c in changes}
    assert len(keys) == len(changes) and key not in keys
    path = engine_cache_path(Path('/cache'), 'rollout_h8.onnx', key)
    assert path.parent == Path('/cache') and path.name.startswith('rollout_h8-')
    assert path.suffix == '.engine' and key[:24] in path.name


def test_tensorrt_is_skipped_cleanly_when_unavailable(exported):
    reason = tensorrt_unavailable_reason()
    if reason is None:
        pytest.skip('TensorRT and CUDA are available here; the gpu test covers it')
    assert 'tensorrt' in reason.lower() or 'cuda' in reason.lower()
    assert available_backends()['tensorrt'] == reason
    with pytest.raises(BackendUnavailableError, match='tensorrt backend unavailable'):
        load_runtime(exported[1], 'tensorrt')


@pytest.mark.gpu
def test_tensorrt_matches_eager_pytorch(exported, tmp_path):
    reason = tensorrt_unavailable_reason()
    if reason:
        pytest.skip(f'TensorRT backend not available: {reason}')
    model, out = exported
    rt = TensorRTRuntime(out, cache_dir=tmp_path, log=lambda _m: None)
    rgb, depth, proprio, actions = _inputs(model.config)
    z0_e, goal_e, e_e, fin_e, _, _ = _eager(model, rgb, depth, proprio, actions, rgb)
    z0 = rt.encode(rgb, depth, proprio)
    np.testing.assert_allclose(z0, z0_e, atol=5e-2)
    energies, finals = rt.rollout(z0_e, goal_e, actions)
    spread = float(np.ptp(e_e)) + 1e-3
    np.testing.assert_allclose(energies, e_e, atol=5e-2 * spread + 1e-3)
    np.testing.assert_allclose(finals, fin_e, atol=5e-2)
    # A second runtime loads the cached engines instead of building them.
    assert all(p.exists() for p in rt.engine_paths)
    rt2 = TensorRTRuntime(out, cache_dir=tmp_path, log=lambda _m: None)
    assert rt2.engine_paths == rt.engine_paths


@pytest.mark.slow
def test_torch_compile_matches_eager(exported):
    model, out = exported
    rt = load_runtime(out, 'torch', compile=True)
    assert rt.backend == 'torch-compile'
    rgb, depth, proprio, actions = _inputs(model.config)
    z0_e, goal_e, e_e, fin_e, _, _ = _eager(model, rgb, depth, proprio, actions, rgb)
    energies, finals = rt.rollout(z0_e, goal_e, actions)
    np.testing.assert_allclose(energies, e_e, atol=ATOL)
    np.testing.assert_allclose(finals, fin_e, atol=ATOL)


SHIPPED = Path(__file__).resolve().parents[3] / 'models' / 'craik_wm_cpu'


@pytest.mark.skipif(not (SHIPPED / 'export.json').exists(), reason='no shipped model in models/')
def test_shipped_model_verifies_and_backends_agree():
    onnx_rt = load_runtime(SHIPPED, 'onnxruntime', threads=1)
    torch_rt = load_runtime(SHIPPED, 'torch')
    c = onnx_rt.config
    assert c.image_size == 64 and onnx_rt.horizons is not None and 8 in onnx_rt.horizons
    # The planner's energy (and its calibrated stop tolerance) assume these settings.
    assert c.energy_over == 'trajectory' and c.pose_weight == 1.0
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    depth = rng.integers(400, 2000, (480, 640), dtype=np.uint16)
    z0 = onnx_rt.encode(rgb, depth, np.array([0.45, 0.0, 0.3, 0.0]))
    np.testing.assert_allclose(z0, torch_rt.encode(rgb, depth, np.array([0.45, 0.0, 0.3, 0.0])),
                               atol=ATOL)
    goal = onnx_rt.encode(rgb[:, ::-1].copy())
    actions = rng.uniform(-0.05, 0.05, (32, 8, 4)).astype(np.float32)
    actions[..., 3] = rng.uniform(0, 1, (32, 8))
    np.testing.assert_allclose(onnx_rt.rollout_energy(z0, goal, actions),
                               torch_rt.rollout_energy(z0, goal, actions), atol=ATOL)


@pytest.mark.parametrize('weights', [{'pose_weight': 2.5},
                                     {'pose_weight': 1.0, 'object_weight': 3.0,
                                      'approach_weight': 1.5}])
def test_weighted_export_matches_eager(tmp_path, exported, weights):
    """`craik wm-export --pose-weight/--object-weight/--approach-weight`: the goal's pose and
    objects are read from the image, and every graph scores them as the eager model does."""
    from dataclasses import replace

    from craik_world_model import export
    model, _ = exported
    src = tmp_path / 'model.safetensors'
    save_model(src, model)
    out = tmp_path / 'posed'
    parser = argparse.ArgumentParser()
    export.configure_parser(parser)
    flags = [item for k, v in weights.items() for item in (f"--{k.replace('_', '-')}", str(v))]
    assert export.run(parser.parse_args([str(src), '--out', str(out), '--horizons', str(H),
                                         *flags])) == 0
    written = json.loads((out / 'export.json').read_text())['model_config']
    assert all(written[k] == v for k, v in weights.items())
    weighted = type(model)(replace(model.config, **weights))
    weighted.load_state_dict(model.state_dict())
    weighted.eval()
    rgb, depth, proprio, actions = _inputs(model.config)
    z0_e, goal_e, e_e, _, _, _ = _eager(weighted, rgb, depth, proprio, actions, rgb[::-1].copy())
    for backend in ('onnxruntime', 'torch'):
        rt = load_runtime(out, backend)
        z0, goal = rt.encode(rgb, depth, proprio), rt.encode(rgb[::-1].copy())
        np.testing.assert_allclose(goal, goal_e, atol=ATOL)
        np.testing.assert_allclose(rt.rollout_energy(z0, goal, actions), e_e, atol=ATOL)
        with torch.no_grad():
            expected = float(weighted.energy(torch.from_numpy(z0_e)[None],
                                             torch.from_numpy(goal_e)[None])[0])
        assert rt.energy(z0, goal) == pytest.approx(expected, abs=1e-5)
        # The observation keeps its measured pose; only the goal's comes from the image.
        dv = model.config.latent_dim
        assert not np.allclose(z0[dv:dv + 3], goal[dv:dv + 3])


def test_shipped_geometric_model_verifies_and_backends_agree():
    shipped = SHIPPED.parent / 'craik_wm_geo'
    onnx_rt = load_runtime(shipped, 'onnxruntime', threads=1)
    torch_rt = load_runtime(shipped, 'torch')
    c = onnx_rt.config
    # The planner's energy, stop tolerance and object-state path assume these settings.
    assert c.object_source == 'geometry' and c.object_count == 6 and c.presence_dims == 6
    assert c.visual_weight == 0.0 and c.proprio_dynamics and c.pose_weight == 1.0
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    depth = rng.integers(400, 2000, (480, 640), dtype=np.uint16)
    slots = np.zeros((6, 3))
    slots[:3] = [[0.5, 0.1, 1.0], [0.6, -0.1, 1.0], [0.45, -0.2, 1.0]]
    z0 = onnx_rt.with_geometry(onnx_rt.encode(rgb, depth, np.array([0.45, 0.0, 0.3, 1.0])),
                               slots)
    goal_slots = slots.copy()
    goal_slots[0, :2] += [0.08, 0.02]
    goal = onnx_rt.with_geometry(onnx_rt.encode(rgb[:, ::-1].copy(), depth), goal_slots,
                                 tcp=np.array([0.55, 0.1, 0.03]))
    actions = rng.uniform(-0.05, 0.05, (32, 8, 4)).astype(np.float32)
    actions[..., 3] = 1.0
    np.testing.assert_allclose(onnx_rt.rollout_energy(z0, goal, actions),
                               torch_rt.rollout_energy(z0, goal, actions), atol=ATOL)
