"""Start, watch and stop the processes of Boxoffice on this machine.

One module for the three places that run real processes: the local cluster
(deploy/local/cluster), the test harness (tests/harness.py) and the benchmarks
(bench/). Each child runs in its own session (so a signal to its group reaches
a prefork worker's pool, and a terminal's Ctrl-C does not), writes to one log
file, and is known by its pid *and* its start time: a pid the kernel has given
to another process since is not ours. psutil reads the process table.

Why not circus, honcho or supervisor: see docs/PROCESSES.md.
"""
import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]

_GONE = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


class LaunchError(Exception):
    """A process did not start, exited while awaited, or did not become ready in time."""


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile():
    """Lift this process's open-file limit to the hard limit (every socket is one); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def process_create_time(pid):
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).create_time()
    return None


def pid_alive(pid, create_time=None):
    """pid runs (not a zombie) and, when create_time is given, is the process started then."""
    try:
        proc = psutil.Process(pid)
        if proc.status() in _GONE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < 0.05
    except psutil.Error:
        return False


class Process:
    """One child process: its pid, start time, name and log file.

    Built by `spawn` (this process started it and can reap it) or from the
    record another command saved (`from_record`: the cluster's state file).
    """

    def __init__(self, name, pid, create_time, log_path, popen=None, **extra):
        self.name, self.pid, self.create_time = name, pid, create_time
        self.log_path = Path(log_path) if log_path else None
        self.popen = popen
        self.extra = extra

    @classmethod
    def spawn(cls, name, args, env, log_dir, cwd=ROOT, nofile=False, **extra):
        """Start args detached (own session), stdout and stderr appended to log_dir/<name>.log."""
        log_path = Path(log_dir) / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True,
                                     preexec_fn=raise_nofile if nofile else None)
        return cls(name, popen.pid, process_create_time(popen.pid), log_path, popen, **extra)

    @classmethod
    def adopt(cls, name, pid, log_path=None, **extra):
        """A process started by someone else (nginx, which daemonizes itself)."""
        return cls(name, pid, process_create_time(pid), log_path, **extra)

    @classmethod
    def from_record(cls, record):
        rec = dict(record)
        return cls(rec.pop("name"), rec.pop("pid"), rec.pop("create_time", None),
                   rec.pop("log", None), **rec)

    def record(self):
        """What a later command needs to find this process again (JSON-able)."""
        return dict(self.extra, name=self.name, pid=self.pid, create_time=self.create_time,
                    log=str(self.log_path) if self.log_path else None)

    def alive(self):
        if self.popen is not None and self.popen.poll() is not None:
            return False    # exited and reaped by us
        return pid_alive(self.pid, self.create_time)

    def signal(self, sig, group=False):
        """Send sig to the process (or its whole process group) if it still runs."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)

    def kill_group(self):
        """SIGKILL the process group, even after its leader has gone (a prefork pool)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._reap(10)

    def group_pids(self):
        """The live processes of this process's group (a worker and its pool)."""
        return group_pids(self.pid)

    def children(self, recursive=False):
        with contextlib.suppress(psutil.Error):
            return [p.pid for p in psutil.Process(self.pid).children(recursive=recursive)]
        return []

    def _reap(self, timeout):
        """Wait until it is gone: reaped by us when we started it, else by whoever
        does (init for a daemon, the kernel for a test zygote's child)."""
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        else:
            wait_gone([self], timeout)

    def tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AttributeError):
            return ""

    def log_contains(self, text):
        try:
            return text in self.log_path.read_text(errors="replace")
        except (OSError, AttributeError):
            return False

    def __repr__(self):
        return f"<Process {self.name} pid={self.pid}>"


def group_pids(pgid):
    """Every live process whose process group is pgid."""
    found = []
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if proc.info["status"] not in _GONE and os.getpgid(proc.pid) == pgid:
                found.append(proc.pid)
    return found


def wait_gone(procs, timeout):
    """Wait until none of procs runs; those still running after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in procs if p.alive()]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def stop(procs, sig=signal.SIGTERM, timeout=30, on_kill=None):
    """Signal procs, wait up to timeout, then SIGKILL the groups of those still there.

    Every group is SIGKILLed at the end all the same: a prefork worker's children
    can outlive a parent that left on SIGTERM. on_kill(proc) is told of each one
    that had to be killed.
    """
    procs = list(procs)
    for p in procs:
        p.signal(sig)
    left = wait_gone(procs, timeout)
    for p in left:
        if on_kill:
            on_kill(p)
        p.signal(signal.SIGKILL, group=True)
    wait_gone(left, 10)
    for p in procs:
        p.kill_group()


def wait_until(predicate, timeout, what, proc=None, interval=0.05):
    """Poll predicate until true; LaunchError after timeout or when proc exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and not proc.alive():
            raise LaunchError(f"{proc.name} exited while waiting for {what}:\n{proc.tail()}")
        time.sleep(interval)
    raise LaunchError(f"timed out after {timeout}s waiting for {what}"
                      + (f":\n{proc.tail()}" if proc is not None else ""))


def tree_pids(roots):
    """The live pids of roots and all their descendants."""
    out = set()
    for pid in roots:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            out.add(pid)
            out.update(c.pid for c in proc.children(recursive=True))
    return out


def cpu_seconds(pid):
    """User plus system CPU seconds pid has used, or None if it is gone."""
    with contextlib.suppress(psutil.Error):
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    return None


def pids_by_name(name):
    """pids of the processes whose name is exactly name (like `pgrep -x`)."""
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == name]
