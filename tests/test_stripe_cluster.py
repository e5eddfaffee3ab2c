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
