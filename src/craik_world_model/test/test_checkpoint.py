"""Checkpoints: safetensors only, sha256 manifests, version and shape checks, exact resume."""

from dataclasses import replace
import json
import struct

import pytest
from safetensors.torch import save_file
import torch

from craik_world_model.checkpoint import (
    MANIFEST,
    CheckpointError,
    load_model,
    load_training_state,
    read_manifest,
    save_model,
    save_training_state,
    verify_file,
)
from craik_world_model.model import WorldModel


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_with_manifest(tmp_path, tiny_model):
    path = save_model(tmp_path / 'm.safetensors', tiny_model, {'note': 'x'})
    assert read_manifest(tmp_path)['m.safetensors'] == verify_file(path)
    loaded, meta = load_model(path)
    assert _same_weights(loaded, tiny_model)
    assert meta['note'] == 'x' and len(meta['sha256']) == 64
    assert loaded.config == tiny_model.config
    # sha256sum -c format: "<hex>  <name>"
    line = (tmp_path / MANIFEST).read_text().strip()
    assert line.endswith('  m.safetensors') and len(line.split()[0]) == 64
    mirror = json.loads((tmp_path / 'manifest.json').read_text())
    assert mirror['files']['m.safetensors']['sha256'] == line.split()[0]
    assert mirror['files']['m.safetensors']['bytes'] == path.stat().st_size


def test_modified_file_fails_the_checksum(tmp_path, tiny_model):
    path = save_model(tmp_path / 'm.safetensors', tiny_model)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match='sha256'):
        load_model(path)


def test_missing_manifest_is_refused_unless_asked(tmp_path, tiny_model):
    path = save_model(tmp_path / 'm.safetensors', tiny_model, update_manifest=False)
    with pytest.raises(CheckpointError, match=MANIFEST):
        load_model(path)
    load_model(path, verify=False)


def test_pickled_weights_are_refused(tmp_path, tiny_model):
    pt = tmp_path / 'm.pt'
    torch.save(tiny_model.state_dict(), pt)
    with pytest.raises(CheckpointError, match='pickled'):
        load_model(pt, verify=False)
    disguised = tmp_path / 'm.safetensors'
    disguised.write_bytes(pt.read_bytes())
    with pytest.raises(CheckpointError, match='pickle'):
        load_model(disguised, verify=False)


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / 'junk.safetensors'
    path.write_bytes(b'hello world, not weights')
    with pytest.raises(CheckpointError, match='not a safetensors'):
        load_model(path, verify=False)


def _rewrite(path, tensors=None, **meta_changes):
    """Write a safetensors file like `path` with changed tensors/metadata."""
    from safetensors import safe_open
    with safe_open(str(path), framework='pt') as f:
        meta = dict(f.metadata())
        data = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    data.update(tensors or {})
    meta.update(meta_changes)
    out = path.with_name('edited.safetensors')
    save_file(data, str(out), metadata=meta)
    return out


def test_wrong_shape_names_the_tensor(tmp_path, tiny_model):
    path = save_model(tmp_path / 'm.safetensors', tiny_model)
    key = 'encoder.project.weight'
    bad = _rewrite(path, {key: torch.zeros(3, 3)})
    with pytest.raises(CheckpointError, match=r'encoder\.project\.weight.*\(3, 3\)'):
        load_model(bad, verify=False)


def test_config_that_does_not_fit_the_tensors(tmp_path, tiny_model):
    path = save_model(tmp_path / 'm.safetensors', tiny_model)
    other = replace(tiny_model.config, latent_dim=24)
    from craik_world_model.config import to_json
    bad = _rewrite(path, model_config=to_json(other))
    with pytest.raises(CheckpointError, match='has shape'):
        load_model(bad, verify=False)


def test_wrong_version_is_named(tmp_path, tiny_model):
    path = save_model(tmp_path / 'm.safetensors', tiny_model)
    bad = _rewrite(path, format_version='99')
    with pytest.raises(CheckpointError, match='version 99'):
        load_model(bad, verify=False)


def test_missing_tensor_is_named(tmp_path, tiny_model):
    path = save_model(tmp_path / 'm.safetensors', tiny_model)
    from safetensors import safe_open
    with safe_open(str(path), framework='pt') as f:
        meta = dict(f.metadata())
        data = {k: f.get_tensor(k) for k in f.keys() if k != 'decoder.rgb_head.bias'}  # noqa: SIM118
    out = tmp_path / 'missing.safetensors'
    save_file(data, str(out), metadata=meta)
    with pytest.raises(CheckpointError, match='decoder.rgb_head.bias'):
        load_model(out, verify=False)


def test_header_is_checked_before_parsing(tmp_path):
    path = tmp_path / 'big.safetensors'
    path.write_bytes(struct.pack('<Q', 1 << 40) + b'{"a": 1}')
    with pytest.raises(CheckpointError, match='header length'):
        load_model(path, verify=False)


def test_training_state_round_trip(tmp_path, tiny_model):
    import copy
    target = copy.deepcopy(tiny_model.encoder)
    opt = torch.optim.AdamW(tiny_model.parameters(), lr=1e-3)
    loss = sum(p.square().sum() for p in tiny_model.parameters())
    loss.backward()
    opt.step()
    gen = torch.Generator().manual_seed(5)
    path = save_training_state(tmp_path / 'last.safetensors', tiny_model, target, opt, 7,
                               {'preset': 'tiny'}, {'data_generator': gen.get_state()})
    model2 = WorldModel(tiny_model.config)
    target2 = copy.deepcopy(model2.encoder)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    step, meta, extra = load_training_state(path, model2, target2, opt2)
    assert step == 7 and meta['preset'] == 'tiny'
    assert _same_weights(model2, tiny_model) and _same_weights(target2, target)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    for k in s1['state']:
        for name, v in s1['state'][k].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(s2['state'][k][name]))
    assert json.dumps(s1['param_groups']) == json.dumps(s2['param_groups'])
    assert torch.equal(extra['data_generator'], gen.get_state())
    # A training checkpoint also loads as a model.
    assert _same_weights(load_model(path)[0], tiny_model)


def test_training_state_of_another_config_is_refused(tmp_path, tiny_model):
    import copy
    opt = torch.optim.AdamW(tiny_model.parameters())
    path = save_training_state(tmp_path / 'last.safetensors', tiny_model,
                               copy.deepcopy(tiny_model.encoder), opt, 1)
    other = WorldModel(replace(tiny_model.config, predictor_hidden=16))
    with pytest.raises(CheckpointError, match='predictor_hidden'):
        load_training_state(path, other, copy.deepcopy(other.encoder),
                            torch.optim.AdamW(other.parameters()))


def test_header_length_starting_with_0x80_is_not_mistaken_for_a_pickle(tmp_path, tiny_model):
    # The first byte of a safetensors file is the low byte of its header length: any value.
    for pad in range(256):
        path = save_model(tmp_path / 'm.safetensors', tiny_model, {'pad': 'x' * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail('no padding gave a header length with low byte 0x80')
    loaded, _ = load_model(path)
    assert _same_weights(loaded, tiny_model)
