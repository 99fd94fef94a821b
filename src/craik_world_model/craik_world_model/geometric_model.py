"""`craik wm-geometry`: a world model whose object slots come from depth geometry.

    craik wm-geometry --checkpoint models/craik_wm_cpu/model.safetensors \\
        --out models/craik_wm_geo --slots 6 --visual-weight 0

Takes a trained model with object slots (its predictor, decoder, pose read-out and learned
object dynamics) and makes its slots geometric: ``max_objects`` class-agnostic slots with a
presence flag each, filled at run time by :mod:`craik_world_model.object_state` from the aligned
depth and the calibrated camera. The colour-keyed locator is dropped. The object dynamics MLP is
shared by the slots and sees only where the TCP is relative to an object and how it moves, so it
carries over to any number of slots and to objects of any colour. Then the model is exported
like ``craik wm-export`` does (ONNX graphs, weights, manifest).
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

from craik_world_model.checkpoint import load_model, sha256_file
from craik_world_model.config import override
from craik_world_model.model import WorldModel


def geometric_model(model: WorldModel, slots: int, **energy: float) -> WorldModel:
    """A copy of ``model`` (which must have learned object dynamics) with ``slots`` geometric
    object slots; ``energy``: ModelConfig weights to set (pose_weight, visual_weight, ...)."""
    c = model.config
    if c.object_count == 0 or model.predictor.objects is None:
        raise ValueError('the model has no object dynamics to carry over; add object slots '
                         'first (`craik train-objects`)')
    config = override(c, object_source='geometry', object_count=slots, **energy)
    out = WorldModel(config)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith('encoder.locator.')}
    out.load_state_dict(state, strict=True)
    return out.eval()


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``craik wm-geometry``."""
    parser.add_argument('--checkpoint', required=True, type=Path,
                        help='trained model with object slots (model.safetensors)')
    parser.add_argument('--out', required=True, type=Path, help='export directory')
    parser.add_argument('--slots', type=int, default=6, help='object slots (1..8)')
    parser.add_argument('--visual-weight', type=float, default=0.0)
    parser.add_argument('--pose-weight', type=float, default=1.0)
    parser.add_argument('--object-weight', type=float, default=2.0)
    parser.add_argument('--approach-weight', type=float, default=1.0)
    parser.add_argument('--horizons', default='4,8,12')


def run(args: argparse.Namespace) -> int:
    """``craik wm-geometry``."""
    from craik_world_model.export import export_model

    try:
        horizons = tuple(int(h) for h in str(args.horizons).split(',') if h.strip())
        base, meta = load_model(args.checkpoint)
        model = geometric_model(base, args.slots, visual_weight=args.visual_weight,
                                pose_weight=args.pose_weight, object_weight=args.object_weight,
                                approach_weight=args.approach_weight)
    except (OSError, ValueError) as exc:
        print(f'craik wm-geometry: {exc}', file=sys.stderr)
        return 1
    source = {'checkpoint': str(args.checkpoint),
              'checkpoint_sha256': meta.get('sha256') or sha256_file(args.checkpoint),
              'command': ' '.join(['craik', 'wm-geometry', *sys.argv[2:]])}
    for key in ('preset', 'train_config', 'data_config', 'steps', 'data', 'metrics',
                'train_episodes', 'val_episodes', 'object_training'):
        if key in meta:
            source[f'base_{key}'] = meta[key]
    export_model(model, args.out, horizons, source)
    print(f'craik wm-geometry: wrote {args.out} ({args.slots} geometric slots, energy: '
          f'visual {args.visual_weight}, pose {args.pose_weight}, object {args.object_weight}, '
          f'approach {args.approach_weight})')
    return 0
