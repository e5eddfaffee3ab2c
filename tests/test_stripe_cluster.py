"""A worker SIGKILLed between Stripe's success and the order, in real processes.

The worker talks to localstripe through a proxy that holds Stripe's answers
back: the confirmation reaches Stripe (the card is charged) but the worker is
killed while it waits for the answer, before any order exists. A new worker
and beat (reconciliation) must make exactly one order, answer the buyer, and
leave the audit clean against Stripe's records.
"""
import json
import os
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa

from tests.conftest import SECRET, create_event
from tests.harness import ROOT, wait_until
from tests.stripe_server import GOOD, LocalStripe, SlowProxy, stripe_config


@pytest.fixture(scope="module")
def localstripe(tmp_path_factory):
    server = LocalStripe(tmp_path_factory.mktemp("localstripe"))
    yield server
    server.stop()


def _env(server, **extra):
    return {k: str(v) for k, v in stripe_config(server, **extra).items()}


def _scalar(url, sql):
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        value = conn.execute(sa.text(sql)).scalar()
    engine.dispose()
    return value


def test_worker_killed_after_stripe_charged_reconciliation_makes_one_order(
        cluster, clean_db, localstripe, buyers):
    event_id = create_event(clean_db, rows=1, per_row=4, price=3000)
    web = cluster.web(extra_env=_env(localstripe))
    proxy = SlowProxy(localstripe.port, delay=8.0)
    doomed = cluster.worker(concurrency=1, extra_env=_env(
        localstripe, STRIPE_API_BASE=proxy.url, PAYMENT_TIMEOUT_SECONDS=30))
    buyer = buyers(web.url)
    seat = buyer.join(event_id)["seats"][0]["id"]
    rid = uuid.uuid4().hex
    assert buyer.call("hold", {"request_id": rid, "event_id": event_id,
                               "seat_ids": [seat]})["ok"]
    held = buyer.result_for("hold_result", rid)
    assert held["ok"], held
    pay_rid = uuid.uuid4().hex
    ack = buyer.call("pay", {"request_id": pay_rid, "hold_id": held["hold_id"],
                             "idempotency_key": uuid.uuid4().hex,
                             "payment_token": localstripe.token(GOOD)})
    assert ack["ok"], ack

    def charged():
        intents = localstripe.api("GET", "/v1/payment_intents", params={"limit": 100})["data"]
        return [i for i in intents if i["metadata"].get("hold_id") == str(held["hold_id"])
                and i["status"] == "succeeded"]
    wait_until(charged, 30, "Stripe's success", doomed)
    assert _scalar(clean_db, "SELECT COUNT(*) FROM orders") == 0
    assert _scalar(clean_db, "SELECT status FROM payments") == "pending"
    doomed.kill9()
    proxy.close()

    fresh = _env(localstripe, PAYMENT_TIMEOUT_SECONDS=1, RECONCILE_INTERVAL_SECONDS=1)
    cluster.worker(concurrency=1, extra_env=fresh)
    cluster.beat(extra_env=fresh)
    result = buyer.result_for("payment_result", pay_rid, timeout=60)
    assert result["ok"], result
    assert _scalar(clean_db, "SELECT COUNT(*) FROM orders") == 1
    assert _scalar(clean_db, "SELECT status FROM payments") == "captured"
    assert len(charged()) == 1, "one intent charged, not two"

    env = dict(os.environ, DATABASE_URL=clean_db, SECRET_KEY=SECRET, **_env(localstripe))
    env.pop("REDIS_URL", None)
    out = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "booking", "audit"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["problems"] == [], report


def test_webhooks_confirmations_and_reconciliation_racing_make_one_order(
        cluster, clean_db, localstripe, buyers):
    """3-D Secure passed; then, all at once from real processes: the same success event
    (several deliveries, distinct and repeated ids) to two web processes, the browser's
    confirmation to both, and beat's reconciliation. One order; the buyer answered once."""
    import threading

    import requests

    from tests.stripe_server import THREE_DS, signed
    event_id = create_event(clean_db, rows=1, per_row=4, price=3000)
    env = _env(localstripe, PAYMENT_TIMEOUT_SECONDS=1, RECONCILE_INTERVAL_SECONDS=1)
    webs = [cluster.web(extra_env=env), cluster.web(extra_env=env)]
    cluster.worker(concurrency=2, extra_env=env)
    buyer = buyers(webs[0].url)
    other_socket = buyers(webs[1].url)
    seat = buyer.join(event_id)["seats"][0]["id"]
    rid, pay_rid, key = (uuid.uuid4().hex for _ in range(3))
    assert buyer.call("hold", {"request_id": rid, "event_id": event_id,
                               "seat_ids": [seat]})["ok"]
    held = buyer.result_for("hold_result", rid)
    buyer.received["payment_action"] = []
    buyer.sio.on("payment_action", buyer._recorder("payment_action"))
    assert buyer.call("pay", {"request_id": pay_rid, "hold_id": held["hold_id"],
                              "idempotency_key": key,
                              "payment_token": localstripe.token(THREE_DS)})["ok"]
    action = buyer.result_for("payment_action", pay_rid)
    intent_id = action["client_secret"].split("_secret_")[0]
    localstripe.authenticate(intent_id, action["client_secret"], success=True)
    wait_until(lambda: localstripe.events(intent_id, "payment_intent.succeeded"), 10, "event")
    (event,) = localstripe.events(intent_id, "payment_intent.succeeded")
    deliveries = [dict(event, id=f"evt_race{n % 3}") for n in range(6)]

    barrier = threading.Barrier(len(deliveries) + 2)
    answers = []

    def deliver(n, body):
        payload, headers = signed(body)
        barrier.wait()
        answers.append(requests.post(webs[n % 2].url + "/webhooks/stripe", data=payload,
                                     headers=headers, timeout=30).status_code)

    def confirm(client):
        barrier.wait()
        answers.append(client.call("confirm_payment", {
            "request_id": uuid.uuid4().hex, "hold_id": held["hold_id"],
            "idempotency_key": key})["ok"])
    threads = [threading.Thread(target=deliver, args=(n, d)) for n, d in enumerate(deliveries)]
    threads.append(threading.Thread(target=confirm, args=(buyer,)))
    cluster.beat(extra_env=env)
    # The other socket is another account: its confirmation is refused, changes nothing.
    refused = other_socket.call("confirm_payment", {"request_id": "x", "hold_id": held["hold_id"],
                                                    "idempotency_key": key})
    assert refused["ok"] is False and refused["error"]["code"] == "not_found"
    for t in threads:
        t.start()
    barrier.wait()
    for t in threads:
        t.join(60)
    assert sorted(map(str, answers)) == sorted(["200"] * 6 + ["True"]), answers
    result = buyer.result_for("payment_result", pay_rid, timeout=30)
    assert result["ok"], result
    wait_until(lambda: _scalar(clean_db, "SELECT COUNT(*) FROM stripe_events") == 3, 10,
               "each event id recorded once")
    assert _scalar(clean_db, "SELECT COUNT(*) FROM orders") == 1
    assert len([r for r in buyer.results("payment_result") if r["request_id"] == pay_rid]) == 1
