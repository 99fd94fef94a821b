"""Template registration: a partly hidden object's centre from its unoccluded footprint."""

import math

import numpy as np
import pytest

from craik_world_model.object_templates import (
    ObjectTemplate,
    SceneView,
    TemplateConfig,
    TopDownGrid,
    register,
)

GRID = TopDownGrid((0.2, 0.85), (-0.45, 0.45), 0.005)
CONFIG = TemplateConfig()


def box_points(centre, size=(0.05, 0.05), angle=0.0, spacing=0.002):
    """Top-down points filling a rectangle [N, 2] (m)."""
    xs = np.arange(-size[0] / 2 + spacing / 2, size[0] / 2, spacing)
    ys = np.arange(-size[1] / 2 + spacing / 2, size[1] / 2, spacing)
    local = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    c, s = math.cos(angle), math.sin(angle)
    return local @ np.array([[c, s], [-s, c]]) + np.asarray(centre)


def table_points(spacing=0.003):
    xs = np.arange(0.2, 0.85, spacing)
    ys = np.arange(-0.45, 0.45, spacing)
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)


def view(visible, hidden_region=None):
    """The camera sees ``visible`` object points; the table everywhere else except under the
    object and inside ``hidden_region(xy) -> mask`` (what the arm hides)."""
    table = table_points()
    occupied = GRID.occupancy(visible)
    cells = GRID.cells(table)
    under = occupied[tuple(np.clip(cells, 0, np.array(GRID.shape) - 1).T)]
    keep = ~under
    if hidden_region is not None:
        keep &= ~hidden_region(table)
    return SceneView.from_points(GRID, visible, table[keep])


def template_of(centre, angle=0.0, size=(0.05, 0.05)):
    return ObjectTemplate.from_points(box_points(centre, size, angle), np.asarray(centre),
                                      GRID.cell_m)


def test_a_half_hidden_object_is_placed_within_a_centimetre():
    template = template_of((0.45, 0.05))
    truth = np.array([0.55, -0.10])
    full = box_points(truth)

    def hidden(xy):  # the hand hides everything beyond x = 0.555 near the object
        return (xy[:, 0] > truth[0] + 0.005) & (np.abs(xy[:, 1] - truth[1]) < 0.06)
    visible = full[~hidden(full)]
    seen_centre = visible.mean(axis=0)
    assert np.linalg.norm(seen_centre - truth) > 0.009  # what the footprint alone says
    placement = register(template, view(visible, hidden), GRID, seen_centre, CONFIG)
    assert placement is not None
    assert np.linalg.norm(placement.centre - truth) < 0.005
    assert 0.4 < placement.visible_fraction < 0.7


def test_a_rotated_object_is_registered_with_its_rotation():
    template = template_of((0.45, 0.05), size=(0.06, 0.03))
    truth = np.array([0.5, 0.2])
    full = box_points(truth, (0.06, 0.03), angle=math.radians(30))

    def hidden(xy):
        return (xy[:, 1] < truth[1] - 0.005) & (np.abs(xy[:, 0] - truth[0]) < 0.06)
    visible = full[~hidden(full)]
    placement = register(template, view(visible, hidden), GRID, visible.mean(axis=0), CONFIG)
    assert placement is not None
    assert np.linalg.norm(placement.centre - truth) < 0.006
    assert placement.angle == pytest.approx(math.radians(30), abs=math.radians(8))


def test_free_table_rules_out_placements_over_it():
    # Only a 1 cm strip of the object is visible; without free space any placement along the
    # strip would do, with it only the one whose footprint covers no seen table.
    template = template_of((0.45, 0.05))
    truth = np.array([0.6, 0.0])
    full = box_points(truth)

    def hidden(xy):  # everything but the strip at the object's low-x edge is hidden
        return (xy[:, 0] > truth[0] - 0.015) & (xy[:, 0] < truth[0] + 0.08) & \
            (np.abs(xy[:, 1] - truth[1]) < 0.08)
    visible = full[~hidden(full)]
    guess = visible.mean(axis=0) + np.array([0.0, 0.02])
    placement = register(template, view(visible, hidden), GRID, guess, CONFIG)
    assert placement is not None
    assert np.linalg.norm(placement.centre - truth) < 0.008


def test_an_object_the_camera_does_not_see_is_not_placed():
    template = template_of((0.45, 0.05))
    truth = np.array([0.6, 0.0])

    def hidden(xy):
        return np.linalg.norm(xy - truth, axis=1) < 0.06
    empty = view(np.zeros((0, 2)), hidden)
    assert register(template, empty, GRID, truth, CONFIG) is None


def test_bad_template_settings_are_rejected():
    with pytest.raises(ValueError, match='search_radius_m'):
        TemplateConfig(search_radius_m=0.0)
    with pytest.raises(ValueError, match='min_visible_fraction'):
        TemplateConfig(min_visible_fraction=0.0)
    with pytest.raises(ValueError, match='at least one point'):
        ObjectTemplate.from_points(np.zeros((0, 2)), np.zeros(2), 0.005)
