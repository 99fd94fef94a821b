"""Model shapes, rollout/energy semantics, the RGB-only path and the action-blind variant."""

import torch

from craik_world_model.model import WorldModel, count_parameters


def _obs(config, b=2):
    s = config.image_size
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(b, 3, s, s, generator=g)                           # [B, 3, S, S]
    depth = torch.rand(b, 1, s, s, generator=g) * 2 + 0.3               # [B, 1, S, S] metres
    proprio = torch.tensor([[0.5, 0.0, 0.2, 0.0]]).repeat(b, 1)          # [B, P]
    return rgb, depth, proprio


def _actions(n, h, generator=None):
    a = torch.rand(n, h, 4, generator=generator)
    a[..., :3] = (a[..., :3] - 0.5) * 0.1
    return a                                                             # [N, H, A]


def test_shapes(tiny_model):
    c = tiny_model.config
    rgb, depth, proprio = _obs(c)
    z = tiny_model.encode(rgb, depth, proprio)
    assert z.shape == (2, c.full_latent_dim)
    # The proprioceptive part is the normalised proprioception itself.
    torch.testing.assert_close(z[:, c.latent_dim:], tiny_model.encoder.normalise_proprio(proprio))
    zs = tiny_model.rollout(z, _actions(2, 5))
    assert zs.shape == (2, 5, c.full_latent_dim)
    with torch.no_grad():
        rgb_hat, depth_hat = tiny_model.decode(zs[:, -1])
    assert rgb_hat.shape == rgb.shape and depth_hat.shape == depth.shape
    assert float(rgb_hat.min()) >= 0 and float(rgb_hat.max()) <= 1
    assert float(depth_hat.min()) >= 0 and float(depth_hat.max()) <= c.depth_max_m


def test_rollout_energy_is_rollout_then_energy(tiny_model):
    c = tiny_model.config
    z0 = tiny_model.encode(*_obs(c, 1))
    goal = tiny_model.encode(*[x.flip(0) for x in _obs(c, 1)]) + 0.1
    a = _actions(7, 4, torch.Generator().manual_seed(2))
    energies, finals = tiny_model.rollout_energy(z0, goal, a)
    assert energies.shape == (7,) and finals.shape == (7, c.full_latent_dim)
    zs = tiny_model.rollout(z0.expand(7, -1), a)
    torch.testing.assert_close(finals, zs[:, -1])
    expected = (zs[:, -1, :c.latent_dim] - goal[:, :c.latent_dim]).abs().mean(-1)
    torch.testing.assert_close(energies, expected)


def test_energy_ignores_proprioception_and_is_zero_at_the_goal(tiny_model):
    c = tiny_model.config
    z = torch.randn(3, c.full_latent_dim)
    goal = z.clone()
    goal[:, c.latent_dim:] += 5.0
    torch.testing.assert_close(tiny_model.energy(z, goal), torch.zeros(3))


def test_actions_change_the_prediction(tiny_model):
    c = tiny_model.config
    z0 = tiny_model.encode(*_obs(c, 1))
    a = _actions(2, 3, torch.Generator().manual_seed(3))
    _, finals = tiny_model.rollout_energy(z0, z0, a)
    assert not torch.allclose(finals[0], finals[1])


def test_action_blind_model_ignores_actions(blind_model):
    c = blind_model.config
    assert not c.action_conditioned
    z0 = blind_model.encode(*_obs(c, 1))
    e, _ = blind_model.rollout_energy(z0, z0 * 0.5, _actions(5, 3))
    torch.testing.assert_close(e, e[:1].expand(5))


def test_untrained_predictor_is_identity(tiny_config):
    model = WorldModel(tiny_config)
    z = torch.randn(4, tiny_config.full_latent_dim)
    torch.testing.assert_close(model.predictor(z, _actions(4, 1)[:, 0]), z)


def test_missing_depth_is_a_valid_input(tiny_model):
    c = tiny_model.config
    rgb, depth, proprio = _obs(c)
    with_depth = tiny_model.encode(rgb, depth, proprio)
    without = tiny_model.encode(rgb, torch.zeros_like(depth), proprio)
    assert torch.isfinite(without).all()
    assert not torch.allclose(with_depth, without)


def test_cpu_preset_is_compact():
    from craik_world_model.config import get_preset
    model = WorldModel(get_preset('cpu').model)
    assert count_parameters(model) < 5_000_000            # a few MB of weights
    assert count_parameters(model.predictor) < 300_000    # cheap 256 x 8 rollouts
