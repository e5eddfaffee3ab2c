"""Payments as an attacker and a careful buyer find them (issue #18, "Payments"): the real
socket handler, intake, pay task and simulated processor in-process, on MariaDB.

- the same idempotency key under a new request_id answers the same order after the
  payment finished (the key is looked up before the hold's state);
- card numbers and CVCs are the ASCII digits 0-9 only, and no input makes the
  simulated processor fail with anything but "not a card";
- a card token the processor refuses does not mean "nothing was charged": the
  processor is asked by key, and reconciliation re-checks failed payments once.
"""
import time
import uuid

import pytest
import sqlalchemy as sa

from booking import checkout, holds
from booking.audit import run_audit
from booking.extensions import db, socketio
from booking.models import Hold, Order, Payment, Seat, SimCharge
from booking.payments import TokenInvalid
from booking.payments.cards import brand, cvc_valid, luhn_valid
from tests.test_holds_idempotency import _event

GOOD = "4242424242424242"


def _card(number=GOOD, cvc="123"):
    return {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": cvc, "name": "T"}


def _hold(app, uid, seats=2):
    event_id, seat_ids = _event(app, seats=seats)
    with app.app_context():
        out = holds.process_requests(db.session, [
            {"kind": "hold", "user_id": uid, "request_id": uuid.uuid4().hex,
             "event_id": event_id, "seat_ids": [seat_ids[0]]}],
            app.extensions["boxoffice"].settings)
        db.session.commit()
    return out.results[0][3]["hold_id"], seat_ids[0]


def _result(client, event, request_id, timeout=15):
    """The result event for request_id (the embedded mode runs the task after the ack)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in client.get_received():
            if message["name"] == event and message["args"][0]["request_id"] == request_id:
                return message["args"][0]
        time.sleep(0.05)
    raise AssertionError(f"no {event} for {request_id}")


def _count(app, model, *where):
    with app.app_context():
        n = db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))
        db.session.rollback()
        return n


def _audit(app):
    with app.app_context():
        report = run_audit(db.session, processor=app.extensions["boxoffice"].processor)
        db.session.rollback()
        return report


def test_same_key_under_a_new_request_after_the_payment_finished_answers_the_same_order(
        app, make_users):
    """The contract: paying the same idempotency_key twice answers the same order_id, also
    when the second send has a new request_id and arrives after the hold became paid."""
    (uid, tok), = make_users(1)
    hold_id, seat_id = _hold(app, uid)
    client = socketio.test_client(app, auth={"token": tok})
    try:
        ack = client.emit("pay", {"request_id": "r1", "hold_id": hold_id,
                                  "idempotency_key": "same-key", "card": _card()},
                          callback=True)
        assert ack["ok"], ack
        first = _result(client, "payment_result", "r1")
        assert first["ok"], first
        ack = client.emit("pay", {"request_id": "r2", "hold_id": hold_id,
                                  "idempotency_key": "same-key", "card": _card()},
                          callback=True)
        assert ack["ok"], ack
        again = _result(client, "payment_result", "r2")
        assert again["ok"] and again["order_id"] == first["order_id"], again
        # Another key for the paid hold is still refused in the ack, charging nothing.
        ack = client.emit("pay", {"request_id": "r3", "hold_id": hold_id,
                                  "idempotency_key": "other-key", "card": _card()},
                          callback=True)
        assert ack["ok"] is False and ack["error"]["code"] == "conflict", ack
        # The same key for another hold: key_reused, charging nothing.
        other_hold, _ = _hold(app, uid)
        ack = client.emit("pay", {"request_id": "r4", "hold_id": other_hold,
                                  "idempotency_key": "same-key", "card": _card()},
                          callback=True)
        reused = _result(client, "payment_result", "r4") if ack["ok"] else ack
        assert reused["ok"] is False and reused["error"]["code"] == "conflict", reused
    finally:
        client.disconnect()
    assert _count(app, SimCharge) == 1
    assert _count(app, Order) == 1
    with app.app_context():
        assert db.session.get(Hold, other_hold).status == "held"
    assert _audit(app)["problems"] == []


@pytest.mark.parametrize("field, value", [
    ("number", "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢"),          # Arabic-Indic digits: Luhn-valid as "4242..."
    ("number", "²" * 16),                    # superscript two: int() refuses it
    ("number", "４２４２４２４２４２４２４２４２"),   # full-width digits
    ("number", "4242424242424242\n"),
    ("cvc", "١٢٣"),
    ("cvc", "¹²³"),
    ("cvc", "123\n"),
])
def test_card_digits_are_ascii_only(app, make_users, field, value):
    (uid, tok), = make_users(1)
    hold_id, _seat = _hold(app, uid)
    client = socketio.test_client(app, auth={"token": tok})
    try:
        ack = client.emit("pay", {"request_id": "r1", "hold_id": hold_id,
                                  "idempotency_key": "k1", "card": _card(**{field: value})},
                          callback=True)
    finally:
        client.disconnect()
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_request", ack
    assert f"card.{field}" in ack["error"]["details"]["fields"], ack
    assert _count(app, Payment) == 0 and _count(app, SimCharge) == 0
    with app.app_context():
        assert db.session.get(Hold, hold_id).status == "held"


@pytest.mark.parametrize("number", ["٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢", "²" * 16, "", "4242", None, 4242,
                                    "4242 4242 4242 4241", "x" * 40])
def test_the_simulated_processor_refuses_anything_that_is_not_a_card(app, number):
    processor = app.extensions["boxoffice"].processor
    with app.app_context(), pytest.raises(TokenInvalid):
        processor.tokenize(number=number, exp_month=12, exp_year=2031, cvc="123", name="")
    assert brand("²" * 16) == "card" and not luhn_valid("٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢")
    assert not cvc_valid("١٢٣", "visa") and cvc_valid("123", "visa")


def _paying(app, uid, key="k1"):
    """A hold of one seat with a payment begun on it (phase 1 committed), and a good token."""
    hold_id, seat_id = _hold(app, uid)
    rt = app.extensions["boxoffice"]
    with app.app_context():
        token = rt.processor.tokenize(number=GOOD, exp_month=12, exp_year=2031, cvc="123",
                                      name="T")
        start = checkout.begin_payment(db.session, {
            "user_id": uid, "request_id": "p1", "hold_id": hold_id, "idempotency_key": key,
            "brand": token.brand, "last4": token.last4}, rt.processor.name)
        db.session.commit()
    return hold_id, seat_id, start, token


def test_a_refused_token_asks_the_processor_by_key(app, make_users):
    """An earlier attempt under the key captured (its worker died before the order); the
    task runs again with a token the processor refuses (expired): the capture found by
    key becomes the order, instead of the payment failing with the money kept."""
    from workers.tasks import pay
    (uid, _tok), = make_users(1)
    hold_id, seat_id, start, token = _paying(app, uid)
    rt = app.extensions["boxoffice"]
    with app.app_context():
        charge = rt.processor.charge(key=start.processor_key, amount_cents=start.amount_cents,
                                     currency=start.currency, card_token=token.token,
                                     timeout_s=5)
        assert charge.status == "captured"
        pay.apply(args=[{"kind": "pay", "user_id": uid, "request_id": "p1", "hold_id": hold_id,
                         "idempotency_key": "k1", "card_token": "expired-or-forged",
                         "brand": "visa", "last4": "4242"}], throw=True)
        db.session.expire_all()
        payment = db.session.get(Payment, start.payment_id)
        assert payment.status == "captured" and payment.order_id is not None, payment.status
        assert db.session.get(Seat, seat_id).status == "sold"
    assert _audit(app)["problems"] == []


def test_a_refused_token_with_nothing_charged_fails_the_payment(app, make_users):
    from workers.tasks import pay
    (uid, _tok), = make_users(1)
    hold_id, seat_id, start, _token = _paying(app, uid)
    with app.app_context():
        pay.apply(args=[{"kind": "pay", "user_id": uid, "request_id": "p1", "hold_id": hold_id,
                         "idempotency_key": "k1", "card_token": "expired-or-forged",
                         "brand": "visa", "last4": "4242"}], throw=True)
        db.session.expire_all()
        assert db.session.get(Payment, start.payment_id).status == "failed"
        assert db.session.get(Hold, hold_id).status == "held"
    assert _audit(app)["problems"] == []


def _overdue(app, seconds=3600):
    with app.app_context():
        db.session.execute(sa.update(Payment).values(
            updated_at=sa.func.timestampadd(sa.text("SECOND"), -seconds, Payment.updated_at)))
        db.session.commit()


def test_reconciliation_refunds_a_capture_under_a_failed_payment(app, make_users):
    """A payment recorded as failed (no charge found) whose charge landed afterwards, and
    whose worker died before telling anyone: reconciliation finds it by key and refunds it
    once; a failed payment with nothing at the processor is asked about once."""
    from workers.tasks import _finish_payment, reconcile_payments
    (uid, _tok), = make_users(1)
    hold_id, _seat, start, token = _paying(app, uid, key="k1")
    _other_hold, _seat2, quiet, _t = _paying(app, uid, key="k2")
    rt = app.extensions["boxoffice"]
    with app.app_context():
        _finish_payment(start.payment_id, None)
        _finish_payment(quiet.payment_id, None)
        rt.processor.charge(key=start.processor_key, amount_cents=start.amount_cents,
                            currency=start.currency, card_token=token.token, timeout_s=5)
    assert [p["kind"] for p in _audit(app)["problems"]] == ["processor_capture_without_order"]
    _overdue(app)
    with app.app_context():
        reconcile_payments.apply(throw=True)
        reconcile_payments.apply(throw=True)      # a second pass changes nothing
        db.session.expire_all()
        assert db.session.get(Payment, start.payment_id).status == "refunded"
        ledger = db.session.scalar(sa.select(SimCharge).where(
            SimCharge.idempotency_key == start.processor_key))
        assert ledger.status == "refunded" and ledger.refunded_cents == ledger.amount_cents
        still = db.session.get(Payment, quiet.payment_id)
        assert still.status == "failed" and still.checked_at is not None
    assert _count(app, Order) == 0
    assert _audit(app)["problems"] == []
