"""Start, watch and stop the component processes.

Role: spawn a binary with its output in a log file, either tied to our own life (tests: the kernel
kills it if the test process dies, even by SIGKILL) or detached (``make cluster-up``: it outlives
the command that started it); stop a process gracefully, then forcefully; wait for a condition
while failing fast, with the log's tail, if the process dies meanwhile.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_PDEATHSIG = 1


class ComponentFailed(RuntimeError):
    """A component exited or never became healthy; the message carries its log's tail."""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGKILL it when its parent
    # dies, so an interrupted or killed test run leaves no etcd or apiserver behind.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class Proc:
    name: str
    pid: int
    log: Path
    binary: str
    # Set when this very process started it; a Proc loaded from state.json has none.
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def state(self) -> dict[str, object]:
        return {"name": self.name, "pid": self.pid, "log": str(self.log), "binary": self.binary}


def spawn(name: str, argv: list[str], log: Path, *, detach: bool, env: dict[str, str] | None = None) -> Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        popen = subprocess.Popen(  # argv is built from our own constants
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            # Own session: a Ctrl-C in the terminal reaches us, and we stop components in order.
            start_new_session=True,
            preexec_fn=None if detach else _die_with_parent,
        )
    return Proc(name=name, pid=popen.pid, log=log, binary=argv[0], popen=popen)


def alive(proc: Proc) -> bool:
    """True while the process runs.

    Our own child: ask its Popen. Right after a fork+exec, /proc/PID/cmdline can still read
    empty for a moment (the kernel installs the new argv after waking the parent), so it is no
    proof of death. A process started by an earlier command (from state.json): the pid must
    exist, not be a zombie, and still run our binary (a reused pid is not ours).
    """
    if proc.popen is not None:
        return proc.popen.poll() is None
    _reap(proc.pid)
    try:
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        state = Path(f"/proc/{proc.pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z" and cmdline.split(b"\0", 1)[0] == proc.binary.encode()


def _reap(pid: int) -> None:
    # ChildProcessError: not our child (started by an earlier `cluster-up`): init reaps it.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(proc: Proc, *, timeout: float = 10.0) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL (timeout 0: SIGKILL at once). Safe on a gone process."""
    steps = ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)) if timeout > 0 else ((signal.SIGKILL, 5.0),)
    for sig, wait in steps:
        if not alive(proc):
            return
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while alive(proc) and time.monotonic() < deadline:
            time.sleep(0.05)


def log_tail(log: Path, lines: int = 25) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def wait_for(
    what: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    watch: list[Proc],
    interval: float = 0.1,
) -> None:
    """Poll ``check`` until true; fail at once with a log tail if a watched process dies."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in watch:
            if not alive(proc):
                raise ComponentFailed(
                    f"{proc.name} exited while waiting for {what}; log {proc.log}:\n{log_tail(proc.log)}"
                )
        try:
            if check():
                return
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name} ({p.log}):\n{log_tail(p.log, 10)}" for p in watch)
            raise ComponentFailed(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")
        time.sleep(interval)
