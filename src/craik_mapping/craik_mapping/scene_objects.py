"""Objects from the Gaussian map: what stands on the table plane, the arm excluded.

The map's opaque Gaussians above the table are clustered exactly as the world model's object
state clusters depth points (craik_world_model.object_state: connected voxels, the same table
region, minimum size and support rule), so the map and a single frame describe objects alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from craik_mapping.gaussian_map import GaussianMap
from craik_world_model.object_state import Capsule, ObjectStateConfig, extract_objects


@dataclass(frozen=True)
class MapObject:
    """One object in the map (fr3_link0, metres)."""

    position: np.ndarray  # [3] centre of its footprint, at half its height above the table
    extent: np.ndarray    # [3] size along x, y (footprint) and z (height above the table)
    colour: np.ndarray    # [3] mean colour in [0, 1]
    gaussians: int        # Gaussians that make it up


def map_objects(gmap: GaussianMap, config: ObjectStateConfig | None = None,
                arm: list[Capsule] | None = None, min_opacity: float = 0.3
                ) -> list[MapObject]:
    """The map's object clusters, largest first (``arm``: the robot's capsules to exclude)."""
    c = config or ObjectStateConfig()
    keep = gmap.opacities() >= min_opacity
    points = gmap.means[keep].detach().cpu().numpy().astype(np.float64)
    colours = gmap.colours()[keep].detach().cpu().numpy().astype(np.float64)
    found = extract_objects(points, colours, c, arm)
    out = []
    for i in range(len(found)):
        height = float(found.heights[i])
        out.append(MapObject(
            position=np.array([*found.positions[i], c.table_height_m + height / 2]),
            extent=np.array([*found.extents[i], height]), colour=found.colours[i],
            gaussians=int(found.points[i])))
    return out
