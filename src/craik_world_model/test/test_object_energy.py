"""The object and approach terms: what they prefer is what makes a push plannable."""

import pytest
import torch

from craik_world_model.object_energy import GEOMETRY, object_energy

CUBE = torch.tensor([[0.50, 0.00]], dtype=torch.float64)      # [K=1, 2]
GOAL = torch.tensor([[0.50, 0.10]], dtype=torch.float64)      # 10 cm along +y


def energy(tcp, cube=CUBE, goal=GOAL, object_weight=1.0, approach_weight=0.5):
    return float(object_energy(torch.tensor(tcp, dtype=torch.float64), cube, goal,
                               object_weight, approach_weight))


def test_object_term_is_the_distance_to_the_goal_in_metres():
    assert energy([0.5, 0.0, 0.3], approach_weight=0.0) == pytest.approx(0.10)
    assert energy([0.5, 0.0, 0.3], goal=CUBE, approach_weight=0.0) == pytest.approx(0.0,
                                                                                    abs=1e-5)


def test_low_behind_the_cube_beats_low_in_front_of_it_and_on_top_of_it():
    behind = [0.50, -GEOMETRY.pre_push_offset_m, GEOMETRY.push_height_m]
    in_front = [0.50, GEOMETRY.pre_push_offset_m, GEOMETRY.push_height_m]
    on_top = [0.50, 0.00, 0.06]
    assert energy(behind) < energy(in_front)
    assert energy(behind) < energy(on_top)
    # Landing on the cube costs more than hovering anywhere near it.
    assert energy(on_top) > energy([0.50, 0.00, GEOMETRY.hover_height_m])


def test_pushing_from_contact_costs_no_approach_energy():
    """Anywhere in the slot behind the cube (from touching it to the pre-push point) is as good
    as the pre-push point; in front of the slot or beside it is not."""
    low = GEOMETRY.push_height_m
    slot = [energy([0.50, -d, low]) for d in (GEOMETRY.contact_m, 0.042,
                                              GEOMETRY.pre_push_offset_m)]
    assert max(slot) - min(slot) < 1e-6
    assert energy([0.50, -GEOMETRY.contact_m + 0.01, low]) > slot[0]
    assert energy([0.52, -GEOMETRY.contact_m, low]) > slot[0]


def test_away_from_the_pre_push_point_the_tcp_should_hover():
    far = [0.60, 0.08]
    assert energy([*far, GEOMETRY.hover_height_m]) < energy([*far, GEOMETRY.push_height_m])


def test_an_object_at_its_goal_asks_for_no_approach():
    """Reach goals leave the cubes where they are: the TCP may go anywhere above them."""
    at_goal = energy([0.3, 0.2, 0.3], goal=CUBE + 0.005)
    assert at_goal == pytest.approx(0.005 * 2 ** 0.5, abs=1e-4)


def test_batched_shapes():
    tcp = torch.rand(7, 5, 3, dtype=torch.float64)               # [N, H, 3]
    cubes = torch.rand(7, 5, 2, 2, dtype=torch.float64)          # [N, H, K=2, 2]
    goal = torch.rand(2, 2, dtype=torch.float64)                 # [K, 2]
    assert object_energy(tcp, cubes, goal, 1.0, 0.5).shape == (7, 5)
