"""The Fast DDS profile that lets the camera node publish images without losing them.

See ``fastdds_large_data.xml`` for why: with Fast DDS's default 0.5 MiB shared-memory segment a
best-effort subscriber in another process loses a large share of 640x480 frames; a larger
segment in the publishing process alone fixes that. The node applies the profile to its own
process before rclpy starts, unless the user configured Fast DDS already or opted out.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path

PROFILE_FILE = Path(__file__).with_name('fastdds_large_data.xml')
PROFILE_ENV = 'FASTDDS_DEFAULT_PROFILES_FILE'
_LEGACY_ENV = 'FASTRTPS_DEFAULT_PROFILES_FILE'
OPT_OUT_ENV = 'CRAIK_CAMERA_DDS_PROFILE'      # set to 0 to keep Fast DDS's defaults


def apply_large_data_profile(environ: MutableMapping[str, str]) -> str:
    """Point Fast DDS at the camera profile in ``environ`` (call before ``rclpy.init``).

    Returns a sentence for the log saying what was done and why.
    """
    rmw = environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
    if not rmw.startswith('rmw_fastrtps'):
        return f'DDS profile: {rmw} is not Fast DDS; its defaults apply'
    for name in (PROFILE_ENV, _LEGACY_ENV):
        if environ.get(name):
            return f'DDS profile: using {environ[name]} from ${name}'
    if environ.get(OPT_OUT_ENV, '1') == '0':
        return f'DDS profile: Fast DDS defaults (${OPT_OUT_ENV}=0)'
    if not PROFILE_FILE.is_file():
        return f'DDS profile: {PROFILE_FILE} is missing; Fast DDS defaults apply'
    environ[PROFILE_ENV] = str(PROFILE_FILE)
    return (f'DDS profile: {PROFILE_FILE.name} (32 MiB shared-memory segment, so that '
            f'subscribers on this machine receive every image)')
