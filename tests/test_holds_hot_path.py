"""The web's cost per hold request, counted (issue #13), and the open-hold count it reads
instead of the database: kept by the workers after commit, never trusted to refuse a
buyer for long, never able to let one past MAX_OPEN_HOLDS (the worker decides).
"""
import json
import os
import signal
import threading
import time
import uuid

import pytest

from booking.extensions import socketio
from booking.waiting_room.gates import GateCache
from tests.conftest import create_event
from tests.harness import ROOT, Buyer, wait_until
from tests.test_holds_idempotency import _event

COUNTER = ROOT / "tests" / "roundtrips"


def _dump(pid, path, proc=None):
    """What the process counted so far, and its collector's state
    (tests/roundtrips/sitecustomize.py)."""
    before = json.loads(path.read_text())["seq"] if path.exists() else 0
    os.kill(pid, signal.SIGRTMIN + 3)
    wait_until(lambda: path.exists() and json.loads(path.read_text())["seq"] > before, 10,
               "round-trip counts written", proc)
    return json.loads(path.read_text())


def _snapshot(proc, path):
    return _dump(proc.pid, path, proc)["counts"]


def _counted_env(path):
    pythonpath = os.pathsep.join(p for p in (str(COUNTER), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": pythonpath, "BO_COUNT_FILE": str(path)}


@pytest.mark.timeout(240)
def test_a_hold_request_costs_the_web_one_redis_round_trip_and_no_database_read(
        cluster, clean_db, make_users, tmp_path):
    """Counted in a real web process: per hold request, one Redis round trip (the
    admission script: rate budgets, repeat lookup, in-flight begin, open-hold cap)
    besides handing the batch to the broker, and no SQL at all once the event's
    seat map and gate are cached. (Before #13: 4 SQL and 6-7 Redis round trips.)"""
    event_id = create_event(clean_db, rows=10, per_row=10)
    counts = tmp_path / "web-counts.json"
    web = cluster.web(extra_env={**_counted_env(counts),
                                 "MAX_OPEN_HOLDS": "1000", "USER_RATE_LIMIT": "1000/second"})
    (uid, tok), = make_users(1)
    buyer = Buyer(web.url, tok, uid).connect()
    try:
        seats = [s["id"] for s in buyer.join(event_id)["seats"]]

        def hold(seat):
            rid = uuid.uuid4().hex
            ack = buyer.call("hold", {"request_id": rid, "event_id": event_id,
                                      "seat_ids": [seat]})
            assert ack == {"ok": True, "request_id": rid, "queued": True}, ack
        for seat in seats[:3]:
            hold(seat)  # warm: the seat map, the script loaded, the broker connection
        n = 80
        first = _snapshot(web, counts)
        started = time.monotonic()
        for seat in seats[3:3 + n]:
            hold(seat)
        seconds = time.monotonic() - started
        last = _snapshot(web, counts)
    finally:
        buyer.close()
    total = {k: last.get(k, 0) - first.get(k, 0) for k in set(first) | set(last)}
    per_hold = {k: v / n for k, v in total.items()}
    print(f"round trips per hold request ({n} in {seconds:.1f} s):", sorted(per_hold.items()))
    # What is not per request is per second, whatever the machine's speed: the gate
    # read at most once a TTL (a ping, the SELECT, the rollbacks), and the process's
    # own loops (Redis restart watch, seat-status flush). A per-request read or command
    # would add n, more than these allow unless the n requests took 20 s or more.
    ticks = seconds / GateCache.TTL_SECONDS + 1
    assert total.get("mysql:SELECT", 0) <= ticks, (seconds, total)
    assert total.get("mysql", 0) <= 4 * ticks, (seconds, total)
    assert 1.0 <= per_hold.get("redis:EVALSHA", 0) <= 1.05, per_hold
    broker = sum(v for k, v in total.items() if k in ("redis:LPUSH", "redis:MULTI"))
    # A connection the pool opens meanwhile (two green threads wanting one at once)
    # costs its handshake (HELLO, CLIENT SETINFO/SETNAME) once, not per request:
    # fresh-clone run 33 counted one such connection in a 1.3 s window. A connection
    # per request would be n HELLOs.
    handshakes = total.get("redis:HELLO", 0) + total.get("redis:CLIENT", 0)
    assert total.get("redis:HELLO", 0) <= 2, (seconds, total)
    others = total.get("redis", 0) - total.get("redis:EVALSHA", 0) - broker - handshakes
    assert others <= 2 * (seconds + 1), (seconds, total)


def _tasks_received(worker):
    return sum(1 for line in worker.log_path.read_text().splitlines()
               if "process_requests[" in line and line.endswith("received"))


@pytest.mark.timeout(240)
def test_a_batch_of_answers_is_one_publish(cluster, clean_db, make_users, tmp_path):
    """A worker publishes a task's answers (and notices) in one message, not one each:
    counted in its prefork children, per task, with many holds per task. Each task
    publishes twice: the answers (Socket.IO's queue) and the seat changes."""
    import psutil
    event_id = create_event(clean_db, rows=2, per_row=20)
    worker = cluster.worker(concurrency=1, extra_env={
        **_counted_env(tmp_path / "worker-{pid}.json"), "MAX_OPEN_HOLDS": "1000"})
    # Requests that wait a while in the web process go to the worker in one task.
    web = cluster.web(extra_env={"MAX_OPEN_HOLDS": "1000", "USER_RATE_LIMIT": "1000/second",
                                 "REQUEST_BATCH_INTERVAL_MS": "300",
                                 "REQUEST_BATCH_FULL_RATE": "0"})
    (uid, tok), = make_users(1)
    buyer = Buyer(web.url, tok, uid).connect()
    children = psutil.Process(worker.pid).children()
    assert len(children) == 1
    child, counts = children[0].pid, tmp_path / f"worker-{children[0].pid}.json"
    try:
        seats = [s["id"] for s in buyer.join(event_id)["seats"]]
        warm = uuid.uuid4().hex
        buyer.call("hold", {"request_id": warm, "event_id": event_id, "seat_ids": [seats[0]]})
        assert buyer.result_for("hold_result", warm)["ok"]
        tasks_before = _tasks_received(worker)
        first = _dump(child, counts, worker)["counts"]
        rids = [uuid.uuid4().hex for _ in seats[1:31]]
        for rid, seat in zip(rids, seats[1:31]):
            buyer.sio.emit("hold", {"request_id": rid, "event_id": event_id,
                                    "seat_ids": [seat]})
        answers = [buyer.result_for("hold_result", rid) for rid in rids]
        last = _dump(child, counts, worker)["counts"]
        tasks = _tasks_received(worker) - tasks_before
    finally:
        buyer.close()
    assert all(a["ok"] for a in answers), answers
    publishes = last.get("redis:PUBLISH", 0) - first.get("redis:PUBLISH", 0)
    print(f"{len(rids)} holds in {tasks} tasks: {publishes} publishes")
    assert tasks <= 10, "the holds were not batched: nothing measured"
    assert publishes == 2 * tasks, (publishes, tasks)


@pytest.mark.timeout(240)
def test_web_and_worker_processes_freeze_start_up_for_the_collector(cluster, tmp_path):
    """After start-up, a web process, a worker and each of its prefork children have
    frozen what start-up made (full collections no longer walk it) and collect the
    young generation every YOUNG_THRESHOLD allocations (booking/gc_tuning.py)."""
    import psutil

    from booking.gc_tuning import YOUNG_THRESHOLD
    web = cluster.web(extra_env=_counted_env(tmp_path / "web.json"))
    worker = cluster.worker(concurrency=2,
                            extra_env=_counted_env(tmp_path / "worker-{pid}.json"))
    pids = [(web.pid, tmp_path / "web.json")] + [
        (p.pid, tmp_path / f"worker-{p.pid}.json")
        for p in [psutil.Process(worker.pid), *psutil.Process(worker.pid).children()]]
    assert len(pids) == 4
    for pid, path in pids:
        state = _dump(pid, path)
        assert state["gc_frozen"] > 10_000, (pid, state["gc_frozen"])
        assert state["gc_threshold"][0] == YOUNG_THRESHOLD, (pid, state["gc_threshold"])


def test_hot_socket_events_skip_the_flask_request_context(app, make_users):
    """hold, release and pay run with an app context only (Flask-SocketIO would push a
    request context and copy the session for each); other events keep theirs."""
    import flask
    event_id, seats = _event(app, seats=4)
    (uid, tok), = make_users(1)
    client = socketio.test_client(app, auth={"token": tok})
    pushed = []
    original = app.request_context

    def counting(environ):
        pushed.append(environ.get("PATH_INFO"))
        return original(environ)
    app.request_context = counting
    try:
        ack = client.emit("hold", {"request_id": "h0", "event_id": event_id,
                                   "seat_ids": [seats[0]]}, callback=True)
        assert ack == {"ok": True, "request_id": "h0", "queued": True}
        assert client.emit("release", {"request_id": "r0", "hold_id": 999_999},
                           callback=True)["error"]["code"] == "not_found"
        assert pushed == []
        assert client.emit("join_event", {"event_id": event_id}, callback=True)["ok"]
        assert len(pushed) == 1
    finally:
        app.request_context = original
        client.disconnect()
    assert not flask.has_request_context()


def _results(client, received):
    received.extend(m["args"][0] for m in client.get_received() if m["name"] == "hold_result")
    return received


def _hold(client, received, rid, event_id, seat):
    ack = client.emit("hold", {"request_id": rid, "event_id": event_id, "seat_ids": [seat]},
                      callback=True)
    if not ack["ok"]:
        return ack
    wait_until(lambda: any(r["request_id"] == rid for r in _results(client, received)), 30,
               f"hold_result {rid}")
    return next(r for r in received if r["request_id"] == rid)


def test_open_holds_are_counted_from_the_workers_answers(app, make_users):
    """No database read: the third hold is refused in the ack from the ledger's count,
    and a release answered by the worker gives the slot back at once."""
    event_id, seats = _event(app, seats=4)
    (uid, tok), = make_users(1)
    client = socketio.test_client(app, auth={"token": tok})
    received = []
    first = _hold(client, received, "h0", event_id, seats[0])
    assert first["ok"] and _hold(client, received, "h1", event_id, seats[1])["ok"]
    third = client.emit("hold", {"request_id": "h2", "event_id": event_id,
                                 "seat_ids": [seats[2]]}, callback=True)
    assert third["error"]["details"]["limit"] == "open_holds"
    ack = client.emit("release", {"request_id": "r0", "hold_id": first["hold_id"]},
                      callback=True)
    assert ack["ok"]
    wait_until(lambda: _hold(client, received, "h3", event_id, seats[2]).get("ok"), 30,
               "a hold once the release is answered")
    client.disconnect()


def test_a_lost_ledger_update_never_lets_a_buyer_past_the_cap(app, make_users):
    """The ledger forgot both open holds (Redis lost the update): the edge lets the
    third request through, and the worker, counting under lock, refuses it."""
    event_id, seats = _event(app, seats=4)
    (uid, tok), = make_users(1)
    client = socketio.test_client(app, auth={"token": tok})
    received = []
    assert _hold(client, received, "h0", event_id, seats[0])["ok"]
    assert _hold(client, received, "h1", event_id, seats[1])["ok"]
    with app.app_context():
        app.extensions["boxoffice"].ledger.reset_open_holds(uid, {})
    third = _hold(client, received, "h2", event_id, seats[2])
    assert third["ok"] is False and third["error"]["details"]["limit"] == "open_holds"
    client.disconnect()


def test_a_lost_ledger_update_never_locks_a_buyer_out(app, make_users):
    """The ledger still counts two holds that ended (their 'ended' update lost): before
    refusing, the edge counts the buyer's open holds again in the database."""
    event_id, seats = _event(app, seats=4)
    (uid, tok), = make_users(1)
    with app.app_context():
        ledger = app.extensions["boxoffice"].ledger
        ledger.reset_open_holds(uid, {991: time.time() + 300, 992: time.time() + 300})
    client = socketio.test_client(app, auth={"token": tok})
    received = []
    assert _hold(client, received, "h0", event_id, seats[0])["ok"]
    assert _hold(client, received, "h1", event_id, seats[1])["ok"]
    third = client.emit("hold", {"request_id": "h2", "event_id": event_id,
                                 "seat_ids": [seats[2]]}, callback=True)
    assert third["error"]["details"]["limit"] == "open_holds"   # two real ones now
    client.disconnect()


def _concurrent_seat_maps(app, event_id, n):
    """n threads ask this process's seat map of event_id at once: [(map or error)]."""
    from booking import intake
    barrier, answers = threading.Barrier(n), []

    def ask():
        with app.app_context():
            barrier.wait()
            try:
                answers.append(intake.seat_map(event_id))
            except Exception as err:   # noqa: BLE001 (the test looks at what came back)
                answers.append(err)
    threads = [threading.Thread(target=ask) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return answers


def test_a_seat_map_is_read_once_however_many_requests_want_it_at_once(app, clean_db,
                                                                       monkeypatch):
    """At a sale's start every request of a web process wanted the event's seat map before
    it was cached, and each read all of it (60,000 rows each at the bench's event)."""
    from booking import catalog
    event_id = create_event(clean_db, rows=4, per_row=10)
    real, reads = catalog.seat_prices, []

    def slow_read(session, eid):
        reads.append(eid)
        prices = real(session, eid)
        time.sleep(0.3)       # the read still running when the other requests arrive
        return prices
    monkeypatch.setattr(catalog, "seat_prices", slow_read)
    answers = _concurrent_seat_maps(app, event_id, 8)
    assert reads == [event_id]
    assert len(answers) == 8 and all(len(a) == 40 for a in answers), answers
    assert _concurrent_seat_maps(app, event_id + 1000, 3) == [None] * 3   # no such event
    assert reads == [event_id, event_id + 1000]


def test_a_failed_seat_map_read_fails_its_waiters_and_the_next_request_reads_again(
        app, clean_db, monkeypatch):
    from booking import catalog
    event_id = create_event(clean_db, rows=2, per_row=10)
    real, reads = catalog.seat_prices, []

    def failing_read(session, eid):
        reads.append(eid)
        time.sleep(0.3)
        raise ConnectionError("the database went away")
    monkeypatch.setattr(catalog, "seat_prices", failing_read)
    answers = _concurrent_seat_maps(app, event_id, 5)
    assert reads == [event_id]
    assert len(answers) == 5 and all(isinstance(a, ConnectionError) for a in answers)
    monkeypatch.setattr(catalog, "seat_prices", real)
    assert [len(a) for a in _concurrent_seat_maps(app, event_id, 2)] == [20, 20]
