"""A client of the simulated lab over ROS: reset episodes, send goals, read ground truth.

Used by `craik eval`, `craik demo` and the system tests. It talks to the running graph only
through its public interfaces (/sim/reset_episode, /planner/reach_goal, /sim/ground_truth, the
camera and controller topics), exactly as a user's client would.
"""

from __future__ import annotations

from collections.abc import Callable
import concurrent.futures
from dataclasses import dataclass, field
import threading
import time
from typing import Any

import numpy as np
import rclpy
from rclpy.action import ActionClient
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from craik_bringup.goal_client import (
    GOAL_RESEND_S,
    GoalCall,
    ServerWatch,
    cancel_duplicates,
    first_response,
    run_on_executor,
)
from craik_interfaces.action import ReachGoal
from craik_interfaces.msg import ControllerStatus, GroundTruth
from craik_interfaces.srv import ResetEpisode

STATUS_NAMES = {getattr(ReachGoal.Result, n): n[len('STATUS_'):].lower()
                for n in dir(ReachGoal.Result) if n.startswith('STATUS_')}


@dataclass
class GoalRun:
    """What one ReachGoal produced, as seen by the client."""

    result: Any                                  # ReachGoal.Result
    feedback: list[Any] = field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.result.status, f'status {self.result.status}')


class GoalLostError(RuntimeError):
    """The planner's action server went away while a goal was running (its node died): no
    result will come."""


def image_to_array(msg: Image) -> np.ndarray:
    """rgb8 message -> uint8 [H, W, 3] (copy)."""
    return np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[
        :, :msg.width * 3].reshape(msg.height, msg.width, 3).copy()


class SimClient:
    """Owns a private rclpy context and a spinning thread; use as a context manager."""

    def __init__(self, name: str = 'craik_client', domain_id: int | None = None) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node(name, context=self.context)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._lock = threading.Lock()
        self.ground_truth: GroundTruth | None = None
        self.color: Image | None = None
        self.status: ControllerStatus | None = None
        self.node.create_subscription(GroundTruth, '/sim/ground_truth', self._on_gt, reliable)
        self.node.create_subscription(Image, '/camera/camera/color/image_raw', self._on_color,
                                      qos_profile_sensor_data)
        self.node.create_subscription(ControllerStatus, '/franka/status', self._on_status,
                                      reliable)
        self.reset_client: Any = self.node.create_client(ResetEpisode, '/sim/reset_episode')
        self.goal_client: Any = ActionClient(self.node, ReachGoal, '/planner/reach_goal')
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 (shutdown races end the thread quietly)
                if not self.context.ok():
                    return
                raise

    def _on_gt(self, msg: GroundTruth) -> None:
        with self._lock:
            self.ground_truth = msg

    def _on_color(self, msg: Image) -> None:
        with self._lock:
            self.color = msg

    def _on_status(self, msg: ControllerStatus) -> None:
        with self._lock:
            self.status = msg

    @staticmethod
    def _wait(future: Any, timeout_s: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_s
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f'{what}: no answer within {timeout_s:.0f} s')
            time.sleep(0.01)
        return future.result()

    def wait_ready(self, timeout_s: float = 120.0, check: Any = None) -> None:
        """Until the sim's reset service, the planner's action and a ready controller exist.

        ``check`` is called while waiting (e.g. a graph's check_alive, to fail fast).
        """
        deadline = time.monotonic() + timeout_s
        waiting = 'the sim node'
        while time.monotonic() < deadline:
            if check is not None:
                check()
            with self._lock:
                status = self.status
            if not self.reset_client.service_is_ready():
                waiting = '/sim/reset_episode'
            elif not self.goal_client.server_is_ready():
                waiting = '/planner/reach_goal'
            elif status is None or not status.ready:
                waiting = 'a ready franka_controller (/franka/status)'
            else:
                return
            time.sleep(0.1)
        raise TimeoutError(f'graph not ready after {timeout_s:.0f} s: waiting for {waiting}')

    def reset(self, task: str, seed: int, timeout_s: float = 60.0,
              **variation: Any) -> Any:
        """Reset the episode; returns the ResetEpisode response (raises on failure)."""
        request = ResetEpisode.Request(task=task, seed=seed, **variation)
        response = self._wait(self.reset_client.call_async(request), timeout_s,
                              '/sim/reset_episode')
        if not response.success:
            raise RuntimeError(f'reset {task}/{seed} failed: {response.message}')
        # Ground truth of the new episode (not a message from before the reset).
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                gt = self.ground_truth
            if gt is not None and gt.task == task and gt.seed == seed:
                break
            time.sleep(0.02)
        return response

    def _on_spin_thread(self, call: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """``call()`` run on the thread that spins the executor; a future of what it returns
        (every action-client call goes through here: see craik_bringup.goal_client)."""
        return run_on_executor(self._executor, call)

    def send_goal(self, goal: Any, timeout_s: float = 30.0,
                  resend_s: float = GOAL_RESEND_S) -> tuple[Any, GoalRun]:
        """Send a ReachGoal; returns (goal handle, run whose feedback fills in as it comes).

        A goal without a goal response within ``resend_s`` is sent again; an earlier request
        that is accepted late after all is canceled (craik_bringup.goal_client).
        """
        run = GoalRun(result=None)
        calls: list[GoalCall] = []
        call = first_response(
            lambda: GoalCall(self._on_spin_thread, self.goal_client, goal, run.feedback),
            calls, time.monotonic() + timeout_s, resend_s=resend_s)
        if call is None:
            raise TimeoutError(f'send ReachGoal: no answer within {timeout_s:.0f} s')
        if len(calls) > 1:
            # Late answers to the other requests come on the spinning thread, after this
            # returns: cancel them as they come.
            threading.Thread(target=cancel_duplicates, args=(calls, call),
                             kwargs={'wait_s': 2.0}, daemon=True).start()
        if not call.handle.accepted:
            raise RuntimeError('ReachGoal was not accepted')
        return call.handle, run

    def reach_goal(self, goal: Any, timeout_s: float = 600.0) -> GoalRun:
        """Send a goal and wait for its result (:meth:`wait_result`)."""
        start = time.monotonic()
        handle, run = self.send_goal(goal)
        run.result = self.wait_result(handle, timeout_s)
        run.wall_time_s = time.monotonic() - start
        return run

    def wait_result(self, handle: Any, timeout_s: float = 600.0,
                    server_lost_s: float = 2.0) -> Any:
        """The ReachGoal result of ``handle``.

        Raises :class:`GoalLostError` once the action server has been gone for
        ``server_lost_s`` (a dead planner sends no result: waiting would hang until
        ``timeout_s``), :class:`TimeoutError` after ``timeout_s``.
        """
        future = handle.get_result_async()
        deadline = time.monotonic() + timeout_s
        server = ServerWatch(self.goal_client, server_lost_s)
        while not future.done():
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f'ReachGoal result: no answer within {timeout_s:.0f} s')
            if server.lost(now):
                raise GoalLostError('the /planner/reach_goal server went away during the goal '
                                    '(the mpc_planner node stopped); no result will come')
            time.sleep(0.02)
        return future.result().result

    def latest_ground_truth(self) -> GroundTruth:
        with self._lock:
            if self.ground_truth is None:
                raise RuntimeError('no /sim/ground_truth received')
            return self.ground_truth

    def ee_position(self) -> np.ndarray:
        """``[3]``: the simulated TCP position (ground truth, fr3_link0, m)."""
        p = self.latest_ground_truth().ee_pose.position
        return np.array([p.x, p.y, p.z])

    def wait_until_still(self, timeout_s: float = 10.0, tolerance_m: float = 0.0005,
                         period_s: float = 0.2) -> float:
        """Wait until the TCP has stopped (moved less than ``tolerance_m`` in ``period_s``);
        returns the wall-clock time at the start of that still period. The last target of a
        finished goal may still be running out, more slowly on a loaded machine."""
        deadline = time.monotonic() + timeout_s
        last, last_t = self.ee_position(), time.time()
        while time.monotonic() < deadline:
            time.sleep(period_s)
            now, now_t = self.ee_position(), time.time()
            if np.linalg.norm(now - last) < tolerance_m:
                return last_t
            last, last_t = now, now_t
        raise TimeoutError(f'the arm did not come to rest within {timeout_s} s')

    def latest_color(self) -> np.ndarray | None:
        with self._lock:
            return image_to_array(self.color) if self.color is not None else None

    def close(self) -> None:
        # An action client outlives destroy_node (its DDS endpoints stay discoverable, and a
        # later client on the domain saw a server that was gone): destroyed explicitly.
        self.goal_client.destroy()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)

    def __enter__(self) -> SimClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
