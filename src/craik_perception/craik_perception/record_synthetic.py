"""Write a librealsense recording of a synthetic scene: the `realsense` node without a camera.

    python -m craik_perception.record_synthetic /tmp/box.db3 --seconds 3
    ros2 run craik_perception realsense --ros-args -p rosbag_filename:=/tmp/box.db3 \\
        -p rosbag_loop:=true -p depth_module.depth_profile:=0,0,0

The scene is :func:`craik_perception.bag_writer.box_scene`: a red box face sliding in front of
a patterned wall, seen by a D435-like colour camera and depth camera. The module follows the
`craik <command>` interface (``configure_parser`` / ``run``).
"""

from __future__ import annotations

import argparse
import sys

from craik_perception.bag_writer import RecordingWriter, SyntheticCamera, box_scene
from craik_perception.image_conversion import Intrinsics


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of the command."""
    parser.add_argument('output', help='recording to write (must end in .db3)')
    parser.add_argument('--seconds', type=float, default=3.0, help='duration (default 3)')
    parser.add_argument('--fps', type=int, default=30, choices=(6, 15, 30, 60, 90))
    parser.add_argument('--depth-size', default='640x480',
                        help='depth stream WIDTHxHEIGHT (default 640x480; colour is 640x480)')
    parser.add_argument('--baseline', type=float, default=0.015,
                        help='colour camera offset along x from the depth camera, metres')


def run(args: argparse.Namespace) -> int:
    """Write the recording; returns the exit code."""
    try:
        width, height = (int(v) for v in args.depth_size.lower().split('x'))
        depth = Intrinsics(width, height, 0.6 * width, 0.6 * width, (width - 1) / 2,
                           (height - 1) / 2)
        camera = SyntheticCamera(depth=depth, fps=args.fps,
                                 depth_to_color_translation=(args.baseline, 0.0, 0.0))
        frames = max(1, int(round(args.seconds * args.fps)))
        with RecordingWriter(args.output, camera) as writer:
            for i in range(frames):
                # The box slides right and back, 1 mm per frame.
                offset = (i % 100 if (i // 100) % 2 == 0 else 99 - i % 100) * 0.001
                scene = box_scene(camera, box_center_m=(-0.05 + offset, 0.0), index=i)
                writer.write(scene.color, scene.depth_raw)
    except ValueError as err:
        print(f'record_synthetic: {err}', file=sys.stderr)
        return 2
    print(f'wrote {frames} frames ({frames / args.fps:.1f} s) to {args.output}: colour '
          f'640x480, depth {width}x{height}, {args.fps} Hz')
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m craik_perception.record_synthetic``."""
    parser = argparse.ArgumentParser(prog='record_synthetic', description=__doc__.splitlines()[0])
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
