"""On the lab robot only (pytest --hardware, CRAIK_FR3_IP=<FCI address>): connect, check that
the robot's end effector matches the kinematic model, read the state. Nothing moves."""

import os

import numpy as np
import pytest

from craik_franka.config import FrankaControllerConfig
from craik_franka.robot_session import RobotSession, SessionState


@pytest.mark.hardware
def test_real_fr3_connects_and_matches_the_model():
    ip = os.environ.get('CRAIK_FR3_IP')
    if not ip:
        pytest.skip('set CRAIK_FR3_IP to the FR3 FCI address')
    session = RobotSession(FrankaControllerConfig(robot_ip=ip, realtime_config='enforce'))
    session.start()
    try:
        assert session.wait_until_ready(30.0), session.snapshot().fault_reason
        snap = session.snapshot()
        assert snap.state == SessionState.IDLE
        assert snap.reading is not None and np.all(np.isfinite(snap.reading.q))
    finally:
        session.close()
