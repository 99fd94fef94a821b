"""Sending a ReachGoal so that it is neither lost nor run twice (`craik goal` and SimClient).

Two things go wrong between an action client and the planner's server that a user must not
see:

- a goal response can be lost for good: a server that has not yet discovered a new client's
  response reader (rmw_fastrtps gives it 100 ms; a planner just restarted, a client just
  started) drops the response and does not execute the goal. So a goal without a response
  within GOAL_RESEND_S is sent again, as a new goal (:func:`first_response`), and an earlier
  request that is accepted late after all is canceled (:func:`cancel_duplicates`);
- a dead server sends no result: :class:`ServerWatch` says when it has been gone long enough
  to stop waiting.

Every action-client call goes through ``on_spin_thread`` (run a callable on the thread that
spins the client's executor and return a future of its result): the ROS Kilted wheel's
``ActionClient.send_goal_async`` registers its future, then replaces it with a second one
outside its lock, so a goal response taken by the spinning thread in between completes the
first and the future it returns never completes (seen: `craik eval` waited 30 s for an
accepted goal, once in ~100 episodes). On the spinning thread no response can be taken in
between.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
import concurrent.futures
import time
from typing import Any, Protocol

# A goal without a goal response for this long is sent again; a late answer to an earlier
# request is still waited for DUPLICATE_WAIT_S past its sending, to cancel it.
GOAL_RESEND_S = 3.0
DUPLICATE_WAIT_S = 10.0

SpinCall = Callable[[Callable[[], Any]], 'concurrent.futures.Future[Any]']


class FeedbackSink(Protocol):
    def append(self, item: Any, /) -> None: ...


def run_on_executor(executor: Any, call: Callable[[], Any]) -> concurrent.futures.Future[Any]:
    """``call()`` run as a task of the rclpy ``executor``, on the thread that spins it; a
    future of what it returns (or raises). The ``on_spin_thread`` of this module."""
    done: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def task() -> None:
        try:
            done.set_result(call())
        except Exception as exc:  # noqa: BLE001 (handed to the caller)
            done.set_exception(exc)

    executor.create_task(task)
    return done


def wait_done(future: Any, deadline: float | None) -> bool:
    """Poll ``future.done()`` until ``deadline`` (monotonic; None: forever); whether it is done.
    Ctrl-C interrupts."""
    while not future.done():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


class GoalCall:
    """One goal request on its way: the goal response, the handle, the result future, and the
    feedback of this goal only (into ``feedback``, default a new deque)."""

    def __init__(self, on_spin_thread: SpinCall, client: Any, goal: Any,
                 feedback: FeedbackSink | None = None) -> None:
        self._on_spin_thread = on_spin_thread
        self.feedback: Any = deque() if feedback is None else feedback
        self.sent_at = time.monotonic()
        self._sent = on_spin_thread(lambda: client.send_goal_async(
            goal, feedback_callback=lambda msg: self.feedback.append(msg.feedback)))
        self.handle: Any = None
        self.result_future: Any = None
        self.cancel_future: Any = None

    def poll(self) -> Any:
        """The goal handle once the goal response has come, else None (does not wait)."""
        if self.handle is None and self._sent.done():
            response = self._sent.result()
            if response.done():
                self.handle = response.result()
        return self.handle

    def wait_handle(self, deadline: float | None) -> Any:
        """The goal handle (None if no goal response came by ``deadline``)."""
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.01)
        return self.handle

    def wait_result_future(self, deadline: float | None) -> Any:
        """The future of the result (None if it could not be requested by ``deadline``)."""
        if self.result_future is None:
            asked = self._on_spin_thread(self.handle.get_result_async)
            if not wait_done(asked, deadline):
                return None
            self.result_future = asked.result()
        return self.result_future

    def cancel(self) -> None:
        """Ask the server to cancel this (accepted) goal; its answer in ``cancel_future``."""
        self.cancel_future = self._on_spin_thread(self.handle.cancel_goal_async)


def first_response(send: Callable[[], GoalCall], calls: list[GoalCall], deadline: float,
                   on_resend: Callable[[], None] | None = None,
                   resend_s: float = GOAL_RESEND_S) -> GoalCall | None:
    """Send the goal (``send()``, appended to ``calls``) until a goal response comes; the call
    that got it, None by ``deadline``. ``on_resend`` is called before each re-send."""
    while True:
        now = time.monotonic()
        if not calls or now - calls[-1].sent_at >= resend_s:
            if calls and on_resend is not None:
                on_resend()
            calls.append(send())
        for call in calls:
            if call.poll() is not None:
                return call
        if now >= deadline:
            return None
        time.sleep(0.01)


def cancel_duplicates(calls: list[GoalCall], chosen: GoalCall | None,
                      on_cancel: Callable[[], None] | None = None, wait_s: float = 0.0) -> None:
    """Cancel every accepted goal of ``calls`` but ``chosen`` (``on_cancel`` before each).

    Without ``wait_s`` only the responses already in are looked at (call it again as more
    come); with it, each request's response is waited for up to DUPLICATE_WAIT_S past its
    sending (at least ``wait_s``), then the cancels' answers for ``wait_s``.
    """
    deadline = time.monotonic() + wait_s
    for call in calls:
        if call is chosen or call.cancel_future is not None:
            continue
        handle = call.poll() if not wait_s else call.wait_handle(
            max(deadline, call.sent_at + DUPLICATE_WAIT_S))
        if handle is not None and handle.accepted:
            if on_cancel is not None:
                on_cancel()
            call.cancel()
    if wait_s:
        deadline = time.monotonic() + wait_s
        for call in calls:
            if call.cancel_future is not None and wait_done(call.cancel_future, deadline):
                wait_done(call.cancel_future.result(), deadline)


class ServerWatch:
    """Whether an action server has been invisible for longer than ``lost_after_s``: gone, not
    a discovery blip (a dead planner sends no result; a client would otherwise wait for its
    timeout)."""

    def __init__(self, client: Any, lost_after_s: float) -> None:
        self._client = client
        self.lost_after_s = lost_after_s
        self._gone_since: float | None = None

    def lost(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self._client.server_is_ready():
            self._gone_since = None
        elif self._gone_since is None:
            self._gone_since = now
        return self._gone_since is not None and now - self._gone_since > self.lost_after_s
