"""Start, kill and restart a franky-sim FR3 server in a subprocess, for tests and benchmarks.

franky-sim runs a MuJoCo FR3 behind the real libfranka network protocol (TCP 1337 + gripper
1338). Running it in its own process keeps its 1 kHz Python loop off the test process's GIL and
lets a test kill it to simulate a lost robot. Each server binds its own loopback address
(127.x.y.z) so that concurrent test processes on one machine never collide on the fixed ports.

The subprocess also understands a small fault-injection protocol on stdin, because franky-sim does
not simulate reflexes itself:
    ``fault <error_name> [<error_name> ...]``  abort the running motion (if any) with a reflex
        (libfranka ``kReflexAborted``) carrying these libfranka error flags and keep the robot in
        ``Reflex`` mode until an automatic error recovery arrives;
    ``quit``  stop cleanly.
The subprocess exits when its stdin closes, so it never outlives the process that started it.

Run as a script to serve one robot by hand: ``python franky_sim_server.py --hostname 127.0.0.1``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time

# libfranka's error flags in wire order: an injected reflex sets them so that the exception
# text libfranka builds names them.
from craik_franka.faults import LIBFRANKA_ERRORS

_READY = 'FRANKY_SIM_READY'


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_loopback_address() -> str:
    """A loopback address (127.x.y.z) whose robot and gripper ports are free right now."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        host = f'127.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}'
        if _port_free(host, 1337) and _port_free(host, 1338):
            return host
    raise RuntimeError('no free loopback address for a franky-sim server')


class FrankySimServer:
    """A franky-sim FR3 server (robot + gripper) in a subprocess on its own loopback address.

    Usage::

        with FrankySimServer() as server:
            robot = franky.Robot(server.hostname, ...)
            server.kill()      # the robot is gone (simulates a lost connection)
            server.start()     # ... and back, on the same address, in its initial pose
    """

    def __init__(self, hostname: str | None = None) -> None:
        self.hostname = hostname or free_loopback_address()
        self._proc: subprocess.Popen[str] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and block until it accepts connections."""
        if self.running:
            return
        env = dict(os.environ)
        env.setdefault('MUJOCO_GL', 'egl')
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), '--hostname', self.hostname,
             '--stdin-control'],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, text=True, env=env)
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._proc.stdout], [], [], 0.2)
            if ready:
                line = self._proc.stdout.readline()
                if line.strip() == _READY:
                    return
                if not line and self._proc.poll() is not None:
                    break
            elif self._proc.poll() is not None:
                break
        rc = self._proc.poll()
        self.kill()
        raise RuntimeError(f'franky-sim server on {self.hostname} did not start (exit code {rc})')

    def kill(self) -> None:
        """SIGKILL the server: from the client's side the robot disappears without a goodbye."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        self._proc.wait(timeout=10)
        self._close_pipes()
        self._proc = None

    def stop(self) -> None:
        """Stop the server cleanly (falls back to kill)."""
        if self._proc is None:
            return
        try:
            self._send('quit')
            self._proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def pause(self, seconds: float) -> None:
        """Freeze the server (SIGSTOP) for a while: the robot stops talking, then resumes."""
        if self._proc is None:
            raise RuntimeError('franky-sim server is not running')
        os.kill(self._proc.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(self._proc.pid, signal.SIGCONT)

    def inject_fault(self, *error_names: str) -> None:
        """Raise a reflex with these libfranka error flags (see module docstring)."""
        unknown = [e for e in error_names if e not in LIBFRANKA_ERRORS]
        if unknown or not error_names:
            raise ValueError(f'unknown or no libfranka error names: {unknown}')
        self._send('fault ' + ' '.join(error_names))

    def _send(self, line: str) -> None:
        if not self.running or self._proc is None or self._proc.stdin is None:
            raise RuntimeError('franky-sim server is not running')
        self._proc.stdin.write(line + '\n')
        self._proc.stdin.flush()

    def _close_pipes(self) -> None:
        if self._proc is None:
            return
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def __enter__(self) -> FrankySimServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- the subprocess ---------------------------------------------------------------------------

def _serve(hostname: str, stdin_control: bool) -> None:  # pragma: no cover (runs in a child)
    import logging

    import franky_sim
    from franky_sim import franka_robot_protocol as proto
    from franky_sim.mujoco_simulator import MujocoSimulator

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger('numba').setLevel(logging.WARNING)

    class FaultInjectingRobotServer(franky_sim.FrankaRobotServer):
        """franky-sim's robot server plus reflexes on request (franky-sim has none of its own)."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.requested: tuple[bool, ...] | None = None
            self.active: tuple[bool, ...] | None = None

        def apply_requested_fault(self) -> None:
            if self.requested is None:
                return
            self.active, self.requested = self.requested, None
            motion_id = self.current_motion_id
            self.stop_motion(send_preemption_signal=False)
            if motion_id:
                proto.BaseCommand.send_response(
                    self._tcp_socket, proto.RobotCommand.kMove, motion_id,
                    proto.MoveStatus.kReflexAborted)
                self.reset_current_motion_id()

        @property
        def robot_state(self):  # type: ignore[no-untyped-def]
            state = super().robot_state
            if self.active is None:
                return state
            return state.replace(robot_mode=proto.RobotMode.kReflex, errors=self.active,
                                 reflex_reason=self.active)

    original_move_handle = proto.MoveCommand.handle
    original_recovery_handle = proto.AutomaticErrorRecoveryCommand.handle

    def move_handle(cmd, server):  # type: ignore[no-untyped-def]
        if getattr(server, 'active', None) is not None:
            cmd.reply(proto.MoveStatus.kCommandRejectedDueToActivatedSafetyFunctions)
            return
        original_move_handle(cmd, server)

    def recovery_handle(cmd, server):  # type: ignore[no-untyped-def]
        if getattr(server, 'active', None) is not None:
            server.active = None
        original_recovery_handle(cmd, server)

    proto.MoveCommand.handle = move_handle
    proto.AutomaticErrorRecoveryCommand.handle = recovery_handle

    class Server(franky_sim.SimulationServer):
        def init(self) -> None:
            for robot in self.sim.robots:
                rs = FaultInjectingRobotServer(robot, self._remaining_hostname_candidates)
                rs.init()
                self.robot_servers.append(rs)
            self.sim.start()

        def run_once(self, realtime: bool | float = True) -> None:
            for rs in self.robot_servers:
                rs.apply_requested_fault()
            super().run_once(realtime)

    stop = threading.Event()

    with MujocoSimulator() as sim:
        sim.add_robot()
        with Server(sim, hostname_candidates=[hostname]) as server:
            robot_server = server.robot_servers[0]

            def control() -> None:
                for line in sys.stdin:
                    words = line.split()
                    if not words:
                        continue
                    if words[0] == 'quit':
                        break
                    if words[0] == 'fault':
                        robot_server.requested = tuple(e in words[1:] for e in LIBFRANKA_ERRORS)
                stop.set()   # stdin closed (parent gone) or quit

            if stdin_control:
                threading.Thread(target=control, daemon=True).start()
            print(_READY, flush=True)
            server.run_async()
            try:
                while not stop.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
            server.running = False


def main() -> None:  # pragma: no cover (script entry)
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--hostname', default='127.0.0.1')
    parser.add_argument('--stdin-control', action='store_true',
                        help='read fault-injection commands from stdin; exit when it closes')
    args = parser.parse_args()
    _serve(args.hostname, args.stdin_control)


if __name__ == '__main__':
    main()
