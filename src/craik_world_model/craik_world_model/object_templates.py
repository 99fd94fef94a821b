"""Objects keep their shape: hidden parts of an object are completed from an unoccluded view.

A camera sees only part of an object the fingers stand next to: the hand hides some of it, and
the arm's kinematic mask removes what lies within its margin. The footprint centre of what is
left is off by 1-4 cm (the push goals of the task suite: median 1.7 cm, more than half the
3 cm success radius). Rigid objects do not change shape, so the view of an object with the
arm away from it is a template of its top-down footprint; where the arm is close, the template
is registered (2D translation and rotation) against what the camera sees now:

- cells where the camera sees the object's surface count for a placement;
- cells where it sees the bare table count against it (nothing can stand there);
- cells it cannot see (behind the arm, the arm's mask) count neither way.

The best placement's centre is the object's position, measured like the unoccluded view
measures it (same camera, same footprint), so goals and observations agree. An object the
camera does not see at all (no placement with enough of it visible) stays where it was last
seen: objects do not vanish from a table.

Everything is in metres in fr3_link0, on a top-down grid of ``cell_m`` cells. No colours, no
object classes: any rigid object on the table.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np
import numpy.typing as npt
from scipy import signal

FloatArray = npt.NDArray[np.float64]
BoolGrid = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class TemplateConfig:
    """How templates are taken and registered (metres, radians)."""

    # An object is seen unoccluded (its view becomes its template) when the TCP is at least
    # this far from its centre...
    unoccluded_tcp_distance_m: float = 0.12
    # ...and it is registered (not measured directly) when the TCP is closer than that.
    search_radius_m: float = 0.05      # placements within this of the first guess
    max_rotation_rad: float = math.radians(45.0)
    rotation_step_rad: float = math.radians(7.5)
    free_weight: float = 1.0           # a bare-table cell under a placement costs this much
    # A placement must see at least this fraction of the template's cells, else the object is
    # hidden (it keeps its last position).
    min_visible_fraction: float = 0.05
    # Ties between placements go to the one nearest the first guess (per cell of distance).
    distance_penalty: float = 1e-3

    def __post_init__(self) -> None:
        for name in ('unoccluded_tcp_distance_m', 'search_radius_m', 'rotation_step_rad'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f'{name} must be > 0, got {value}')
        if not (math.isfinite(self.max_rotation_rad) and 0.0 <= self.max_rotation_rad
                <= math.pi):
            raise ValueError(f'max_rotation_rad must be in [0, pi], got {self.max_rotation_rad}')
        if not 0.0 < self.min_visible_fraction <= 1.0:
            raise ValueError('min_visible_fraction must be in (0, 1]')


@dataclass(frozen=True)
class TopDownGrid:
    """A top-down grid over the table region: cell (i, j) covers x in
    ``[x0 + i cell, x0 + (i + 1) cell)`` and likewise y."""

    x_range_m: tuple[float, float]
    y_range_m: tuple[float, float]
    cell_m: float

    @property
    def shape(self) -> tuple[int, int]:
        return (int(math.ceil((self.x_range_m[1] - self.x_range_m[0]) / self.cell_m)),
                int(math.ceil((self.y_range_m[1] - self.y_range_m[0]) / self.cell_m)))

    def cells(self, xy: FloatArray) -> npt.NDArray[np.int64]:
        """``[N, 2]`` points (m) -> ``[N, 2]`` cell indices (may lie outside the grid)."""
        origin = np.array([self.x_range_m[0], self.y_range_m[0]])
        return np.floor((np.asarray(xy, dtype=float)[:, :2] - origin) / self.cell_m
                        ).astype(np.int64)

    def centre(self, cell: npt.NDArray[np.int64]) -> FloatArray:
        """Cell index ``[2]`` -> its centre (m)."""
        origin = np.array([self.x_range_m[0], self.y_range_m[0]])
        return origin + (np.asarray(cell, dtype=float) + 0.5) * self.cell_m

    def occupancy(self, xy: FloatArray) -> BoolGrid:
        """Which cells hold at least one of the points ``[N, 2+]``."""
        grid = np.zeros(self.shape, dtype=bool)
        if len(xy):
            ij = self.cells(xy)
            inside = np.all((ij >= 0) & (ij < np.array(self.shape)), axis=1)
            grid[tuple(ij[inside].T)] = True
        return grid


@dataclass(frozen=True)
class SceneView:
    """What one frame shows from above: cells with an object's surface (the arm removed) and
    cells where the bare table is seen."""

    occupied: BoolGrid  # [X, Y]
    free: BoolGrid      # [X, Y]

    @classmethod
    def from_points(cls, grid: TopDownGrid, object_xy: FloatArray, table_xy: FloatArray
                    ) -> SceneView:
        """``object_xy [N, 2+]``: table-top points that are not the arm; ``table_xy [M, 2+]``:
        points on the table plane (their cells are free unless an object point shares them)."""
        occupied = grid.occupancy(object_xy)
        return cls(occupied, grid.occupancy(table_xy) & ~occupied)


@dataclass(frozen=True)
class ObjectTemplate:
    """An object's footprint seen unoccluded: occupied cell centres relative to its centre."""

    offsets: FloatArray  # [M, 2] m
    extent: FloatArray   # [2] m

    @classmethod
    def from_points(cls, xy: FloatArray, centre: FloatArray, cell_m: float) -> ObjectTemplate:
        """The template of an object's points ``[N, 2+]`` whose footprint centre is
        ``centre [2]`` (as the extractor measures it)."""
        pts = np.asarray(xy, dtype=float)[:, :2]
        if len(pts) == 0:
            raise ValueError('a template needs at least one point')
        cells = np.unique(np.floor(pts / cell_m).astype(np.int64), axis=0)
        centres = (cells + 0.5) * cell_m
        extent = centres.max(axis=0) - centres.min(axis=0) + cell_m
        return cls(centres - np.asarray(centre, dtype=float)[:2], extent)

    def kernel(self, angle: float, cell_m: float) -> tuple[BoolGrid, int]:
        """The footprint rotated by ``angle`` rasterised on a ``[2R+1, 2R+1]`` grid whose
        middle cell holds the centre; returns (grid, R)."""
        c, s = math.cos(angle), math.sin(angle)
        rotated = self.offsets @ np.array([[c, s], [-s, c]])
        ij = np.round(rotated / cell_m).astype(np.int64)
        radius = int(np.abs(ij).max()) if len(ij) else 0
        kernel = np.zeros((2 * radius + 1, 2 * radius + 1), dtype=bool)
        kernel[tuple((ij + radius).T)] = True
        return kernel, radius


@dataclass(frozen=True)
class Placement:
    """Where a template fits a view best."""

    centre: FloatArray      # [2] m
    angle: float            # rad, relative to the template
    visible_fraction: float  # of the template's cells that the view shows occupied
    score: float


def register(template: ObjectTemplate, view: SceneView, grid: TopDownGrid, guess: FloatArray,
             config: TemplateConfig) -> Placement | None:
    """The best placement of ``template`` within ``search_radius_m`` of ``guess [2]`` in
    ``view``; None when no placement sees ``min_visible_fraction`` of it (hidden)."""
    c = config
    search = int(math.ceil(c.search_radius_m / grid.cell_m))
    g = grid.cells(np.asarray(guess, dtype=float)[None, :2])[0]
    steps = int(math.floor(c.max_rotation_rad / c.rotation_step_rad + 1e-9))
    angles = np.arange(-steps, steps + 1) * c.rotation_step_rad
    kernels = [template.kernel(float(a), grid.cell_m) for a in angles]
    pad = search + max(r for _, r in kernels)
    lo = g - pad
    window = np.zeros((2 * pad + 1, 2 * pad + 1, 2))  # [occupied, free] around the guess
    src_lo = np.maximum(lo, 0)
    src_hi = np.minimum(lo + 2 * pad + 1, np.array(grid.shape))
    if np.any(src_hi <= src_lo):
        return None
    dst = src_lo - lo
    sl_src = np.s_[src_lo[0]:src_hi[0], src_lo[1]:src_hi[1]]
    sl_dst = np.s_[dst[0]:dst[0] + src_hi[0] - src_lo[0], dst[1]:dst[1] + src_hi[1] - src_lo[1]]
    window[sl_dst + (0,)] = view.occupied[sl_src]
    window[sl_dst + (1,)] = view.free[sl_src]
    offsets = np.arange(-search, search + 1)
    distance = np.hypot(offsets[:, None], offsets[None, :])          # [2S+1, 2S+1] cells
    best: Placement | None = None
    best_score = -np.inf
    for angle, (kernel, radius) in zip(angles, kernels, strict=True):
        # Placement (dx, dy) puts the kernel's middle at guess + (dx, dy).
        part = np.s_[pad - search - radius:pad + search + radius + 1,
                     pad - search - radius:pad + search + radius + 1]
        seen = signal.correlate(window[part + (0,)], kernel.astype(float), mode='valid')
        bare = signal.correlate(window[part + (1,)], kernel.astype(float), mode='valid')
        score = seen - c.free_weight * bare - c.distance_penalty * distance
        i, j = np.unravel_index(int(np.argmax(score)), score.shape)
        if score[i, j] > best_score:
            best_score = float(score[i, j])
            centre = grid.centre(g + np.array([offsets[i], offsets[j]]))
            best = Placement(centre, float(angle), float(seen[i, j]) / float(kernel.sum()),
                             best_score)
    if best is None or best.visible_fraction < c.min_visible_fraction:
        return None
    return best
