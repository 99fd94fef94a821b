"""craik_planner test setup: the fuzzing helpers next to the tests are importable by name."""

from __future__ import annotations

from pathlib import Path
import sys

# pytest's importlib mode does not put this directory on sys.path by itself (goal_fuzzing and
# plan_fuzzing are also imported by bench/fuzz_goals.py, which adds it the same way).
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
