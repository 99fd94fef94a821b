"""One runtime interface over three backends: onnxruntime, torch, TensorRT.

What the planner uses (all NumPy, float32, SI units)::

    rt = load_runtime('models/craik_wm_cpu', backend='onnxruntime')
    z0 = rt.encode(rgb, depth, proprio)           # rgb8 [H, W, 3], depth 16UC1 mm or m, [4] -> [D]
    goal = rt.encode(goal_rgb)                    # RGB-only goal (depth optional) -> [D]
    energies = rt.rollout_energy(z0, goal, actions)   # actions [N, H, 4] -> [N]
    energies, finals = rt.rollout(z0, goal, actions)  # + final latents [N, D]
    rgb, depth = rt.decode(finals[best])          # uint8 [S, S, 3], float32 metres [S, S]

Backends:
- ``onnxruntime``: the exported ONNX graphs on the CPU (CI, development machines).
- ``torch``: the PyTorch model, eager or ``torch.compile`` (``compile=True``), CPU or CUDA.
- ``tensorrt``: FP16 engines (TensorRT 8-10; FP32 on TensorRT 11, which dropped the FP16 builder
  flag) built on the target machine from the *same* ONNX files with the TensorRT Python API,
  cached under ``~/.cache/craik/tensorrt`` keyed by the ONNX file's sha256, the TensorRT
  version, the GPU and the build settings (a changed model, TensorRT upgrade or another GPU
  builds a fresh engine). Where TensorRT or CUDA is missing, constructing it raises
  :class:`BackendUnavailableError` saying which.

Every input is validated: wrong shapes, NaN, and actions outside the action bounds
(|d| <= 0.05 m, gripper in [0, 1]) raise ``ValueError`` naming the offending entry; nothing is
clipped. Every file of an export is checked against its ``SHA256SUMS`` before a backend opens
it, and an ONNX graph whose external data lies outside the export directory or is not in the
manifest is refused (:func:`check_onnx_external_data`) with a :class:`CheckpointError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from craik_world_model.checkpoint import (
    MANIFEST,
    CheckpointError,
    load_model,
    read_manifest,
    sha256_file,
    verify_file,
)
from craik_world_model.config import (
    MAX_DISPLACEMENT_M,
    POSE_DIMS,
    ModelConfig,
    model_config_from_json,
)
from craik_world_model.data import normalise_object_positions
from craik_world_model.export import (
    DECODER_FILE,
    ENCODER_FILE,
    EXPORT_META,
    MODEL_FILE,
    rollout_file,
)
from craik_world_model.model import WorldModel, latent_energy
from craik_world_model.observation import prepare_observation

FloatArray = npt.NDArray[np.float32]
BACKENDS = ('onnxruntime', 'torch', 'tensorrt')
ACTION_TOLERANCE = 1e-6


class BackendUnavailableError(RuntimeError):
    """The backend cannot run on this machine; the message says what is missing."""


class WorldModelRuntime(ABC):
    """Encode observations, score action sequences, decode latents (NumPy in, NumPy out)."""

    backend: str = ''

    def __init__(self, config: ModelConfig, horizons: tuple[int, ...] | None) -> None:
        self.config = config
        # None: any horizon (the torch backend); otherwise those with an exported graph.
        self.horizons = horizons

    # --- public API -----------------------------------------------------------------------

    def encode(self, rgb: np.ndarray, depth: np.ndarray | None = None,
               proprio: np.ndarray | None = None, depth_units: str = 'auto') -> FloatArray:
        """One observation -> latent ``[D]``.

        ``rgb``: rgb8 ``[H, W, 3]``; ``depth``: aligned 16UC1 millimetres or float metres, or
        None (a goal given as an RGB image); ``proprio``: ``[4]`` (ee x, y, z in metres,
        gripper 0..1), or None for goals: the latent's TCP position is then read out of the
        image (what the energy's pose term compares; the gripper entry is never compared).
        """
        r, d, p = prepare_observation(rgb, depth, proprio, self.config, depth_units)
        return self.encode_batch(r, d, p, pose_from_image=proprio is None)[0]

    def encode_batch(self, rgb: np.ndarray, depth: np.ndarray, proprio: np.ndarray,
                     pose_from_image: bool = False) -> FloatArray:
        """Preprocessed ``[B, 3, S, S]``, ``[B, 1, S, S]`` metres, ``[B, P]`` -> ``[B, D]``.

        ``pose_from_image``: replace the TCP-position part of the latents by the image's
        read-out (goal images, whose proprioception is unknown).
        """
        s, p = self.config.image_size, self.config.proprio_dim
        rgb = np.ascontiguousarray(rgb, dtype=np.float32)
        depth = np.ascontiguousarray(depth, dtype=np.float32)
        proprio = np.ascontiguousarray(proprio, dtype=np.float32)
        b = rgb.shape[0] if rgb.ndim == 4 else -1
        if rgb.shape != (b, 3, s, s) or depth.shape != (b, 1, s, s) or proprio.shape != (b, p):
            raise ValueError(f'encode_batch expects rgb [B, 3, {s}, {s}], depth [B, 1, {s}, {s}]'
                             f', proprio [B, {p}]; got {rgb.shape}, {depth.shape}, '
                             f'{proprio.shape}')
        for name, arr in (('rgb', rgb), ('depth', depth), ('proprio', proprio)):
            if not np.isfinite(arr).all():
                raise ValueError(f'{name} contains NaN or infinite values')
        z, readout = self._encode(rgb, depth, proprio)
        if pose_from_image and readout is None and self.config.pose_weight > 0:
            raise ValueError('this export has no pose read-out (encoder.onnx from an older '
                             'craik) but its energy has a pose term; re-export the model with '
                             '`craik wm-export`')
        if pose_from_image and readout is not None:
            dv = self.config.latent_dim
            z = z.copy()
            z[:, dv:dv + POSE_DIMS] = readout
        return z

    def with_geometry(self, z: np.ndarray, slots: np.ndarray | None,
                      tcp: np.ndarray | None = None) -> FloatArray:
        """Latent ``z [D]`` with its geometric object slots filled in: ``slots [K, 3]`` rows of
        (x, y in metres, presence 0/1), from :mod:`craik_world_model.object_state`; ``tcp [3]``
        (m), when given, replaces the latent's TCP position (a goal's, found in its depth)."""
        c = self.config
        out = np.array(z, dtype=np.float32).reshape(-1)
        if out.shape[0] != c.full_latent_dim:
            raise ValueError(f'z must be a latent [{c.full_latent_dim}], got {np.shape(z)}')
        if slots is not None:
            if not c.presence_dims:
                raise ValueError('this model reads its object slots from the image (locator); '
                                 'it takes no geometric slots')
            rows = np.asarray(slots, dtype=np.float64)
            if rows.shape != (c.object_count, 3) or not np.isfinite(rows).all():
                raise ValueError(f'slots must be finite [{c.object_count}, 3] rows (x, y, '
                                 f'presence), got shape {rows.shape}')
            present = (rows[:, 2] > 0.5).astype(np.float32)
            positions = normalise_object_positions(rows[:, :2], c) * present[:, None]
            out[c.object_slice] = positions.reshape(-1)
            out[c.presence_slice] = present
        if tcp is not None:
            t = np.asarray(tcp, dtype=np.float64)
            if t.shape != (POSE_DIMS,) or not np.isfinite(t).all():
                raise ValueError(f'tcp must be {POSE_DIMS} finite values (m), got {t}')
            offset = np.asarray(c.proprio_offset[:POSE_DIMS])
            scale = np.asarray(c.proprio_scale[:POSE_DIMS])
            dv = c.latent_dim
            out[dv:dv + POSE_DIMS] = ((t - offset) / scale).astype(np.float32)
        return out

    def energy(self, z: np.ndarray, goal: np.ndarray) -> float:
        """Energy of being at latent ``z [D]`` now (no action), the rollout graph's distance."""
        d = self.config.full_latent_dim
        a, g = np.asarray(z, np.float64).reshape(-1), np.asarray(goal, np.float64).reshape(-1)
        if a.shape != g.shape or a.shape[0] != d:
            raise ValueError(f'energy needs two latents [{d}], got {a.shape} and {g.shape}')
        return float(latent_energy(torch.from_numpy(a), torch.from_numpy(g), self.config))

    def rollout(self, z0: np.ndarray, goal: np.ndarray, actions: np.ndarray
                ) -> tuple[FloatArray, FloatArray]:
        """Roll N action sequences ``[N, H, A]`` out from ``z0`` -> (energies ``[N]``,
        final latents ``[N, D]``); energy = distance of the final latent to ``goal``."""
        z0_ = self._latent(z0, 'z0')
        goal_ = self._latent(goal, 'goal')
        acts = self.check_actions(actions)
        if self.horizons is not None and acts.shape[1] not in self.horizons:
            raise ValueError(f'no rollout graph for horizon {acts.shape[1]} in this export '
                             f'(exported: {list(self.horizons)}; re-export with --horizons)')
        energies, finals = self._rollout(z0_, goal_, acts)
        return energies.astype(np.float32, copy=False), finals.astype(np.float32, copy=False)

    def rollout_energy(self, z0: np.ndarray, goal: np.ndarray, actions: np.ndarray
                       ) -> FloatArray:
        """Energies ``[N]`` of action sequences ``[N, H, A]`` (the planner's callable)."""
        return self.rollout(z0, goal, actions)[0]

    __call__ = rollout_energy

    def decode(self, latent: np.ndarray) -> tuple[np.ndarray, FloatArray]:
        """Latent ``[D]`` or ``[B, D]`` -> rgb uint8 ``[(B,) S, S, 3]``, depth metres
        ``[(B,) S, S]``."""
        z = np.asarray(latent, dtype=np.float32)
        single = z.ndim == 1
        z = np.ascontiguousarray(z.reshape(1, -1) if single else z)
        d = self.config.full_latent_dim
        if z.ndim != 2 or z.shape[1] != d:
            raise ValueError(f'latent must be [{d}] or [B, {d}], got {np.shape(latent)}')
        if not np.isfinite(z).all():
            raise ValueError('latent contains NaN or infinite values')
        rgb, depth = self._decode(z)
        rgb_u8 = np.round(np.clip(rgb, 0.0, 1.0).transpose(0, 2, 3, 1) * 255).astype(np.uint8)
        depth_m = depth[:, 0].astype(np.float32, copy=False)
        return (rgb_u8[0], depth_m[0]) if single else (rgb_u8, depth_m)

    def check_actions(self, actions: np.ndarray) -> FloatArray:
        """Validated float32 actions ``[N, H, A]`` (shape, finiteness, bounds)."""
        a = np.ascontiguousarray(actions, dtype=np.float32)
        if a.ndim != 3 or a.shape[0] < 1 or a.shape[1] < 1 or a.shape[2] != \
                self.config.action_dim:
            raise ValueError(f'actions must be [N, H, {self.config.action_dim}] (dx, dy, dz, '
                             f'gripper), got {np.shape(actions)}')
        if not np.isfinite(a).all():
            n, h, k = np.argwhere(~np.isfinite(a))[0]
            raise ValueError(f'actions[{n}, {h}, {k}] is not finite')
        over = np.abs(a[..., :3]) > MAX_DISPLACEMENT_M + ACTION_TOLERANCE
        if over.any():
            n, h, k = np.argwhere(over)[0]
            raise ValueError(f'actions[{n}, {h}, {k}] = {a[n, h, k]:.4f} m exceeds the '
                             f'displacement bound {MAX_DISPLACEMENT_M} m')
        grip = a[..., 3]
        bad = (grip < -ACTION_TOLERANCE) | (grip > 1.0 + ACTION_TOLERANCE)
        if bad.any():
            n, h = np.argwhere(bad)[0]
            raise ValueError(f'actions[{n}, {h}, 3] (gripper) = {grip[n, h]:.4f} is outside '
                             '[0, 1]')
        return a

    def _latent(self, z: np.ndarray, name: str) -> FloatArray:
        arr = np.asarray(z, dtype=np.float32)
        d = self.config.full_latent_dim
        if arr.shape not in ((d,), (1, d)):
            raise ValueError(f'{name} must be a latent [{d}] or [1, {d}], got {arr.shape}')
        if not np.isfinite(arr).all():
            raise ValueError(f'{name} contains NaN or infinite values')
        return np.ascontiguousarray(arr.reshape(1, d))

    # --- backend hooks ----------------------------------------------------------------------

    @abstractmethod
    def _encode(self, rgb: FloatArray, depth: FloatArray, proprio: FloatArray
                ) -> tuple[FloatArray, FloatArray | None]:
        """[B, 3, S, S], [B, 1, S, S], [B, P] -> latents [B, D], pose read-out [B, 3] or None."""

    @abstractmethod
    def _rollout(self, z0: FloatArray, goal: FloatArray, actions: FloatArray
                 ) -> tuple[FloatArray, FloatArray]:
        """[1, D], [1, D], [N, H, A] -> ([N], [N, D])."""

    @abstractmethod
    def _decode(self, z: FloatArray) -> tuple[FloatArray, FloatArray]:
        """[B, D] -> ([B, 3, S, S], [B, 1, S, S])."""


# ---------------------------------------------------------------------------------------------
# torch


class TorchRuntime(WorldModelRuntime):
    """The PyTorch model itself (eager, or ``torch.compile``-d), on CPU or CUDA."""

    backend = 'torch'

    def __init__(self, model: WorldModel, device: str | torch.device = 'cpu',
                 compile: bool = False) -> None:
        super().__init__(model.config, None)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.compiled = compile
        self._rollout_fn: Any = model.rollout_energy
        if compile:
            self._rollout_fn = torch.compile(model.rollout_energy, dynamic=False)
            self.backend = 'torch-compile'

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], device: str = 'cpu',
                        compile: bool = False, verify: bool = True) -> TorchRuntime:
        """A runtime over a model file (manifest-verified)."""
        model, _ = load_model(path, verify=verify)
        return cls(model, device, compile)

    def _t(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(self.device)

    def _encode(self, rgb: FloatArray, depth: FloatArray, proprio: FloatArray
                ) -> tuple[FloatArray, FloatArray | None]:
        with torch.inference_mode():
            z = self.model.encode(self._t(rgb), self._t(depth), self._t(proprio))
            return z.cpu().numpy(), self.model.pose_readout(z).cpu().numpy()

    def _rollout(self, z0: FloatArray, goal: FloatArray, actions: FloatArray
                 ) -> tuple[FloatArray, FloatArray]:
        with torch.inference_mode():
            e, z = self._rollout_fn(self._t(z0), self._t(goal), self._t(actions))
            return e.cpu().numpy(), z.cpu().numpy()

    def _decode(self, z: FloatArray) -> tuple[FloatArray, FloatArray]:
        with torch.inference_mode():
            rgb, depth = self.model.decode(self._t(z))
            return rgb.cpu().numpy(), depth.cpu().numpy()


# ---------------------------------------------------------------------------------------------
# export directories


def read_export(export_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``export.json`` of an export directory, checksum-verified."""
    d = Path(export_dir)
    path = d / EXPORT_META
    if not path.exists():
        raise CheckpointError(f'{d}: not a world-model export (no {EXPORT_META}); run '
                              '`craik wm-export` first')
    verify_file(path)
    meta: dict[str, Any] = json.loads(path.read_text())
    if meta.get('format') != 'craik_world_model_export':
        raise CheckpointError(f'{path}: not a craik world-model export')
    from craik_world_model.config import FORMAT_VERSION
    if meta.get('format_version') != FORMAT_VERSION:
        raise CheckpointError(f'{path}: export format version {meta.get("format_version")} is '
                              f'not supported (this code reads {FORMAT_VERSION})')
    return meta


def _export_config(meta: dict[str, Any]) -> ModelConfig:
    return model_config_from_json(json.dumps(meta['model_config']))


def _verified(export_dir: Path, name: str) -> tuple[Path, str]:
    """``export_dir/name`` after its sha256 matched the manifest (and, for an ONNX graph, its
    external data passed :func:`check_onnx_external_data`), with that sha256."""
    path = export_dir / name
    if not path.exists():
        raise CheckpointError(f'{export_dir}: missing {name}')
    digest = verify_file(path)
    if path.suffix == '.onnx':
        check_onnx_external_data(path, export_dir)
    return path, digest


def _onnx_tensors(model: Any) -> Iterator[tuple[str, Any]]:
    """(where, TensorProto) for every tensor an ONNX model holds: initializers, sparse
    initializers, constant attributes, subgraphs (If/Loop/Scan bodies) and local functions."""

    def sparse(where: str, s: Any) -> Iterator[tuple[str, Any]]:
        yield where, s.values
        yield f'{where} (indices)', s.indices

    def nodes(scope: str, node_list: Any) -> Iterator[tuple[str, Any]]:
        for node in node_list:
            for attr in node.attribute:
                where = f'{scope}node {node.name or node.op_type!r} attribute {attr.name!r}'
                if attr.HasField('t'):
                    yield where, attr.t
                for t in attr.tensors:
                    yield where, t
                if attr.HasField('sparse_tensor'):
                    yield from sparse(where, attr.sparse_tensor)
                for s in attr.sparse_tensors:
                    yield from sparse(where, s)
                if attr.HasField('g'):
                    yield from graph(f'{where}: ', attr.g)
                for g in attr.graphs:
                    yield from graph(f'{where}: ', g)

    def graph(scope: str, g: Any) -> Iterator[tuple[str, Any]]:
        for t in g.initializer:
            yield f'{scope}initializer', t
        for s in g.sparse_initializer:
            yield from sparse(f'{scope}sparse initializer', s)
        yield from nodes(scope, g.node)

    yield from graph('', model.graph)
    for function in model.functions:
        yield from nodes(f'function {function.name!r}: ', function.node)


def check_onnx_external_data(path: str | os.PathLike[str],
                             export_dir: str | os.PathLike[str]) -> None:
    """Refuse an ONNX graph whose tensors read external data from anywhere but a file inside
    ``export_dir`` that its ``SHA256SUMS`` lists with a matching sha256.

    The graph is parsed without its external data (protobuf only, nothing is read or run) before
    any runtime sees it: an absolute location, a ``..`` or a symbolic link leaving the directory,
    a missing or an unlisted/modified data file each raise :class:`CheckpointError` naming the
    tensor. (craik's own exports keep every weight inside the ONNX file.)
    """
    import onnx

    path, root = Path(path), Path(export_dir).resolve()
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and onnx's own errors for a damaged file
        raise CheckpointError(f'{path}: not a readable ONNX model: {exc}') from exc
    manifest: dict[str, str] | None = None
    for where, tensor in _onnx_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL and not tensor.external_data:
            continue
        name = f'tensor {tensor.name!r} ({where})'
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get('location', '')
        if not location:
            raise CheckpointError(f'{path}: {name} is stored externally without a location')
        if Path(location).is_absolute():
            raise CheckpointError(f'{path}: {name} reads external data from the absolute path '
                                  f'{location!r}; refusing it (only files inside {root})')
        # Relative to the directory the graph is opened from, as onnxruntime and TensorRT do.
        target = (path.parent / location).resolve()
        if not target.is_relative_to(root):
            raise CheckpointError(f'{path}: {name} reads external data from {location!r}, '
                                  f'which resolves to {target}, outside the export directory '
                                  f'{root}; refusing it')
        if not target.is_file():
            raise CheckpointError(f'{path}: {name} reads external data from {location!r}, '
                                  'which does not exist')
        relative = target.relative_to(root).as_posix()
        if manifest is None:
            manifest = read_manifest(root)
        if relative not in manifest:
            raise CheckpointError(f'{path}: {name} reads external data from {relative}, which '
                                  f'{root / MANIFEST} does not list; refusing unverified data')
        actual = sha256_file(target)
        if actual != manifest[relative]:
            raise CheckpointError(f'{path}: external data {relative} has sha256 {actual}, the '
                                  f'manifest lists {manifest[relative]}; the file is corrupt or '
                                  'was modified')


# ---------------------------------------------------------------------------------------------
# onnxruntime


class OnnxRuntime(WorldModelRuntime):
    """The exported ONNX graphs under onnxruntime (CPU by default)."""

    backend = 'onnxruntime'

    def __init__(self, export_dir: str | os.PathLike[str], threads: int = 0,
                 providers: tuple[str, ...] = ('CPUExecutionProvider',)) -> None:
        import onnxruntime as ort
        self.export_dir = Path(export_dir)
        meta = read_export(self.export_dir)
        super().__init__(_export_config(meta), tuple(int(h) for h in meta['horizons']))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # No spin-waiting between calls: the planner interleaves onnxruntime with NumPy/torch
        # work (preprocessing, CEM refits) on the same cores, which spinning threads starve.
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')

        def session(name: str) -> Any:
            path, _ = _verified(self.export_dir, name)
            return ort.InferenceSession(str(path), options, providers=list(providers))

        self._encoder = session(ENCODER_FILE)
        self._decoder = session(DECODER_FILE)
        self._rollouts = {h: session(rollout_file(h)) for h in self.horizons or ()}

    def _encode(self, rgb: FloatArray, depth: FloatArray, proprio: FloatArray
                ) -> tuple[FloatArray, FloatArray | None]:
        out = self._encoder.run(None, {'rgb': rgb, 'depth': depth, 'proprio': proprio})
        # Exports from before the pose read-out have the latent as their only output.
        return np.asarray(out[0]), (np.asarray(out[1]) if len(out) > 1 else None)

    def _rollout(self, z0: FloatArray, goal: FloatArray, actions: FloatArray
                 ) -> tuple[FloatArray, FloatArray]:
        e, z = self._rollouts[actions.shape[1]].run(None, {'z0': z0, 'goal': goal,
                                                           'actions': actions})
        return np.asarray(e), np.asarray(z)

    def _decode(self, z: FloatArray) -> tuple[FloatArray, FloatArray]:
        rgb, depth = self._decoder.run(None, {'latent': z})
        return np.asarray(rgb), np.asarray(depth)


# ---------------------------------------------------------------------------------------------
# TensorRT


def default_engine_cache() -> Path:
    """``$CRAIK_TRT_CACHE``, else ``~/.cache/craik/tensorrt``."""
    env = os.environ.get('CRAIK_TRT_CACHE')
    return Path(env) if env else Path.home() / '.cache' / 'craik' / 'tensorrt'


def engine_cache_key(onnx_sha256: str, trt_version: str, gpu_name: str,
                     compute_capability: str, fp16: bool,
                     profile: dict[str, tuple[tuple[int, ...], ...]]) -> str:
    """sha256 naming an engine: the same ONNX bytes, TensorRT, GPU and build settings reuse it;
    any change builds a new one (engines are specific to all of them)."""
    shapes = {k: [list(s) for s in v] for k, v in sorted(profile.items())}
    payload = json.dumps({'onnx': onnx_sha256, 'tensorrt': trt_version, 'gpu': gpu_name,
                          'sm': compute_capability, 'fp16': bool(fp16), 'profile': shapes},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def engine_cache_path(cache_dir: Path, onnx_name: str, key: str) -> Path:
    """Where the engine for ``key`` lives."""
    return cache_dir / f'{Path(onnx_name).stem}-{key[:24]}.engine'


def tensorrt_unavailable_reason() -> str | None:
    """Why the TensorRT backend cannot run here (None when it can)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return (f'the tensorrt Python package is not installed ({exc}); it comes from NVIDIA '
                '(pip install tensorrt) and needs a CUDA device and a CUDA build of PyTorch')
    if not torch.cuda.is_available():
        return 'no CUDA device is available (torch.cuda.is_available() is False)'
    return None


def _trt_major(trt: Any) -> int:
    try:
        return int(str(trt.__version__).split('.')[0])
    except ValueError:
        return 0


def tensorrt_fp16_supported(trt: Any) -> bool:
    """Whether this TensorRT builds FP16 from an FP32 graph via ``BuilderFlag.FP16``.

    TensorRT 8-10 do; TensorRT 11 removed weak typing (an FP16 engine there needs an FP16 ONNX
    graph), so the engine is built in FP32 (TF32 on Ampere and later) and the log says so.
    """
    return hasattr(trt, 'BuilderFlag') and hasattr(trt.BuilderFlag, 'FP16')


class _TrtEngine:
    """One ONNX graph as a TensorRT engine (built once, then loaded from the cache)."""

    def __init__(self, trt: Any, onnx_path: Path, onnx_sha256: str, cache_dir: Path,
                 fp16: bool, profile: dict[str, tuple[tuple[int, ...], ...]],
                 device: torch.device, log: Any) -> None:
        self.trt = trt
        self.device = device
        if fp16 and not tensorrt_fp16_supported(trt):
            log(f'tensorrt {trt.__version__}: no FP16 builder flag (strongly typed only); '
                f'building {onnx_path.name} in FP32')
            fp16 = False
        self.fp16 = fp16
        props = torch.cuda.get_device_properties(device)
        key = engine_cache_key(onnx_sha256, trt.__version__, props.name,
                               f'{props.major}.{props.minor}', fp16, profile)
        self.cache_path = engine_cache_path(cache_dir, onnx_path.name, key)
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        engine = None
        if self.cache_path.exists():
            engine = runtime.deserialize_cuda_engine(self.cache_path.read_bytes())
            if engine is None:
                log(f'tensorrt: cached engine {self.cache_path} did not load; rebuilding')
        if engine is None:
            log(f'tensorrt: building {"FP16" if fp16 else "FP32"} engine for {onnx_path.name} '
                f'(cached as {self.cache_path})')
            data = self._build(trt, logger, onnx_path, fp16, profile)
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_path.with_suffix('.tmp')
            tmp.write_bytes(data)
            os.replace(tmp, self.cache_path)
            engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise BackendUnavailableError(f'tensorrt could not deserialize the engine for '
                                          f'{onnx_path}')
        self.engine = engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    @staticmethod
    def _build(trt: Any, logger: Any, onnx_path: Path, fp16: bool,
               profile: dict[str, tuple[tuple[int, ...], ...]]) -> bytes:
        builder = trt.Builder(logger)
        # TensorRT < 10 needs the explicit-batch flag; 10 ignores it and 11 may not have it.
        flags = 0
        if _trt_major(trt) < 10:
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        # The path resolves (already checked) external data against the export directory,
        # not the working directory.
        if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
            errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendUnavailableError(f'tensorrt cannot parse {onnx_path}: {errors}')
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        opt = builder.create_optimization_profile()
        for name, (lo, best, hi) in profile.items():
            opt.set_shape(name, lo, best, hi)
        config.add_optimization_profile(opt)
        data = builder.build_serialized_network(network, config)
        if data is None:
            raise BackendUnavailableError(f'tensorrt failed to build an engine for {onnx_path}')
        return bytes(data)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        trt = self.trt
        tensors = {}
        for name in self.inputs:
            t = torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self.device)
            tensors[name] = t
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = torch.from_numpy(np.zeros(0, dtype=trt.nptype(
                self.engine.get_tensor_dtype(name)))).dtype
            t = torch.empty(shape, dtype=dtype, device=self.device)
            tensors[name] = t
            self.context.set_tensor_address(name, t.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError('tensorrt: execute_async_v3 failed')
        stream.synchronize()
        return {name: tensors[name].float().cpu().numpy() for name in self.outputs}


class TensorRTRuntime(WorldModelRuntime):
    """FP16 TensorRT engines built from the export's ONNX graphs (cached per GPU/version)."""

    backend = 'tensorrt'

    def __init__(self, export_dir: str | os.PathLike[str], cache_dir: Path | None = None,
                 fp16: bool = True, max_batch: int = 1024, opt_batch: int = 256,
                 device: int = 0, log: Any = print) -> None:
        reason = tensorrt_unavailable_reason()
        if reason:
            raise BackendUnavailableError(f'tensorrt backend unavailable: {reason}')
        import tensorrt as trt
        self.export_dir = Path(export_dir)
        meta = read_export(self.export_dir)
        super().__init__(_export_config(meta), tuple(int(h) for h in meta['horizons']))
        c = self.config
        s, p, d, a = c.image_size, c.proprio_dim, c.full_latent_dim, c.action_dim
        dev = torch.device('cuda', device)
        cache = cache_dir or default_engine_cache()
        enc_max = min(max_batch, 64)

        def engine(name: str, profile: dict[str, tuple[tuple[int, ...], ...]]) -> _TrtEngine:
            path, digest = _verified(self.export_dir, name)
            return _TrtEngine(trt, path, digest, cache, fp16, profile, dev, log)

        self._encoder = engine(ENCODER_FILE, {
            'rgb': ((1, 3, s, s), (1, 3, s, s), (enc_max, 3, s, s)),
            'depth': ((1, 1, s, s), (1, 1, s, s), (enc_max, 1, s, s)),
            'proprio': ((1, p), (1, p), (enc_max, p))})
        self._decoder = engine(DECODER_FILE, {'latent': ((1, d), (1, d), (enc_max, d))})
        self._rollouts = {h: engine(rollout_file(h), {
            'actions': ((1, h, a), (opt_batch, h, a), (max_batch, h, a))})
            for h in self.horizons or ()}
        self.engine_paths = [e.cache_path for e in (self._encoder, self._decoder,
                                                    *self._rollouts.values())]

    def _encode(self, rgb: FloatArray, depth: FloatArray, proprio: FloatArray
                ) -> tuple[FloatArray, FloatArray | None]:
        out = self._encoder({'rgb': rgb, 'depth': depth, 'proprio': proprio})
        return out['latent'], out.get('pose_readout')

    def _rollout(self, z0: FloatArray, goal: FloatArray, actions: FloatArray
                 ) -> tuple[FloatArray, FloatArray]:
        out = self._rollouts[actions.shape[1]]({'z0': z0, 'goal': goal, 'actions': actions})
        return out['energies'], out['final_latents']

    def _decode(self, z: FloatArray) -> tuple[FloatArray, FloatArray]:
        out = self._decoder({'latent': z})
        return out['rgb'], out['depth']


# ---------------------------------------------------------------------------------------------


def load_runtime(path: str | os.PathLike[str], backend: str = 'onnxruntime', threads: int = 0,
                 device: str = 'cpu', compile: bool = False, cache_dir: Path | None = None,
                 fp16: bool = True, max_batch: int = 1024) -> WorldModelRuntime:
    """A runtime over an export directory (for ``torch`` also a ``.safetensors`` model file).

    ``threads``: CPU threads (onnxruntime intra-op; torch's global pool when > 0; 0 = default);
    ``device``/``compile``: torch backend; ``cache_dir``/``fp16``/``max_batch``: TensorRT.
    """
    p = Path(path)
    if backend == 'torch':
        model_path = p / MODEL_FILE if p.is_dir() else p
        if p.is_dir():
            read_export(p)  # the same checks as the other backends
        if threads > 0:
            torch.set_num_threads(threads)
        return TorchRuntime.from_checkpoint(model_path, device=device, compile=compile)
    if backend == 'onnxruntime':
        return OnnxRuntime(p, threads=threads)
    if backend == 'tensorrt':
        return TensorRTRuntime(p, cache_dir=cache_dir, fp16=fp16, max_batch=max_batch)
    raise ValueError(f'unknown backend {backend!r} (choose from {", ".join(BACKENDS)})')


def available_backends() -> dict[str, str | None]:
    """``{backend: None if usable here else why not}``."""
    reasons: dict[str, str | None] = {'torch': None}
    try:
        import onnxruntime  # noqa: F401
        reasons['onnxruntime'] = None
    except ImportError as exc:
        reasons['onnxruntime'] = f'onnxruntime is not installed ({exc})'
    reasons['tensorrt'] = tensorrt_unavailable_reason()
    return reasons
