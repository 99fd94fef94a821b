"""Parameters: the dataclass validates, and config/franka_controller.yaml matches it."""

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from craik_franka.config import FrankaControllerConfig, parameter_specs

YAML = Path(__file__).resolve().parents[3] / 'config' / 'franka_controller.yaml'


def test_yaml_sets_every_parameter_with_valid_values():
    block = yaml.safe_load(YAML.read_text())
    assert list(block) == ['franka_controller']
    params = block['franka_controller']['ros__parameters']
    names = [f.name for f in fields(FrankaControllerConfig)]
    assert sorted(params) == sorted(names)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    config = FrankaControllerConfig(**values)
    assert config == FrankaControllerConfig(), 'the YAML documents the defaults'
    for name, default, _meta in parameter_specs():
        # ROS parameters are typed: a float parameter must be written as a float.
        assert type(values[name]) is type(default), name


def test_every_parameter_has_a_description_and_numbers_have_ranges():
    for name, default, meta in parameter_specs():
        assert meta['description'], name
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            assert meta['range'] is not None, name


@pytest.mark.parametrize('kwargs,field', [
    ({'monitor_rate': 5.0}, 'monitor_rate'),
    ({'realtime_config': 'sometimes'}, 'realtime_config'),
    ({'collision_torque_thresholds': (20.0,) * 6}, 'collision_torque_thresholds'),
    ({'workspace_min': (0.8, -0.45, 0.02)}, 'workspace_min'),
    ({'max_dynamics_factor': 0.5, 'hold_dynamics_factor': 0.3}, 'hold_dynamics_factor'),
    ({'default_dynamics_factor': 0.5}, 'default_dynamics_factor'),
    ({'recoverable_errors': ('cartesian_reflex', 'oops')}, 'recoverable_errors'),
    ({'gripper_force': float('nan')}, 'gripper_force'),
    ({'reconnect_backoff_initial': 8.0, 'reconnect_backoff_max': 1.0},
     'reconnect_backoff_initial')])
def test_invalid_values_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        FrankaControllerConfig(**kwargs)


def test_readme_documents_every_parameter_status_and_reason():
    from craik_interfaces.action import MoveEndEffector
    from craik_interfaces.msg import ControllerStatus
    readme = (Path(__file__).resolve().parents[1] / 'README.md').read_text()
    for name, _default, _meta in parameter_specs():
        assert f'`{name}`' in readme, name
    constants = [n for n in dir(MoveEndEffector.Result) if n.startswith(('STATUS_', 'REASON_'))]
    constants += [n for n in dir(ControllerStatus) if n.startswith(('STATE_', 'ERROR_'))]
    for constant in constants:
        if constant in ('REASON_NONE', 'ERROR_NONE'):
            continue
        assert constant in readme, constant
