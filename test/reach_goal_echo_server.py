"""A minimal ReachGoal action server for the cross-process interface test.

It runs in its own process: it accepts any goal whose image is non-empty, publishes one feedback
message per step for `max_steps` steps and succeeds with STATUS_REACHED; an empty goal image is
answered with STATUS_REJECTED_INPUT. Usage: python reach_goal_echo_server.py
"""

import time

import rclpy
from rclpy.action import ActionServer
from rclpy.action.server import ServerGoalHandle
from rclpy.node import Node

from craik_interfaces.action import ReachGoal


class ReachGoalEchoServer(Node):

    def __init__(self) -> None:
        super().__init__('reach_goal_echo_server')
        self._server = ActionServer(self, ReachGoal, '/planner/reach_goal', self._execute)

    def _execute(self, goal_handle: ServerGoalHandle) -> ReachGoal.Result:
        goal = goal_handle.request
        result = ReachGoal.Result()
        if goal.goal_image.width == 0 or not goal.goal_image.data:
            goal_handle.abort()
            result.status = ReachGoal.Result.STATUS_REJECTED_INPUT
            result.message = 'goal image is empty'
            return result
        for step in range(1, goal.max_steps + 1):
            feedback = ReachGoal.Feedback()
            feedback.step = step
            feedback.best_energy = 1.0 / step
            feedback.commanded_action = [0.01 * step, 0.0, -0.01, 0.0]
            goal_handle.publish_feedback(feedback)
            time.sleep(0.05)
        goal_handle.succeed()
        result.status = ReachGoal.Result.STATUS_REACHED
        result.steps = goal.max_steps
        result.final_energy = 1.0 / max(goal.max_steps, 1)
        image = goal.goal_image
        result.message = f'{image.width}x{image.height} {image.encoding}'
        return result


def main() -> None:
    rclpy.init()
    node = ReachGoalEchoServer()
    print('ready', flush=True)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
