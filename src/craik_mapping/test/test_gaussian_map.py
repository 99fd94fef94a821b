"""Unit tests of the Gaussian map library: integration, rendering, PLY, objects, refinement."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from craik_mapping.gaussian_map import GaussianMap, MapConfig, MappingError
from craik_mapping.ply import load_ply, ply_bytes, save_ply
from craik_mapping.refine import RefineConfig, Refiner
from craik_mapping.render import project_gaussians, rasterize_torch, render
from craik_mapping.scene_objects import map_objects

W, H, F = 96, 72, 90.0
K = np.array([[F, 0.0, W / 2], [0.0, F, H / 2], [0.0, 0.0, 1.0]])


def look_down(height: float = 1.0, x: float = 0.0) -> np.ndarray:
    """Camera ``height`` m above the world origin looking straight down (optical frame)."""
    t = np.eye(4)
    t[:3, :3] = np.diag([1.0, -1.0, -1.0])
    t[:3, 3] = (x, 0.0, height)
    return t


def plane_and_box_scene(box_height: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """What ``look_down(1.0)`` sees: a floor at z = 0 and a box top at ``box_height`` over the
    centre (rgb [H, W, 3] uint8, depth [H, W] m)."""
    depth = np.full((H, W), 1.0, dtype=np.float32)
    rgb = np.zeros((H, W, 3), dtype=np.uint8)
    rgb[...] = (180, 140, 90)
    box = (slice(H // 2 - 10, H // 2 + 10), slice(W // 2 - 10, W // 2 + 10))
    depth[box] = 1.0 - box_height
    rgb[box] = (200, 30, 30)
    return rgb, depth


def test_integrating_the_same_frame_twice_does_not_grow_the_map() -> None:
    rgb, depth = plane_and_box_scene()
    gmap = GaussianMap(MapConfig(voxel_m=0.01))
    first = gmap.integrate(rgb, depth, K, look_down())
    second = gmap.integrate(rgb, depth, K, look_down())
    assert first.added > 500 and first.total == len(gmap)
    assert second.added == 0 and second.removed == 0 and len(gmap) == first.total


def test_known_planes_render_back_to_their_depth_on_the_cpu_renderer() -> None:
    rgb, depth = plane_and_box_scene()
    gmap = GaussianMap(MapConfig(voxel_m=0.01))
    gmap.integrate(rgb, depth, K, look_down())
    out = render(gmap, K, look_down(), W, H, backend='torch')
    d = out.depth_m()
    interior = np.zeros((H, W), dtype=bool)
    interior[6:-6, 6:-6] = True
    # Away from the box's outline (depth mixes across the 10 cm step there).
    edge = np.zeros((H, W), dtype=bool)
    edge[H // 2 - 13:H // 2 + 13, W // 2 - 13:W // 2 + 13] = True
    edge[H // 2 - 7:H // 2 + 7, W // 2 - 7:W // 2 + 7] = False
    check = interior & ~edge
    assert float(out.alpha[torch.from_numpy(check)].min()) > 0.9
    assert float(np.abs(d - depth)[check].max()) < 0.005
    colour_error = np.abs(out.colour_uint8().astype(int) - rgb)[check].mean()
    assert colour_error < 3.0
    # From a second viewpoint 10 cm aside, the floor is still at its depth.
    aside = look_down(1.0, x=0.1)
    moved = render(gmap, K, aside, W, H, backend='torch').depth_m()
    floor = np.zeros((H, W), dtype=bool)
    floor[6:-6, 6:20] = True
    assert float(np.abs(moved - 1.0)[floor].max()) < 0.005


def test_one_gaussian_renders_its_analytic_footprint() -> None:
    """A single isotropic Gaussian straight ahead: alpha(u, v) = o exp(-r^2 / 2 s^2) with
    s^2 = (f sigma / z)^2 + 0.3 (the anti-aliasing blur), depth = z wherever it is drawn."""
    z, sigma, opacity = 2.0, 0.02, 0.8
    means = torch.tensor([[0.0, 0.0, z]])
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    scales = torch.full((1, 3), sigma)
    out = rasterize_torch(means, quats, scales, torch.tensor([opacity]),
                          torch.tensor([[0.2, 0.4, 0.6]]), torch.eye(4),
                          torch.tensor(K, dtype=torch.float32), W, H)
    v, u = np.mgrid[0:H, 0:W] + 0.5
    s2 = (F * sigma / z) ** 2 + 0.3
    expected = opacity * np.exp(-((u - W / 2) ** 2 + (v - H / 2) ** 2) / (2 * s2))
    expected[expected < 1 / 255] = 0.0
    box = np.abs(u - W / 2) <= math.ceil(3.33 * math.sqrt(s2))
    box &= np.abs(v - H / 2) <= math.ceil(3.33 * math.sqrt(s2))
    expected[~box] = 0.0
    np.testing.assert_allclose(out.alpha.numpy(), expected, atol=1e-5)
    drawn = out.alpha.numpy() > 0
    np.testing.assert_allclose(out.depth.numpy()[drawn], z, atol=1e-5)
    np.testing.assert_allclose(out.colour.numpy()[drawn] / out.alpha.numpy()[drawn, None],
                               np.broadcast_to([0.2, 0.4, 0.6], (int(drawn.sum()), 3)),
                               atol=1e-5)


def test_front_gaussian_occludes_the_one_behind() -> None:
    means = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0]])
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 2)
    scales = torch.full((2, 3), 0.05)
    out = rasterize_torch(means, quats, scales, torch.tensor([0.99, 0.99]),
                          torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), torch.eye(4),
                          torch.tensor(K, dtype=torch.float32), W, H)
    centre = out.colour[H // 2, W // 2]
    # alpha = 0.99 exp(-small) at the pixel centre: the front one leaves ~2 % behind it.
    assert float(centre[0]) > 0.97 and float(centre[2]) < 0.03
    # Expected depth: the ~2 % seen of the one behind pulls it 2 cm back.
    assert abs(float(out.depth[H // 2, W // 2]) - 1.0) < 0.03


def test_projection_matches_gsplats_reference_implementation() -> None:
    """gsplat's pure-PyTorch projection (the reference of its CUDA kernels) on CPU."""
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    g = torch.Generator().manual_seed(0)
    n = 300
    means = torch.rand(n, 3, generator=g) * torch.tensor([2.0, 1.5, 2.0]) - \
        torch.tensor([1.0, 0.75, -0.5])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.05 + 0.002
    view = torch.eye(4)
    k = torch.tensor(K, dtype=torch.float32)
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(means, covars, view[None],
                                                                k[None], W, H)
    ours = project_gaussians(means, quats, scales, view, k, W, H)
    visible = torch.nonzero(radii[0].max(dim=1).values > 0).squeeze(1)
    assert torch.equal(visible, ours.ids)
    torch.testing.assert_close(ours.means2d, means2d[0, visible], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ours.conics, conics[0, visible], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours.depths, depths[0, visible])
    assert torch.equal(ours.radii, radii[0, visible].long())


def test_moved_object_is_removed_where_depth_now_sees_through_it() -> None:
    rgb, depth = plane_and_box_scene(box_height=0.08)
    gmap = GaussianMap(MapConfig(voxel_m=0.01))
    gmap.integrate(rgb, depth, K, look_down())
    on_box = (gmap.means[:, 2] > 0.05).sum()
    assert on_box > 100
    floor_rgb, floor_depth = plane_and_box_scene(box_height=0.0)
    stats = gmap.integrate(floor_rgb, floor_depth, K, look_down())
    assert stats.removed >= int(on_box)
    assert int((gmap.means[:, 2] > 0.02).sum()) == 0
    # The floor under the old box is mapped now (20 x 20 pixels of ~1.1 cm > the voxel).
    half = 10 / F
    under = (gmap.means[:, :2].abs() < half).all(dim=1) & (gmap.means[:, 2].abs() < 0.01)
    assert int(under.sum()) >= 0.9 * 20 * 20


def test_masked_pixels_add_nothing_and_carve_nothing() -> None:
    rgb, depth = plane_and_box_scene(box_height=0.08)
    gmap = GaussianMap(MapConfig(voxel_m=0.01))
    gmap.integrate(rgb, depth, K, look_down())
    before = len(gmap)
    mask = np.zeros((H, W), dtype=bool)
    mask[H // 2 - 16:H // 2 + 16, W // 2 - 16:W // 2 + 16] = True  # e.g. the arm over the box
    floor_rgb, floor_depth = plane_and_box_scene(box_height=0.0)
    stats = gmap.integrate(floor_rgb, floor_depth, K, look_down(), mask)
    assert stats.removed == 0 and stats.added == 0 and len(gmap) == before


def test_memory_is_bounded_evicting_the_longest_unseen_first() -> None:
    rgb, depth = plane_and_box_scene()
    gmap = GaussianMap(MapConfig(voxel_m=0.01, max_gaussians=8000))
    gmap.integrate(rgb, depth, K, look_down(1.0, x=-0.6))
    first_view = gmap.means[:, 0].mean()
    stats = gmap.integrate(rgb, depth, K, look_down(1.0, x=0.6))
    assert len(gmap) == 8000 and stats.evicted > 0 and gmap.evicted_total == stats.evicted
    # What the latest frame confirmed is kept; the old view's Gaussians went first.
    assert float(gmap.means[:, 0].mean()) > float(first_view) + 0.5
    assert gmap.memory_bytes() == 8000 * (3 + 4 + 3 + 1 + 3) * 4 + 8000 * 3 * 8


def test_ply_round_trips_exactly(tmp_path: Path) -> None:
    rgb, depth = plane_and_box_scene()
    gmap = GaussianMap(MapConfig(voxel_m=0.01))
    gmap.integrate(rgb, depth, K, look_down())
    gmap.integrate(rgb, depth, K, look_down(1.1, x=0.05))
    path = save_ply(gmap, tmp_path / 'map.ply')
    loaded = load_ply(path, gmap.config)
    for name in ('means', 'quats', 'log_scales', 'opacity_logits', 'sh_dc'):
        assert torch.equal(getattr(loaded, name), getattr(gmap, name)), name
    assert ply_bytes(loaded) == path.read_bytes()
    header = path.read_bytes().split(b'end_header\n')[0].decode()
    assert header.splitlines()[3:9] == [f'property float {p}' for p in
                                        ('x', 'y', 'z', 'nx', 'ny', 'nz')]


def test_ply_layout_matches_gsplats_exporter(tmp_path: Path) -> None:
    """gsplat's splat2ply_bytes writes the same properties without normals: we read its files,
    and ours carry every property it writes, in its order."""
    from gsplat.exporter import splat2ply_bytes

    rgb, depth = plane_and_box_scene()
    gmap = GaussianMap(MapConfig(voxel_m=0.02))
    gmap.integrate(rgb, depth, K, look_down())
    theirs = splat2ply_bytes(gmap.means, gmap.log_scales, gmap.quats, gmap.opacity_logits,
                             gmap.sh_dc, torch.zeros((len(gmap), 0)))
    (tmp_path / 'gsplat.ply').write_bytes(theirs)
    loaded = load_ply(tmp_path / 'gsplat.ply', gmap.config)
    for name in ('means', 'quats', 'log_scales', 'opacity_logits', 'sh_dc'):
        assert torch.equal(getattr(loaded, name), getattr(gmap, name)), name

    def properties(blob: bytes) -> list[str]:
        head = blob.split(b'end_header\n')[0].decode().splitlines()
        return [line.split()[-1] for line in head if line.startswith('property')]

    ours = properties(ply_bytes(gmap))
    assert [p for p in ours if p not in ('nx', 'ny', 'nz')] == properties(theirs)


@pytest.mark.parametrize('blob, message', [
    (b'not a ply', 'not a PLY file'),
    (b'ply\nformat ascii 1.0\nelement vertex 0\nend_header\n', 'binary_little_endian'),
    (b'ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\n'
     b'end_header\n\x00\x00\x00\x00', 'missing properties'),
])
def test_malformed_ply_files_are_refused_by_name(tmp_path: Path, blob: bytes,
                                                 message: str) -> None:
    path = tmp_path / 'bad.ply'
    path.write_bytes(blob)
    with pytest.raises(MappingError, match=message):
        load_ply(path)


def test_truncated_ply_is_refused(tmp_path: Path) -> None:
    rgb, depth = plane_and_box_scene()
    gmap = GaussianMap(MapConfig(voxel_m=0.02))
    gmap.integrate(rgb, depth, K, look_down())
    path = tmp_path / 'map.ply'
    path.write_bytes(ply_bytes(gmap)[:-10])
    with pytest.raises(MappingError, match='truncated'):
        load_ply(path)
    with pytest.raises(MappingError, match='cannot read'):
        load_ply(tmp_path / 'missing.ply')
    with pytest.raises(MappingError, match='.ply'):
        save_ply(gmap, tmp_path / 'map.txt')
    with pytest.raises(MappingError, match='does not exist'):
        save_ply(gmap, tmp_path / 'nowhere' / 'map.ply')


@pytest.mark.parametrize('change, message', [
    (lambda f: {**f, 'depth': f['depth'][:-1]}, 'same size'),
    (lambda f: {**f, 'depth': np.where(np.arange(W) == 3, np.nan, f['depth'])
                .astype(np.float32)}, 'non-finite'),
    (lambda f: {**f, 'depth': -f['depth']}, 'negative'),
    (lambda f: {**f, 'depth': (f['depth'] * 1000).astype(np.uint16)}, 'float metres'),
    (lambda f: {**f, 'rgb': f['rgb'].astype(np.int32)}, 'uint8 or float'),
    (lambda f: {**f, 'rgb': f['rgb'][..., :2]}, 'same size'),
    (lambda f: {**f, 'rgb': f['rgb'][..., 0]}, 'same size'),
    (lambda f: {**f, 'K': f['K'] * np.array([[0, 1, 1], [1, 1, 1], [1, 1, 1]])}, 'fx, fy'),
    (lambda f: {**f, 'K': f['K'] * 4 + np.diag([0, 0, -3])}, 'outside'),
    (lambda f: {**f, 'T': f['T'] * 2}, 'rigid'),
    (lambda f: {**f, 'T': np.full((4, 4), np.inf)}, 'finite'),
    (lambda f: {**f, 'mask': np.zeros((H, W), dtype=np.uint8)}, 'bool'),
])
def test_malformed_frames_get_specific_errors(change, message: str) -> None:  # noqa: ANN001
    rgb, depth = plane_and_box_scene()
    frame = change({'rgb': rgb, 'depth': depth, 'K': K, 'T': look_down(), 'mask': None})
    gmap = GaussianMap()
    with pytest.raises(MappingError, match=message):
        gmap.integrate(frame['rgb'], frame['depth'], frame['K'], frame['T'], frame['mask'])
    assert len(gmap) == 0 and gmap.frames_integrated == 0


@pytest.mark.parametrize('kwargs', [{'voxel_m': 0.0}, {'voxel_m': math.nan},
                                    {'min_depth_m': 3.0, 'max_depth_m': 1.0},
                                    {'max_gaussians': 0}, {'initial_opacity': 1.0},
                                    {'carve_window_px': 99}, {'miss_limit': 0}])
def test_bad_settings_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(MappingError):
        MapConfig(**kwargs)


def test_objects_are_the_clusters_above_the_table() -> None:
    # A finer camera than the other tests' (3.3 mm pixels at 1 m, finer than the clustering
    # voxel), and a low box: seen from straight above only its top shows, which must stand
    # within the support height (3 cm) of the table to count as standing on it.
    w, h, f = 160, 120, 300.0
    k = np.array([[f, 0.0, w / 2], [0.0, f, h / 2], [0.0, 0.0, 1.0]])
    depth = np.full((h, w), 1.0, dtype=np.float32)
    rgb = np.full((h, w, 3), (180, 140, 90), dtype=np.uint8)
    box = (slice(h // 2 - 10, h // 2 + 10), slice(w // 2 - 10, w // 2 + 10))
    depth[box] = 0.975
    rgb[box] = (200, 30, 30)
    gmap = GaussianMap(MapConfig(voxel_m=0.004))
    gmap.integrate(rgb, depth, k, look_down(1.0, x=0.5))  # box centre at x = 0.5 m
    found = map_objects(gmap)
    assert len(found) == 1
    obj = found[0]
    side = 20 / f * 0.975
    np.testing.assert_allclose(obj.position[:2], (0.5, 0.0), atol=0.005)
    np.testing.assert_allclose(obj.extent[:2], (side, side), atol=0.008)
    assert abs(obj.extent[2] - 0.025) < 0.004
    assert obj.colour[0] > 0.6 and obj.colour[1] < 0.3


def test_refinement_lowers_the_loss_on_the_cpu() -> None:
    rgb, depth = plane_and_box_scene()
    gmap = GaussianMap(MapConfig(voxel_m=0.015))
    from craik_mapping.gaussian_map import check_frame

    frame = check_frame(rgb, depth, K, look_down(), None, gmap.config)
    gmap.integrate_frame(frame)
    refiner = Refiner(gmap, RefineConfig(window=2, densify_grad=0.0, backend='torch'))
    refiner.add_keyframe(frame)
    stats = refiner.refine(25)
    assert stats.iterations == 25 and stats.loss_last < 0.8 * stats.loss_first
    assert stats.total == len(gmap) and bool(torch.isfinite(gmap.means).all())
    with pytest.raises(MappingError):
        refiner.refine(-1)
