"""`craik doctor` reports what is present and fails, naming it, when a required piece is not."""

import json
import os
from pathlib import Path
import subprocess

from craik_bringup.cli import main
from craik_bringup.doctor import CheckResult, format_table


def _doctor(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(['craik', 'doctor', *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=180)


def test_doctor_passes_on_this_machine():
    proc = _doctor('--json')
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report['missing']
    checks = {c['name']: c for c in report['checks']}
    assert checks['DDS loopback']['ok']
    assert 'rmw_fastrtps_cpp' in checks['rclpy / rmw']['detail']
    assert 'CPUExecutionProvider' in checks['onnxruntime']['detail']
    # TensorRT is optional here: reported, never fatal.
    assert not checks['TensorRT']['required']


def test_doctor_table_is_human_readable():
    proc = _doctor('--skip', 'DDS loopback')
    assert proc.returncode == 0
    assert 'all required pieces present' in proc.stdout
    assert proc.stdout.splitlines()[0].split()[:2] == ['check', 'status']


def test_missing_rmw_implementation_is_named():
    proc = _doctor('--json', '--skip', 'DDS loopback',
                   env={'RMW_IMPLEMENTATION': 'rmw_cyclonedds_cpp'})
    report = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert 'rclpy / rmw' in report['missing']
    rmw = next(c for c in report['checks'] if c['name'] == 'rclpy / rmw')
    assert 'rmw_cyclonedds_cpp' in rmw['detail']


def test_hidden_module_is_named(tmp_path: Path):
    # A module that shadows onnxruntime and fails to import, as an uninstalled one would.
    (tmp_path / 'onnxruntime.py').write_text("raise ImportError('No module named onnxruntime')\n")
    pythonpath = f'{tmp_path}{os.pathsep}{os.environ.get("PYTHONPATH", "")}'
    proc = _doctor('--skip', 'DDS loopback', env={'PYTHONPATH': pythonpath})
    assert proc.returncode == 1
    assert 'MISSING required pieces: onnxruntime' in proc.stdout


def test_optional_piece_absent_is_not_fatal():
    table = format_table([CheckResult('TensorRT', False, 'not installed', required=False)])
    assert 'absent' in table and 'MISSING' not in table


def test_unknown_command_is_an_error(capsys):
    assert main(['teleport']) == 2
    assert "unknown command 'teleport'" in capsys.readouterr().err


def test_realtime_readiness_names_what_the_lab_robot_lacks():
    from craik_bringup.doctor import realtime_readiness

    ready = realtime_readiness('#1 SMP PREEMPT_RT Tue Oct 1', None, 99, privileged=False)
    assert ready.ok and not ready.required
    # /sys/kernel/realtime alone also marks an RT kernel.
    assert realtime_readiness('#1 SMP PREEMPT_DYNAMIC', '1\n', 99, privileged=False).ok
    # Root may schedule at any priority whatever its limit.
    assert realtime_readiness('#1 SMP PREEMPT_RT', None, 0, privileged=True).ok
    # This development machine's kind: neither fix applied; both named, neither fatal.
    neither = realtime_readiness('#1 SMP PREEMPT_DYNAMIC @0', None, 0, privileged=False)
    assert not neither.ok and not neither.required
    assert 'install a PREEMPT_RT kernel' in neither.detail
    assert 'rtprio 99' in neither.detail and 'limit 0' in neither.detail
    limit_only = realtime_readiness('#1 SMP PREEMPT_RT', None, 50, privileged=False)
    assert not limit_only.ok
    assert 'kernel' not in limit_only.detail.split('; for the lab robot: ')[1]
    assert 'allow priority 99' in limit_only.detail
    table = format_table([neither])
    assert 'absent' in table and 'MISSING' not in table
