"""World models with geometric object slots: presence, conversion, export and runtime."""

import numpy as np
import pytest
import torch

from craik_world_model.geometric_model import geometric_model
from craik_world_model.model import WorldModel
from craik_world_model.runtime import load_runtime

SLOTS = 4


@pytest.fixture
def geo_model(tiny_model: WorldModel) -> WorldModel:
    return geometric_model(tiny_model, SLOTS, visual_weight=0.0, pose_weight=1.0,
                           object_weight=2.0, approach_weight=1.0)


def latent(model: WorldModel, tcp, slots) -> torch.Tensor:
    """A latent with the given TCP (m) and slots [(x, y, presence)] (m)."""
    c = model.config
    z = torch.zeros(1, c.full_latent_dim)
    offset, scale = torch.tensor(c.proprio_offset), torch.tensor(c.proprio_scale)
    z[0, c.latent_dim:c.latent_dim + 3] = (torch.tensor(tcp) - offset[:3]) / scale[:3]
    for k, (x, y, present) in enumerate(slots):
        z[0, c.object_slice.start + 2 * k:c.object_slice.start + 2 * k + 2] = \
            (torch.tensor([x, y]) - offset[:2]) / scale[:2] * present
        z[0, c.presence_slice.start + k] = present
    return z


def test_conversion_keeps_the_learned_parts_and_drops_the_locator(tiny_model, geo_model):
    c = geo_model.config
    assert c.object_source == 'geometry' and c.object_count == SLOTS
    assert c.full_latent_dim == c.latent_dim + c.proprio_dim + 3 * SLOTS
    assert geo_model.encoder.locator is None
    for name, tensor in geo_model.predictor.objects.state_dict().items():
        torch.testing.assert_close(tensor, tiny_model.predictor.objects.state_dict()[name])
    with pytest.raises(ValueError, match='object dynamics'):
        from dataclasses import replace
        geometric_model(WorldModel(replace(tiny_model.config, object_count=0)), SLOTS)


def test_an_empty_slot_neither_moves_nor_counts(geo_model):
    goal = latent(geo_model, [0.5, 0.0, 0.1], [(0.55, 0.05, 1), (0.0, 0.0, 0), (0, 0, 0),
                                                (0, 0, 0)])
    z = latent(geo_model, [0.5, 0.0, 0.1], [(0.55, 0.05, 1), (0.0, 0.0, 0), (0, 0, 0),
                                             (0, 0, 0)])
    base = geo_model.energy(z, goal)
    # An object seen now in a slot the goal has empty does not change the energy.
    seen = latent(geo_model, [0.5, 0.0, 0.1], [(0.55, 0.05, 1), (0.4, -0.1, 1), (0, 0, 0),
                                                (0, 0, 0)])
    torch.testing.assert_close(geo_model.energy(seen, goal), base)
    # A present object off its goal does.
    off = latent(geo_model, [0.5, 0.0, 0.1], [(0.62, 0.05, 1), (0, 0, 0), (0, 0, 0), (0, 0, 0)])
    assert float(geo_model.energy(off, goal)) > float(base) + 0.1
    # Empty slots keep their values through a step; presence flags are carried unchanged.
    c = geo_model.config
    with torch.no_grad():
        nxt = geo_model.predictor(seen, torch.tensor([[0.05, 0.0, -0.05, 1.0]]))
    torch.testing.assert_close(nxt[0, c.object_slice][4:], seen[0, c.object_slice][4:])
    torch.testing.assert_close(nxt[0, c.presence_slice], seen[0, c.presence_slice])


def test_the_visual_term_has_its_own_weight(geo_model):
    goal = latent(geo_model, [0.5, 0.0, 0.1], [(0, 0, 0)] * SLOTS)
    z = goal.clone()
    z[0, :geo_model.config.latent_dim] = 1.0   # a very different image
    assert float(geo_model.energy(z, goal)) == pytest.approx(0.0, abs=1e-6)


def test_export_runs_in_onnxruntime_like_eager(tmp_path, geo_model):
    from craik_world_model.export import export_model

    export_model(geo_model, tmp_path / 'geo', horizons=(4,))
    rt = load_runtime(tmp_path / 'geo', backend='onnxruntime', threads=1)
    c = rt.config
    rng = np.random.default_rng(0)
    s = c.image_size
    rgb = rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 2.0, (s, s)).astype(np.float32)
    z = rt.encode(rgb, depth, np.array([0.5, 0.0, 0.1, 1.0], np.float32))
    assert np.all(z[c.object_slice.start:] == 0)          # filled by the runtime, not the graph
    slots = np.array([[0.55, 0.05, 1.0], [0.4, -0.1, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    z0 = rt.with_geometry(z, slots)
    goal = rt.with_geometry(z, slots + [[0.08, 0.0, 0.0], [0, 0, 0], [0, 0, 0], [0, 0, 0]],
                            tcp=np.array([0.5, 0.1, 0.05]))
    assert z0[c.presence_slice].tolist() == [1, 1, 0, 0]
    actions = rng.uniform(-0.05, 0.05, (16, 4, 4)).astype(np.float32)
    actions[..., 3] = 1.0
    energies = rt.rollout_energy(z0, goal, actions)
    with torch.no_grad():
        eager, _ = geo_model.rollout_energy(torch.from_numpy(z0)[None],
                                            torch.from_numpy(goal)[None],
                                            torch.from_numpy(actions))
    np.testing.assert_allclose(energies, eager.numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match='slots must be'):
        rt.with_geometry(z, slots[:2])
    with pytest.raises(ValueError, match='tcp must be'):
        rt.with_geometry(z, slots, tcp=np.array([np.nan, 0, 0]))


def test_arm_dynamics_are_learned_from_episodes_without_the_image(tmp_path, geo_model):
    import argparse

    from craik_sim import collect
    from craik_world_model.geometric_model import train_proprio_dynamics

    parser = argparse.ArgumentParser()
    collect.configure_parser(parser)
    data = tmp_path / 'episodes'
    assert collect.run(parser.parse_args(['--task', 'push', '--episodes', '5', '--steps', '10',
                                          '--out', str(data), '--no-progress',
                                          '--vary-all'])) == 0
    report = train_proprio_dynamics(geo_model, [data], steps=300, horizon=4,
                                    say=lambda _: None)
    assert geo_model.config.proprio_dynamics and geo_model.predictor.proprio is not None
    errors = report['tcp_error_after_horizon']
    assert set(errors) == {'proprio_dynamics', 'inherited_visual_predictor', 'summed_commands',
                           'shipped'}
    # Better than a TCP that stays where it is (what the untrained, identity dynamics imagine).
    p0 = torch.zeros(1, geo_model.config.proprio_dim)
    a = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    moved = geo_model.predictor.proprio(p0, a) - p0
    assert float(moved[0, 0]) > 0.0          # +x command, +x motion
    assert errors['proprio_dynamics']['median_m'] < 0.1
    with pytest.raises(ValueError, match='at least 5 episodes'):
        train_proprio_dynamics(geo_model, [data], steps=1, horizon=40, say=lambda _: None)
