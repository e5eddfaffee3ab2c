"""Settling payments: the paths reconciliation takes, forced deterministically in-process
(the real services, tasks and simulated processor, on MariaDB)."""
import uuid

import sqlalchemy as sa

from booking import checkout, holds
from booking.audit import run_audit
from booking.extensions import db
from booking.models import Hold, Order, Payment, Seat, SimCharge
from tests.test_holds_idempotency import _event


def _hold_a_seat(app, uid, seats=2):
    """A committed hold of the first seat of a new event: (hold id, seat ids)."""
    event_id, seat_ids = _event(app, seats=seats)
    with app.app_context():
        out = holds.process_requests(db.session, [
            {"kind": "hold", "user_id": uid, "request_id": "h1", "event_id": event_id,
             "seat_ids": [seat_ids[0]]}], app.extensions["boxoffice"].settings)
        db.session.commit()
    return out.results[0][3]["hold_id"], seat_ids


def _held_and_paying(app, uid):
    """A hold of one seat, and a payment begun on it (phase 1 committed)."""
    hold_id, seats = _hold_a_seat(app, uid)
    rt = app.extensions["boxoffice"]
    with app.app_context():
        token = rt.processor.tokenize(number="4242424242424242", exp_month=12, exp_year=2031,
                                      cvc="123", name="T")
        start = checkout.begin_payment(db.session, {
            "user_id": uid, "request_id": "p1", "hold_id": hold_id, "idempotency_key": "k1",
            "brand": token.brand, "last4": token.last4}, rt.processor.name)
        db.session.commit()
    return hold_id, seats[0], start, token


def test_capture_that_cannot_become_an_order_is_refunded(app, make_users):
    """Reconciliation gave up on a payment (no charge found); the charge lands after all:
    it is refunded, no order exists, and the audit is clean."""
    from workers.tasks import _finish_payment
    (uid, _tok), = make_users(1)
    hold_id, seat_id, start, token = _held_and_paying(app, uid)
    rt = app.extensions["boxoffice"]
    with app.app_context():
        _finish_payment(start.payment_id, None)   # "no charge exists": failed, hold back
        assert db.session.get(Payment, start.payment_id).status == "failed"
        assert db.session.get(Hold, hold_id).status == "held"
        charge = rt.processor.charge(key=start.processor_key, amount_cents=start.amount_cents,
                                     currency=start.currency, card_token=token.token,
                                     timeout_s=5)
        assert charge.status == "captured"
        _finish_payment(start.payment_id, charge)
        db.session.expire_all()
        assert db.session.get(Payment, start.payment_id).status == "refunded"
        ledger = db.session.scalar(sa.select(SimCharge).where(
            SimCharge.idempotency_key == start.processor_key))
        assert ledger.status == "refunded" and ledger.refunded_at is not None
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0
        assert db.session.get(Seat, seat_id).status == "held", "still the buyer's to pay"
        report = run_audit(db.session, processor=rt.processor)
        assert report["problems"] == [], report


def test_reconciliation_completes_a_charge_that_answered_late(app, make_users):
    """The processor charged but the answer was lost: reconciliation sells the seat once."""
    from workers.tasks import reconcile_payments
    (uid, _tok), = make_users(1)
    hold_id, seat_id, start, token = _held_and_paying(app, uid)
    rt = app.extensions["boxoffice"]
    with app.app_context():
        rt.processor.charge(key=start.processor_key, amount_cents=start.amount_cents,
                            currency=start.currency, card_token=token.token, timeout_s=5)
        # Make the payment look overdue, as after the processor timeout.
        db.session.execute(sa.update(Payment).values(
            updated_at=sa.func.timestampadd(sa.text("SECOND"), -3600, Payment.updated_at)))
        db.session.commit()
        reconcile_payments.apply(throw=True)
        reconcile_payments.apply(throw=True)   # a second pass changes nothing
        db.session.expire_all()
        payment = db.session.get(Payment, start.payment_id)
        assert payment.status == "captured" and payment.order_id is not None
        assert db.session.get(Seat, seat_id).status == "sold"
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 1
        assert run_audit(db.session, processor=rt.processor)["problems"] == []


def test_reconciliation_fails_a_payment_the_processor_never_saw(app, make_users):
    """No charge under the key: the payment fails, the hold goes back to the buyer."""
    from workers.tasks import reconcile_payments
    (uid, _tok), = make_users(1)
    hold_id, seat_id, start, _token = _held_and_paying(app, uid)
    with app.app_context():
        db.session.execute(sa.update(Payment).values(
            updated_at=sa.func.timestampadd(sa.text("SECOND"), -3600, Payment.updated_at)))
        db.session.commit()
        reconcile_payments.apply(throw=True)
        db.session.expire_all()
        assert db.session.get(Payment, start.payment_id).status == "failed"
        hold = db.session.get(Hold, hold_id)
        assert hold.status == "held"
        assert db.session.get(Seat, seat_id).hold_expires_at == hold.expires_at


def test_begin_payment_refuses_an_expired_hold_without_charging(app, make_users):
    """The worker's own check: a hold past its expiry is never marked paying."""
    (uid, _tok), = make_users(1)
    hold_id, _seats = _hold_a_seat(app, uid, seats=1)
    with app.app_context():
        later = db.session.get(Hold, hold_id).expires_at
        start = checkout.begin_payment(db.session, {
            "user_id": uid, "request_id": uuid.uuid4().hex, "hold_id": hold_id,
            "idempotency_key": "k", "brand": "visa", "last4": "4242"}, "simulated", now=later)
        db.session.commit()
        assert start.payment_id is None
        assert start.outcome.results[0][3]["error"]["code"] == "hold_expired"
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Payment)) == 0


def test_repeat_of_a_finished_pay_is_answered_from_its_record(app, make_users):
    """The shared ledger lost the answer (as after a Redis restart): a client re-sending
    its pay gets the recorded result again, not a refusal because the hold is paid now."""
    from booking.extensions import socketio
    from workers.tasks import _finish_payment
    (uid, tok), = make_users(1)
    hold_id, _seat, start, token = _held_and_paying(app, uid)
    rt = app.extensions["boxoffice"]
    with app.app_context():
        charge = rt.processor.charge(key=start.processor_key, amount_cents=start.amount_cents,
                                     currency=start.currency, card_token=token.token,
                                     timeout_s=5)
        _finish_payment(start.payment_id, charge)
    rt.ledger.forget(uid, "p1")   # the shared ledger lost it; the database has it
    client = socketio.test_client(app, auth={"token": tok})
    ack = client.emit("pay", {"request_id": "p1", "hold_id": hold_id, "idempotency_key": "k1",
                              "card": {"number": "4242424242424242", "exp_month": 12,
                                       "exp_year": 2031, "cvc": "123"}}, callback=True)
    assert ack == {"ok": True, "request_id": "p1", "queued": False}
    [result] = [m["args"][0] for m in client.get_received() if m["name"] == "payment_result"]
    assert result["ok"] and result["request_id"] == "p1" and result["hold_id"] == hold_id
    # A new request for the paid hold is still refused.
    ack = client.emit("pay", {"request_id": "p2", "hold_id": hold_id, "idempotency_key": "k2",
                              "card": {"number": "4242424242424242", "exp_month": 12,
                                       "exp_year": 2031, "cvc": "123"}}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "conflict"
    client.disconnect()
