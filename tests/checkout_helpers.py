"""Shared steps of the checkout tests: holding, paying, auditing, reading the ledger."""
import json
import os
import subprocess
import sys
import uuid

import sqlalchemy as sa

from tests.harness import ROOT

GOOD = "4242 4242 4242 4242"
DECLINE = "4000 0000 0000 0002"
NO_FUNDS = "4000 0000 0000 9995"
PROC_ERROR = "4000 0000 0000 0119"
SLOW = "4000 0000 0000 3220"


def card(number, **kw):
    return dict({"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123",
                 "name": "Test Buyer"}, **kw)


def hold(buyer, event_id, seats):
    rid = uuid.uuid4().hex
    ack = buyer.call("hold", {"request_id": rid, "event_id": event_id, "seat_ids": seats})
    assert ack["ok"], ack
    return buyer.result_for("hold_result", rid)


def pay(buyer, hold_id, number=GOOD, key=None, wait=True, timeout=30, **card_kw):
    """Send pay; returns (ack, result or None)."""
    rid = uuid.uuid4().hex
    ack = buyer.call("pay", {"request_id": rid, "hold_id": hold_id,
                             "idempotency_key": key or uuid.uuid4().hex,
                             "card": card(number, **card_kw)})
    if not ack["ok"] or not wait:
        return ack, None
    return ack, buyer.result_for("payment_result", rid, timeout=timeout)


def audit(db_url, secret):
    env = dict(os.environ, DATABASE_URL=db_url, SECRET_KEY=secret)
    env.pop("REDIS_URL", None)
    out = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "booking", "audit"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return out.returncode, json.loads(out.stdout)


def rows(db_url, sql, **params):
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        result = [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]
    engine.dispose()
    return result


def scalar(db_url, sql, **params):
    return next(iter(rows(db_url, sql, **params)[0].values()))
