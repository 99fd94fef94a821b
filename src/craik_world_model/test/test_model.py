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
    # The object slots come from the locator, which sees the RGB image only.
    locator = tiny_model.encoder.locator
    torch.testing.assert_close(z[:, c.object_slice], locator(rgb))
    z_other = tiny_model.encode(rgb, depth * 0.5, proprio * 0.9)
    torch.testing.assert_close(z_other[:, c.object_slice], z[:, c.object_slice])
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


def test_an_object_still_to_be_pushed_silences_the_arm_terms(tiny_config):
    """With the approach term on, the visual and pose terms count only once the objects are
    where the goal shows them (the arm's goal pose is where the push ends)."""
    model = WorldModel(replace(tiny_config, pose_weight=1.0, object_weight=1.0,
                               approach_weight=1.0))
    c = model.config
    slots = c.object_slice
    scale = torch.tensor(c.proprio_scale[:2])
    z = torch.zeros(1, c.full_latent_dim)
    goal = z.clone()
    goal[:, :c.latent_dim] += 0.5                                   # the arm looks different
    arm_only = model.energy(z, goal)
    assert float(arm_only) > 0.4
    goal[:, slots] += 0.10 / scale                                  # the cube 14 cm off its goal
    pushed_first = model.energy(z, goal)
    z_arm_there = z.clone()
    z_arm_there[:, :c.latent_dim] += 0.5
    torch.testing.assert_close(model.energy(z_arm_there, goal), pushed_first)
    goal[:, slots] = z[:, slots] + 0.005 / scale                    # 7 mm: no push needed
    assert float(model.energy(z, goal)) > 0.4


def test_rollout_weighs_the_arm_terms_by_where_the_objects_are_now(tiny_model):
    """Inside one plan the arm terms' weight is fixed by the current objects, so imagined
    pushes that bring an object near its goal do not switch the arm terms on mid-push."""
    from craik_world_model.model import arm_weight, latent_energy
    c = replace(tiny_model.config, pose_weight=1.0, object_weight=1.0, approach_weight=1.0)
    tiny_model.config = c
    z0 = tiny_model.encode(*_obs(c, 1))
    goal = z0.clone()
    goal[:, :c.latent_dim] += 0.3
    goal[:, c.object_slice] += 0.1 / torch.tensor(c.proprio_scale[:2])   # 12 cm to push
    a = _actions(6, 3, torch.Generator().manual_seed(5))
    with torch.no_grad():
        energies, _ = tiny_model.rollout_energy(z0, goal, a)
        weight = arm_weight(z0, goal, c)
        zs = tiny_model.rollout(z0.expand(6, -1), a)
        expected = latent_energy(zs, goal[:, None], c, weight[:, None]).mean(1)
    assert float(weight) == 0.0
    torch.testing.assert_close(energies, expected)


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
    d = tiny_config.state_dim
    torch.testing.assert_close(model.predictor(z, _actions(4, 1)[:, 0])[:, :d], z[:, :d])


def test_locator_keypoints_are_image_points(tiny_model):
    rgb = _obs(tiny_model.config)[0]
    points = tiny_model.encoder.locator.keypoints(rgb)          # [B, M, 2]
    assert points.shape == (2, tiny_model.config.object_keypoints, 2)
    assert float(points.abs().max()) <= 1.0


def test_object_dynamics_steps_objects_with_the_predicted_tcp(tiny_model):
    """Objects move by ObjectDynamics from the TCP before and after the predicted step."""
    c = tiny_model.config
    z = tiny_model.encode(*_obs(c))
    a = _actions(2, 1, torch.Generator().manual_seed(4))[:, 0]
    with torch.no_grad():
        z1 = tiny_model.predictor(z, a)
        dv, d = c.latent_dim, c.state_dim
        scale = torch.tensor(c.proprio_scale[:3])
        offset = torch.tensor(c.proprio_offset[:3])
        tcp, tcp1 = (x[:, dv:dv + 3] * scale + offset for x in (z, z1))
        expected = tiny_model.predictor.objects(z[:, d:], tcp, tcp1, a)
    torch.testing.assert_close(z1[:, d:], expected)


def test_object_dynamics_is_the_same_anywhere_on_the_table(tiny_model):
    """Shifting the TCP and the object together shifts the predicted object by the same amount
    (what lets recorded pushes in one place teach pushes everywhere)."""
    c = tiny_model.config
    dynamics = tiny_model.predictor.objects
    scale = torch.tensor(c.proprio_scale[:2])
    offset = torch.tensor(c.proprio_offset[:2])
    obj_m = torch.tensor([[0.55, 0.05]])
    tcp = torch.tensor([[0.52, 0.03, 0.03]])
    step = torch.tensor([[0.03, 0.01, 0.0]])
    shift = torch.tensor([[-0.1, 0.12]])
    a = torch.cat([step, torch.ones(1, 1)], dim=1)
    with torch.no_grad():
        first = dynamics((obj_m - offset) / scale, tcp, tcp + step, a) * scale + offset
        shifted_tcp = tcp + torch.cat([shift, torch.zeros(1, 1)], dim=1)
        second = dynamics((obj_m + shift - offset) / scale, shifted_tcp, shifted_tcp + step,
                          a) * scale + offset
    torch.testing.assert_close(second - shift, first, atol=1e-5, rtol=0)
    assert not torch.allclose(first, obj_m)    # an untrained MLP moves it; the point is the shift


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
