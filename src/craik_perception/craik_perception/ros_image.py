"""numpy <-> sensor_msgs/Image and CameraInfo, with as few copies as rclpy allows.

Where rclpy copies an image on the way out (measured in bench/bench_camera.py):

1. ``array.tobytes()``: a copy into a ``bytes`` object;
2. the ``Image.data`` setter: ``array.array('B', value)``, a second copy; for anything but
   bytes/bytearray/list (a numpy array, a memoryview) it iterates element by element, about
   100 ms for a 640x480 rgb8 frame;
3. ``publish()``: the C extension copies the Python buffer into the C message;
4. the rmw serialises the C message into the DDS payload.

Copies 3 and 4 are in rclpy/rmw. :func:`fill_image` removes 1 and 2: it stores the numpy
array itself in the message's ``data`` slot, and the C conversion (which accepts any object
with the buffer protocol) copies from it directly. The message then holds a numpy array
instead of an ``array.array`` until it is published; it is meant to be published, not
inspected.

On the way in, rclpy builds ``data`` as an ``array.array``; :func:`image_to_array` views it as
numpy without a copy, with the validation of
:func:`craik_perception.image_conversion.decode_image`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from craik_perception.image_conversion import CameraInfoFields, decode_image, encode_image

# rosidl-generated messages keep each field in a slot named '_<field>'; the setter of 'data'
# is what copies. Fall back to the setter should a future rosidl change that.
_DATA_SLOT = '_data' if '_data' in getattr(Image, '__slots__', ()) else None


def set_stamp(header: Any, stamp_ns: int) -> None:
    """Set ``header.stamp`` from integer nanoseconds."""
    header.stamp.sec, header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def fill_image(msg: Any, array: np.ndarray, encoding: str, frame_id: str,
               stamp_ns: int) -> Any:
    """Fill ``msg`` (a sensor_msgs/Image, reused between frames) from ``array``.

    ``array`` must stay unchanged until ``msg`` is published. Raises the errors of
    :func:`craik_perception.image_conversion.encode_image` for a mismatched array.
    """
    buf = encode_image(array, encoding)
    set_stamp(msg.header, stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = buf.height, buf.width
    msg.encoding = buf.encoding
    msg.is_bigendian = buf.is_bigendian
    msg.step = buf.step
    if _DATA_SLOT is not None:
        setattr(msg, _DATA_SLOT, buf.data)
    else:   # pragma: no cover (older/newer rosidl)
        msg.data = buf.data.tobytes()
    return msg


def to_image(array: np.ndarray, encoding: str, frame_id: str, stamp_ns: int) -> Any:
    """A new sensor_msgs/Image for ``array`` (see :func:`fill_image`)."""
    return fill_image(Image(), array, encoding, frame_id, stamp_ns)


def image_to_array(msg: Any, expected_encodings: Sequence[str] | None = None,
                   copy: bool = False) -> np.ndarray:
    """View a received sensor_msgs/Image as numpy ([H, W] or [H, W, C]).

    Raises the specific errors of :func:`craik_perception.image_conversion.decode_image`
    (wrong encoding, step or size).
    """
    return decode_image(msg.encoding, msg.width, msg.height, msg.step, msg.data,
                        is_bigendian=msg.is_bigendian, expected_encodings=expected_encodings,
                        copy=copy)


def camera_info_message(fields: CameraInfoFields, frame_id: str, stamp_ns: int = 0) -> Any:
    """A sensor_msgs/CameraInfo from :class:`CameraInfoFields`."""
    msg = CameraInfo()
    set_stamp(msg.header, stamp_ns)
    msg.header.frame_id = frame_id
    msg.width, msg.height = fields.width, fields.height
    msg.distortion_model = fields.distortion_model
    msg.d = [float(x) for x in fields.d]
    msg.k = [float(x) for x in fields.k]
    msg.r = [float(x) for x in fields.r]
    msg.p = [float(x) for x in fields.p]
    return msg


def camera_info_fields(msg: Any) -> CameraInfoFields:
    """:class:`CameraInfoFields` of a received sensor_msgs/CameraInfo."""
    return CameraInfoFields(int(msg.width), int(msg.height), str(msg.distortion_model),
                            tuple(float(x) for x in msg.d), tuple(float(x) for x in msg.k),
                            tuple(float(x) for x in msg.r), tuple(float(x) for x in msg.p))
