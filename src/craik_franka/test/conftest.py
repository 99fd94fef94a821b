"""craik_franka test helpers: franky-sim servers in subprocesses, sessions and ROS fixtures."""

from __future__ import annotations

from pathlib import Path
import sys

# Helper modules next to the tests (franky_sim_server, fake_franky, command_strategies) are
# imported by name; pytest's importlib mode does not put this directory on sys.path by itself.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
