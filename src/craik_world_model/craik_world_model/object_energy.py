"""The object part of the planning energy: where objects are against where the goal shows them.

A latent distance alone does not make a push plannable: the visual latent is dominated by the
arm, and a push lowers the object distance only after the fingers have gone around the object
and come down behind it, often beyond the horizon. So for each object slot the energy adds

- ``object_weight`` x the distance (m) between the imagined object position and the goal's;
- ``approach_weight`` x, for an object that is off its goal by more than ``engage_m``, the TCP's
  distance to the pushing slot: the stretch of the line through the object and its goal that
  runs behind the object from where the fingers touch it (``contact_m``) to the pre-push point
  (``pre_push_offset_m``). Horizontally, plus vertically to the pushing height when it is in
  the slot and to the hover height elsewhere (it goes around objects above them, never through
  them); and a fixed penalty for the TCP low over an object's footprint (landing on it knocks it
  away). A TCP pushing the object sits in the slot, so pushing costs nothing here and the
  object term decides how far to push.

While an object is engaged (off its goal), where the goal image shows the arm does not count
(:func:`engagement`; the world model scales its visual and pose terms by one minus the largest
engagement of the current objects, ``model.arm_weight``): the arm's goal pose is where a push
ends, and pulling the arm there before the object is moved only drags it past the object.

All inputs are in metres in fr3_link0; every operation exports to ONNX. The oracle baseline
uses the same function on simulator ground truth, so the two differ only in state and model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ApproachGeometry:
    """Heights and distances of the approach term (m), for the tabletop cubes of the task suite
    (5 cm cubes on the table at z = 0, closed fingers)."""

    push_height_m: float = 0.03      # TCP height while pushing (below the cube's top)
    hover_height_m: float = 0.12     # TCP height when going around objects
    pre_push_offset_m: float = 0.05  # pre-push point: object centre minus this along the push
    contact_m: float = 0.035         # TCP this far behind an object's centre pushes it
    descend_within_m: float = 0.01   # descend only this close to the pre-push point...
    descend_ramp_m: float = 0.01     # ...reaching the hover height this much farther out
    engage_m: float = 0.015          # objects this close to their goal need no approach
    engage_ramp_m: float = 0.02      # full approach weight this much farther
    footprint_m: float = 0.03        # TCP this close to an object's centre is over it...
    footprint_height_m: float = 0.09  # ...when lower than this
    footprint_penalty: float = 2.0   # energy added, in units of approach_weight


GEOMETRY = ApproachGeometry()


def engagement(objects: torch.Tensor, goal_objects: torch.Tensor,
               geometry: ApproachGeometry = GEOMETRY) -> torch.Tensor:
    """How much each object still has to be pushed, 0 (at its goal) ... 1:
    ``objects [..., K, 2]``, ``goal_objects [..., K, 2]`` -> ``[..., K]``."""
    to_goal = goal_objects - objects
    error = torch.sqrt((to_goal * to_goal).sum(-1) + 1e-12)
    return ((error - geometry.engage_m) / geometry.engage_ramp_m).clamp(0.0, 1.0)


def object_energy(tcp: torch.Tensor, objects: torch.Tensor, goal_objects: torch.Tensor,
                  object_weight: float, approach_weight: float,
                  geometry: ApproachGeometry = GEOMETRY,
                  presence: torch.Tensor | None = None) -> torch.Tensor:
    """Object and approach terms: ``tcp [..., 3]``, ``objects [..., K, 2]``,
    ``goal_objects [..., K, 2]`` (broadcastable), ``presence [..., K]`` (which slots count;
    None: all) -> ``[...]``."""
    g = geometry
    to_goal = goal_objects - objects                                     # [..., K, 2]
    error = torch.sqrt((to_goal * to_goal).sum(-1) + 1e-12)             # [..., K]
    weight = torch.ones_like(error) if presence is None else presence   # [..., K]
    energy = object_weight * (weight * error).sum(-1)
    if approach_weight <= 0:
        return energy
    direction = to_goal / error.clamp_min(1e-6).unsqueeze(-1)           # [..., K, 2]
    tcp_xy, tcp_z = tcp[..., None, :2], tcp[..., None, 2]                # [..., 1, 2], [..., 1]
    offset = tcp_xy - objects                                            # [..., K, 2]
    behind = -(offset * direction).sum(-1)                               # [..., K]
    across = offset + behind.unsqueeze(-1) * direction                   # [..., K, 2]
    outside = (behind - g.pre_push_offset_m).clamp_min(0.0) + \
        (g.contact_m - behind).clamp_min(0.0)                            # [..., K]
    lateral = torch.sqrt((across * across).sum(-1) + outside * outside + 1e-12)  # [..., K]
    lift = ((lateral - g.descend_within_m) / g.descend_ramp_m).clamp(0.0, 1.0)
    height = g.push_height_m + (g.hover_height_m - g.push_height_m) * lift
    approach = lateral + (tcp_z - height).abs()                          # [..., K]
    engaged = engagement(objects, goal_objects, g) * weight
    centre = torch.sqrt(((tcp_xy - objects) ** 2).sum(-1) + 1e-12)      # [..., K]
    over = ((centre < g.footprint_m) & (tcp_z < g.footprint_height_m)).to(tcp.dtype)
    return energy + approach_weight * (engaged * approach
                                       + g.footprint_penalty * over * weight).sum(-1)
