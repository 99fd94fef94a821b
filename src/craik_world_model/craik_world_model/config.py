"""Typed configuration of the world model, its training and its data, with named presets.

Every config is a frozen dataclass that validates itself in ``__post_init__`` and raises
``ValueError`` naming the offending field. Units are SI (metres); images are square model inputs
of ``image_size`` pixels.

Presets (``PRESETS``):
- ``cpu``: the default; 64x64 input, 128-d visual latent, trains in about 30 minutes on 2 cores and
  rolls out 256 samples x 8 steps in a few milliseconds with onnxruntime.
- ``gpu``: 128x128 input, 256-d latent, wider convolutions, bigger batches.
- ``tiny``: 32x32, a few channels; for unit tests only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
import json
import math
from typing import Any

# Version of the checkpoint/export format; a file written with another version is refused.
FORMAT_VERSION = 1
# Action = [dx, dy, dz, gripper] (ARCHITECTURE: Cartesian displacement in fr3_link0 + gripper).
ACTION_DIM = 4
MAX_DISPLACEMENT_M = 0.05
# Proprioception = [ee_x, ee_y, ee_z (metres, fr3_link0), gripper (0 open ... 1 closed)].
PROPRIO_DIM = 4
PROPRIO_NAMES = ('ee_x', 'ee_y', 'ee_z', 'gripper')
# The first POSE_DIMS entries of the proprioception are the TCP position: what the visual
# read-out (``WorldModel.probe``) is trained on and what the energy's pose term compares. The
# finger opening is a few pixels at 64x64 and is left out of both.
POSE_DIMS = 3
# Object slots: each holds one object's table-plane position [x, y] (fr3_link0), normalised like
# the TCP's x and y. In the simulation the objects are the scene's cubes, in index order (cube 0
# is what `push` moves). OBJECT_DIMS values per slot.
OBJECT_DIMS = 2
OBJECT_SOURCES = ('locator', 'geometry')
ENERGIES = ('l1', 'l2')
ENERGY_OVER = ('trajectory', 'final')


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f'{name} must be a positive integer, got {value!r}')


def _channels(name: str, value: tuple[int, ...]) -> None:
    if not isinstance(value, tuple) or not value:
        raise ValueError(f'{name} must be a non-empty tuple of channel counts, got {value!r}')
    for v in value:
        _positive_int(name, v)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the world model.

    The latent of a frame is ``z = [z_vis (latent_dim) | proprio_norm (proprio_dim) |
    objects (object_count x OBJECT_DIMS)]``: the visual part comes from the RGB-D encoder
    (layer-normalised), the proprioceptive part is the normalised proprioception itself, and the
    object slots (table-plane positions) come from the object locator, a keypoint network on the
    RGB image trained on the simulator's object positions. The predictor rolls the visual and
    proprioceptive parts forward with one MLP and each object slot with the object-dynamics MLP
    (how the TCP's motion moves an object near it), so an imagined push moves the object
    slots; the energy compares the visual part, and optionally the pose and the object slots,
    with the goal's, so a goal needs no proprioception.
    """

    # Model input side: camera frames (whole field of view) are resized to image_size^2.
    image_size: int = 64
    action_dim: int = ACTION_DIM
    proprio_dim: int = PROPRIO_DIM
    latent_dim: int = 128
    # One stride-2 stage per entry (image_size must be divisible by 2**stages).
    rgb_channels: tuple[int, ...] = (16, 32, 64, 128)
    depth_channels: tuple[int, ...] = (8, 16, 32, 32)
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16)
    decoder_depth_channels: tuple[int, ...] = (32, 16, 8, 8)
    # 256 x 2 keeps the planner's 256-sample x 8-step rollout at a few milliseconds on 2 cores.
    predictor_hidden: int = 256
    predictor_layers: int = 2
    # Depth is normalised as metres / depth_max_m; farther returns are clamped to depth_max_m
    # (6 m covers the simulated room's walls and a lab's; the D435 itself reaches ~10 m).
    depth_max_m: float = 6.0
    # False: the predictor never sees actions (the action-blind control model of wm-eval).
    action_conditioned: bool = True
    # Normalisation: proprio_norm = (proprio - offset) / scale; actions / action_scale.
    # Centre and half-extent of the simulation's TCP workspace ((0.25, 0.75), (-0.35, 0.35),
    # (0.02, 0.45) m) and of the gripper range.
    proprio_offset: tuple[float, ...] = (0.5, 0.0, 0.235, 0.5)
    proprio_scale: tuple[float, ...] = (0.25, 0.35, 0.215, 0.5)
    action_scale: tuple[float, ...] = (MAX_DISPLACEMENT_M, MAX_DISPLACEMENT_M,
                                       MAX_DISPLACEMENT_M, 1.0)
    energy: str = 'l1'
    # What the planner's energy scores: the mean over the imagined trajectory's steps
    # ('trajectory': a plan that gets near the goal early beats one that wanders and arrives at
    # the last step, and the executed first step moves toward the goal), or the final step only.
    energy_over: str = 'trajectory'
    # Weight of the pose term: the distance between the predicted TCP position (the latent's
    # proprioceptive part) and the TCP position the goal image shows (read out of its visual
    # latent by the probe), in normalised proprioception units. 0: visual latents only.
    pose_weight: float = 0.0
    # Object slots in the latent (0: none). Opt-in: `craik train-objects` adds them to a trained
    # model (`craik train --object-slots K` trains them with the rest).
    object_count: int = 0
    # Object locator: spatial-softmax keypoints over a small convolutional stack on the RGB
    # image (two 3x3 stages at full resolution, a stride-2 one and one at half resolution),
    # then an MLP from the keypoints' image coordinates to the slots. Sub-pixel keypoints are
    # what locates a cube ~3 pixels wide at 64x64 to a few millimetres.
    object_channels: tuple[int, ...] = (16, 16, 32, 32)
    object_keypoints: int = 16
    # Hidden width of the locator's head and of the object-dynamics MLP (three hidden layers).
    object_hidden: int = 128
    # Weight of the object term: the distance (m) between each imagined object position and the
    # goal image's, summed over the slots. 0: not part of the energy.
    object_weight: float = 0.0
    # Weight of the approach term, which makes pushes plannable within the horizon: for an
    # object more than a couple of centimetres from its goal, the TCP should be at the pre-push
    # point behind it (away from its goal), low; elsewhere above the objects (see
    # craik_world_model.object_energy).
    approach_weight: float = 0.0
    # Where the object slots come from: 'locator' (the keypoint network above, on the RGB image)
    # or 'geometry' (craik_world_model.object_state: clusters of the aligned depth on the table,
    # arm masked by kinematics, in the calibrated camera's world frame; class-agnostic). With
    # 'geometry' the latent also holds one presence flag per slot (1: an object fills it), the
    # encoder has no locator and the runtime fills the slots from the depth frame.
    object_source: str = 'locator'
    # Weight of the visual term (the encoded image against the goal's). The geometric model
    # plans on its pose and object terms alone (0): the visual latent of a 64x64 image is not
    # invariant to lighting, camera pose or the objects' look.
    visual_weight: float = 1.0
    # Roll the proprioception (TCP, gripper) forward with an MLP of the proprioception and the
    # action alone (ProprioDynamics) instead of the main predictor, which also sees the visual
    # latent: how the arm moves under a command does not depend on the light or the camera, and
    # a visual latent that does made the imagined arm drift under new lighting.
    proprio_dynamics: bool = False
    proprio_hidden: int = 128

    def __post_init__(self) -> None:
        _positive_int('image_size', self.image_size)
        for name in ('action_dim', 'proprio_dim', 'latent_dim', 'predictor_hidden',
                     'predictor_layers'):
            _positive_int(name, getattr(self, name))
        for name in ('rgb_channels', 'depth_channels', 'decoder_channels',
                     'decoder_depth_channels'):
            _channels(name, getattr(self, name))
        stages = len(self.rgb_channels)
        if len(self.depth_channels) != stages:
            raise ValueError(f'depth_channels must have one entry per rgb stage ({stages}), got '
                             f'{len(self.depth_channels)}')
        if len(self.decoder_channels) != stages or len(self.decoder_depth_channels) != stages:
            raise ValueError(f'decoder_channels and decoder_depth_channels must have {stages} '
                             'entries (one per encoder stage)')
        if self.image_size % (2 ** stages) != 0 or self.image_size // (2 ** stages) < 2:
            raise ValueError(f'image_size must be divisible by 2**{stages} and leave at least a '
                             f'2x2 grid, got {self.image_size}')
        if not (math.isfinite(self.depth_max_m) and 0.1 <= self.depth_max_m <= 20.0):
            raise ValueError(f'depth_max_m must be in [0.1, 20] m, got {self.depth_max_m}')
        if len(self.proprio_offset) != self.proprio_dim:
            raise ValueError(f'proprio_offset must have proprio_dim={self.proprio_dim} entries')
        if len(self.proprio_scale) != self.proprio_dim or not all(
                s > 0 for s in self.proprio_scale):
            raise ValueError(f'proprio_scale must have proprio_dim={self.proprio_dim} positive '
                             'entries')
        if len(self.action_scale) != self.action_dim or not all(
                s > 0 for s in self.action_scale):
            raise ValueError(f'action_scale must have action_dim={self.action_dim} positive '
                             'entries')
        if self.energy not in ENERGIES:
            raise ValueError(f'energy must be one of {ENERGIES}, got {self.energy!r}')
        if self.energy_over not in ENERGY_OVER:
            raise ValueError(f'energy_over must be one of {ENERGY_OVER}, got '
                             f'{self.energy_over!r}')
        if not (math.isfinite(self.pose_weight) and 0.0 <= self.pose_weight <= 100.0):
            raise ValueError(f'pose_weight must be in [0, 100], got {self.pose_weight}')
        if isinstance(self.object_count, bool) or not isinstance(self.object_count, int) or \
                not 0 <= self.object_count <= 8:
            raise ValueError(f'object_count must be an integer in 0..8, got {self.object_count!r}')
        _channels('object_channels', self.object_channels)
        if len(self.object_channels) != 4:
            raise ValueError('object_channels must have 4 entries (full-resolution stages x2, '
                             f'stride-2 stage, half-resolution stage), got {self.object_channels}')
        if self.object_count and self.image_size % 2:
            raise ValueError(f'object slots need an even image_size, got {self.image_size}')
        _positive_int('object_keypoints', self.object_keypoints)
        _positive_int('object_hidden', self.object_hidden)
        for name in ('object_weight', 'approach_weight'):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 100.0):
                raise ValueError(f'{name} must be in [0, 100], got {value}')
            if value > 0 and self.object_count == 0:
                raise ValueError(f'{name} needs object slots (object_count > 0)')
        if self.object_source not in OBJECT_SOURCES:
            raise ValueError(f'object_source must be one of {OBJECT_SOURCES}, got '
                             f'{self.object_source!r}')
        if self.object_source == 'geometry' and self.object_count == 0:
            raise ValueError("object_source 'geometry' needs object slots (object_count > 0)")
        _positive_int('proprio_hidden', self.proprio_hidden)
        if self.proprio_dynamics and (self.action_dim < self.proprio_dim
                                      or self.proprio_dim < POSE_DIMS):
            raise ValueError('proprio_dynamics needs action_dim >= proprio_dim >= '
                             f'{POSE_DIMS} (the TCP moves by the commanded displacement)')
        if not (math.isfinite(self.visual_weight) and 0.0 <= self.visual_weight <= 100.0):
            raise ValueError(f'visual_weight must be in [0, 100], got {self.visual_weight}')
        if (self.object_count or self.pose_weight > 0) and self.proprio_dim < POSE_DIMS:
            raise ValueError(f'object slots need proprio_dim >= {POSE_DIMS} (their scale is the '
                             "TCP's x and y)")
        if self.pose_weight > 0 and self.proprio_dim < POSE_DIMS:
            raise ValueError(f'pose_weight needs proprio_dim >= {POSE_DIMS} (the TCP position)')

    @property
    def full_latent_dim(self) -> int:
        """D: visual latent, proprioception and object slots."""
        return self.latent_dim + self.proprio_dim + self.object_dims + self.presence_dims

    @property
    def state_dim(self) -> int:
        """The visual latent and proprioception: what the main predictor MLP and the decoder
        see (object slots have their own dynamics)."""
        return self.latent_dim + self.proprio_dim

    @property
    def object_dims(self) -> int:
        """Entries of the latent taken by the object slots."""
        return self.object_count * OBJECT_DIMS

    @property
    def presence_dims(self) -> int:
        """Presence flags in the latent (geometric slots only; one per slot)."""
        return self.object_count if self.object_source == 'geometry' else 0

    @property
    def presence_slice(self) -> slice:
        """Where the presence flags are in ``z`` (empty without geometric slots)."""
        start = self.latent_dim + self.proprio_dim + self.object_dims
        return slice(start, start + self.presence_dims)

    @property
    def object_slice(self) -> slice:
        """Where the object slots are in ``z``."""
        start = self.latent_dim + self.proprio_dim
        return slice(start, start + self.object_dims)

    @property
    def grid_size(self) -> int:
        """Side of the encoder's final feature grid."""
        return self.image_size // (2 ** len(self.rgb_channels))


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation: multi-step open-loop rollouts with latent and reconstruction losses."""

    steps: int = 2000
    batch_size: int = 32
    # Open-loop rollout length during training; windows hold horizon + 1 frames.
    horizon: int = 8
    lr: float = 1e-3
    min_lr: float = 5e-5
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    # EMA of the encoder that produces latent targets (0: a plain stop-gradient copy).
    ema_decay: float = 0.99
    # Latent losses relative to the targets' own motion within the window (see train.py).
    # Off by default: its gradients grow as the motion shrinks and, clipped, drown the rest.
    relative_latent_loss: bool = False
    # Loss weights.
    w_latent: float = 1.0        # open-loop rollout latents vs encoded future frames
    w_teacher: float = 0.5       # one-step predictions from each encoded frame
    w_recon: float = 1.0         # decode(encode(x_0)) vs x_0 (keeps the latent informative)
    w_pred_rgb: float = 1.0      # decoded rollout frames vs ground truth (RGB)
    w_pred_depth: float = 1.0    # decoded rollout frames vs ground truth (depth)
    w_depth: float = 1.0         # depth reconstruction weight relative to RGB
    w_proprio: float = 1.0       # predicted vs measured proprioception
    w_rgb_only: float = 0.5      # encode(rgb, no depth) vs encode(rgb, depth) (goal images)
    w_motion: float = 1.0        # hinge keeping the latent's motion over a window >= the floor
    # Floor on the mean |z_vis(frame H) - z_vis(frame 0)| (the visual latent has unit variance).
    min_latent_motion: float = 0.2
    # TCP position read linearly from the visual latent. Weighted so that its error (~1 cm)
    # matters as much as the latent losses: it is what a goal image's pose read-out rests on.
    w_probe: float = 10.0
    # Object slots vs the simulator's object positions (normalised), on encoded frames and on
    # the open-loop rollout (so the predictor learns to move them); windows without object
    # positions (lab recordings) do not count.
    w_object: float = 10.0
    # How many rollout steps are decoded per window (decoding is most of the cost).
    decode_steps: int = 2
    # Probability of hiding the depth of the context frame (the encoder learns an RGB-only path).
    depth_dropout: float = 0.1
    log_every: int = 25
    val_every: int = 250
    checkpoint_every: int = 250
    val_windows: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ('steps', 'batch_size', 'horizon', 'log_every', 'val_every',
                     'checkpoint_every', 'val_windows', 'decode_steps'):
            _positive_int(name, getattr(self, name))
        if self.warmup_steps < 0:
            raise ValueError(f'warmup_steps must be >= 0, got {self.warmup_steps}')
        if not 0 < self.lr <= 1.0 or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f'lr must be in (0, 1] and min_lr in [0, lr], got lr={self.lr}, '
                             f'min_lr={self.min_lr}')
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f'ema_decay must be in [0, 1), got {self.ema_decay}')
        if not 0.0 <= self.depth_dropout < 1.0:
            raise ValueError(f'depth_dropout must be in [0, 1), got {self.depth_dropout}')
        for f in fields(self):
            if f.name.startswith('w_') and not getattr(self, f.name) >= 0.0:
                raise ValueError(f'{f.name} must be >= 0, got {getattr(self, f.name)}')
        if not 0.0 <= self.min_latent_motion <= 2.0:
            raise ValueError(f'min_latent_motion must be in [0, 2], got {self.min_latent_motion}')
        if self.weight_decay < 0 or self.grad_clip <= 0:
            raise ValueError('weight_decay must be >= 0 and grad_clip > 0')


@dataclass(frozen=True)
class DataConfig:
    """How episodes become training windows."""

    # Every n-th episode (by sorted name) is held out for validation/evaluation.
    holdout_every: int = 10
    # Off by default: colour jitter and small shifts would change what a goal image means.
    augment: bool = False
    # 'skip': report a corrupt episode chunk with its path and go on; 'fail': stop the run.
    on_corrupt: str = 'skip'

    def __post_init__(self) -> None:
        _positive_int('holdout_every', self.holdout_every)
        if self.holdout_every < 2:
            raise ValueError(f'holdout_every must be >= 2, got {self.holdout_every}')
        if self.on_corrupt not in ('skip', 'fail'):
            raise ValueError(f"on_corrupt must be 'skip' or 'fail', got {self.on_corrupt!r}")


@dataclass(frozen=True)
class Preset:
    """A named model + training + data configuration."""

    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)


PRESETS: dict[str, Preset] = {
    'cpu': Preset('cpu'),
    'gpu': Preset(
        'gpu',
        model=ModelConfig(image_size=128, latent_dim=256,
                          rgb_channels=(48, 96, 160, 256, 256),
                          depth_channels=(24, 48, 64, 96, 96),
                          decoder_channels=(256, 192, 128, 96, 48),
                          decoder_depth_channels=(96, 64, 48, 32, 16),
                          predictor_hidden=1024, predictor_layers=3),
        train=TrainConfig(steps=40000, batch_size=128, lr=6e-4, decode_steps=4,
                          val_every=1000, checkpoint_every=1000, val_windows=512,
                          warmup_steps=1000)),
    'tiny': Preset(
        'tiny',
        model=ModelConfig(image_size=16, latent_dim=16, rgb_channels=(8, 8), object_count=1,
                          object_channels=(4, 4, 4, 4), object_keypoints=4, object_hidden=16,
                          depth_channels=(4, 4), decoder_channels=(8, 8),
                          decoder_depth_channels=(4, 4), predictor_hidden=32,
                          predictor_layers=1),
        train=TrainConfig(steps=4, batch_size=4, horizon=3, warmup_steps=1, log_every=1,
                          val_every=2, checkpoint_every=2, val_windows=4, decode_steps=1)),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; the error lists the known names."""
    if name not in PRESETS:
        raise ValueError(f'unknown preset {name!r} (choose from {", ".join(PRESETS)})')
    return PRESETS[name]


def to_json(config: ModelConfig | TrainConfig | DataConfig) -> str:
    """Serialise a config (stable key order) for checkpoint metadata."""
    return json.dumps(asdict(config), sort_keys=True)


def _from_dict(cls: type[Any], data: dict[str, Any], what: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f'{what}: unknown field(s) {unknown} (written by a newer version?)')
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        # JSON has no tuples; every sequence field of these configs is a tuple.
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def model_config_from_json(text: str) -> ModelConfig:
    """Inverse of ``to_json`` for ``ModelConfig``; unknown fields are an error."""
    return _from_dict(ModelConfig, json.loads(text), 'model config')


def train_config_from_json(text: str) -> TrainConfig:
    """Inverse of ``to_json`` for ``TrainConfig``."""
    return _from_dict(TrainConfig, json.loads(text), 'train config')


def data_config_from_json(text: str) -> DataConfig:
    """Inverse of ``to_json`` for ``DataConfig``."""
    return _from_dict(DataConfig, json.loads(text), 'data config')


def override(config: Any, **changes: Any) -> Any:
    """A copy of a frozen config with fields changed (validated again); None values are kept."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})
