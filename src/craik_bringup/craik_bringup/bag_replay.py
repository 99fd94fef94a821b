"""``craik replay``: republish a rosbag2 MCAP bag with its original timing.

    craik replay lab_session [--rate 0.5] [--loop] [--topics /camera/camera/color/image_raw ...]

Every message goes out as the serialized bytes that were recorded (raw publishing: nothing is
decoded), at its recorded log time relative to the first message, scaled by ``1 / rate``
(:func:`craik_bringup.bag_files.replay_schedule`); with ``--loop`` the bag starts over one
median message gap after its last message. Publishers offer the QoS the recorded publishers
offered (a latched topic stays latched, a best-effort camera stays best effort). ``--clock``
also publishes /clock from the bag's time, for nodes run with ``use_sim_time``: header stamps
are the recorded ones, so a node on wall time would find every observation stale.

It only ever publishes recorded topics. It never talks to a robot controller: action and
service topics (``.../_action/...``, ``..._service_event``) are never republished, nor is
``/franka/target`` (the controller's command stream), and it says so for each one it leaves
out.

The whole bag is checked before anything is published (:func:`bag_files.open_bag` and
:func:`bag_files.scan_bag`: magic, summary, schemas, every chunk's CRC and decompression, the
counts), and every topic's type must be installed with the definition it was recorded with
(type hash); a bag that fails any of this is refused with the reason and nothing goes out.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
import queue
import sys
import threading
import time
from typing import Any

import numpy as np

from craik_bringup.bag_files import (
    BagError,
    BagInfo,
    BagMessage,
    iter_messages,
    open_bag,
    replay_qos,
    replay_schedule,
    scan_bag,
)

# Commands to a robot controller: a replay must never move an arm.
COMMAND_TOPICS = ('/franka/target',)
# The last stretch of each wait is spun, not slept: sleep() wakes up late by a scheduler tick.
SPIN_S = 0.002
PREFETCH = 64


def skip_reason(topic: str, type_name: str) -> str:
    """Why ``topic`` is never republished ('' when it may be)."""
    if '/_action/' in topic or type_name.split('/')[1:2] == ['action']:
        return 'an action topic (a replay never talks to an action server or client)'
    if topic.endswith('/_service_event') or type_name.endswith('_Event'):
        return 'a service event (a replay never calls a service)'
    if topic in COMMAND_TOPICS:
        return 'robot controller commands (a replay never moves the arm)'
    return ''


@dataclass
class ReplayPlan:
    """What will be published: topics, their types, and why others are left out."""

    topics: list[str]
    types: dict[str, str]
    skipped: dict[str, str] = field(default_factory=dict)


def plan_replay(bag: BagInfo, topics: Sequence[str] | None = None) -> ReplayPlan:
    """Choose the topics to republish; raises BagError for a requested topic not in the bag."""
    if topics:
        unknown = [t for t in topics if t not in bag.topics]
        if unknown:
            raise BagError(f'{bag.path}: no topic {", ".join(unknown)} in the bag (it has '
                           f'{", ".join(sorted(bag.topics))})')
    names = list(topics) if topics else sorted(bag.topics)
    plan = ReplayPlan([], {})
    for name in names:
        type_name = bag.topics[name].type
        why = skip_reason(name, type_name)
        if why:
            plan.skipped[name] = why
            continue
        if bag.topics[name].message_count == 0:
            plan.skipped[name] = 'no messages'
            continue
        plan.topics.append(name)
        plan.types[name] = type_name
    return plan


def check_types(bag: BagInfo, plan: ReplayPlan) -> dict[str, Any]:
    """The installed message class of each topic; raises BagError for a type that is not
    installed or whose installed definition differs from the recorded one (the bytes would
    not mean the same)."""
    from craik_bringup.bag_record import installed_type_hash, message_class

    classes: dict[str, Any] = {}
    for name in plan.topics:
        type_name = plan.types[name]
        try:
            classes[name] = message_class(type_name)
        except LookupError as exc:
            raise BagError(f'{bag.path}: topic {name}: unknown type: {exc}; source the '
                           'workspace that defines it, or leave the topic out with --topics'
                           ) from exc
        recorded = bag.topics[name].type_hash
        installed = installed_type_hash(type_name)
        if recorded and installed and recorded != installed:
            raise BagError(f'{bag.path}: topic {name}: {type_name} was recorded with another '
                           f'definition ({recorded[:18]}...) than the installed one '
                           f'({installed[:18]}...); its messages cannot be republished as they '
                           'are')
    return classes


def _prefetch(bag: BagInfo, topics: list[str], out: queue.Queue[BagMessage | None],
              errors: list[BaseException], stop: threading.Event) -> None:
    try:
        for message in iter_messages(bag, topics):
            while not stop.is_set():
                try:
                    out.put(message, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
    except BaseException as exc:  # noqa: BLE001 (re-raised on the publishing thread)
        errors.append(exc)
    finally:
        out.put(None)


def _messages(bag: BagInfo, topics: list[str], stop: threading.Event) -> Iterator[BagMessage]:
    """The bag's messages, read ahead on a thread (decompression never delays a publish)."""
    q: queue.Queue[BagMessage | None] = queue.Queue(maxsize=PREFETCH)
    errors: list[BaseException] = []
    thread = threading.Thread(target=_prefetch, args=(bag, topics, q, errors, stop),
                              daemon=True)
    thread.start()
    try:
        while True:
            message = q.get()
            if message is None:
                break
            yield message
    finally:
        stop.set()
        thread.join(timeout=5)
    if errors:
        raise errors[0]


def wait_until(deadline: float, on_wait: Any = None) -> None:
    """Sleep until ``time.perf_counter() >= deadline`` (the last SPIN_S spun);
    ``on_wait(now)`` is called between sleeps of at most 20 ms."""
    while True:
        now = time.perf_counter()
        left = deadline - now
        if left <= 0:
            return
        if on_wait is not None:
            on_wait(now)
        if left > SPIN_S:
            time.sleep(min(left - SPIN_S, 0.02))


@dataclass
class ReplayStats:
    """How the replay went: counts and how late each publish was against its schedule."""

    published: dict[str, int] = field(default_factory=dict)
    lateness_s: list[float] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the user."""
        late = np.asarray(self.lateness_s) * 1e3
        timing = (f'; publish lateness median {np.median(late):.2f} ms, max {late.max():.2f} ms'
                  if late.size else '')
        return (f'{sum(self.published.values())} messages on {len(self.published)} topics'
                f'{timing}')


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``craik replay``."""
    parser.add_argument('bag', help='rosbag2 MCAP directory (or one .mcap file)')
    parser.add_argument('--rate', type=float, default=1.0,
                        help='playback speed (2: twice as fast; default 1)')
    parser.add_argument('--loop', action='store_true', help='start over at the end, until '
                        'Ctrl-C')
    parser.add_argument('--topics', nargs='+', metavar='T', help='only these topics')
    parser.add_argument('--delay', type=float, default=1.0, metavar='S',
                        help='wait S seconds after creating the publishers, for subscribers '
                        'to be discovered (default 1)')
    parser.add_argument('--clock', action='store_true',
                        help='also publish /clock (bag time) for nodes with use_sim_time')


def run(args: argparse.Namespace) -> int:
    """``craik replay``."""
    if not (np.isfinite(args.rate) and args.rate > 0) or args.delay < 0:
        print('craik replay: --rate must be > 0 and --delay >= 0', file=sys.stderr)
        return 2
    try:
        bag = open_bag(args.bag)
        plan = plan_replay(bag, args.topics)
        for name, why in plan.skipped.items():
            print(f'craik replay: not republishing {name}: {why}', flush=True)
        if not plan.topics:
            raise BagError(f'{bag.path}: nothing to republish')
        scan = scan_bag(bag, plan.topics)
        classes = check_types(bag, plan)
        schedule = replay_schedule(scan.log_times_ns, args.rate)
    except BagError as exc:
        print(f'craik replay: {exc}', file=sys.stderr)
        return 1
    import rclpy

    rclpy.init()
    node = rclpy.create_node('craik_replay')
    try:
        from craik_bringup.bag_record import qos_profile

        publishers = {name: node.create_publisher(classes[name], name,
                                                  qos_profile(replay_qos(
                                                      bag.topics[name].offered_qos)))
                      for name in plan.topics}
        clock_pub = None
        if args.clock:
            from rosgraph_msgs.msg import Clock

            clock_pub = node.create_publisher(Clock, '/clock', 10)
        print(f'craik replay: {bag.path}: {len(scan.topics)} messages on {len(plan.topics)} '
              f'topics, {bag.duration_s:.1f} s at rate {args.rate:g}'
              f'{" (loop)" if args.loop else ""}', flush=True)
        time.sleep(args.delay)
        stats = ReplayStats()
        first_ns = int(scan.log_times_ns[0])
        loop = 0
        while True:
            start = time.perf_counter()
            clock_state = {'next': start}

            def publish_clock(now: float, start: float = start,
                              state: dict[str, float] = clock_state) -> None:
                if clock_pub is None or now < state['next']:
                    return
                t_ns = first_ns + int((now - start) * args.rate * 1e9)
                msg = Clock()
                msg.clock.sec, msg.clock.nanosec = divmod(t_ns, 1_000_000_000)
                clock_pub.publish(msg)
                state['next'] = now + 0.01

            stop = threading.Event()
            for i, message in enumerate(_messages(bag, plan.topics, stop)):
                target = start + schedule.offset(i)
                wait_until(target, publish_clock if clock_pub is not None else None)
                publishers[message.topic].publish(message.data)
                stats.lateness_s.append(time.perf_counter() - target)
                stats.published[message.topic] = stats.published.get(message.topic, 0) + 1
            loop += 1
            if not args.loop:
                break
            wait_until(start + schedule.period_s)
            print(f'craik replay: pass {loop} done ({stats.summary()})', flush=True)
        print(f'craik replay: done: {stats.summary()}', flush=True)
        return 0
    except BagError as exc:
        print(f'craik replay: {exc}', file=sys.stderr)
        return 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
