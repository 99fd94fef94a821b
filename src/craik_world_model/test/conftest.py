"""Shared fixtures of the world-model tests: tiny configs, toy episodes, one thread."""

from dataclasses import replace

import pytest
import torch

from craik_world_model import synthetic
from craik_world_model.config import ModelConfig, Preset, get_preset
from craik_world_model.model import WorldModel

# Other engineers' simulators share this 2-core machine: keep the quick tests on one thread.
torch.set_num_threads(1)


@pytest.fixture
def tiny_preset() -> Preset:
    return get_preset('tiny')


@pytest.fixture
def tiny_config(tiny_preset: Preset) -> ModelConfig:
    return tiny_preset.model


@pytest.fixture
def tiny_model(tiny_config: ModelConfig) -> WorldModel:
    torch.manual_seed(0)
    model = WorldModel(tiny_config)
    # The predictor starts as the identity; perturb it so tests see real dynamics.
    with torch.no_grad():
        for p in model.predictor.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


@pytest.fixture
def blind_model(tiny_config: ModelConfig) -> WorldModel:
    torch.manual_seed(1)
    return WorldModel(replace(tiny_config, action_conditioned=False)).eval()


@pytest.fixture
def toy_episodes() -> list:
    return synthetic.episodes(6, steps=10, width=32, height=24, seed=3)
