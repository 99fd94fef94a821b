"""Is a file a complete MCAP file? The first check on a recording, before any record is parsed.

Torch-free on purpose: `craik replay` / `craik record` (craik_bringup.bag_files) and
``wm-convert`` (mcap_convert) both refuse a file that is not MCAP or was cut off, with one
wording.
"""

from __future__ import annotations

from pathlib import Path

MCAP_MAGIC = b'\x89MCAP0\r\n'


def mcap_framing_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete MCAP file (it does not start and end with the MCAP
    magic, or cannot be read), prefixed with the path; None when it is framed like one."""
    try:
        size = path.stat().st_size
        with open(path, 'rb') as f:
            head = f.read(len(MCAP_MAGIC))
            f.seek(max(0, size - len(MCAP_MAGIC)))
            tail = f.read(len(MCAP_MAGIC))
    except OSError as exc:
        return f'{path}: cannot read: {exc}'
    if head != MCAP_MAGIC:
        return f'{path}: not an MCAP file (bad magic {head[:8]!r}, expected {MCAP_MAGIC!r})'
    if size < 2 * len(MCAP_MAGIC) or tail != MCAP_MAGIC:
        return (f'{path}: truncated MCAP file ({size} bytes, no closing magic): the recording '
                'was cut off (recorder killed, disk full, copy incomplete); `mcap recover` can '
                'salvage its complete chunks')
    return None
