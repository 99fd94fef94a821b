"""pyrealsense2, loaded so that it can share a process with ROS 2.

craik modules use librealsense through this module (``from craik_perception.librealsense import
rs``), never through ``import pyrealsense2``, because of the order in which the two are loaded:

pyrealsense2 (2.59) carries its own Fast DDS 2 (for librealsense's DDS cameras) and exports its
symbols, while ROS 2's rmw_fastrtps uses the Fast DDS of the ROS installation (3.2 here,
``libfastdds.so.3.2``). Both define the same function-local singletons, for instance
``eprosima::Host::instance()::singleton``: 8 bytes in pyrealsense2's copy, 272 bytes in Fast DDS
3.2. Such objects are ``STB_GNU_UNIQUE`` symbols, which the dynamic linker binds process-wide to
the first definition it loaded, even into libraries loaded with ``RTLD_LOCAL`` as Python
extension modules are. So when pyrealsense2 is loaded before ROS 2's Fast DDS, creating the
first rclpy node constructs Fast DDS 3's ``Host`` in pyrealsense2's 8-byte slot, overwrites the
memory behind it, and the process dies in ``exit()`` (SIGSEGV in ``free``, exit status 139)
after everything else has finished, however carefully its objects were released.

Loading ROS 2's Fast DDS first makes its definitions the process-wide ones. The copy inside
pyrealsense2 only runs when librealsense discovers DDS devices, which the contexts made here
switch off (:data:`CONTEXT_SETTINGS`), so it never touches them. Without a ROS 2 installation
nothing is preloaded.
"""

from __future__ import annotations

import ctypes
import glob
import itertools
import json
import os
from typing import Any

# Fast DDS 3 (ROS 2 Kilted and later) and Fast DDS 2 (Humble, Jazzy). ROS environments put
# their libraries on LD_LIBRARY_PATH (setup.bash, or the ROS wheels' bootstrapper), where
# dlopen finds the unversioned name; the versioned files are the fallback when it is missing.
_FAST_DDS_LIBRARIES = ('libfastdds.so', 'libfastrtps.so')

# librealsense's DDS device discovery would run pyrealsense2's Fast DDS 2 on the singletons of
# the Fast DDS preloaded below; craik's cameras are USB cameras.
CONTEXT_SETTINGS = json.dumps({'dds': {'enabled': False}})


# Handles of the preloaded libraries, held for the life of the process.
_handles: list[ctypes.CDLL] = []


def _load(name: str) -> str:
    """Load ``name`` (its unversioned name, else the first versioned file on LD_LIBRARY_PATH);
    returns what was loaded, '' when it is not installed."""
    folders = [f for f in os.environ.get('LD_LIBRARY_PATH', '').split(os.pathsep) if f]
    versioned = (path for folder in folders
                 for path in sorted(glob.glob(os.path.join(folder, f'{name}.*'))))
    for candidate in itertools.chain([name], versioned):
        try:
            _handles.append(ctypes.CDLL(candidate))
        except OSError:
            continue
        return candidate
    return ''


# The Fast DDS libraries loaded ahead of pyrealsense2 (empty without ROS 2).
PRELOADED: tuple[str, ...] = tuple(
    loaded for loaded in (_load(name) for name in _FAST_DDS_LIBRARIES) if loaded)

import pyrealsense2 as rs  # noqa: E402 (must come after the Fast DDS preload)


def new_context() -> Any:
    """A librealsense context for USB cameras and recordings (DDS device discovery off)."""
    return rs.context(CONTEXT_SETTINGS)


__all__ = ['CONTEXT_SETTINGS', 'PRELOADED', 'new_context', 'rs']
