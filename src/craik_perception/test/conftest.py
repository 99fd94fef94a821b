"""craik_perception test fixtures: librealsense recordings of synthetic scenes.

Recordings are written once per test session with pyrealsense2's software device and
recorder (craik_perception.bag_writer), then played back through the real librealsense
pipeline by the tests. No camera is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from craik_perception.bag_writer import BoxScene, SyntheticCamera, box_scene, write_recording
from craik_perception.image_conversion import Intrinsics

# A deliberately large colour-depth baseline: without alignment the box lands ~50 px away
# from where the colour camera sees it, so a missing or wrong alignment cannot pass.
BOX_CAMERA = SyntheticCamera(depth_to_color_translation=(0.05, 0.0, 0.0))
BOX_FRAMES = 30
BOX_M, BACKGROUND_M = 0.6, 1.0


@dataclass(frozen=True)
class Recording:
    path: Path
    camera: SyntheticCamera
    scenes: list[BoxScene]          # frame n shows scenes[n]


def _box_scenes(camera: SyntheticCamera, frames: int) -> list[BoxScene]:
    # The box drifts to the right so that consecutive frames differ.
    return [box_scene(camera, BACKGROUND_M, BOX_M, box_center_m=(-0.03 + 0.002 * i, 0.0),
                      index=i) for i in range(frames)]


@pytest.fixture(scope='session')
def box_recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """One second of a box in front of a wall, 640x480 colour + 424x240 depth at 30 Hz,
    recorded at the camera's pace (so it plays back in real time)."""
    path = tmp_path_factory.mktemp('recordings') / 'box.db3'
    scenes = _box_scenes(BOX_CAMERA, BOX_FRAMES)
    write_recording(path, BOX_CAMERA, [(s.color, s.depth_raw) for s in scenes])
    return Recording(path, BOX_CAMERA, scenes)


@pytest.fixture(scope='session')
def distorted_recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """A small recording whose colour stream has inverse Brown-Conrady distortion and whose
    depth stream has Brown-Conrady distortion (as D4xx cameras report them)."""
    camera = SyntheticCamera(
        color=Intrinsics(320, 240, 305.5, 306.25, 161.5, 119.25, 'inverse_brown_conrady',
                         (0.12, -0.05, 0.001, 0.0005, 0.01)),
        depth=Intrinsics(256, 144, 128.0, 128.0, 127.5, 71.5, 'brown_conrady',
                         (0.01, 0.002, 0.0, 0.0, 0.0)),
        fps=15, depth_to_color_translation=(0.015, 0.0, 0.0))
    path = tmp_path_factory.mktemp('recordings') / 'distorted.db3'
    scenes = _box_scenes(camera, 4)
    write_recording(path, camera, [(s.color, s.depth_raw) for s in scenes])
    return Recording(path, camera, scenes)


@pytest.fixture(scope='session')
def d405_recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    """A D405-like recording: depth in 0.1 mm units, colour recorded as bgr8, and a hole
    (zero depth) in the middle of the depth image."""
    camera = SyntheticCamera(
        color=Intrinsics(320, 240, 300.0, 300.0, 160.0, 120.0),
        depth=Intrinsics(320, 240, 300.0, 300.0, 160.0, 120.0),
        depth_units=0.0001, color_format='bgr8', depth_to_color_translation=(0.0, 0.0, 0.0))
    # 20 frames: on a loaded machine playback may lose the first few (see test_playback's
    # _check_frames); 6 frames lost 2 in a CI run.
    scenes = _box_scenes(camera, 20)
    frames = []
    for scene in scenes:
        depth = scene.depth_raw.copy()
        depth[100:110, 40:50] = 0                       # a hole on the background wall
        frames.append((scene.color, depth))
    path = tmp_path_factory.mktemp('recordings') / 'd405.db3'
    write_recording(path, camera, frames)
    return Recording(path, camera, scenes)


@pytest.fixture
def edges():
    """The :func:`edge_mask` helper, for test modules (which cannot import conftest)."""
    return edge_mask


def edge_mask(labels: np.ndarray, margin: int = 2) -> np.ndarray:
    """[H, W] bool: pixels within ``margin`` of a change of ``labels`` (box edges, shadows)."""
    change = np.zeros(labels.shape, bool)
    dx = labels[:, 1:] != labels[:, :-1]
    dy = labels[1:, :] != labels[:-1, :]
    change[:, 1:] |= dx
    change[:, :-1] |= dx
    change[1:, :] |= dy
    change[:-1, :] |= dy
    out = change.copy()
    for _ in range(margin):
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out
