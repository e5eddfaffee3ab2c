"""Payments decided in batches (issue #13): one task, one transaction before the charges and
one after, for every payment a web process sent in one interval; on MariaDB, with the
simulated processor, in-process.

- the statements a batch sends to the database do not grow with its size, but for the
  processor's own (one lookup and one insert per charge);
- each payment of a batch is decided on its own: a good card, a declined card, an
  expired hold, a repeat of a finished key and a buyer's second payment in the same
  batch are each answered as they would be alone, and the audit stays clean;
- the charges of a round are asked of the processor at once, and a batch runs in rounds
  of distinct buyers no larger than that;
- the web sends its payments to the batch task.
"""
import json
import threading
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from booking import holds, intake
from booking.audit import run_audit
from booking.extensions import db
from booking.models import (Hold, MailOutbox, Order, Payment, RequestRecord, Seat, SimCharge,
                            Ticket, utcnow)
from tests.checkout_helpers import card
from tests.test_holds_idempotency import _event

GOOD = "4242424242424242"
DECLINE = "4000000000000002"
SLOW = "4000000000003220"


def _holds(app, users, seats_each=2):
    """One hold of seats_each seats for each buyer; returns [hold_id]."""
    event_id, seat_ids = _event(app, seats=seats_each * len(users))
    items = [{"kind": "hold", "user_id": uid, "request_id": uuid.uuid4().hex,
              "event_id": event_id, "seat_ids": seat_ids[n * seats_each:(n + 1) * seats_each]}
             for n, uid in enumerate(users)]
    with app.app_context():
        out = holds.process_requests(db.session, items, app.extensions["boxoffice"].settings)
        db.session.commit()
    by_request = {rid: payload for _u, rid, _e, payload in out.results}
    return [by_request[item["request_id"]]["hold_id"] for item in items]


def _item(app, uid, hold_id, number=GOOD, key=None, request_id=None):
    rt = app.extensions["boxoffice"]
    with app.app_context():
        token = rt.processor.tokenize(number=number, exp_month=12, exp_year=2031, cvc="123",
                                      name="T")
    return {"kind": "pay", "user_id": uid, "request_id": request_id or uuid.uuid4().hex,
            "hold_id": hold_id, "idempotency_key": key or uuid.uuid4().hex,
            "card_token": token.token, "brand": token.brand, "last4": token.last4}


def _answers(app, items):
    """{request_id: payment_result payload} from the durable record."""
    with app.app_context():
        rows = db.session.scalars(sa.select(RequestRecord).where(
            RequestRecord.request_id.in_([i["request_id"] for i in items]))).all()
        db.session.rollback()
        return {r.request_id: json.loads(r.result) for r in rows}


def _audit_clean(app):
    with app.app_context():
        report = run_audit(db.session, processor=app.extensions["boxoffice"].processor)
        db.session.rollback()
    assert report["problems"] == [], report["problems"]


class _Statements:
    """Counts what the app's engine sends: the task's statements (from this thread; the
    embedded mode sends the e-mails from threads of its own), and those of the simulated
    processor (its own table, on its own connections) apart."""

    def __init__(self, engine):
        self.engine, self.app_side, self.processor = engine, 0, 0
        self.round_trips = 0   # the app's; an UPDATE executemany is one a row (PyMySQL)
        self.thread = threading.get_ident()

    def __enter__(self):
        sa.event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc):
        sa.event.remove(self.engine, "before_cursor_execute", self._count)

    def _count(self, _conn, _cursor, statement, params, _context, many):
        if "sim_charges" in statement:
            self.processor += 1   # from the task's charging threads
        elif threading.get_ident() == self.thread:
            self.app_side += 1
            self.round_trips += len(params) if many and statement.startswith("UPDATE") else 1


def _pay_counted(app, items):
    from workers.tasks import pay_many
    with app.app_context():
        with _Statements(db.engine) as counted:
            pay_many.apply(args=[items], throw=True)
    return counted


def test_a_batch_of_payments_sends_the_statements_of_one(app, make_users):
    """One payment, then eight of eight buyers in one batch: the app's statements and round
    trips to MariaDB are the same number (each a set-based lock, read or write for the
    batch: the changed seats, holds, payments and tickets are written in one UPDATE each,
    where the ORM sent one a row, 103 round trips for eight); only the processor's grow,
    one lookup and one insert per charge."""
    users = [uid for uid, _t in make_users(9)]
    hold_ids = _holds(app, users)
    items = [_item(app, uid, hold_id) for uid, hold_id in zip(users, hold_ids)]
    one = _pay_counted(app, items[:1])
    eight = _pay_counted(app, items[1:])
    assert eight.app_side == one.app_side, (one.app_side, eight.app_side)
    assert eight.round_trips == one.round_trips == one.app_side, (one.round_trips,
                                                                  eight.round_trips)
    assert (one.processor, eight.processor) == (2, 16)
    answers = _answers(app, items)
    assert all("order_id" in answers[i["request_id"]] for i in items), answers
    with app.app_context():
        orders = db.session.scalars(sa.select(Order).where(Order.hold_id.in_(hold_ids))).all()
        assert sorted(o.hold_id for o in orders) == sorted(hold_ids)
        assert all(len(o.items) == 2 and len(o.tickets) == 2 for o in orders)
        assert all(t.code for o in orders for t in o.tickets)
        mails = db.session.scalars(sa.select(MailOutbox.order_id).where(
            MailOutbox.kind == "order_confirmation")).all()
        assert sorted(mails) == sorted(o.id for o in orders)
        sold = db.session.scalars(sa.select(Seat.status).where(
            Seat.order_id.in_([o.id for o in orders]))).all()
        assert sold == ["sold"] * 18
        db.session.rollback()
    _audit_clean(app)


def test_each_payment_of_a_batch_is_decided_on_its_own(app, make_users):
    """A good card, a declined card, an expired hold, a hold of someone else, a repeat of a
    finished payment's key under a new request, and one buyer's two payments (two
    holds): one batch, each answered as it would be alone."""
    from workers.tasks import pay_many
    good, declined, late, thief, repeat, twice = [uid for uid, _t in make_users(6)]
    good_h, declined_h, late_h, repeat_h, twice_h1, twice_h2 = _holds(
        app, [good, declined, late, repeat, twice, twice], seats_each=1)
    finished = _item(app, repeat, repeat_h, key="repeat-key")
    pay_many.apply(args=[[finished]], throw=True)
    first_order = _answers(app, [finished])[finished["request_id"]]["order_id"]
    with app.app_context():
        db.session.execute(sa.update(Hold).where(Hold.id == late_h)
                           .values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    batch = [_item(app, good, good_h), _item(app, declined, declined_h, number=DECLINE),
             _item(app, late, late_h), _item(app, thief, good_h),
             _item(app, repeat, repeat_h, key="repeat-key"),
             _item(app, twice, twice_h1), _item(app, twice, twice_h2)]
    pay_many.apply(args=[batch], throw=True)
    answers = [_answers(app, batch).get(i["request_id"]) for i in batch]
    assert "order_id" in answers[0], answers[0]
    assert answers[1]["error"]["code"] == "payment_declined", answers[1]
    assert answers[2]["error"]["code"] == "hold_expired", answers[2]
    assert answers[3]["error"]["code"] == "hold_not_owned", answers[3]
    assert answers[4]["order_id"] == first_order, answers[4]
    assert "order_id" in answers[5] and "order_id" in answers[6], answers[5:]
    with app.app_context():
        status = dict(db.session.execute(sa.select(Hold.id, Hold.status).where(
            Hold.id.in_([good_h, declined_h, late_h, twice_h1, twice_h2]))).all())
        assert status == {good_h: "paid", declined_h: "held", late_h: "held",
                          twice_h1: "paid", twice_h2: "paid"}, status
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Payment).where(
            Payment.hold_id == late_h)) == 0
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Ticket)) == 4
        db.session.rollback()
    _audit_clean(app)


@pytest.mark.app_config(SIM_SLOW_SECONDS=2.0)
def test_the_charges_of_a_batch_are_asked_at_once(app, make_users):
    """Four cards whose processor answers after 2 s, in one batch: the four charges are
    made within 2 s of each other (one after another, they would be 6 s apart), and each
    becomes its order."""
    from workers.tasks import pay_many
    users = [uid for uid, _t in make_users(4)]
    hold_ids = _holds(app, users, seats_each=1)
    batch = [_item(app, uid, hold_id, number=SLOW) for uid, hold_id in zip(users, hold_ids)]
    pay_many.apply(args=[batch], throw=True)
    with app.app_context():
        made = db.session.scalars(sa.select(SimCharge.created_at)).all()
        db.session.rollback()
    assert len(made) == 4 and max(made) - min(made) < timedelta(seconds=2), made
    assert all("order_id" in answer for answer in _answers(app, batch).values())
    _audit_clean(app)


def test_the_webs_pay_pre_check_is_one_statement(app, make_users):
    """The web process reads the payment under the key and the hold in one SELECT (it
    was two), and decides as before: the buyer's held hold goes on with a token; someone
    else's hold, a missing hold and an expired one are refused; a finished key answers
    from its payment whatever the hold became."""
    from booking.errors import HoldExpired, HoldNotOwned, NotFound
    from workers.tasks import pay_many
    buyer, other, payer = [uid for uid, _t in make_users(3)]
    own, late, done = _holds(app, [buyer, buyer, payer], seats_each=1)
    finished = _item(app, payer, done, key="done-key")
    pay_many.apply(args=[[finished]], throw=True)
    with app.app_context():
        db.session.execute(sa.update(Hold).where(Hold.id == late)
                           .values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()

    def precheck(uid, hold_id, key=None):
        p = {"hold_id": hold_id, "idempotency_key": key or uuid.uuid4().hex,
             "request_id": uuid.uuid4().hex,
             "card": card(GOOD)}
        with app.app_context():
            with _Statements(db.engine) as counted:
                try:
                    return intake._precheck_pay(uid, p), counted
                except Exception as err:   # noqa: BLE001 (the refusal is the answer)
                    return err, counted
                finally:
                    db.session.remove()

    item, counted = precheck(buyer, own)
    assert item["hold_id"] == own and item["card_token"] and item["last4"] == "4242", item
    assert counted.app_side == 1
    for uid, hold_id, refusal in [(other, own, HoldNotOwned), (buyer, 10**9, NotFound),
                                  (buyer, late, HoldExpired)]:
        err, counted = precheck(uid, hold_id)
        assert isinstance(err, refusal), (hold_id, err)
        assert counted.app_side == 1
    # The key decides first: the paid hold is answered from its payment, charging nothing.
    item, _counted = precheck(payer, done, key="done-key")
    assert item["card_token"] is None and item["last4"] == "4242", item


def test_a_batch_delivered_twice_charges_and_sells_once(app, make_users):
    """The same batch run again (a redelivery after a lost worker): the same answers, one
    charge and one order per hold."""
    from workers.tasks import pay_many
    users = [uid for uid, _t in make_users(3)]
    hold_ids = _holds(app, users)
    batch = [_item(app, uid, hold_id) for uid, hold_id in zip(users, hold_ids)]
    pay_many.apply(args=[batch], throw=True)
    first = _answers(app, batch)
    pay_many.apply(args=[batch], throw=True)
    assert _answers(app, batch) == first
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(SimCharge)) == 3
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 3
        db.session.rollback()
    _audit_clean(app)


def test_a_batch_runs_in_rounds_of_distinct_buyers_and_bounded_size():
    """A buyer once in a round, a buyer's payments in the order they came, and no round
    larger than the charges asked at once."""
    from booking.checkout import payment_rounds as pay_rounds
    items = [{"user_id": uid, "request_id": f"r{n}"} for n, uid in enumerate([1, 2, 1, 3, 4, 1])]
    rounds = pay_rounds(items, size=2)
    assert [[i["request_id"] for i in part] for part in rounds] == [
        ["r0", "r1"], ["r2", "r3"], ["r4", "r5"]]
    assert [[i["user_id"] for i in part] for part in pay_rounds(items, size=8)] == [
        [1, 2, 3, 4], [1], [1]]


@pytest.mark.parametrize("kinds, calls", [
    (["pay"] * 3, [("workers.tasks.pay_many", 3)]),
    (["hold", "pay", "release", "pay"], [("workers.tasks.process_requests", 2),
                                         ("workers.tasks.pay_many", 2)]),
])
def test_the_web_sends_payments_in_batches(kinds, calls):
    items = [{"kind": kind, "user_id": n, "request_id": str(n)} for n, kind in enumerate(kinds)]
    routed = intake.route(items, batch_max=50)
    assert [(task.name, len(args[0])) for task, args in routed] == calls
