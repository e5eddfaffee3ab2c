"""Real processes for tests: web processes, Celery workers and beat, on free ports.

Every process gets the test session's environment (its own MariaDB database,
Redis database and namespace) and writes its log to the test's folder; a
failing test prints the tails of those logs.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import requests
import socketio

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process with its log file."""

    def __init__(self, name, args, env, log_dir):
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self.log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self.log,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def kill9(self):
        """SIGKILL the process and its children (a prefork worker's pool dies with it)."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(10)

    def stop(self, timeout=15):
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.log.close()

    def tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Cluster:
    """Starts and stops the processes of one test."""

    def __init__(self, env, log_dir):
        self.env = env
        self.log_dir = log_dir
        self.procs = []

    def _start(self, name, args, extra_env=None):
        env = dict(self.env, **(extra_env or {}))
        proc = Proc(name, args, env, self.log_dir)
        self.procs.append(proc)
        return proc

    def web(self, extra_env=None):
        port = free_port()
        proc = self._start(f"web-{port}", [PYTHON, "wsgi.py", "--host", "127.0.0.1",
                                           "--port", str(port)], extra_env)
        proc.url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ready(proc.url), 30, f"web {proc.url} ready", proc)
        return proc

    def worker(self, concurrency=2, extra_env=None):
        name = f"worker-{uuid.uuid4().hex[:6]}"
        proc = self._start(name, [PYTHON, "-m", "celery", "-A", "workers", "worker",
                                  "--pool", "prefork", "--concurrency", str(concurrency),
                                  "--hostname", f"{name}@%h", "--loglevel", "INFO",
                                  "--without-gossip", "--without-mingle"], extra_env)
        wait_until(lambda: "ready." in proc.log_path.read_text(errors="replace"), 60,
                   f"{name} ready", proc)
        return proc

    def beat(self, extra_env=None):
        schedule = Path(self.log_dir) / f"beat-{uuid.uuid4().hex[:6]}"
        return self._start("beat", [PYTHON, "-m", "celery", "-A", "workers", "beat",
                                    "--loglevel", "INFO", "--schedule", str(schedule)],
                           extra_env)

    def stop(self):
        for proc in reversed(self.procs):
            proc.stop()

    def tails(self):
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.procs)


def _ready(url):
    try:
        return requests.get(url + "/readyz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def wait_until(predicate, timeout, what, proc=None, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and not proc.alive():
            raise AssertionError(f"{proc.name} exited while waiting for {what}:\n{proc.tail()}")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f":\n{proc.tail()}" if proc else ""))


def sign_up(base_url, email=None, password="correct-horse-battery"):
    """Create an account over REST; returns (user id, token)."""
    email = email or f"u{uuid.uuid4().hex[:12]}@example.test"
    r = requests.post(base_url + "/api/v1/users",
                      json={"email": email, "password": password}, timeout=30)
    assert r.status_code == 201, r.text
    body = r.json()
    return body["id"], body["token"]


class Buyer:
    """A real python-socketio client that records every event it receives."""

    EVENTS = ("hold_result", "release_result", "payment_result", "seats_changed",
              "hold_closed", "queue_update", "admitted")

    def __init__(self, base_url, token, user_id=None):
        self.base_url = base_url
        self.token = token
        self.user_id = user_id
        self.sio = socketio.Client(reconnection=True, reconnection_delay=0.2,
                                   reconnection_delay_max=1)
        self.lock = threading.Lock()
        self.received = {e: [] for e in self.EVENTS}
        self.seat_versions = {}  # seat id -> (version, status), newest seen
        for event in self.EVENTS:
            self.sio.on(event, self._recorder(event))

    def _recorder(self, event):
        def record(data):
            with self.lock:
                self.received[event].append(data)
                if event == "seats_changed":
                    self._apply(data["seats"])
        return record

    def _apply(self, seats):
        for seat in seats:
            old = self.seat_versions.get(seat["id"])
            if old is None or old[0] < seat["version"]:
                self.seat_versions[seat["id"]] = (seat["version"], seat["status"])

    def connect(self, url=None):
        self.sio.connect(url or self.base_url, auth={"token": self.token},
                         transports=["websocket"], wait_timeout=30)
        return self

    def join(self, event_id):
        ack = self.call("join_event", {"event_id": event_id})
        assert ack["ok"], ack
        with self.lock:
            self._apply(ack["seats"])
        return ack

    def call(self, event, data, timeout=30):
        return self.sio.call(event, data, timeout=timeout)

    def results(self, event):
        with self.lock:
            return list(self.received[event])

    def result_for(self, event, request_id, timeout=30):
        """Wait for the result event of one request."""
        found = []

        def check():
            found[:] = [r for r in self.results(event) if r.get("request_id") == request_id]
            return bool(found)
        wait_until(check, timeout, f"{event} for {request_id}")
        return found[0]

    def close(self):
        try:
            self.sio.disconnect()
        except Exception:
            pass
