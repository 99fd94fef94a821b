"""craik_perception: the RealSense camera (live or recorded) and image conversion helpers.

ROS-free modules: :mod:`profiles` (configuration and profile validation), :mod:`librealsense`
(the one import of pyrealsense2, after ROS 2's Fast DDS), :mod:`pipeline` (librealsense
wrapper), :mod:`capture` (capture thread with restart and recovery), :mod:`timestamps` (device
clock -> ROS time), :mod:`image_conversion` (encodings, decoding with specific errors,
CameraInfo fields), :mod:`bag_writer` (synthetic recordings), :mod:`diagnostics` (rates and
status). ROS glue: :mod:`ros_image` (numpy -> sensor_msgs) and :mod:`realsense_node` (the
``realsense`` node).
"""
