"""A calibration YAML with tags that construct Python objects is refused, nothing constructed.

Each payload creates a marker file when a full (unsafe) YAML loader builds it, which the control
test shows; ``load_calibration`` (what the sim, the planner and the fast env read calibrations
with) must name the tag and leave no marker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from craik_sim.calibration import CalibrationError, default_calibration_path, load_calibration


def _payloads(marker: Path) -> dict[str, str]:
    return {
        'apply-open': f'!!python/object/apply:builtins.open ["{marker}", "w"]',
        'apply-system': f'!!python/object/apply:os.system ["touch {marker}"]',
        'new-object': f'!!python/object/new:pathlib.Path ["{marker}"]',
        'name': '!!python/name:os.system',
        'object': '!!python/object:craik_sim.calibration.CameraCalibration {}',
    }


def _crafted(tmp_path: Path, payload: str) -> Path:
    """The shipped calibration with its camera_name replaced by ``payload``."""
    lines = default_calibration_path().read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith('camera_name:'))
    lines[index] = f'camera_name: {payload}'
    path = tmp_path / 'crafted.yaml'
    path.write_text('\n'.join(lines) + '\n')
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / 'EXECUTED'


@pytest.mark.parametrize('kind', ['apply-open', 'apply-system'])
def test_control_an_unsafe_loader_runs_the_payload(tmp_path, marker, kind):
    path = _crafted(tmp_path, _payloads(marker)[kind])
    yaml.unsafe_load(path.read_text())  # what load_calibration must never do
    assert marker.exists()


@pytest.mark.parametrize('kind', ['apply-open', 'apply-system', 'new-object', 'name', 'object'])
def test_object_tags_are_refused_unconstructed(tmp_path, marker, kind):
    path = _crafted(tmp_path, _payloads(marker)[kind])
    tag = _payloads(marker)[kind].split()[0].lstrip('!').split(':', 1)[0]
    with pytest.raises(CalibrationError, match=rf'crafted\.yaml: refusing a YAML tag at line 5 '
                                               rf'\(.*tag:yaml\.org,2002:{tag}'):
        load_calibration(path)
    assert not marker.exists()


def test_object_tag_as_the_whole_document_is_refused(tmp_path, marker):
    path = tmp_path / 'whole.yaml'
    path.write_text(f'!!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(CalibrationError, match='whole.yaml: refusing a YAML tag at line 1'):
        load_calibration(path)
    assert not marker.exists()


def test_the_untampered_file_still_loads(tmp_path):
    path = _crafted(tmp_path, 'sim_d435')
    assert load_calibration(path).camera_name == 'sim_d435'
