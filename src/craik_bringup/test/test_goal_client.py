"""goal_client's re-send / duplicate-cancel / lost-server logic, against a scripted client.

The ROS behaviour behind it (a planner dropping the response to a client it has not discovered
yet) is exercised in test_goal_command.py and the system tests; here each rule on its own.
"""

import concurrent.futures
import threading
import time

from craik_bringup.goal_client import (
    GoalCall,
    ServerWatch,
    cancel_duplicates,
    first_response,
)


def _now(call):
    """on_spin_thread stand-in: run it here, a done future."""
    done = concurrent.futures.Future()
    done.set_result(call())
    return done


class _Handle:
    def __init__(self, accepted=True):
        self.accepted = accepted
        self.canceled = False

    def cancel_goal_async(self):
        self.canceled = True
        answered = concurrent.futures.Future()
        answered.set_result(None)
        return answered


class _Client:
    """Answers request i after answer_after_s[i] seconds (None: never), like a server whose
    response is late or lost."""

    def __init__(self, *answer_after_s):
        self.answer_after_s = list(answer_after_s)
        self.requests = []      # (response future, handle)
        self.ready = True

    def send_goal_async(self, goal, feedback_callback=None):
        response, handle = concurrent.futures.Future(), _Handle()
        delay = self.answer_after_s[len(self.requests)]
        if delay is not None:
            threading.Timer(delay, response.set_result, (handle,)).start()
        self.requests.append((response, handle))
        return response

    def server_is_ready(self):
        return self.ready


def _first(client, calls, deadline_s, resend_s):
    resends = []
    call = first_response(lambda: GoalCall(_now, client, 'goal'), calls,
                          time.monotonic() + deadline_s, on_resend=lambda: resends.append(1),
                          resend_s=resend_s)
    return call, resends


def test_a_goal_answered_in_time_is_sent_once():
    client, calls = _Client(0.05), []
    call, resends = _first(client, calls, 2.0, resend_s=0.5)
    assert call is calls[0] and call.handle is client.requests[0][1]
    assert len(client.requests) == 1 and not resends


def test_a_lost_goal_response_is_sent_again_and_a_late_duplicate_canceled():
    client, calls = _Client(None, 0.05), []   # the first response never comes
    call, resends = _first(client, calls, 2.0, resend_s=0.2)
    assert call is calls[1] and len(resends) == 1
    # The first request's answer comes late after all: it is a second running goal.
    client.requests[0][0].set_result(client.requests[0][1])
    cancel_duplicates(calls, call)
    assert client.requests[0][1].canceled
    assert not client.requests[1][1].canceled


def test_no_answer_at_all_gives_none_by_the_deadline():
    client, calls = _Client(None, None, None, None, None), []
    start = time.monotonic()
    call, _ = _first(client, calls, 0.5, resend_s=0.2)
    assert call is None
    assert 0.5 <= time.monotonic() - start < 1.5
    assert len(calls) >= 2


def test_a_refused_duplicate_is_not_canceled():
    client, calls = _Client(None, None), []
    chosen = GoalCall(_now, client, 'goal')
    other = GoalCall(_now, client, 'goal')
    calls += [chosen, other]
    client.requests[0][0].set_result(client.requests[0][1])
    client.requests[1][0].set_result(_Handle(accepted=False))
    cancel_duplicates(calls, chosen)
    assert other.cancel_future is None and not client.requests[0][1].canceled


def test_server_watch_tolerates_a_blip_and_reports_a_gone_server():
    client = _Client()
    watch = ServerWatch(client, lost_after_s=2.0)
    assert not watch.lost(0.0)
    client.ready = False
    assert not watch.lost(1.0)          # gone since 1.0
    client.ready = True
    assert not watch.lost(2.5)          # back: a discovery blip
    client.ready = False
    assert not watch.lost(3.0)
    assert not watch.lost(4.9)
    assert watch.lost(5.1)


def test_run_on_executor_hands_back_the_result_or_the_exception():
    from craik_bringup.goal_client import run_on_executor

    class Executor:     # rclpy's runs the task when it spins; this one at once
        def create_task(self, task):
            task()

    assert run_on_executor(Executor(), lambda: 42).result(timeout=1) == 42
    failed = run_on_executor(Executor(), lambda: 1 / 0)
    assert isinstance(failed.exception(timeout=1), ZeroDivisionError)
