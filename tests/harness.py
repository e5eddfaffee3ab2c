"""Real processes for tests: web processes, Celery workers and beat, on free ports.

Every process gets the test session's environment (its own MariaDB database,
Redis database and namespace) and writes its log to the test's folder; a
failing test prints the tails of those logs.
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests
import socketio

from deploy.local import launcher
from deploy.local.launcher import ROOT, free_port  # noqa: F401  (tests import them from here)
from tests import zygote

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

    def _start(self, name, args, extra_env=None, fork=True):
        """Start args; web and Celery processes are forked from a zygote (tests/zygote.py)
        when they can be.

        fork=False: its own interpreter, for a test that reads its exit status
        (the zygote's children are reaped by the kernel, not by the test)."""
        env = dict(self.env, **(extra_env or {}))
        flavor = {(PYTHON, "wsgi.py"): "web", (PYTHON, "-m"): "plain"}.get(tuple(args[:2]))
        if fork and flavor and not zygote.needs_own_interpreter(env, _Zygote.base_env):
            log_path = Path(self.log_dir) / f"{name}.log"
            pid = _Zygote.start(flavor, args, env, log_path)
            proc = Proc(name, pid, launcher.process_create_time(pid), log_path)
        else:
            proc = Proc.spawn(name, args, env, self.log_dir)
        self.procs.append(proc)
        return proc

    def web(self, extra_env=None, fork=True):
        port = free_port()
        proc = self._start(f"web-{port}", [PYTHON, "wsgi.py", "--host", "127.0.0.1",
                                           "--port", str(port)], extra_env, fork=fork)
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
        # All at once: each web process drains for DRAIN_NOTICE_SECONDS +
        # DRAIN_GRACE_SECONDS and each worker finishes its task, so one after the
        # other a test's teardown took the sum (5-8 s for two webs, workers and beat).
        launcher.stop(reversed(self.procs), timeout=15)

    def kill(self):
        """SIGKILL every process group at once: a finished test's processes owe it
        nothing, and a graceful stop (a web process drains for 2 s, a worker ends
        its task) cost each test's teardown 2.5 s or more."""
        for p in self.procs:
            p.kill_group()

    def tails(self):
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.procs)


class _Zygote:
    """This pytest process's fork servers (web and plain), each started at its first use."""

    base_env = dict(os.environ)   # the zygotes' own environment (see needs_own_interpreter)
    _procs = {}   # flavor -> (Popen, socket path)
    _lock = threading.Lock()

    @classmethod
    def start(cls, flavor, args, env, log_path):
        with cls._lock:
            proc, path = cls._procs.get(flavor, (None, None))
            if proc is None or proc.poll() is not None:
                proc, path = cls._procs[flavor] = cls._launch(flavor)
        return zygote.start_child(path, args, env, ROOT, log_path)

    @classmethod
    def _launch(cls, flavor):
        folder = Path(tempfile.mkdtemp(prefix=f"zygote-{flavor}-"))
        path, log_path = str(folder / "zygote.sock"), folder / "zygote.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([PYTHON, str(ROOT / "tests" / "zygote.py"), path, flavor],
                                    cwd=ROOT, env=cls.base_env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT)
        atexit.register(cls._stop, proc, folder)
        deadline = time.monotonic() + 60
        while b"zygote ready" not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"the {flavor} zygote did not start:\n"
                                   + log_path.read_text()[-4000:])
            time.sleep(0.05)
        return proc, path

    @staticmethod
    def _stop(proc, folder):
        """At the pytest process's exit: the zygote goes, and its socket and log with it."""
        proc.kill()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _ready(url):
    try:
        return requests.get(url + "/readyz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def inside_one_minute(needed_s=25):
    """Wait, if need be, until at least needed_s remain in the current clock minute.

    Rate budgets are sliding-window counters (the `limits` library's strategy, which
    Flask-Limiter and the state backends' admit script use): per clock-minute window,
    the previous window's count weighted by the share of it still inside the last
    minute, rounded down. Just after a minute begins, 3 hits just before it weigh
    2.97, counted as 2, so one hit more than the limit passes (the strategy's known
    tolerance). A test that counts up to a per-minute limit does it inside one window
    (fresh-clone runs straddled a minute's start at 16:00:00 and failed)."""
    left = 60 - time.time() % 60
    if left < needed_s:
        time.sleep(left + 0.2)


def wait_until(predicate, timeout, what, proc=None, interval=0.05):
    """launcher.wait_until, failing the test (AssertionError) instead of LaunchError."""
    try:
        launcher.wait_until(predicate, timeout, what, proc, interval)
    except launcher.LaunchError as err:
        raise AssertionError(str(err)) from None


def connect_refusals(url, auth, wait_timeout=20):
    """Connect with auth; the data of every connect_error. The connect must fail:
    ConnectionError if it did not (a refused connect is answered, never left waiting)."""
    refusals = []
    client = socketio.Client(reconnection=False)
    client.on("connect_error", refusals.append)
    try:
        client.connect(url, auth=auth, transports=["websocket"], wait_timeout=wait_timeout)
    except socketio.exceptions.ConnectionError:
        pass
    else:
        raise AssertionError(f"the connect to {url} was accepted")
    finally:
        client.disconnect()
    return refusals


def sign_up(base_url, email=None, password="correct-horse-battery"):
    """Create an account over REST; returns (user id, token)."""
    email = email or f"u{uuid.uuid4().hex[:12]}@example.test"
    r = requests.post(base_url + "/api/v1/users",
                      json={"email": email, "password": password}, timeout=30)
    assert r.status_code == 201, r.text
    body = r.json()
    return body["id"], body["token"]


# The recovery rule of docs/API.md ("Recovery"), as the browser (static/js/live.js)
# and the bench (bench/buyers.py) follow it: a request with no result this long
# after it was last sent is sent again with the same request_id (then twice as
# long each time, up to RESEND_MAX_S); at once on `resend` and after a reconnect.
RESEND_AFTER_S = 5.0
RESEND_MAX_S = 30.0
RESULT_EVENTS = ("hold_result", "release_result", "payment_result")
NOT_NOW = ("busy", "rate_limited")


class Buyer:
    """A real python-socketio client that records every event it receives.

    call() sends once; request() follows the recovery rule until the result comes.
    """

    EVENTS = RESULT_EVENTS + ("seats_changed", "hold_closed", "queue_update", "admitted",
                              "resend")

    def __init__(self, base_url, token, user_id=None):
        self.base_url = base_url
        self.token = token
        self.user_id = user_id
        self.sio = socketio.Client(reconnection=True, reconnection_delay=0.2,
                                   reconnection_delay_max=1)
        self.lock = threading.Lock()
        self.received = {e: [] for e in self.EVENTS}
        self.seat_versions = {}  # seat id -> (version, status), newest seen
        self.pending = {}        # request_id -> entry, requests sent by request() without result
        self.resends = 0
        self.sent = {}           # request_id -> times request() sent it (first send and re-sends)
        self._connects = 0
        self._resender = None
        self._closed = False
        for event in self.EVENTS:
            self.sio.on(event, self._recorder(event))
        self.sio.on("connect", self._on_connect)

    def _recorder(self, event):
        def record(data):
            with self.lock:
                self.received[event].append(data)
                if event == "seats_changed":
                    self._apply(data["seats"])
                elif event in RESULT_EVENTS:
                    self.pending.pop(data.get("request_id"), None)
                elif event == "resend":
                    self._all_due()
        return record

    def _on_connect(self):
        with self.lock:
            self._connects += 1
            if self._connects > 1:
                self._all_due()

    def _all_due(self):
        for entry in self.pending.values():
            entry["due"] = 0.0

    def request(self, event, data, timeout=30):
        """Send a request and keep re-sending it (same request_id) until its result
        comes: returns the first ack. A refused first ack ends it."""
        rid = data["request_id"]
        with self.lock:
            self.pending[rid] = {"event": event, "data": data, "due": 0.0,
                                 "wait": RESEND_AFTER_S, "accepted": False}
            if self._resender is None:
                self._resender = threading.Thread(target=self._resend_loop, daemon=True)
                self._resender.start()
        return self._send(rid, timeout)

    def _send(self, rid, timeout=15):
        with self.lock:
            entry = self.pending.get(rid)
            if entry is None:
                return None
            entry["due"] = time.monotonic() + entry["wait"]
            entry["wait"] = min(entry["wait"] * 2, RESEND_MAX_S)
            self.sent[rid] = self.sent.get(rid, 0) + 1
        try:
            ack = self.sio.call(entry["event"], entry["data"], timeout=timeout)
        except (socketio.exceptions.TimeoutError, socketio.exceptions.SocketIOError):
            return None   # no ack: still pending, sent again when due
        with self.lock:
            if self.pending.get(rid) is not entry:
                return ack
            error = ack.get("error") or {}
            if ack.get("ok"):
                entry["accepted"] = True
            elif entry["accepted"] and error.get("code") in NOT_NOW:
                # Not now: again after the pause the server names.
                after = max(1.0, (error.get("details") or {}).get("retry_after_s") or 2)
                entry["due"] = time.monotonic() + after
            else:
                self.pending.pop(rid, None)
        return ack

    def _resend_loop(self):
        while not self._closed:
            time.sleep(0.2)
            if not self.sio.connected:
                continue
            now = time.monotonic()
            with self.lock:
                due = [rid for rid, e in self.pending.items() if e["due"] <= now]
            for rid in due:
                with self.lock:
                    self.resends += 1
                self._send(rid)

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
        self._closed = True
        try:
            self.sio.disconnect()
        except Exception:
            pass
