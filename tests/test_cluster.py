"""deploy/local/cluster end to end: nginx, web processes, Celery workers and beat on this machine.

Socket clients go through nginx and hold and release seats without pause while
the cluster scales out, one web process drains (SIGTERM) and one worker is
killed (SIGKILL). Every request a client saw accepted must get its result, the
drained process's clients must come back through another process and resync,
and the database must never show a seat held twice.
"""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import socketio
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import create_event
from tests.harness import ROOT, free_port, sign_up, wait_until
from tests.load import assert_consistent, db_state

CLUSTER = ROOT / "deploy" / "local" / "cluster"
CLIENTS = 12


def run_cluster(env, *args, timeout=240):
    """Run a cluster command; its JSON answer."""
    out = subprocess.run([sys.executable, str(CLUSTER), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"cluster {args[0]} failed:\n{out.stderr[-4000:]}"
    return json.loads(out.stdout)


def pid_alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def process_group(pid):
    """Every live process of pid's process group (a worker and its prefork children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pid and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def kill_leftovers(run_dir):
    """Last resort when `down` failed: SIGKILL whatever the state file names."""
    path = Path(run_dir) / "cluster.json"
    if path.exists():
        state = json.loads(path.read_text())
        entries = state["web"] + state["workers"] + [e for e in (state.get("beat"),
                                                               state.get("nginx")) if e]
        for e in entries:
            for sig_target in (lambda: os.killpg(e["pid"], signal.SIGKILL),
                               lambda: os.kill(e["pid"], signal.SIGKILL)):
                try:
                    sig_target()
                except (ProcessLookupError, PermissionError):
                    pass


def metric_samples(url):
    """{(name, labels): value} of a /metrics answer, parsed by prometheus-client's parser."""
    r = requests.get(url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(samples, name, **labels):
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == v2 for k, v2 in labels.items()))


class LoopingBuyer:
    """A socket client that holds and releases seats until stopped, and recovers like a real one.

    On every (re)connect it re-joins the event (a fresh snapshot) and re-sends,
    with the same request_id, every request it has no result for: the server
    performs each once and answers a finished one from its record.

    A request refused for now (rate_limited or busy, in the ack or as the
    result) is sent again, with the same request_id, after the retry_after_s it
    names, as the event page does. Above all a refused release is retried: a
    hold left behind stays for HOLD_TTL_SECONDS (300), and two of them make
    every further hold `limit_exceeded` (MAX_OPEN_HOLDS is 2), so the buyer
    would make no progress for minutes. These buyers go as fast as the server
    answers, past the per-account budget (300 requests a minute), so they meet
    `rate_limited` whenever the cluster is quick.
    """

    RETRY_LATER = ("rate_limited", "busy")

    def __init__(self, lb, token, user_id, event_id, seat_ids, seed):
        self.lb, self.token, self.user_id = lb, token, user_id
        self.event_id, self.seat_ids = event_id, seat_ids
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.results = {}      # request_id -> result payload
        self.accepted = set()  # request_ids acked {ok: true}
        self.unanswered = {}   # request_id -> (kind, payload): sent, no result yet
        self.refused = {}      # request_id -> error of a refusal in the ack, not yet handled
        self.connects = 0
        self.joins = 0
        self.drain_notices = 0
        self.rejected = []
        self.errors = []
        self.stop = threading.Event()
        self.sio = socketio.Client(reconnection=True, reconnection_delay=0.2,
                                   reconnection_delay_max=1)
        self.sio.on("connect", self._on_connect)
        self.sio.on("draining", self._on_draining)
        for event in ("hold_result", "release_result"):
            self.sio.on(event, self._on_result)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_connect(self):
        with self.lock:
            self.connects += 1

    def _on_draining(self, data):
        with self.lock:
            self.drain_notices += 1

    def _on_result(self, data):
        with self.lock:
            self.results[data["request_id"]] = data
            self.unanswered.pop(data["request_id"], None)

    def start(self):
        self.sio.connect(self.lb, auth={"token": self.token}, transports=["websocket"],
                         wait_timeout=30)
        self.thread.start()
        return self

    def cycles(self):
        with self.lock:
            return len(self.results)

    def _send(self, kind, payload):
        """Send one request; the ack, or None if it was lost (disconnected, timed out)."""
        try:
            ack = self.sio.call(kind, payload, timeout=15)
        except (socketio.exceptions.TimeoutError, socketio.exceptions.SocketIOError):
            return None
        rid = payload["request_id"]
        with self.lock:
            if ack.get("ok"):
                self.accepted.add(rid)
            elif rid not in self.accepted:
                # (A refused re-send of an accepted request changes nothing:
                # the accepted one is in flight and its result will come.)
                self.unanswered.pop(rid, None)
                self.refused[rid] = ack["error"]
                self.rejected.append(ack)
        return ack

    def _resync(self):
        """After a (re)connect: fresh snapshot, then re-send what has no result."""
        try:
            ack = self.sio.call("join_event", {"event_id": self.event_id}, timeout=15)
        except (socketio.exceptions.TimeoutError, socketio.exceptions.SocketIOError):
            return False
        if not ack.get("ok"):
            return False
        with self.lock:
            self.joins += 1
            pending = list(self.unanswered.items())
        for rid, (kind, payload) in pending:
            self._send(kind, payload)
        return True

    def _retry_later(self, error):
        """True after waiting what a refusal for now asks (with jitter); False for a final one."""
        if not error or error.get("code") not in self.RETRY_LATER or self.stop.is_set():
            return False
        wait = (error.get("details") or {}).get("retry_after_s") or 1
        self.stop.wait(min(wait, 10) * self.rng.uniform(0.5, 1.5))
        return not self.stop.is_set()

    def _request(self, kind, payload, seen):
        """Send and wait for the result, resyncing on reconnects; (result or None, seen)."""
        rid = uuid.uuid4().hex
        payload = dict(payload, request_id=rid)
        with self.lock:
            self.unanswered[rid] = (kind, payload)
        self._send(kind, payload)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with self.lock:
                result = self.results.get(rid)
                refused = self.refused.pop(rid, None)
                connects = self.connects
            if result is not None and not result.get("ok") and self._retry_later(
                    result.get("error")):
                # Refused by a worker, nothing recorded: the same request_id may be sent again.
                with self.lock:
                    self.results.pop(rid, None)
                    self.unanswered[rid] = (kind, payload)
                self._send(kind, payload)
                continue
            if result is not None:
                return result, seen
            if refused is not None:
                if not self._retry_later(refused):
                    return None, seen  # refused for good in the ack
                with self.lock:
                    self.unanswered[rid] = (kind, payload)
                self._send(kind, payload)
                continue
            if self.sio.connected and connects != seen:
                if self._resync():
                    seen = connects
            time.sleep(0.02)
        self.errors.append(f"no result for {kind} {rid}")
        return None, seen

    def _run(self):
        seen = 0
        while not self.stop.is_set():
            if not self.sio.connected:
                time.sleep(0.05)
                continue
            with self.lock:
                connects = self.connects
            if connects != seen:
                if not self._resync():
                    time.sleep(0.1)
                    continue
                seen = connects
            seats = sorted(self.rng.sample(self.seat_ids, self.rng.choice((1, 1, 2))))
            result, seen = self._request(
                "hold", {"event_id": self.event_id, "seat_ids": seats}, seen)
            if result and result.get("ok"):
                _released, seen = self._request("release", {"hold_id": result["hold_id"]}, seen)
            time.sleep(self.rng.uniform(0.01, 0.05))

    def finish(self):
        self.stop.set()
        self.thread.join(240)

    def close(self):
        self.stop.set()
        try:
            self.sio.disconnect()
        except Exception:
            pass


def _progress(clients, at_least):
    """Every client has at least `at_least` more results than when this was made."""
    start = {id(c): c.cycles() for c in clients}
    return lambda: all(c.cycles() >= start[id(c)] + at_least for c in clients)


def _instances(web):
    """{pid: sockets connected to that web process} from each one's /readyz."""
    out = {}
    for w in web:
        body = requests.get(w["url"] + "/readyz", timeout=5).json()
        out[w["pid"]] = body["instance"]["sockets"]
    return out


@pytest.fixture
def cluster_env(proc_env, tmp_path):
    env = dict(proc_env)
    env.update(TASK_VISIBILITY_TIMEOUT_SECONDS="10", REQUEUE_AFTER_SECONDS="10",
               DRAIN_NOTICE_SECONDS="1", DRAIN_GRACE_SECONDS="1",
               BOXOFFICE_RUN_DIR=str(tmp_path / "run"))
    yield env
    if (tmp_path / "run" / "cluster.json").exists():  # the test failed before `down`
        subprocess.run([sys.executable, str(CLUSTER), "down"], cwd=ROOT, env=env,
                       capture_output=True, timeout=240)
        kill_leftovers(tmp_path / "run")


def test_cluster_scales_drains_and_survives_a_killed_worker(cluster_env, clean_db, tmp_path):
    env = cluster_env
    port = free_port()
    up = run_cluster(env, "up", "--web", "2", "--workers", "2", "--port", str(port))
    clients = []
    try:
        assert up["lb"] == f"http://127.0.0.1:{port}"
        assert len(up["web"]) == 2 and len(up["workers"]) == 2
        assert up["beat"]["pid"] and up["nginx"]["pid"]
        lb = up["lb"]
        # Readiness is for the inside: each web process answers it, the balancer does not.
        assert all(requests.get(w["url"] + "/readyz", timeout=5).status_code == 200
                   for w in up["web"])
        assert requests.get(lb + "/readyz", timeout=5).status_code == 404

        event_id = create_event(clean_db, rows=2, per_row=10)
        seat_ids = [s["id"] for s in requests.get(
            f"{lb}/api/v1/events/{event_id}/seats", timeout=10).json()["seats"]]
        before = {w["url"]: metric_samples(w["url"]) for w in up["web"]}

        for i in range(CLIENTS):
            uid, token = sign_up(lb)
            clients.append(LoopingBuyer(lb, token, uid, event_id, seat_ids, seed=i).start())
        wait_until(_progress(clients, 3), 120, "every client holding and releasing",
                   interval=0.2)

        # Scale out to three web processes while the load runs.
        scaled = run_cluster(env, "scale", "--web", "3")
        assert len(scaled["web"]) == 3 and len(scaled["workers"]) == 2
        assert [w["pid"] for w in scaled["web"][:2]] == [w["pid"] for w in up["web"]]
        conf = (Path(env["BOXOFFICE_RUN_DIR"]) / "nginx" / "nginx.conf").read_text()
        assert all(f"server 127.0.0.1:{w['url'].rsplit(':', 1)[1]}" in conf for w in scaled["web"])
        late = []
        for i in range(4):  # new connections spread over all three
            uid, token = sign_up(lb)
            late.append(LoopingBuyer(lb, token, uid, event_id, seat_ids, seed=100 + i).start())
        clients.extend(late)
        wait_until(_progress(clients, 2), 120, "progress after scaling out", interval=0.2)

        # /metrics on every web process: valid Prometheus text, counters moving.
        for w in scaled["web"]:
            now = metric_samples(w["url"])
            old = before.get(w["url"], {})
            for name, labels in (("boxoffice_requests_total", {"event": "hold",
                                                               "outcome": "accepted"}),
                                 ("boxoffice_results_total", {"event": "hold_result"}),
                                 ("boxoffice_results_total", {"event": "release_result",
                                                              "outcome": "ok"}),
                                 ("boxoffice_click_to_result_seconds_count", {"event": "hold_result"}),
                                 ("boxoffice_task_batch_requests_count", {}),
                                 ("boxoffice_seats_changed_batches_total", {}),
                                 ("boxoffice_seats_changed_seats_total", {}),
                                 ("boxoffice_seats_changed_recipients_total", {})):
                assert total(now, name, **labels) > total(old, name, **labels), (w["url"], name)
            assert total(now, "boxoffice_connected_sockets") == len(clients)
            assert ("boxoffice_queue_depth", (("queue", env["CELERY_QUEUE"]),)) in now

        # Drain the busiest web process.
        sockets = _instances(scaled["web"])
        victim = max(scaled["web"], key=lambda w: sockets[w["pid"]])
        assert sockets[victim["pid"]] > 0, sockets
        connects_before = {id(c): c.connects for c in clients}
        os.kill(victim["pid"], signal.SIGTERM)
        wait_until(lambda: not pid_alive(victim["pid"]), 60, "the drained process to exit",
                   interval=0.1)
        drained = [c for c in clients if c.drain_notices]
        assert len(drained) == sockets[victim["pid"]]
        # Its clients came back (through nginx, so to another process), re-joined, and go on.
        wait_until(lambda: all(c.sio.connected and c.connects > connects_before[id(c)]
                               and c.joins >= 2 for c in drained), 60,
                   "drained clients reconnected and resynced", interval=0.1)
        wait_until(_progress(drained, 2), 120, "drained clients working again", interval=0.2)
        status = run_cluster(env, "status")
        assert [w["pid"] for w in status["web"]] == [w["pid"] for w in scaled["web"]
                                                      if w["pid"] != victim["pid"]]
        assert {"role": "web", "pid": victim["pid"]} in status["exited"]
        assert sum(_instances(status["web"]).values()) == len(clients)

        # Kill one worker outright (it and its prefork children).
        worker = status["workers"][0]["pid"]
        os.killpg(worker, signal.SIGKILL)
        wait_until(lambda: not process_group(worker), 30, "the killed worker gone", interval=0.1)
        wait_until(_progress(clients, 3), 180, "progress with one worker left", interval=0.2)

        # `scale` replaces the dead worker; scaling down is a warm shutdown under load.
        replaced = run_cluster(env, "scale", "--workers", "2")
        assert len(replaced["workers"]) == 2 and worker not in [w["pid"] for w in
                                                               replaced["workers"]]
        wait_until(_progress(clients, 2), 120, "progress with two workers", interval=0.2)
        newest = replaced["workers"][-1]["pid"]
        state = json.loads((Path(env["BOXOFFICE_RUN_DIR"]) / "cluster.json").read_text())
        newest_log = Path(next(w["log"] for w in state["workers"] if w["pid"] == newest))
        shrunk = run_cluster(env, "scale", "--workers", "1")
        assert [w["pid"] for w in shrunk["workers"]] == [replaced["workers"][0]["pid"]]
        assert not process_group(newest)
        assert "Warm shutdown" in newest_log.read_text()
        wait_until(_progress(clients, 2), 120, "progress after the warm shutdown", interval=0.2)

        for c in clients:
            c.finish()
        for c in clients:
            with c.lock:
                missing = c.accepted - set(c.results)
            assert not missing, f"accepted requests without a result: {missing}"
            assert not c.errors, c.errors
        accepted = sum(len(c.accepted) for c in clients)
        assert accepted > 0
        rejections = {a["error"]["code"] for c in clients for a in c.rejected}
        assert rejections <= {"limit_exceeded", "rate_limited", "busy"}, rejections

        final = run_cluster(env, "status")
        assert len(final["web"]) == 2 and len(final["workers"]) == 1
        for w in final["web"]:
            metric_samples(w["url"])  # still valid text after a process died
    finally:
        for c in clients:
            c.close()

    # The database: no seat held twice, every held seat in exactly one open hold.
    seats, holds, duplicate_records = db_state(clean_db, event_id)
    assert_consistent(seats, holds)
    assert not duplicate_records
    audit_env = dict(os.environ, DATABASE_URL=clean_db, SECRET_KEY=env["SECRET_KEY"])
    audit_env.pop("REDIS_URL", None)
    audit = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "booking", "audit",
                            "--event", str(event_id)], cwd=ROOT, env=audit_env,
                           capture_output=True, text=True, timeout=60)
    assert audit.returncode == 0, audit.stdout + audit.stderr

    down = run_cluster(env, "down")
    assert down["stopped"] is True
    everything = ([w["pid"] for w in down["web"]] + [w["pid"] for w in down["workers"]]
                  + [down["beat"]["pid"], down["nginx"]["pid"], victim["pid"]])
    assert not [p for p in everything if pid_alive(p)]
    assert not process_group(up["workers"][1]["pid"])  # no orphaned prefork child
    with pytest.raises(requests.ConnectionError):
        requests.get(lb + "/healthz", timeout=5)
