"""deploy/local/cluster end to end: nginx, web processes, Celery workers and beat on this machine.

One cluster for the whole module, and one test per step of its life, in order:
socket clients go through nginx and hold and release seats without pause while
the cluster scales out, one web process drains (SIGTERM) and one worker is
killed (SIGKILL). Every request a client saw accepted must get its result, the
drained process's clients must come back through another process and resync,
and the database must never show a seat held twice.

Each step depends on the ones before it: once a step fails, the later ones are
skipped (naming the step that failed) instead of failing for the same reason.
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
import redis
import requests
import socketio
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REDIS_URL, SECRET, _clean, create_event
from deploy.local import launcher
from deploy.local.launcher import group_pids as process_group
from deploy.local.launcher import pid_alive
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


def kill_leftovers(run_dir):
    """Last resort when `down` failed: SIGKILL the groups of whatever the state file names."""
    path = Path(run_dir) / "cluster.json"
    if path.exists():
        state = json.loads(path.read_text())
        entries = state["web"] + state["workers"] + [e for e in (state.get("beat"),
                                                               state.get("nginx")) if e]
        for e in entries:
            launcher.Process.from_record(e).kill_group()


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


class Run:
    """What the steps share: the environment, the cluster's answers, the clients."""

    def __init__(self, env, db_url):
        self.env, self.db_url = env, db_url
        self.run_dir = Path(env["BOXOFFICE_RUN_DIR"])
        self.port = free_port()
        self.up = self.lb = self.scaled = self.status = self.victim = None
        self.event_id = self.seat_ids = None
        self.clients = []
        self.replaced = self.shrunk = None
        self.failed_step = None


@pytest.fixture(scope="module")
def run(mysql_url, redis_namespace, tmp_path_factory):
    """The module's cluster: its own run folder, the session's database (emptied after)."""
    env = dict(os.environ)
    env.update(DATABASE_URL=mysql_url, REDIS_URL=REDIS_URL, REDIS_NAMESPACE=redis_namespace,
               CELERY_QUEUE=f"{redis_namespace}-q", SECRET_KEY=SECRET, LOG_LEVEL="INFO",
               PYTHONUNBUFFERED="1", TASK_VISIBILITY_TIMEOUT_SECONDS="10",
               REQUEUE_AFTER_SECONDS="10", DRAIN_NOTICE_SECONDS="1", DRAIN_GRACE_SECONDS="1",
               BOXOFFICE_RUN_DIR=str(tmp_path_factory.mktemp("cluster") / "run"))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    r = Run(env, mysql_url)
    yield r
    for c in r.clients:
        c.close()
    if (r.run_dir / "cluster.json").exists():  # a step failed before `down`
        subprocess.run([sys.executable, str(CLUSTER), "down"], cwd=ROOT, env=env,
                       capture_output=True, timeout=240)
        kill_leftovers(r.run_dir)
    _clean(mysql_url)
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{redis_namespace}*"):
        client.delete(key)


@pytest.fixture(autouse=True)
def step(run, request):
    """Skip a step once an earlier one failed; remember a failure."""
    if run.failed_step:
        pytest.skip(f"an earlier step failed: {run.failed_step}")
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.failed:
        run.failed_step = request.node.name


def test_up_starts_every_process_behind_nginx(run):
    up = run_cluster(run.env, "up", "--web", "2", "--workers", "2", "--port", str(run.port))
    run.up, run.lb = up, up["lb"]
    assert up["lb"] == f"http://127.0.0.1:{run.port}"
    assert len(up["web"]) == 2 and len(up["workers"]) == 2
    assert up["beat"]["pid"] and up["nginx"]["pid"] and up["after_sale"]["pid"]
    # Readiness is for the inside: each web process answers it, the balancer does not.
    assert all(requests.get(w["url"] + "/readyz", timeout=5).status_code == 200
               for w in up["web"])
    assert requests.get(run.lb + "/readyz", timeout=5).status_code == 404


def test_buyers_hold_and_release_through_nginx(run):
    run.event_id = create_event(run.db_url, rows=2, per_row=10)
    run.seat_ids = [s["id"] for s in requests.get(
        f"{run.lb}/api/v1/events/{run.event_id}/seats", timeout=10).json()["seats"]]
    run.metrics_before = {w["url"]: metric_samples(w["url"]) for w in run.up["web"]}
    for i in range(CLIENTS):
        uid, token = sign_up(run.lb)
        run.clients.append(LoopingBuyer(run.lb, token, uid, run.event_id, run.seat_ids,
                                        seed=i).start())
    wait_until(_progress(run.clients, 3), 120, "every client holding and releasing",
               interval=0.2)


def test_scale_out_adds_a_web_process_to_nginx(run):
    scaled = run_cluster(run.env, "scale", "--web", "3")
    run.scaled = scaled
    assert len(scaled["web"]) == 3 and len(scaled["workers"]) == 2
    assert [w["pid"] for w in scaled["web"][:2]] == [w["pid"] for w in run.up["web"]]
    conf = (run.run_dir / "nginx" / "nginx.conf").read_text()
    assert all(f"server 127.0.0.1:{w['url'].rsplit(':', 1)[1]}" in conf for w in scaled["web"])
    for i in range(4):  # new connections spread over all three
        uid, token = sign_up(run.lb)
        run.clients.append(LoopingBuyer(run.lb, token, uid, run.event_id, run.seat_ids,
                                        seed=100 + i).start())
    wait_until(_progress(run.clients, 2), 120, "progress after scaling out", interval=0.2)


def test_metrics_move_on_every_web_process(run):
    """/metrics on every web process: valid Prometheus text, counters moving."""
    for w in run.scaled["web"]:
        now = metric_samples(w["url"])
        old = run.metrics_before.get(w["url"], {})
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
        assert total(now, "boxoffice_connected_sockets") == len(run.clients)
        assert ("boxoffice_queue_depth", (("queue", run.env["CELERY_QUEUE"]),)) in now


def test_draining_a_web_process_moves_its_clients(run):
    """SIGTERM to the busiest web process: its clients come back through nginx and resync."""
    sockets = _instances(run.scaled["web"])
    victim = max(run.scaled["web"], key=lambda w: sockets[w["pid"]])
    run.victim = victim
    assert sockets[victim["pid"]] > 0, sockets
    connects_before = {id(c): c.connects for c in run.clients}
    os.kill(victim["pid"], signal.SIGTERM)
    wait_until(lambda: not pid_alive(victim["pid"]), 60, "the drained process to exit",
               interval=0.1)
    drained = [c for c in run.clients if c.drain_notices]
    assert len(drained) == sockets[victim["pid"]]
    wait_until(lambda: all(c.sio.connected and c.connects > connects_before[id(c)]
                           and c.joins >= 2 for c in drained), 60,
               "drained clients reconnected and resynced", interval=0.1)
    wait_until(_progress(drained, 2), 120, "drained clients working again", interval=0.2)


def test_status_reports_the_drained_process_as_exited(run):
    status = run_cluster(run.env, "status")
    run.status = status
    assert [w["pid"] for w in status["web"]] == [w["pid"] for w in run.scaled["web"]
                                                  if w["pid"] != run.victim["pid"]]
    assert {"role": "web", "pid": run.victim["pid"]} in status["exited"]
    assert sum(_instances(status["web"]).values()) == len(run.clients)


def test_scale_replaces_a_killed_worker(run):
    """kill -9 of one worker and its pool: the other goes on; `scale` starts a replacement."""
    worker = run.status["workers"][0]["pid"]
    os.killpg(worker, signal.SIGKILL)
    wait_until(lambda: not process_group(worker), 30, "the killed worker gone", interval=0.1)
    wait_until(_progress(run.clients, 3), 180, "progress with one worker left", interval=0.2)
    replaced = run_cluster(run.env, "scale", "--workers", "2")
    run.replaced = replaced
    assert len(replaced["workers"]) == 2
    assert worker not in [w["pid"] for w in replaced["workers"]]
    wait_until(_progress(run.clients, 2), 120, "progress with two workers", interval=0.2)


def test_scale_down_is_a_warm_worker_shutdown(run):
    newest = run.replaced["workers"][-1]["pid"]
    state = json.loads((run.run_dir / "cluster.json").read_text())
    newest_log = Path(next(w["log"] for w in state["workers"] if w["pid"] == newest))
    shrunk = run_cluster(run.env, "scale", "--workers", "1")
    assert [w["pid"] for w in shrunk["workers"]] == [run.replaced["workers"][0]["pid"]]
    assert not process_group(newest)
    assert "Warm shutdown" in newest_log.read_text()
    wait_until(_progress(run.clients, 2), 120, "progress after the warm shutdown", interval=0.2)


def test_every_accepted_request_has_its_result(run):
    for c in run.clients:
        c.finish()
    for c in run.clients:
        with c.lock:
            missing = c.accepted - set(c.results)
        assert not missing, f"accepted requests without a result: {missing}"
        assert not c.errors, c.errors
    assert sum(len(c.accepted) for c in run.clients) > 0
    rejections = {a["error"]["code"] for c in run.clients for a in c.rejected}
    assert rejections <= {"limit_exceeded", "rate_limited", "busy"}, rejections
    final = run_cluster(run.env, "status")
    assert len(final["web"]) == 2 and len(final["workers"]) == 1
    for w in final["web"]:
        metric_samples(w["url"])  # still valid text after a process died


def test_database_never_held_a_seat_twice(run):
    for c in run.clients:
        c.close()
    seats, holds, duplicate_records = db_state(run.db_url, run.event_id)
    assert_consistent(seats, holds)
    assert not duplicate_records
    audit_env = dict(os.environ, DATABASE_URL=run.db_url, SECRET_KEY=run.env["SECRET_KEY"])
    audit_env.pop("REDIS_URL", None)
    audit = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "booking", "audit",
                            "--event", str(run.event_id)], cwd=ROOT, env=audit_env,
                           capture_output=True, text=True, timeout=60)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_down_stops_every_process(run):
    down = run_cluster(run.env, "down")
    assert down["stopped"] is True
    everything = ([w["pid"] for w in down["web"]] + [w["pid"] for w in down["workers"]]
                  + [down["beat"]["pid"], down["nginx"]["pid"], down["after_sale"]["pid"],
                     run.victim["pid"]])
    assert not [p for p in everything if pid_alive(p)]
    assert not process_group(run.up["workers"][1]["pid"])  # no orphaned prefork child
    with pytest.raises(requests.ConnectionError):
        requests.get(run.lb + "/healthz", timeout=5)
