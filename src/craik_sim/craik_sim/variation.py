"""The variation options on the command line, shared by `craik collect`, `craik eval` and
`craik calibrate` (the ranges themselves live in :class:`craik_sim.scene.VariationConfig`).

    --vary-lighting --vary-camera-pose --vary-cube-colours --vary-cube-sizes --vary-table
    --distractors N       (0..3 in the shipped scene)
    --vary-all            every switch above, and 2 distractors unless --distractors says
"""

from __future__ import annotations

import argparse
from typing import Any

from craik_sim.scene import VariationConfig

# Command-line switch -> VariationConfig field.
SWITCHES = {'lighting': 'lighting', 'camera-pose': 'camera_jitter',
            'cube-colours': 'cube_colours', 'cube-sizes': 'cube_sizes',
            'table': 'table_texture'}
VARY_ALL_DISTRACTORS = 2


def add_variation_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``--vary-*`` switches, ``--distractors`` and ``--vary-all`` to ``parser``."""
    group = parser.add_argument_group('variation (sampled per episode from its seed)')
    for flag in SWITCHES:
        group.add_argument(f'--vary-{flag}', action='store_true',
                           help=f'vary the {flag.replace("-", " ")}')
    group.add_argument('--distractors', type=int, default=None,
                       help='distractor objects on the table (default 0; 2 with --vary-all)')
    group.add_argument('--vary-all', action='store_true',
                       help=f'every variation, with {VARY_ALL_DISTRACTORS} distractors unless '
                       '--distractors is given')


def variation_config(args: argparse.Namespace) -> VariationConfig:
    """The VariationConfig the parsed switches ask for (SceneError on a bad value)."""
    every = bool(getattr(args, 'vary_all', False))
    values: dict[str, Any] = {field: every or bool(getattr(args, f'vary_{flag.replace("-", "_")}',
                                                           False))
                              for flag, field in SWITCHES.items()}
    distractors = getattr(args, 'distractors', None)
    values['distractors'] = (VARY_ALL_DISTRACTORS if every else 0) if distractors is None \
        else distractors
    return VariationConfig(**values)


def variation_summary(args: argparse.Namespace) -> dict[str, Any]:
    """The switches of ``args`` as a JSON-friendly dict (reports)."""
    v = variation_config(args)
    return {'lighting': v.lighting, 'camera_pose': v.camera_jitter,
            'cube_colours': v.cube_colours, 'cube_sizes': v.cube_sizes,
            'table': v.table_texture, 'distractors': v.distractors}


def variation_name(v: VariationConfig) -> str:
    """Short name of what varies ('nominal', 'lighting+camera_pose', ...), for report rows."""
    parts = [name for name, on in (('lighting', v.lighting), ('camera_pose', v.camera_jitter),
                                   ('cube_colours', v.cube_colours),
                                   ('cube_sizes', v.cube_sizes), ('table', v.table_texture))
             if on]
    if v.distractors:
        parts.append(f'{v.distractors}_distractors')
    return '+'.join(parts) or 'nominal'


def parse_variations(text: str) -> dict[str, VariationConfig]:
    """``'nominal,lighting+camera-pose,all'`` -> {name: VariationConfig} (ValueError naming a
    bad item). Items: ``nominal``, ``all`` (every switch, 2 distractors), or switches joined by
    ``+``: the keys of SWITCHES and ``distractors=N`` (``distractors`` alone: 2)."""
    out: dict[str, VariationConfig] = {}
    for item in (part.strip() for part in text.split(',')):
        if not item:
            continue
        values: dict[str, Any] = {}
        if item == 'all':
            values = dict.fromkeys(SWITCHES.values(), True)
            values['distractors'] = VARY_ALL_DISTRACTORS
        elif item != 'nominal':
            for word in item.split('+'):
                key, _, count = word.partition('=')
                if key == 'distractors':
                    try:
                        values['distractors'] = int(count) if count else VARY_ALL_DISTRACTORS
                    except ValueError:
                        raise ValueError(f'variation {item!r}: distractors=N needs an integer, '
                                         f'got {count!r}') from None
                elif key in SWITCHES and not count:
                    values[SWITCHES[key]] = True
                else:
                    raise ValueError(f'variation {item!r}: unknown switch {word!r} (known: '
                                     f'{", ".join(SWITCHES)}, distractors=N, nominal, all)')
        try:
            config = VariationConfig(**values)
        except ValueError as err:
            raise ValueError(f'variation {item!r}: {err}') from None
        out[item] = config
    if not out:
        raise ValueError('no variation given')
    return out
