"""The ``realsense`` node: a RealSense camera or recording on realsense2_camera's topics.

Publishes (camera_namespace/camera_name default to camera/camera, as the driver's):
  /camera/camera/color/image_raw                      sensor_msgs/Image rgb8
  /camera/camera/color/camera_info                    sensor_msgs/CameraInfo
  /camera/camera/aligned_depth_to_color/image_raw     sensor_msgs/Image 16UC1 millimetres
  /camera/camera/aligned_depth_to_color/camera_info   sensor_msgs/CameraInfo
  (with align_depth.enable false: /camera/camera/depth/image_rect_raw and depth/camera_info)
  /diagnostics                                        diagnostic_msgs/DiagnosticArray
Images use the sensor-data QoS; frame ids follow REP 103 (``camera_color_optical_frame``; the
aligned depth is in the colour optical frame).

The node only translates: the librealsense work happens in craik_perception.pipeline on the
capture thread of craik_perception.capture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import os
import re
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from craik_perception.capture import CaptureEvent, CaptureState, CaptureThread
from craik_perception.dds_profile import apply_large_data_profile
from craik_perception.diagnostics import Level, RateMeter, camera_status
from craik_perception.image_conversion import (
    COLOR_ENCODING,
    DEPTH_ENCODING,
    camera_info_from_intrinsics,
)
from craik_perception.pipeline import FrameBundle, RealSenseSource, StreamInfo
from craik_perception.profiles import FilterConfig, RealSenseConfig, StreamProfile
from craik_perception.ros_image import camera_info_message, fill_image, set_stamp

_NAME_PATTERN = r'[A-Za-z][A-Za-z0-9_]*'


@dataclass(frozen=True)
class NodeConfig:
    """Parameters of the node beyond the camera itself."""

    realsense: RealSenseConfig = field(default_factory=RealSenseConfig)
    camera_namespace: str = 'camera'
    camera_name: str = 'camera'
    diagnostics_period: float = 1.0

    def __post_init__(self) -> None:
        for name in ('camera_namespace', 'camera_name'):
            value = getattr(self, name)
            if not re.fullmatch(_NAME_PATTERN, value):
                raise ValueError(f'{name} must be a ROS name token (letters, digits, _), '
                                 f'got {value!r}')
        if not 0.05 <= self.diagnostics_period <= 60.0:
            raise ValueError(f'diagnostics_period must be in [0.05, 60] s, got '
                             f'{self.diagnostics_period}')

    def topic(self, suffix: str) -> str:
        return f'/{self.camera_namespace}/{self.camera_name}/{suffix}'

    def frame(self, stream: str) -> str:
        return f'{self.camera_name}_{stream}_optical_frame'


def _float_range(lo: float, hi: float) -> list[FloatingPointRange]:
    return [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]


# name -> (default, description, range or None). The one place where parameters are declared;
# names follow realsense2_camera's where it has one.
PARAMETERS: dict[str, tuple[object, str, list | None]] = {
    'serial_no': ('', "serial number of the camera to open; '' opens the first one found",
                  None),
    'rosbag_filename': ('', 'librealsense recording (.bag or .db3) to play instead of a camera; '
                        "'' for a live camera", None),
    'rosbag_loop': (False, 'restart the recording when it ends', None),
    'rosbag_real_time': (True, 'play the recording at its recorded rate (false: as fast as '
                         'frames are published, none skipped)', None),
    'rgb_camera.color_profile': ('640,480,30', "colour stream 'width,height,fps' (0 = any); "
                                 'must be offered by the camera or recording', None),
    'depth_module.depth_profile': ('640,480,30', "depth stream 'width,height,fps' (0 = any); "
                                   'must be offered by the camera or recording', None),
    'depth_module.depth_units': (0.0, 'metres per depth unit to set on the camera (e.g. 0.001); '
                                 '0 keeps its setting. Published depth is millimetres anyway',
                                 _float_range(0.0, 0.01)),
    'align_depth.enable': (True, 'publish depth aligned to the colour camera '
                           '(aligned_depth_to_color topics)', None),
    'spatial_filter.enable': (False, 'librealsense spatial edge-preserving depth filter', None),
    'temporal_filter.enable': (False, 'librealsense temporal depth filter', None),
    'hole_filling_filter.enable': (False, 'librealsense hole-filling depth filter', None),
    'frame_timeout': (2.0, 'seconds without frames before the pipeline is restarted',
                      _float_range(0.1, 60.0)),
    'reconnect_delay': (1.0, 'seconds between attempts to find a missing camera',
                        _float_range(0.1, 60.0)),
    'camera_namespace': ('camera', 'first namespace of the topics (/<ns>/<name>/color/...)',
                         None),
    'camera_name': ('camera', 'second namespace of the topics and prefix of the frame ids',
                    None),
    'diagnostics_period': (1.0, 'seconds between /diagnostics messages',
                           _float_range(0.05, 60.0)),
}


def declare_parameters(node: Node) -> NodeConfig:
    """Declare every parameter (with description and range) and build the validated config.

    Raises ValueError naming the parameter when a value is invalid.
    """
    values = {}
    for name, (default, description, ranges) in PARAMETERS.items():
        descriptor = ParameterDescriptor(description=description, read_only=True)
        if ranges and isinstance(ranges[0], FloatingPointRange):
            descriptor.floating_point_range = ranges
        elif ranges and isinstance(ranges[0], IntegerRange):
            descriptor.integer_range = ranges
        if isinstance(default, bool):
            descriptor.type = ParameterType.PARAMETER_BOOL
        elif isinstance(default, float):
            descriptor.type = ParameterType.PARAMETER_DOUBLE
        else:
            descriptor.type = ParameterType.PARAMETER_STRING
        values[name] = node.declare_parameter(name, default, descriptor).value
    realsense = RealSenseConfig(
        serial_no=str(values['serial_no']).strip(),
        rosbag_filename=os.path.expanduser(str(values['rosbag_filename']).strip()),
        rosbag_loop=bool(values['rosbag_loop']),
        rosbag_real_time=bool(values['rosbag_real_time']),
        color_profile=StreamProfile.parse(values['rgb_camera.color_profile'],
                                          'rgb_camera.color_profile'),
        depth_profile=StreamProfile.parse(values['depth_module.depth_profile'],
                                          'depth_module.depth_profile'),
        align_depth=bool(values['align_depth.enable']),
        filters=FilterConfig(spatial=bool(values['spatial_filter.enable']),
                             temporal=bool(values['temporal_filter.enable']),
                             hole_filling=bool(values['hole_filling_filter.enable'])),
        depth_units=float(values['depth_module.depth_units']),
        frame_timeout=float(values['frame_timeout']),
        reconnect_delay=float(values['reconnect_delay']))
    return NodeConfig(realsense, str(values['camera_namespace']), str(values['camera_name']),
                      float(values['diagnostics_period']))


class RealSenseNode(Node):
    """Publishes a RealSense camera (or recording) like the realsense2_camera driver."""

    def __init__(self, node_name: str = 'realsense', **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)
        self._capture: CaptureThread | None = None
        self.config = declare_parameters(self)
        cfg = self.config
        depth_topic = 'aligned_depth_to_color' if cfg.realsense.align_depth else 'depth'
        depth_image = 'image_raw' if cfg.realsense.align_depth else 'image_rect_raw'
        self._color_frame = cfg.frame('color')
        self._depth_frame = self._color_frame if cfg.realsense.align_depth else cfg.frame('depth')
        qos = qos_profile_sensor_data
        self._color_pub = self.create_publisher(Image, cfg.topic('color/image_raw'), qos)
        self._color_info_pub = self.create_publisher(
            CameraInfo, cfg.topic('color/camera_info'), qos)
        self._depth_pub = self.create_publisher(
            Image, cfg.topic(f'{depth_topic}/{depth_image}'), qos)
        self._depth_info_pub = self.create_publisher(
            CameraInfo, cfg.topic(f'{depth_topic}/camera_info'), qos)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._color_msg = Image()
        self._depth_msg = Image()
        self._color_info = None
        self._depth_info = None
        self._lock = threading.Lock()
        self._rates = {'color': RateMeter(), 'depth': RateMeter()}
        self._published = 0
        self._depth_clipped = 0
        self._event = CaptureEvent(CaptureState.IDLE, 'not started', Level.OK)
        self._source: RealSenseSource | None = None
        # Opening the camera blocks for up to seconds: do it after construction, on the
        # capture thread, from a one-shot timer.
        self._configure_timer = self.create_timer(0.0, self._configure)
        self._diag_timer = self.create_timer(cfg.diagnostics_period, self._publish_diagnostics)

    # --- lifecycle -----------------------------------------------------------------------------

    def _configure(self) -> None:
        self._configure_timer.cancel()
        if self._capture is not None:
            return
        rs_cfg = self.config.realsense
        self.get_logger().info(f'opening {rs_cfg.describe_source()}')
        self._capture = CaptureThread(
            self._make_source, self._on_frames, self._on_event,
            frame_timeout=rs_cfg.frame_timeout, reconnect_delay=rs_cfg.reconnect_delay,
            is_playback=rs_cfg.is_playback,
            now_ns=lambda: self.get_clock().now().nanoseconds)
        self._capture.start()

    def _make_source(self) -> RealSenseSource:
        self._source = RealSenseSource(self.config.realsense)
        return self._source

    def destroy_node(self) -> None:
        """Stop the capture thread (releasing the camera) before the node goes."""
        capture = getattr(self, '_capture', None)   # None if __init__ failed early
        if capture is not None and not capture.stop(timeout_s=10.0):
            self.get_logger().warning('capture thread did not stop within 10 s')
        super().destroy_node()

    # --- capture thread callbacks --------------------------------------------------------------

    def _on_event(self, event: CaptureEvent) -> None:
        with self._lock:
            self._event = event
        text = f'{event.state.value}: {event.message}'
        if not self.context.ok():
            # Shutting down: the logger's /rosout publisher is gone; keep errors visible.
            if event.level >= Level.WARN:
                print(f'[realsense] {text}', file=sys.stderr)
            return
        # One call site per severity: rclpy refuses a call site whose severity changes.
        if event.level == Level.OK:
            self.get_logger().info(text)
        elif event.level == Level.WARN:
            self.get_logger().warning(text)
        else:
            self.get_logger().error(text)
        if event.info is not None:
            self._stream_started(event.info)

    def _stream_started(self, info: StreamInfo) -> None:
        color_fields = camera_info_from_intrinsics(info.color_intrinsics)
        depth_fields = camera_info_from_intrinsics(info.output_depth_intrinsics)
        self._color_info = camera_info_message(color_fields, self._color_frame)
        self._depth_info = camera_info_message(depth_fields, self._depth_frame)
        for r in self._rates.values():
            r.reset()
        device = info.device
        self.get_logger().info(
            f'{device.name} {device.serial}'
            + (f' (recording {device.recording})' if device.is_playback else
               f' firmware {device.firmware}')
            + f': colour {info.color}, depth {info.depth}, depth units {info.depth_units:g} m'
            + (', aligned to colour' if info.aligned else '')
            + (f', filters {"+".join(info.filters)}' if info.filters else ''))
        if color_fields.approximate or depth_fields.approximate:
            self.get_logger().warning(
                f'the {info.color_intrinsics.model} distortion of this camera is published as '
                f'plumb_bob (as realsense2_camera does); it is only an approximation for '
                f'non-zero coefficients {info.color_intrinsics.coeffs}')

    def _on_frames(self, bundle: FrameBundle) -> None:
        color_info, depth_info = self._color_info, self._depth_info
        if color_info is None or depth_info is None:
            return
        try:
            # Colour first: it needs no processing, while the depth is aligned only when
            # bundle.depth is first read (a few milliseconds at 640x480).
            fill_image(self._color_msg, bundle.color, COLOR_ENCODING, self._color_frame,
                       bundle.stamp_ns)
            set_stamp(color_info.header, bundle.stamp_ns)
            self._color_pub.publish(self._color_msg)
            self._color_info_pub.publish(color_info)
            self._rates['color'].tick(time.monotonic())
            fill_image(self._depth_msg, bundle.depth, DEPTH_ENCODING, self._depth_frame,
                       bundle.depth_stamp_ns)
            set_stamp(depth_info.header, bundle.depth_stamp_ns)
            self._depth_pub.publish(self._depth_msg)
            self._depth_info_pub.publish(depth_info)
            self._rates['depth'].tick(time.monotonic())
        except Exception:
            if not self.context.ok():
                return      # shutting down (Ctrl-C): the publishers are already gone
            raise
        with self._lock:
            self._published += 1
            self._depth_clipped += bundle.depth_clipped
        if bundle.depth_clipped:
            self.get_logger().warning(
                f'{bundle.depth_clipped} depth pixels beyond 65.535 m saturated to 65535 mm',
                throttle_duration_sec=10.0)

    # --- diagnostics ---------------------------------------------------------------------------

    def status(self) -> DiagnosticStatus:
        """The camera's current diagnostic status."""
        now = time.monotonic()
        with self._lock:
            event, published, clipped = self._event, self._published, self._depth_clipped
        capture, source = self._capture, self._source
        info = capture.info if capture is not None else None
        cfg = self.config.realsense
        values = {'source': cfg.describe_source(), 'frames published': str(published),
                  'restarts': str(capture.restarts if capture else 0),
                  'depth pixels saturated': str(clipped)}
        if source is not None:
            values['framesets dropped (unsynchronised)'] = str(source.counters.unsynced)
            values['framesets dropped (duplicate)'] = str(source.counters.duplicates)
        expected = 0.0
        if info is not None:
            values.update({'device': info.device.name, 'serial': info.device.serial,
                           'firmware': info.device.firmware, 'color profile': str(info.color),
                           'depth profile': str(info.depth),
                           'depth units (m)': f'{info.depth_units:g}',
                           'aligned': str(info.aligned).lower(),
                           'filters': '+'.join(info.filters) or 'none'})
            expected = float(min(info.color.fps, info.depth.fps))
            if cfg.is_playback and not cfg.rosbag_real_time:
                expected = 0.0      # as fast as possible: no rate to expect
        depth_name = 'aligned depth' if cfg.align_depth else 'depth'
        report = camera_status(event.state.value, event.message, expected,
                               {'color': self._rates['color'].rate(now),
                                depth_name: self._rates['depth'].rate(now)}, values)
        serial = info.device.serial if info is not None else cfg.serial_no
        return DiagnosticStatus(
            level=bytes([int(report.level)]), name=f'{self.get_name()}: {self.config.camera_name}',
            message=report.message[:500], hardware_id=serial or 'realsense',
            values=[KeyValue(key=k, value=v) for k, v in report.values.items()])

    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [self.status()]
        self._diag_pub.publish(msg)


def main(args: list[str] | None = None) -> None:
    """Console script ``realsense``.

    Exits 0 when stopped by SIGINT or SIGTERM (also while it is still starting), 2 on an invalid
    parameter.
    """
    dds_note = apply_large_data_profile(os.environ)
    rclpy.init(args=args)
    # From here on rclpy's handlers turn SIGINT and SIGTERM into a shutdown of the context; rclpy
    # calls made after it fail because the context is gone, so an error raised once the context
    # is shut down is that requested stop, not a crash.
    node = None
    executor = None
    try:
        # Before the node, so that a signal while it is being built is seen by spin() at once.
        executor = SingleThreadedExecutor()
        node = RealSenseNode()
        node.get_logger().info(dds_note)
        executor.add_node(node)
        executor.spin()     # until the context is shut down
    except (ValueError, ParameterException) as err:
        # ParameterException: a value of the wrong type or outside the declared range.
        print(f'realsense: invalid parameter: {err}', file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()     # stops the capture thread, which releases the camera
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
