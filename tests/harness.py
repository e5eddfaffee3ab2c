"""Real processes for tests: web processes, Celery workers and beat, on free ports.

Every process gets the test session's environment (its own MariaDB database,
Redis database and namespace) and writes its log to the test's folder; a
failing test prints the tails of those logs.
"""
import sys
import threading
import uuid
from pathlib import Path

import requests
import socketio

from deploy.local import launcher
from deploy.local.launcher import ROOT, free_port  # noqa: F401  (tests import them from here)

PYTHON = sys.executable


class Proc(launcher.Process):
    """A child process of one test (deploy/local/launcher.py), with its log file."""

    def kill9(self):
        """SIGKILL the process and its children (a prefork worker's pool dies with it)."""
        self.kill_group()

    def stop(self, timeout=15):
        launcher.stop([self], timeout=timeout)


class Cluster:
    """Starts and stops the processes of one test."""

    def __init__(self, env, log_dir):
        self.env = env
        self.log_dir = log_dir
        self.procs = []

    def _start(self, name, args, extra_env=None):
        env = dict(self.env, **(extra_env or {}))
        proc = Proc.spawn(name, args, env, self.log_dir)
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
        wait_until(lambda: proc.log_contains("ready."), 60, f"{name} ready", proc)
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
    """launcher.wait_until, failing the test (AssertionError) instead of LaunchError."""
    try:
        launcher.wait_until(predicate, timeout, what, proc, interval)
    except launcher.LaunchError as err:
        raise AssertionError(str(err)) from None


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
