"""ONNX export of a trained model: ``craik wm-export``.

An export directory (what every runtime backend loads) holds:

- ``encoder.onnx``: rgb ``[B, 3, S, S]`` (float, 0..1), depth ``[B, 1, S, S]`` (metres, 0: no
  return; all zeros: no depth), proprio ``[B, P]`` -> latent ``[B, D]`` and pose_readout
  ``[B, 3]`` (the TCP position the image shows, normalised; a goal latent's pose part);
- ``rollout_h{H}.onnx``: z0 ``[1, D]``, goal ``[1, D]``, actions ``[N, H, A]`` -> energies ``[N]``,
  final_latents ``[N, D]``;
- ``decoder.onnx``: latent ``[B, D]`` -> rgb ``[B, 3, S, S]`` (0..1), depth ``[B, 1, S, S]`` (m);

plus ``model.safetensors`` (the weights, for the torch backend), ``export.json`` (configuration,
horizons, tensor names) and the ``SHA256SUMS`` manifest. ``B`` and ``N`` are dynamic; ``H`` is
fixed per rollout graph (the loop is unrolled), so one graph is exported per planning horizon.
The planner shows the imagined outcome of its best plan by decoding that plan's final latent.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
from pathlib import Path
import shutil
import sys
from typing import Any
import warnings

import torch

from craik_world_model.checkpoint import load_model, save_model, sha256_file, write_manifest
from craik_world_model.config import ENERGY_OVER, FORMAT_VERSION, override, to_json
from craik_world_model.model import DecoderGraph, EncoderGraph, RolloutEnergyGraph, WorldModel

EXPORT_META = 'export.json'
ENCODER_FILE = 'encoder.onnx'
DECODER_FILE = 'decoder.onnx'
MODEL_FILE = 'model.safetensors'
OPSET = 18
ENCODER_IO = (('rgb', 'depth', 'proprio'), ('latent', 'pose_readout'))
DECODER_IO = (('latent',), ('rgb', 'depth'))
ROLLOUT_IO = (('z0', 'goal', 'actions'), ('energies', 'final_latents'))


def rollout_file(horizon: int) -> str:
    """File name of the rollout graph for ``horizon`` steps."""
    return f'rollout_h{horizon}.onnx'


def _export(module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path,
            names: tuple[tuple[str, ...], tuple[str, ...]],
            dynamic: dict[str, dict[int, Any] | None]) -> None:
    module.eval()
    # The exporter logs about optional packages (torchvision) and prints its progress.
    logging.getLogger('torch.onnx').setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter('ignore')
        torch.onnx.export(module, args, str(path), input_names=list(names[0]),
                          output_names=list(names[1]), dynamic_shapes=dynamic,
                          opset_version=OPSET, dynamo=True, optimize=True,
                          external_data=False)


def export_model(model: WorldModel, out_dir: str | Path, horizons: tuple[int, ...] = (8,),
                 source: dict[str, str] | None = None) -> dict[str, Any]:
    """Write the ONNX graphs, the weights and ``export.json`` to ``out_dir``; returns the meta."""
    from torch.export import Dim
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.to('cpu').eval()
    c = model.config
    s, d, p, a = c.image_size, c.full_latent_dim, c.proprio_dim, c.action_dim
    if not horizons or any(h < 1 or h > 64 for h in horizons):
        raise ValueError(f'horizons must be in 1..64, got {horizons}')
    batch = Dim('B', min=1, max=4096)
    n = Dim('N', min=1, max=1 << 16)
    with torch.no_grad():
        _export(EncoderGraph(model), (torch.rand(2, 3, s, s), torch.rand(2, 1, s, s),
                                      torch.zeros(2, p)), out / ENCODER_FILE, ENCODER_IO,
                {'rgb': {0: batch}, 'depth': {0: batch}, 'proprio': {0: batch}})
        _export(DecoderGraph(model), (torch.randn(2, d),), out / DECODER_FILE, DECODER_IO,
                {'z': {0: batch}})
        for h in sorted(set(horizons)):
            _export(RolloutEnergyGraph(model),
                    (torch.randn(1, d), torch.randn(1, d), torch.zeros(4, h, a)),
                    out / rollout_file(h), ROLLOUT_IO,
                    {'z0': None, 'goal': None, 'actions': {0: n}})
    save_model(out / MODEL_FILE, model, source, update_manifest=False)
    meta: dict[str, Any] = {
        'format': 'craik_world_model_export', 'format_version': FORMAT_VERSION,
        'model_config': json.loads(to_json(c)), 'horizons': sorted(set(horizons)),
        'opset': OPSET, 'torch': torch.__version__,
        'files': {'encoder': ENCODER_FILE, 'decoder': DECODER_FILE, 'weights': MODEL_FILE,
                  'rollout': {str(h): rollout_file(h) for h in sorted(set(horizons))}},
        'io': {'encoder': ENCODER_IO, 'decoder': DECODER_IO, 'rollout': ROLLOUT_IO},
        'source': source or {},
    }
    (out / EXPORT_META).write_text(json.dumps(meta, indent=2) + '\n')
    names = [ENCODER_FILE, DECODER_FILE, MODEL_FILE, EXPORT_META,
             *(rollout_file(h) for h in sorted(set(horizons)))]
    write_manifest(out, names)
    return meta


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``craik wm-export``."""
    parser.add_argument('checkpoint', help='model or training checkpoint (.safetensors)')
    parser.add_argument('--out', required=True, help='export directory')
    parser.add_argument('--horizons', default='8',
                        help='comma-separated planning horizons, one rollout graph each')
    parser.add_argument('--no-verify', action='store_true',
                        help='load a checkpoint that has no SHA256SUMS manifest')
    parser.add_argument('--energy-over', choices=ENERGY_OVER,
                        help="what the rollout graph's energy scores (default: the model's)")
    parser.add_argument('--pose-weight', type=float,
                        help="weight of the energy's pose term (default: the model's)")
    parser.add_argument('--object-weight', type=float,
                        help="weight of the energy's object term, per metre (default: the "
                        "model's; needs object slots)")
    parser.add_argument('--approach-weight', type=float,
                        help="weight of the energy's approach term, per metre (default: the "
                        "model's; needs object slots)")
    parser.add_argument('--copy-files', nargs='*', default=[], metavar='FILE',
                        help='extra files to copy into the export (model card, eval JSON)')


def run(args: argparse.Namespace) -> int:
    """``craik wm-export``."""
    try:
        horizons = tuple(int(h) for h in str(args.horizons).split(',') if h.strip())
        model, meta = load_model(args.checkpoint, verify=not args.no_verify)
        # The energy is a planning choice baked into the rollout graphs, not a trained weight.
        model.config = override(model.config, energy_over=args.energy_over,
                                pose_weight=args.pose_weight, object_weight=args.object_weight,
                                approach_weight=args.approach_weight)
        for part in (model.encoder, model.predictor, model.decoder):
            part.config = model.config
    except ValueError as exc:
        print(f'craik wm-export: {exc}', file=sys.stderr)
        return 1
    source = {'checkpoint': str(args.checkpoint),
              'checkpoint_sha256': meta.get('sha256') or sha256_file(args.checkpoint)}
    for key in ('preset', 'train_config', 'data_config', 'steps', 'data', 'command', 'metrics',
                'train_episodes', 'val_episodes', 'object_training'):
        if key in meta:
            source[key] = meta[key]
    try:
        export_model(model, args.out, horizons, source)
    except ValueError as exc:
        print(f'craik wm-export: {exc}', file=sys.stderr)
        return 1
    for extra in args.copy_files:
        shutil.copy2(extra, Path(args.out) / Path(extra).name)
    if args.copy_files:
        write_manifest(args.out)
    print(f'exported to {args.out}: {ENCODER_FILE}, {DECODER_FILE}, '
          f'{", ".join(rollout_file(h) for h in horizons)}, {MODEL_FILE}')
    return 0
