"""Model shapes, rollout/energy semantics, the RGB-only path and the action-blind variant."""

from dataclasses import replace

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
    dv, p = c.latent_dim, c.proprio_dim
    torch.testing.assert_close(z[:, dv:dv + p], tiny_model.encoder.normalise_proprio(proprio))
    # The object slots are read out of the visual part.
    encoder = tiny_model.encoder
    torch.testing.assert_close(z[:, c.object_slice], encoder.object_head(z[:, :dv]))
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
    # Default: the mean over the imagined trajectory's steps.
    per_step = (zs[..., :c.latent_dim] - goal[:, None, :c.latent_dim]).abs().mean(-1)  # [N, H]
    assert c.energy_over == 'trajectory'
    torch.testing.assert_close(energies, per_step.mean(1))
    tiny_model.config = replace(c, energy_over='final')
    try:
        final_only, _ = tiny_model.rollout_energy(z0, goal, a)
    finally:
        tiny_model.config = c
    torch.testing.assert_close(final_only, per_step[:, -1])


class _ShiftTcpX(torch.nn.Module):
    """Dynamics stand-in: the normalised TCP x moves by 10 x the action's dx."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        out = z.clone()
        out[:, self.index] += a[:, 0] * 10.0
        return out


def test_trajectory_energy_prefers_getting_there_early(tiny_config):
    # Two plans with the same end point: the one that gets there first scores lower.
    model = WorldModel(replace(tiny_config, pose_weight=1.0))
    c = model.config
    z0 = torch.zeros(1, c.full_latent_dim)
    goal = torch.zeros(1, c.full_latent_dim)
    goal[0, c.latent_dim] = 1.0                                    # TCP x, normalised
    model.predictor = _ShiftTcpX(c.latent_dim)  # type: ignore[assignment]
    early = torch.zeros(1, 4, 4)
    early[0, :2, 0] = 0.05                                         # there after 2 steps
    late = torch.zeros(1, 4, 4)
    late[0, 2:, 0] = 0.05                                          # there after 4 steps
    e_early, z_early = model.rollout_energy(z0, goal, early)
    e_late, z_late = model.rollout_energy(z0, goal, late)
    torch.testing.assert_close(z_early, z_late)
    assert float(e_early) < float(e_late)


def test_energy_ignores_proprioception_and_is_zero_at_the_goal(tiny_model):
    c = tiny_model.config
    assert c.pose_weight == 0.0
    z = torch.randn(3, c.full_latent_dim)
    goal = z.clone()
    goal[:, c.latent_dim:] += 5.0
    torch.testing.assert_close(tiny_model.energy(z, goal), torch.zeros(3))


def test_pose_term_compares_tcp_position_not_gripper(tiny_config):
    model = WorldModel(replace(tiny_config, pose_weight=2.0))
    c = model.config
    z = torch.randn(2, c.full_latent_dim)
    goal = z.clone()
    goal[:, -1] += 5.0                                             # gripper: never compared
    torch.testing.assert_close(model.energy(z, goal), torch.zeros(2))
    goal[:, c.latent_dim] += 0.3                                   # TCP x
    torch.testing.assert_close(model.energy(z, goal), torch.full((2,), 2.0 * 0.3 / 3))


def test_goal_encoding_reads_the_pose_from_the_image(tiny_model):
    c = tiny_model.config
    rgb, depth, proprio = _obs(c)
    with torch.no_grad():
        z = tiny_model.encode(rgb, depth, proprio)
        g = tiny_model.encode_goal(rgb, depth)
        torch.testing.assert_close(g[:, :c.latent_dim], z[:, :c.latent_dim])
        torch.testing.assert_close(g[:, c.latent_dim:c.latent_dim + 3],
                                   tiny_model.probe(z[:, :c.latent_dim])[:, :3])


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
