"""The action-conditioned RGB-D world model.

Three parts (sizes for the ``cpu`` preset, S=64, D_v=128, P=4, A=4):

- :class:`RGBDEncoder`: RGB ``[B, 3, S, S]`` + depth ``[B, 1, S, S]`` (metres, 0 = no return) +
  proprioception ``[B, P]`` -> latent ``z = [z_vis | p_norm | objects]`` ``[B, D]``
  (D = D_v + P + 2K). Two convolutional streams: depth (value + validity mask) and RGB; at
  every stage the depth stream's features are concatenated into the RGB stream (RoboScape:
  depth informs RGB). The visual latent is layer-normalised, so its scale cannot collapse and
  L1 distances between latents are comparable across frames. An all-invalid depth frame is the
  RGB-only path (trained by depth dropout), used for goals given as an RGB image. With K > 0
  object slots, an :class:`ObjectLocator` reads the K objects' table-plane positions from the
  RGB image.
- :class:`Predictor`: ``[z_vis, p]_{t+1} = [z_vis, p]_t + MLP([z_vis, p, a / action_scale])``;
  a compact vector step, so the planner's 256 x 8 rollout costs a few matrix products. Object
  slots move by :class:`ObjectDynamics`, from where the TCP is relative to each object and how
  it moves in the step.
- :class:`RGBDDecoder`: ``[z_vis, p]`` -> RGB ``[B, 3, S, S]`` + depth ``[B, 1, S, S]``
  (metres); a depth stream whose features feed the RGB stream at every scale, like the encoder.

The energy of an imagined outcome is the mean absolute difference between the visual parts of the
predicted latents and the encoded goal (V-JEPA 2-AC / DINO-WM), averaged over the imagined
trajectory (``energy_over``), plus optionally a pose term (``pose_weight``): the predicted TCP
position against the one the goal image shows, read out of the goal's visual latent by the
probe, plus optionally object and approach terms on the object slots (``object_weight``,
``approach_weight``: :mod:`craik_world_model.object_energy`); with the approach term on, the
visual and pose terms count only once the current objects are near where the goal shows them
(:func:`arm_weight`). No decoding in the loop.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812

from craik_world_model.config import OBJECT_DIMS, POSE_DIMS, ModelConfig
from craik_world_model.object_energy import engagement, object_energy


def tcp_metres(z: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """The TCP position ``[..., 3]`` (m, fr3_link0) held in latents ``z [..., D]``."""
    dv = config.latent_dim
    offset = torch.tensor(config.proprio_offset[:POSE_DIMS], dtype=z.dtype, device=z.device)
    scale = torch.tensor(config.proprio_scale[:POSE_DIMS], dtype=z.dtype, device=z.device)
    return z[..., dv:dv + POSE_DIMS] * scale + offset


def slots_metres(slots: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Normalised object slots ``[..., 2K]`` -> positions ``[..., K, 2]`` (m, table plane)."""
    offset = torch.tensor(config.proprio_offset[:OBJECT_DIMS], dtype=slots.dtype,
                          device=slots.device)
    scale = torch.tensor(config.proprio_scale[:OBJECT_DIMS], dtype=slots.dtype,
                         device=slots.device)
    return slots.unflatten(-1, (config.object_count, OBJECT_DIMS)) * scale + offset


def objects_metres(z: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """The object positions ``[..., K, 2]`` (m, table plane) held in latents ``z [..., D]``."""
    return slots_metres(z[..., config.object_slice], config)


def presence(z: torch.Tensor, goal: torch.Tensor, config: ModelConfig) -> torch.Tensor | None:
    """Which slots count ``[..., K]`` (1: an object fills the slot in both ``z`` and ``goal``),
    or None when every slot always counts (locator slots)."""
    if not config.presence_dims:
        return None
    return z[..., config.presence_slice] * goal[..., config.presence_slice]


def arm_weight(z: torch.Tensor, goal: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """How much the visual and pose terms count for latents ``z [..., D]``: ``[...]``, 1 without
    the approach term; with it, one minus the largest object engagement (an object still to be
    pushed comes first: the arm's goal pose is where the push ends)."""
    if config.approach_weight <= 0:
        return torch.ones(z.shape[:-1], dtype=z.dtype, device=z.device)
    engaged = engagement(objects_metres(z, config), objects_metres(goal, config))
    present = presence(z, goal, config)
    if present is not None:
        engaged = engaged * present
    return 1.0 - engaged.amax(dim=-1)


def latent_energy(z: torch.Tensor, goal: torch.Tensor, config: ModelConfig,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Distance of latents ``[..., D]`` to goal latents ``[..., D]`` -> ``[...]``.

    The visual parts, plus ``pose_weight`` times the TCP-position parts (a goal's comes from
    the image read-out, :meth:`WorldModel.encode_goal`), both scaled by ``weight`` (default:
    :func:`arm_weight` of ``z``), plus the object and approach terms of
    :func:`craik_world_model.object_energy.object_energy` when their weights are set. The
    gripper entry never counts. The one definition used by the rollout graphs and by every
    runtime's ``energy``.
    """
    dv = config.latent_dim

    def dist(x: torch.Tensor) -> torch.Tensor:
        return (x * x).mean(dim=-1) if config.energy == 'l2' else x.abs().mean(dim=-1)

    e = config.visual_weight * dist(z[..., :dv] - goal[..., :dv])
    if config.pose_weight > 0:
        e = e + config.pose_weight * dist(z[..., dv:dv + POSE_DIMS] - goal[..., dv:dv + POSE_DIMS])
    if config.object_weight > 0 or config.approach_weight > 0:
        e = e * (arm_weight(z, goal, config) if weight is None else weight)
        e = e + object_energy(tcp_metres(z, config), objects_metres(z, config),
                              objects_metres(goal, config), config.object_weight,
                              config.approach_weight, presence=presence(z, goal, config))
    return e


class ConvStage(nn.Module):
    """Stride-2 conv + stride-1 conv, SiLU: ``[B, Cin, H, W] -> [B, Cout, H/2, W/2]``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
        self.conv = nn.Conv2d(c_out, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.down(x))
        return F.silu(x + self.conv(x))


class UpStage(nn.Module):
    """Nearest 2x upsampling + conv, SiLU: ``[B, Cin, H, W] -> [B, Cout, 2H, 2W]``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.conv(F.interpolate(x, scale_factor=2.0, mode='nearest')))


def _coords(size: int) -> torch.Tensor:
    """[1, 2, S, S] pixel coordinates in [-1, 1] (where things are matters for a fixed camera)."""
    lin = torch.linspace(-1.0, 1.0, size)
    yy, xx = torch.meshgrid(lin, lin, indexing='ij')
    return torch.stack([xx, yy])[None]


class ObjectLocator(nn.Module):
    """RGB ``[B, 3, S, S]`` in [0, 1] -> object slots ``[B, 2K]`` (normalised table-plane x, y).

    Convolutions keep full resolution for two stages (a 5 cm cube is ~3 pixels wide at 64x64),
    then a stride-2 stage; each of ``object_keypoints`` feature maps becomes one image point by a
    spatial softmax (its expected pixel coordinates, sub-pixel), and an MLP maps the points to
    the slots. The fixed camera makes image points a function of table positions, which the
    MLP learns; it is trained on the simulator's object positions.
    """

    coords: torch.Tensor
    grid: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c1, c2, c3, c4 = config.object_channels
        self.register_buffer('coords', _coords(config.image_size), persistent=False)
        self.register_buffer('grid', _coords(config.image_size // 2).flatten(2)[0],
                             persistent=False)                                 # [2, (S/2)^2]
        self.features = nn.Sequential(
            nn.Conv2d(3 + 2, c1, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c1, c2, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c2, c3, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(c3, c4, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c4, config.object_keypoints, 1))
        hidden = config.object_hidden
        self.head = nn.Sequential(
            nn.Linear(2 * config.object_keypoints, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, config.object_dims))

    def keypoints(self, rgb: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S] -> [B, M, 2]`` image points in [-1, 1] (x right, y down)."""
        x = torch.cat([rgb * 2.0 - 1.0, self.coords.expand(rgb.shape[0], -1, -1, -1)], dim=1)
        weights = self.features(x).flatten(2).softmax(dim=-1)                  # [B, M, (S/2)^2]
        return torch.einsum('bmn,cn->bmc', weights, self.grid)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.head(self.keypoints(rgb).flatten(1))                       # [B, 2K]


class ObjectDynamics(nn.Module):
    """One step of the object slots: ``objects [N, 2K]`` (normalised), the TCP before and after
    the step ``[N, 3]`` (m) and the action ``[N, A]`` -> ``objects [N, 2K]``.

    Each object moves by an MLP (shared by the slots) of the TCP's position relative to it,
    the TCP's height, the TCP's motion over the step and the commanded displacement; far from
    the TCP it learns to stay put. Relative inputs make one push look the same anywhere on the
    table, which is what lets a few hundred recorded pushes cover it.
    """

    offset: torch.Tensor
    scale: torch.Tensor

    # Input scales (m): positions relative to the object, the TCP's height, displacements.
    RELATIVE_SCALE_M = 0.1
    DISPLACEMENT_SCALE_M = 0.05

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.count = config.object_count
        self.register_buffer('offset', torch.tensor(config.proprio_offset[:OBJECT_DIMS]),
                             persistent=False)
        self.register_buffer('scale', torch.tensor(config.proprio_scale[:OBJECT_DIMS]),
                             persistent=False)
        hidden = config.object_hidden
        inputs = OBJECT_DIMS + 1 + POSE_DIMS + POSE_DIMS
        self.mlp = nn.Sequential(
            nn.Linear(inputs, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, OBJECT_DIMS))

    def forward(self, objects: torch.Tensor, tcp: torch.Tensor, tcp_next: torch.Tensor,
                action: torch.Tensor) -> torch.Tensor:
        positions = objects.unflatten(-1, (self.count, OBJECT_DIMS)) * self.scale + self.offset
        tcp_k = tcp[:, None, :].expand(-1, self.count, -1)                     # [N, K, 3]
        step = ((tcp_next - tcp) / self.DISPLACEMENT_SCALE_M)[:, None, :].expand(
            -1, self.count, -1)
        command = (action[:, :POSE_DIMS] / self.DISPLACEMENT_SCALE_M)[:, None, :].expand(
            -1, self.count, -1)
        x = torch.cat([(positions - tcp_k[..., :OBJECT_DIMS]) / self.RELATIVE_SCALE_M,
                       tcp_k[..., POSE_DIMS - 1:] / self.RELATIVE_SCALE_M, step, command],
                      dim=-1)                                                  # [N, K, 9]
        moved = positions + self.DISPLACEMENT_SCALE_M * self.mlp(x)            # [N, K, 2] m
        return ((moved - self.offset) / self.scale).flatten(-2)


class RGBDEncoder(nn.Module):
    """RGB-D (+ proprioception) -> latent ``[B, D]``."""

    coords: torch.Tensor
    proprio_offset: torch.Tensor
    proprio_scale: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer('coords', _coords(config.image_size), persistent=False)
        self.register_buffer('proprio_offset', torch.tensor(config.proprio_offset),
                             persistent=False)
        self.register_buffer('proprio_scale', torch.tensor(config.proprio_scale),
                             persistent=False)
        depth_in, rgb_in = 2, 3 + 2
        self.depth_stages = nn.ModuleList()
        self.rgb_stages = nn.ModuleList()
        for c_rgb, c_depth in zip(config.rgb_channels, config.depth_channels, strict=True):
            self.depth_stages.append(ConvStage(depth_in, c_depth))
            # Depth features of the same resolution join the RGB stream.
            self.rgb_stages.append(ConvStage(rgb_in + depth_in, c_rgb))
            depth_in, rgb_in = c_depth, c_rgb
        grid = config.grid_size
        self.project = nn.Linear((rgb_in + depth_in) * grid * grid, config.latent_dim)
        self.norm = nn.LayerNorm(config.latent_dim, elementwise_affine=False)
        self.locator = (ObjectLocator(config)
                        if config.object_count and config.object_source == 'locator' else None)

    def depth_input(self, depth: torch.Tensor) -> torch.Tensor:
        """Depth ``[B, 1, S, S]`` metres -> ``[B, 2, S, S]`` (normalised value, valid mask)."""
        valid = (depth > 0).to(depth.dtype)
        value = (depth / self.config.depth_max_m).clamp(0.0, 1.0) * valid
        return torch.cat([value, valid], dim=1)

    def normalise_proprio(self, proprio: torch.Tensor) -> torch.Tensor:
        """Proprioception ``[..., P]`` (SI units) -> the latent's proprioceptive part."""
        return (proprio - self.proprio_offset) / self.proprio_scale

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor,
                proprio: torch.Tensor) -> torch.Tensor:
        # rgb [B, 3, S, S] in [0, 1]; depth [B, 1, S, S] metres; proprio [B, P] -> z [B, D]
        d = self.depth_input(depth)
        r = torch.cat([rgb * 2.0 - 1.0, self.coords.expand(rgb.shape[0], -1, -1, -1)], dim=1)
        for depth_stage, rgb_stage in zip(self.depth_stages, self.rgb_stages, strict=True):
            r = rgb_stage(torch.cat([r, d], dim=1))
            d = depth_stage(d)
        z_vis = self.norm(self.project(torch.cat([r, d], dim=1).flatten(1)))  # [B, D_v]
        parts = [z_vis, self.normalise_proprio(proprio)]
        if self.locator is not None:
            parts.append(self.locator(rgb))                                      # [B, 2K]
        elif self.config.object_count:
            # Geometric slots and their presence flags: filled by the runtime from the depth.
            parts.append(z_vis.new_zeros(z_vis.shape[0],
                                         self.config.object_dims + self.config.presence_dims))
        return torch.cat(parts, dim=1)


class ProprioDynamics(nn.Module):
    """One step of the proprioception from itself and the action: ``p [N, P], a [N, A] ->
    p' [N, P]`` (normalised; ``a`` divided by the action scale). The TCP moves by the commanded
    displacement plus a learned MLP correction (workspace limits, contacts, a motion that has
    not finished within the step), which starts at zero."""

    command: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        # Scaled action -> normalised TCP displacement, per axis.
        command = torch.zeros(config.proprio_dim)
        command[:POSE_DIMS] = (torch.tensor(config.action_scale[:POSE_DIMS])
                               / torch.tensor(config.proprio_scale[:POSE_DIMS]))
        self.register_buffer('command', command, persistent=False)
        hidden = config.proprio_hidden
        self.mlp = nn.Sequential(
            nn.Linear(config.proprio_dim + config.action_dim, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, config.proprio_dim))
        last = self.mlp[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, proprio: torch.Tensor, scaled_action: torch.Tensor) -> torch.Tensor:
        p = proprio.shape[-1]
        commanded = proprio + scaled_action[..., :p] * self.command
        return commanded + self.mlp(torch.cat([proprio, scaled_action], dim=-1))


class Predictor(nn.Module):
    """One latent step: ``z [N, D], a [N, A] -> z' [N, D]`` (residual MLP on the visual and
    proprioceptive parts; :class:`ObjectDynamics` on the object slots)."""

    action_scale: torch.Tensor
    tcp_offset: torch.Tensor
    tcp_scale: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer('action_scale', torch.tensor(config.action_scale),
                             persistent=False)
        self.register_buffer('tcp_offset', torch.tensor(config.proprio_offset[:POSE_DIMS]),
                             persistent=False)
        self.register_buffer('tcp_scale', torch.tensor(config.proprio_scale[:POSE_DIMS]),
                             persistent=False)
        d = config.state_dim
        a = config.action_dim if config.action_conditioned else 0
        layers: list[nn.Module] = [nn.Linear(d + a, config.predictor_hidden), nn.SiLU()]
        for _ in range(config.predictor_layers - 1):
            layers += [nn.Linear(config.predictor_hidden, config.predictor_hidden), nn.SiLU()]
        layers.append(nn.Linear(config.predictor_hidden, d))
        self.mlp = nn.Sequential(*layers)
        # Start as the identity dynamics: the first steps learn the change, not the state.
        last = self.mlp[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.objects = ObjectDynamics(config) if config.object_count else None
        self.proprio = ProprioDynamics(config) if config.proprio_dynamics else None

    def forward(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        d = self.config.state_dim
        state = z[:, :d]
        if self.config.action_conditioned:
            x = torch.cat([state, action / self.action_scale], dim=-1)
        else:
            x = state
        state_next = state + self.mlp(x)
        if self.proprio is not None:
            dv = self.config.latent_dim
            proprio_next = self.proprio(state[:, dv:], action / self.action_scale)  # [N, P]
            state_next = torch.cat([state_next[:, :dv], proprio_next], dim=-1)
        if self.objects is None:
            return state_next
        dv = self.config.latent_dim
        tcp = z[:, dv:dv + POSE_DIMS] * self.tcp_scale + self.tcp_offset             # [N, 3] m
        tcp_next = state_next[:, dv:dv + POSE_DIMS] * self.tcp_scale + self.tcp_offset
        slots = z[:, self.config.object_slice]                                      # [N, 2K]
        objects = self.objects(slots, tcp, tcp_next, action)                        # [N, 2K]
        if not self.config.presence_dims:
            return torch.cat([state_next, objects], dim=-1)
        # An empty slot stays where it is (its dynamics would drift a far-away placeholder).
        present = z[:, self.config.presence_slice]                                  # [N, K]
        keep = present.unsqueeze(-1).expand(-1, -1, OBJECT_DIMS).flatten(1)         # [N, 2K]
        objects = keep * objects + (1.0 - keep) * slots
        return torch.cat([state_next, objects, present], dim=-1)


class RGBDDecoder(nn.Module):
    """Latent ``[B, D]`` -> RGB ``[B, 3, S, S]`` in [0, 1] and depth ``[B, 1, S, S]`` metres
    (from the visual and proprioceptive parts; the object slots are not drawn)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        grid = config.grid_size
        c_rgb, c_depth = config.decoder_channels[0], config.decoder_depth_channels[0]
        self.c0 = (c_rgb, c_depth)
        self.project = nn.Linear(config.state_dim, (c_rgb + c_depth) * grid * grid)
        self.depth_stages = nn.ModuleList()
        self.rgb_stages = nn.ModuleList()
        outs = list(zip(config.decoder_channels[1:], config.decoder_depth_channels[1:],
                        strict=True))
        outs.append((config.decoder_channels[-1], config.decoder_depth_channels[-1]))
        for out_rgb, out_depth in outs:
            self.depth_stages.append(UpStage(c_depth, out_depth))
            self.rgb_stages.append(UpStage(c_rgb + c_depth, out_rgb))
            c_rgb, c_depth = out_rgb, out_depth
        self.depth_head = nn.Conv2d(c_depth, 1, 3, padding=1)
        self.rgb_head = nn.Conv2d(c_rgb + c_depth, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grid = self.config.grid_size
        h = F.silu(self.project(z[:, :self.config.state_dim])).view(z.shape[0], -1, grid, grid)
        r, d = torch.split(h, list(self.c0), dim=1)
        for depth_stage, rgb_stage in zip(self.depth_stages, self.rgb_stages, strict=True):
            r = rgb_stage(torch.cat([r, d], dim=1))
            d = depth_stage(d)
        rgb = torch.sigmoid(self.rgb_head(torch.cat([r, d], dim=1)))          # [B, 3, S, S]
        depth = torch.sigmoid(self.depth_head(d)) * self.config.depth_max_m   # [B, 1, S, S]
        return rgb, depth


class WorldModel(nn.Module):
    """Encoder + predictor + decoder, and the batched rollout and energy the planner uses."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = RGBDEncoder(config)
        self.predictor = Predictor(config)
        self.decoder = RGBDDecoder(config)
        # Reads the normalised TCP position back from the *visual* latent (trained on the first
        # POSE_DIMS outputs): it makes the arm's pose a prominent, well-scaled direction of z_vis,
        # and it tells where a goal image shows the TCP (encode_goal).
        self.probe = nn.Linear(config.latent_dim, config.proprio_dim)

    def encode(self, rgb: torch.Tensor, depth: torch.Tensor,
               proprio: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S], [B, 1, S, S], [B, P] -> [B, D]``."""
        return self.encoder(rgb, depth, proprio)

    def pose_readout(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised TCP position ``[B, POSE_DIMS]`` read from the visual part of ``z [B, D]``."""
        return self.probe(z[..., :self.config.latent_dim])[..., :POSE_DIMS]

    def with_pose_readout(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, D]`` with its TCP-position entries replaced by the image's read-out."""
        dv = self.config.latent_dim
        return torch.cat([z[..., :dv], self.pose_readout(z), z[..., dv + POSE_DIMS:]], dim=-1)

    def encode_goal(self, rgb: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        """A goal image (no proprioception) -> ``[B, D]``; its pose part is read from the image."""
        proprio = torch.zeros(rgb.shape[0], self.config.proprio_dim, dtype=rgb.dtype,
                              device=rgb.device)
        return self.with_pose_readout(self.encode(rgb, depth, proprio))

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, D] -> ([B, 3, S, S], [B, 1, S, S])``."""
        return self.decoder(z)

    def rollout(self, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Open-loop rollout: ``z0 [N, D], actions [N, H, A] -> latents [N, H, D]``."""
        z = z0
        out = []
        for t in range(actions.shape[1]):
            z = self.predictor(z, actions[:, t])
            out.append(z)
        return torch.stack(out, dim=1)

    def energy(self, z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Distance of latents ``[..., D]`` to goal latents ``[..., D]`` -> ``[...]``."""
        return latent_energy(z, goal, self.config)

    def rollout_energy(self, z0: torch.Tensor, goal: torch.Tensor,
                       actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z0 [1, D], goal [1, D], actions [N, H, A] -> (energies [N], finals [N, D])``."""
        n, h = actions.shape[0], actions.shape[1]
        z = z0.expand(n, -1)
        # The arm terms' weight is set by where the objects are now: one that fell as imagined
        # pushes brought the objects closer would turn the arm terms on mid-push, a barrier that
        # stopped pushes a few centimetres short.
        weight = arm_weight(z0, goal, self.config)                          # [1]
        total = torch.zeros(n, dtype=z0.dtype, device=z0.device)
        for t in range(h):
            z = self.predictor(z, actions[:, t])
            if self.config.energy_over == 'trajectory':
                total = total + latent_energy(z, goal, self.config, weight)
        if self.config.energy_over == 'trajectory':
            return total / h, z
        return latent_energy(z, goal, self.config, weight), z


class RolloutEnergyGraph(nn.Module):
    """The exported planning graph: H-step rollout of N action sequences + energy."""

    def __init__(self, model: WorldModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, z0: torch.Tensor, goal: torch.Tensor,
                actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # z0 [1, D], goal [1, D], actions [N, H, A] -> energies [N], final latents [N, D]
        return self.model.rollout_energy(z0, goal, actions)


class EncoderGraph(nn.Module):
    """The exported encoder: ``[B, 3, S, S], [B, 1, S, S], [B, P]`` -> latent ``[B, D]`` and
    the TCP position read from the image ``[B, POSE_DIMS]`` (normalised; for goal images)."""

    def __init__(self, model: WorldModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, rgb: torch.Tensor, depth: torch.Tensor,
                proprio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.model.encode(rgb, depth, proprio)
        return z, self.model.pose_readout(z)


class DecoderGraph(nn.Module):
    """The exported decoder: ``[B, D] -> ([B, 3, S, S], [B, 1, S, S])``."""

    def __init__(self, model: WorldModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.decode(z)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())
