#!/usr/bin/env bash
# Entry point of the craik image (docker/Dockerfile): enter the environment, run the command.
#
# Sources the apt ROS 2 underlay, then env.bash (the venv, install/setup.bash, ROS and rendering
# variables, as on every other machine), and execs the command (default: the image's CMD,
# `ros2 launch launch/robot.launch.py robot_ip:=${ROBOT_IP} calibration:=${CAMERA_CALIBRATION}`). Other commands work the same:
#   docker compose -f docker/compose.yaml run --rm craik craik doctor
set -eo pipefail
# shellcheck disable=SC1091
source "/opt/ros/${ROS_DISTRO:-kilted}/setup.bash"
# shellcheck disable=SC1091
source /craik/env.bash
cd /craik
exec "$@"
