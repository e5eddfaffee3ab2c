"""Answers that never come: every accepted request gets its result, whatever pub/sub loses.

Real processes (tests/harness.py) behind real TCP proxies (tests/netcut.py) and a
private redis-server (restartable, killable without touching anyone else's):

- a web process whose subscription Redis drops (`CLIENT KILL TYPE pubsub`) tells its
  sockets to re-send;
- a result published while that subscription is down reaches the buyer through the
  client's re-send (the recovery rule of docs/API.md), answered from the ledger;
- a worker whose publish fails runs the task again and the result arrives once Redis
  answers; a client's re-send covers it meanwhile;
- a re-send after Redis came back empty is accepted again and decided once;
- an ack never waits on a stalled database: it answers `busy`.
"""
import time
import uuid

import redis
import sqlalchemy as sa

from tests.conftest import REDIS_URL, create_event
from tests.harness import RESEND_AFTER_S, wait_until
from tests.conftest import through as _through
from tests.test_outages import PrivateRedis


def _recorded(db_url, request_id):
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT COUNT(*) FROM request_records "
                                        "WHERE request_id = :r"), {"r": request_id}).scalar()
    finally:
        engine.dispose()


def _count(db_url, table):
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar()
    finally:
        engine.dispose()


def _hold_status(db_url, hold_id):
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT status FROM holds WHERE id = :h"),
                                {"h": hold_id}).scalar()
    finally:
        engine.dispose()


def _hold(seat, event_id):
    return {"request_id": uuid.uuid4().hex, "event_id": event_id, "seat_ids": [seat]}


def _held(buyer, seat, event_id):
    """A granted hold of the seat (through the worker): its id."""
    payload = _hold(seat, event_id)
    assert buyer.call("hold", payload)["ok"]
    wait_until(lambda: [r for r in buyer.results("hold_result")
                        if r["request_id"] == payload["request_id"]], 30, "the hold granted")
    [result] = [r for r in buyer.results("hold_result")
                if r["request_id"] == payload["request_id"]]
    assert result["ok"], result
    return result["hold_id"]


def _release(hold_id):
    return {"request_id": uuid.uuid4().hex, "hold_id": hold_id}


def test_killed_subscription_tells_sockets_to_resend(cluster, clean_db, buyers, tmp_path):
    """Redis drops the web process's subscriptions without restarting: redis-py
    re-subscribes on its own, and the process tells its sockets to re-send."""
    private = PrivateRedis(tmp_path)
    try:
        web = cluster.web(extra_env={"REDIS_URL": private.url})
        buyer = buyers(web.url)
        admin = redis.Redis.from_url(private.url)
        # The Socket.IO message queue and the seat-change channels.
        wait_until(lambda: len(admin.pubsub_channels()) >= 2, 20, "the web process subscribed")
        assert not buyer.results("resend")
        admin.client_kill_filter(_type="pubsub")
        wait_until(lambda: buyer.results("resend"), 20, "the socket told to re-send", web)
        assert buyer.results("resend")[0]["reason"] == "subscription_restored"
        assert buyer.sio.connected   # the socket stayed up: only the re-send recovers
        wait_until(lambda: len(admin.pubsub_channels()) >= 2, 20, "subscribed again")
    finally:
        cluster.stop()
        private.stop()


def test_result_lost_while_unsubscribed_is_recovered(cluster, clean_db, buyers, redis_proxy):
    """The web process's subscription is down while the worker publishes the result:
    the buyer's socket stays up and nothing arrives, until the client re-sends the
    request (same request_id) and the web process answers it from the ledger; once
    the subscription is back, the process tells its sockets to re-send."""
    event_id = create_event(clean_db, rows=1, per_row=4)
    cluster.worker()
    web = cluster.web(extra_env={
        "SOCKETIO_MESSAGE_QUEUE_URL": _through(redis_proxy, REDIS_URL)})
    buyer = buyers(web.url)
    seat = buyer.join(event_id)["seats"][0]["id"]

    redis_proxy.cut()
    wait_until(lambda: web.log_contains("socket message queue unavailable"), 20,
               "the web process lost its subscription", web)
    payload = _hold(seat, event_id)
    sent = time.monotonic()
    ack = buyer.request("hold", payload)
    assert ack["ok"] and ack["queued"], ack
    wait_until(lambda: _recorded(clean_db, payload["request_id"]), 30, "decided by the worker")
    # Published to nobody: the socket is up and silent.
    time.sleep(0.5)
    assert not buyer.results("hold_result")
    assert buyer.sio.connected

    result = buyer.result_for("hold_result", payload["request_id"], timeout=RESEND_AFTER_S + 10)
    assert result["ok"] and result["seat_ids"] == [seat]
    assert buyer.resends >= 1 and time.monotonic() - sent >= RESEND_AFTER_S - 0.5
    assert len(buyer.results("hold_result")) == 1
    assert _count(clean_db, "holds") == 1

    redis_proxy.restore()
    wait_until(lambda: buyer.results("resend"), 60, "the socket told to re-send", web)


def _worker_publishing_through(cluster, clean_db, buyers, redis_proxy):
    """A worker whose publishes go through redis_proxy, a web process, a buyer who joined a
    new event: (worker, buyer, event_id, a seat's id)."""
    event_id = create_event(clean_db, rows=1, per_row=4)
    worker = cluster.worker(extra_env={
        "SOCKETIO_MESSAGE_QUEUE_URL": _through(redis_proxy, REDIS_URL)})
    web = cluster.web()
    buyer = buyers(web.url)
    return worker, buyer, event_id, buyer.join(event_id)["seats"][0]["id"]


def test_failed_publish_is_sent_again_by_the_worker(cluster, clean_db, buyers, redis_proxy):
    """The worker records the answer, then its publish fails (Redis unreachable for
    it): the task runs again and the result arrives once Redis answers, without the
    buyer sending anything again."""
    worker, buyer, event_id, seat = _worker_publishing_through(cluster, clean_db, buyers,
                                                               redis_proxy)
    redis_proxy.cut()
    payload = _hold(seat, event_id)
    ack = buyer.call("hold", payload)           # sent once: no client re-send here
    assert ack["ok"] and ack["queued"], ack
    wait_until(lambda: worker.log_contains("could not send results; retrying"), 60,
               "the worker's publish failed and the task is retried", worker)
    assert _recorded(clean_db, payload["request_id"]) == 1
    assert not buyer.results("hold_result")

    redis_proxy.restore()
    result = buyer.result_for("hold_result", payload["request_id"], timeout=30)
    assert result["ok"] and result["seat_ids"] == [seat]
    assert _count(clean_db, "holds") == 1


def test_a_payments_failed_publish_is_sent_again_by_the_worker(cluster, clean_db, buyers,
                                                                redis_proxy):
    """The same for a payment: charged, sold and recorded, its answer not published. The
    task runs again and the answer arrives once Redis answers, without the buyer sending
    anything again; the rerun charges nothing more and makes no second order."""
    from tests.checkout_helpers import card
    worker, buyer, event_id, seat = _worker_publishing_through(cluster, clean_db, buyers,
                                                               redis_proxy)
    hold_id = _held(buyer, seat, event_id)

    redis_proxy.cut()
    payload = {"request_id": uuid.uuid4().hex, "hold_id": hold_id,
               "idempotency_key": uuid.uuid4().hex, "card": card("4242424242424242")}
    ack = buyer.call("pay", payload)            # sent once: no client re-send here
    assert ack["ok"] and ack["queued"], ack
    wait_until(lambda: worker.log_contains("could not send payments' results; retrying"), 60,
               "the worker's publish failed and the task is retried", worker)
    assert _recorded(clean_db, payload["request_id"]) == 1
    assert _count(clean_db, "orders") == 1
    assert not buyer.results("payment_result")

    redis_proxy.restore()
    result = buyer.result_for("payment_result", payload["request_id"], timeout=30)
    assert result["ok"] and result["order_id"], result
    assert _count(clean_db, "orders") == 1
    assert _count(clean_db, "sim_charges") == 1
    assert _hold_status(clean_db, hold_id) == "paid"


def test_client_resend_covers_a_publish_that_never_succeeds(cluster, clean_db, buyers,
                                                             redis_proxy):
    """The worker's publish path stays cut: the client's re-send is answered from the
    ledger (queued: false and the recorded result), the hold granted once."""
    event_id = create_event(clean_db, rows=1, per_row=4)
    cluster.worker(extra_env={"SOCKETIO_MESSAGE_QUEUE_URL": _through(redis_proxy, REDIS_URL)})
    web = cluster.web()
    buyer = buyers(web.url)
    seat = buyer.join(event_id)["seats"][0]["id"]

    redis_proxy.cut()
    payload = _hold(seat, event_id)
    assert buyer.request("hold", payload)["ok"]
    result = buyer.result_for("hold_result", payload["request_id"], timeout=RESEND_AFTER_S + 15)
    assert result["ok"] and buyer.resends >= 1
    again = buyer.call("hold", payload)
    assert again == {"ok": True, "request_id": payload["request_id"], "queued": False}
    assert _count(clean_db, "holds") == 1


def test_resend_after_redis_came_back_empty_is_decided_once(cluster, clean_db, buyers,
                                                            tmp_path):
    """The ledger is gone with Redis: a re-sent request that had been decided is
    accepted again, and the worker answers it from its durable record (the same
    hold), never holding twice."""
    private = PrivateRedis(tmp_path)
    try:
        env = {"REDIS_URL": private.url}
        event_id = create_event(clean_db, rows=1, per_row=4)
        cluster.worker(extra_env=env)
        web = cluster.web(extra_env=env)
        buyer = buyers(web.url)
        seat = buyer.join(event_id)["seats"][0]["id"]
        payload = _hold(seat, event_id)
        assert buyer.request("hold", payload)["ok"]
        first = buyer.result_for("hold_result", payload["request_id"])
        assert first["ok"]
        sid = buyer.sio.get_sid()

        private.restart()
        wait_until(lambda: buyer.sio.connected and buyer.sio.get_sid() != sid, 60,
                   "the socket sent away and reconnected", web)

        def accepted():
            return buyer.call("hold", payload).get("ok")
        wait_until(accepted, 30, "the re-sent request accepted", interval=0.5)
        wait_until(lambda: len([r for r in buyer.results("hold_result")
                                if r["request_id"] == payload["request_id"]]) >= 2, 60,
                   "answered again")
        again = [r for r in buyer.results("hold_result")
                 if r["request_id"] == payload["request_id"]][-1]
        assert again == first
        assert _count(clean_db, "holds") == 1
        assert _recorded(clean_db, payload["request_id"]) == 1
    finally:
        cluster.stop()
        private.stop()


def test_ack_answers_busy_instead_of_waiting_on_a_stalled_database(cluster, clean_db, buyers,
                                                                   db_proxy):
    """The database stops answering (connections stay open, nothing comes back): a
    request whose ack reads the database (a release reads its hold) answers `busy`
    within seconds instead of waiting on it. A hold's ack reads no database at all."""
    event_id = create_event(clean_db, rows=1, per_row=4)
    cluster.worker()
    web = cluster.web(extra_env={"DATABASE_URL": _through(db_proxy, clean_db),
                                 "WEB_DB_TIMEOUT_SECONDS": "2"})
    buyer = buyers(web.url)
    seats = [s["id"] for s in buyer.join(event_id)["seats"]]
    hold_id = _held(buyer, seats[0], event_id)

    db_proxy.stall()
    started = time.monotonic()
    ack = buyer.call("release", _release(hold_id), timeout=30)
    waited = time.monotonic() - started
    assert ack["ok"] is False and ack["error"]["code"] == "busy", ack
    assert waited < 10, f"the ack waited {waited:.1f}s"
    assert ack["error"]["details"]["retry_after_s"] > 0


def test_ack_past_its_deadline_answers_busy_and_does_nothing(cluster, clean_db, buyers,
                                                             db_proxy):
    """Every database round trip of the web process takes 1 s (a slow network): the
    request's checks outlast ACK_DEADLINE_SECONDS, so the ack answers `busy` at once
    instead of accepting it late, and nothing is recorded or performed."""
    event_id = create_event(clean_db, rows=1, per_row=4)
    cluster.worker()
    web = cluster.web(extra_env={"DATABASE_URL": _through(db_proxy, clean_db),
                                 "ACK_DEADLINE_SECONDS": "2"})
    buyer = buyers(web.url)
    seats = [s["id"] for s in buyer.join(event_id)["seats"]]
    hold_id = _held(buyer, seats[0], event_id)

    db_proxy.delay_s = 0.5
    payload = _release(hold_id)
    started = time.monotonic()
    ack = buyer.call("release", payload, timeout=60)
    waited = time.monotonic() - started
    assert ack["ok"] is False and ack["error"]["code"] == "busy", (ack, waited)
    assert waited < 10, f"the ack waited {waited:.1f}s"
    db_proxy.delay_s = 0.0
    time.sleep(3)
    assert not buyer.results("release_result")
    assert _count(clean_db, "holds") == 1 and _hold_status(clean_db, hold_id) == "held"
