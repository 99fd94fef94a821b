"""Typed configs and presets."""

from dataclasses import replace

import pytest

from craik_world_model.config import (
    PRESETS,
    DataConfig,
    ModelConfig,
    TrainConfig,
    get_preset,
    model_config_from_json,
    to_json,
    train_config_from_json,
)


def test_presets_are_valid_and_named():
    assert {'cpu', 'gpu', 'tiny'} <= set(PRESETS)
    cpu = get_preset('cpu').model
    assert cpu.image_size == 64
    assert 64 <= cpu.latent_dim <= 256
    assert cpu.full_latent_dim == cpu.latent_dim + 4 + 2 * cpu.object_count
    assert get_preset('gpu').model.image_size > cpu.image_size


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match='cpu'):
        get_preset('huge')


@pytest.mark.parametrize('field, value', [
    ('image_size', 60),           # not divisible by 2**stages
    ('latent_dim', 0),
    ('energy', 'cosine'),
    ('depth_max_m', -1.0),
    ('proprio_scale', (1.0, 0.0, 1.0, 1.0)),
    ('energy_over', 'best'),
    ('pose_weight', -1.0),
    ('pose_weight', float('nan')),
    ('object_count', -1),
    ('object_count', 2.0),
    ('object_weight', float('inf')),
    ('approach_weight', -0.5),
])
def test_model_config_rejects_bad_fields_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        replace(ModelConfig(object_count=2), **{field: value})


def test_object_terms_need_object_slots():
    with pytest.raises(ValueError, match='object_weight needs object slots'):
        ModelConfig(object_weight=1.0)
    c = ModelConfig(object_count=2, object_weight=1.0)
    assert c.full_latent_dim == c.latent_dim + c.proprio_dim + 4
    assert c.object_slice == slice(c.latent_dim + c.proprio_dim, c.full_latent_dim)


@pytest.mark.parametrize('field, value', [
    ('steps', 0), ('ema_decay', 1.0), ('depth_dropout', 1.5), ('w_latent', -1.0),
    ('batch_size', True),
])
def test_train_config_rejects_bad_fields_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        replace(TrainConfig(), **{field: value})


def test_data_config_validates():
    with pytest.raises(ValueError, match='on_corrupt'):
        DataConfig(on_corrupt='ignore')
    assert DataConfig().augment is False


def test_configs_round_trip_through_json():
    for preset in PRESETS.values():
        assert model_config_from_json(to_json(preset.model)) == preset.model
        assert train_config_from_json(to_json(preset.train)) == preset.train


def test_unknown_json_field_is_an_error():
    text = to_json(ModelConfig())[:-1] + ', "teleport": 1}'
    with pytest.raises(ValueError, match='teleport'):
        model_config_from_json(text)
