"""Paying for a hold exactly once (docs/DESIGN.md, rule 6): two phases around a keyed charge.

1. begin_payment: under locks, check the hold is the buyer's, still held and not
   expired; mark it 'paying' (its seats stop expiring: neither the sweep, a lazy
   claim nor the buyer's own release can take them) and create a pending payment
   keyed by the buyer's idempotency key. Commit.
2. The processor charges under that key (the same key never charges twice).
3. finish_payment: in one transaction, a capture turns the seats sold and creates
   the order and its payment record; a decline or processor error returns the
   hold to 'held' (still the buyer's until its expiry). A capture that can no
   longer become an order is marked for refund.

A charge whose answer never came leaves the payment 'pending'; the
reconciliation task (workers.tasks.reconcile_payments, over unsettled_payments)
asks the processor by key and finishes it with finish_payment the same way.
check_payable is the rule behind phase 1, also run by the web tier as a
pre-check. Phases 1 and 3 take a round of payments at once (begin_payments,
finish_payments: set-based statements, each payment decided on its own);
begin_payment and finish_payment are the same for one. Functions take a session
and plain values, never commit or emit.
"""
import logging
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from . import mail, records, tickets
from .errors import (BookingError, Conflict, HoldExpired, NotFound,
                     PaymentDeclined, PaymentError)
from .holds import check_owner
from .locking import (lock_holds, lock_payments, lock_seats_of_holds, lock_users,
                      write_objects, write_seats)
from .models import Hold, Order, OrderSeat, Payment, User, utcnow
from .outcome import Outcome, set_seat
from .payloads import reply

log = logging.getLogger(__name__)

EVENT = "payment_result"


@dataclass
class PaymentStart:
    """Either a charge to make (payment_id set) or an answer to send now."""
    outcome: Outcome = field(default_factory=Outcome)
    payment_id: int | None = None
    processor_key: str | None = None
    amount_cents: int = 0
    currency: str = ""


def processor_key(user_id, idempotency_key):
    """The buyer's key scoped to the buyer: two buyers' keys never collide."""
    return f"u{user_id}:{idempotency_key}"


def _payment_answer(payment, request_id):
    """The result a finished payment gives, for whichever request asks."""
    if payment.status == "captured" and payment.order_id:
        return reply(request_id, event=EVENT, order_id=payment.order_id, hold_id=payment.hold_id)
    if payment.status == "declined":
        return reply(request_id, PaymentDeclined(reason=payment.decline_reason or "card_declined"),
                     event=EVENT)
    if payment.status == "refunded":
        return reply(request_id, Conflict.of("charge_refunded", hold_id=payment.hold_id),
                     event=EVENT)
    return reply(request_id, PaymentError(), event=EVENT)


def payment_rounds(items, size):
    """Pay requests in rounds for begin_payments: at most size in each, a buyer once in
    each, a buyer's requests in the order they came (each goes in the first round with
    room and without that buyer)."""
    rounds = []
    for item in items:
        for part in rounds:
            if len(part) < size and all(o["user_id"] != item["user_id"] for o in part):
                part.append(item)
                break
        else:
            rounds.append([item])
    return rounds


def begin_payment(session, item, processor_name, now=None):
    """Phase 1 for one pay request (begin_payments with one item)."""
    return begin_payments(session, [item], processor_name, now)[0]


def begin_payments(session, items, processor_name, now=None):
    """Phase 1 for pay requests of distinct buyers, in one transaction: [PaymentStart] in
    the order of items. Raises nothing for the buyers' mistakes (they are answered).

    Set-based: the locks, the reads and the writes are one statement each for the
    whole batch, in the lock order (booking/locking.py); each request is decided
    as begin_payment always decided it. A buyer appears once (payment_rounds splits a
    batch): a request's answer may depend on the buyer's own earlier one.
    """
    now = now or utcnow()
    assert len({i["user_id"] for i in items}) == len(items), "one request per buyer"
    starts = [PaymentStart() for _ in items]
    answers = []
    lock_users(session, [i["user_id"] for i in items])
    seen = records.recorded(session, [(i["user_id"], i["request_id"]) for i in items])
    keys = [processor_key(i["user_id"], i["idempotency_key"]) for i in items]
    known = {p.processor_key: p for p in session.scalars(
        sa.select(Payment).where(Payment.processor_key.in_(sorted(set(keys)))))}
    fresh = []
    for start, item, key in zip(starts, items, keys):
        uid, rid = item["user_id"], item["request_id"]
        if (uid, rid) in seen:
            event, payload = seen[(uid, rid)]
            start.outcome.results.append((uid, rid, event, payload))
        elif key not in known:
            fresh.append((start, item, key))
        elif known[key].hold_id != item["hold_id"]:
            answers.append((start, uid, rid, reply(rid, Conflict.of("key_reused"), event=EVENT)))
        elif known[key].status == "pending":
            # The same payment again (a redelivery or a double send): ask the
            # processor again under the same key; it will not charge twice.
            _to_charge(start, known[key])
        else:
            answers.append((start, uid, rid, _payment_answer(known[key], rid)))
    if fresh:
        hold_ids = [item["hold_id"] for _s, item, _k in fresh]
        seats = lock_seats_of_holds(session, hold_ids)
        locked = {hold.id: hold for hold in lock_holds(session, hold_ids)}
        created = []
        for start, item, key in fresh:
            uid, rid, hold_id = item["user_id"], item["request_id"], item["hold_id"]
            hold = locked.get(hold_id)
            try:
                check_payable(hold_id, *((hold.user_id, hold.status, hold.expires_at) if hold
                                         else (None, None, None)), uid, now)
            except BookingError as err:
                answers.append((start, uid, rid, reply(rid, err, event=EVENT)))
                continue
            hold.status = "paying"
            for seat in seats[hold_id].values():
                # A seat being paid for never expires. Watchers are told (a new version
                # without expires_at), or their maps would free it when the hold's time
                # passes while the payment is still running.
                set_seat(start.outcome, seat, "held", hold=hold, expires_at=None)
            payment = Payment(user_id=uid, hold_id=hold.id,
                              idempotency_key=item["idempotency_key"], processor_key=key,
                              request_id=rid, status="pending", amount_cents=hold.amount_cents,
                              currency=hold.currency, brand=item["brand"], last4=item["last4"],
                              processor=processor_name, created_at=now, updated_at=now)
            session.add(payment)
            created.append((start, payment))
        _write_rows(session, seats.values(), locked.values())
        session.flush()  # the payments' ids, in one INSERT
        for start, payment in created:
            _to_charge(start, payment)
    _record(session, [(start.outcome, (uid, rid, EVENT, payload))
                      for start, uid, rid, payload in answers], now)
    return starts


def _to_charge(start, payment):
    start.payment_id, start.processor_key = payment.id, payment.processor_key
    start.amount_cents, start.currency = payment.amount_cents, payment.currency


def _record(session, answers, now):
    """Record answers [(outcome, (user_id, request_id, event, payload))] in one statement
    and add each to its outcome's results."""
    records.record(session, [entry for _o, entry in answers], now)
    for outcome, entry in answers:
        outcome.results.append(entry)


def keyed_payment_and_hold(session, user_id, idempotency_key, hold_id):
    """The web's pre-check reads, in one statement: (payment, hold).

    payment is the buyer's payment under this idempotency key, (hold_id, status,
    brand, last4), or None; hold is (user_id, status, expires_at) of hold_id, or
    (None, None, None). The key decides first: a payment that finished under it
    answers the same again (its order, its decline), whatever the hold has become
    since (paid, say). Read without locks: a status other than pending is final.
    (Two SELECTs before: one round trip to MariaDB more for every payment.)
    """
    # A one-row table of the two values, outer-joined to each row it names: the row
    # comes whatever is found (MariaDB looks both up by their unique keys).
    asked = sa.select(
        sa.literal(processor_key(user_id, idempotency_key), sa.String).label("key"),
        sa.literal(hold_id, sa.Integer).label("hold_id")).subquery()
    row = session.execute(
        sa.select(Payment.hold_id, Payment.status.label("payment_status"), Payment.brand,
                  Payment.last4, Hold.user_id, Hold.status.label("hold_status"),
                  Hold.expires_at)
        .select_from(asked)
        .outerjoin(Payment, Payment.processor_key == asked.c.key)
        .outerjoin(Hold, Hold.id == asked.c.hold_id)).one()
    payment = tuple(row[:4]) if row.payment_status is not None else None
    return payment, tuple(row[4:])


def check_payable(hold_id, owner_id, status, expires_at, user_id, now, in_progress_ok=False):
    """Raise unless user_id may pay for the hold now.

    NotFound (owner_id None: no such hold), HoldNotOwned, Conflict (a payment
    in progress, paid already, released), HoldExpired. The web tier's
    pre-check passes in_progress_ok: a payment in progress may be this same
    payment sent again, which the worker answers by its idempotency key.
    """
    check_owner(hold_id, owner_id, user_id)
    if status == "paying":
        if in_progress_ok:
            return
        raise Conflict.of("hold_paying", hold_id=hold_id)
    if status == "paid":
        raise Conflict.of("hold_paid", hold_id=hold_id)
    if status == "released":
        raise Conflict.of("hold_released", hold_id=hold_id)
    if status == "expired" or expires_at <= now:
        raise HoldExpired(hold_id=hold_id)


def finish_payment(session, payment_id, charge, request_id=None, now=None):
    """Phase 3 for one payment (finish_payments with one entry)."""
    return finish_payments(session, [(payment_id, charge, request_id)], now)


def finish_payments(session, entries, now=None):
    """Phase 3: apply the processor's answers, in one transaction.

    entries: [(payment_id, charge, request_id)] of distinct payments; charge is a
    Charge, or None for 'no charge exists'; request_id is the request this task
    serves if not the one that started the payment (a double send with the same
    key): every such request is answered. Returns an Outcome: the answers, seat
    changes, and processor keys to refund (a capture that cannot become an order).
    Set-based like begin_payments; each payment is decided on its own.
    """
    now = now or utcnow()
    outcome = Outcome()
    ids = [payment_id for payment_id, _c, _r in entries]
    assert len(set(ids)) == len(ids), "one entry per payment"
    heads = session.execute(sa.select(Payment.user_id, Payment.hold_id)
                            .where(Payment.id.in_(sorted(ids)))).all()
    lock_users(session, {head.user_id for head in heads})
    hold_ids = [head.hold_id for head in heads]
    seats = lock_seats_of_holds(session, hold_ids)
    locked = {hold.id: hold for hold in lock_holds(session, hold_ids)}
    payments = lock_payments(session, ids)
    asked, new_orders, paid = [], [], set()
    for payment_id, charge, request_id in entries:
        payment = payments[payment_id]
        hold, hold_seats = locked[payment.hold_id], seats[payment.hold_id]
        asked.append((payment, [payment.request_id, request_id]))
        captured = charge is not None and charge.status == "captured"
        if payment.status != "pending":
            # Settled already (by the task or by reconciliation). A capture we did
            # not turn into this payment's order must not stay charged.
            asked[-1] = (payment, [request_id])
            if captured and payment.order_id is None and payment.status != "refunded":
                payment.status = "captured"
                outcome.refunds.append(payment.processor_key)
            continue
        payment.updated_at = now
        if captured:
            payment.reference = charge.reference
            if hold.status == "paying" and hold.id not in paid and _seats_intact(hold,
                                                                                hold_seats):
                paid.add(hold.id)  # another capture of this hold would be refunded
                new_orders.append((hold, hold_seats, payment))
            else:
                log.warning("capture for hold %s cannot become an order; refunding", hold.id)
                payment.status = "captured"
                outcome.refunds.append(payment.processor_key)
            continue
        if charge is not None and charge.status == "declined":
            payment.status, payment.decline_reason = "declined", charge.decline_reason
        else:
            payment.status = "failed"
        if hold.status == "paying" and hold.id not in paid:
            # Back to the buyer until the hold's own expiry: another card may be tried.
            hold.status = "held"
            for seat in hold_seats.values():
                set_seat(outcome, seat, "held", hold=hold, expires_at=hold.expires_at)
    # Written before the orders' flush would send them a row at a time; _create_orders
    # writes what it changes itself, and nothing after it changes these rows.
    _write_rows(session, seats.values(), locked.values(), payments.values())
    _create_orders(session, outcome, new_orders, now)
    _answer_all(session, outcome, asked, now)
    session.flush()
    return outcome


_PAYMENT_COLUMNS = ("status", "order_id", "updated_at", "reference", "decline_reason")


def _write_rows(session, seats_by_hold, holds, payments=()):
    """Write what changed in the locked seats, holds and payments in one UPDATE each: the
    ORM's flush sends an UPDATE a row (PyMySQL), 80 of a batch of 8 payments' 103 round
    trips to MariaDB."""
    write_seats(session, [seat for seats in seats_by_hold for seat in seats.values()])
    write_objects(session, holds, ("status",))
    write_objects(session, payments, _PAYMENT_COLUMNS)


def _answer_all(session, outcome, asked, now):
    """Answer each request about each payment that has no recorded answer yet.

    asked: [(payment, [request_id or None])], one recorded-answers read for all."""
    wanted = sorted({(payment.user_id, rid, payment) for payment, rids in asked
                     for rid in rids if rid}, key=lambda w: (w[0], w[1]))
    done = records.recorded(session, {(uid, rid) for uid, rid, _p in wanted})
    _record(session, [(outcome, (uid, rid, EVENT, _payment_answer(payment, rid)))
                      for uid, rid, payment in wanted if (uid, rid) not in done], now)


def _seats_intact(hold, seats):
    """Whether every seat the hold covered still points at it, held."""
    return ({hs.seat_id for hs in hold.seats}
            == {s.id for s in seats.values() if s.status == "held"})


def _create_orders(session, outcome, new_orders, now):
    """Orders for captured payments [(hold, seats, payment)], with their tickets and their
    confirmation e-mails: in the payments' own transaction (never an order without its
    tickets and its e-mail, never a ticket or an e-mail without an order), each kind of
    row in one INSERT for the whole batch."""
    if not new_orders:
        return
    orders = []
    for hold, seats, payment in new_orders:
        prices = {hs.seat_id: hs.price_cents for hs in hold.seats}
        order = Order(user_id=hold.user_id, event_id=hold.event_id, hold_id=hold.id,
                      status="paid", amount_cents=hold.amount_cents, currency=hold.currency,
                      created_at=now,
                      items=[OrderSeat(seat_id=seat.id, label=seat.label,
                                       price_cents=prices[seat.id])
                             for seat in sorted(seats.values(), key=lambda x: x.id)])
        session.add(order)
        orders.append(order)
    session.flush()  # the orders' ids
    for order, (hold, seats, payment) in zip(orders, new_orders):
        for seat in seats.values():
            set_seat(outcome, seat, "sold", order_id=order.id)
        payment.status, payment.order_id = "captured", order.id
        hold.status = "paid"
    _write_rows(session, [seats for _h, seats, _p in new_orders],
                [hold for hold, _s, _p in new_orders], [payment for _h, _s, payment in new_orders])
    tickets.issue_tickets_for(session, orders)
    emails = dict(session.execute(sa.select(User.id, User.email)
                                  .where(User.id.in_(sorted({o.user_id for o in orders})))).all())
    outcome.mails.extend(row.id for row in mail.queue_order_confirmations(
        session, [(order, emails[order.user_id]) for order in orders]))


def mark_refunded(session, processor_keys, now=None):
    """Record that the processor refunded these charges."""
    now = now or utcnow()
    if processor_keys:
        session.execute(sa.update(Payment).where(Payment.processor_key.in_(processor_keys),
                                                 Payment.order_id.is_(None))
                        .values(status="refunded", updated_at=now))


# How far back reconciliation re-checks failed payments at the processor (once each).
FAILED_RECHECK_WINDOW = timedelta(days=1)


def unsettled_payments(session, pending_older_than_s, now=None, limit=200):
    """Payments to reconcile: (pending, failed, orphans).

    pending: [(id, key)] pending past the processor's timeout; failed:
    [(id, key)] failed (no charge, as far as we knew) in the last day and not
    yet confirmed at the processor by key (an earlier attempt under the same
    key, or a charge that landed late, may have captured); orphans: [key]
    captures without an order.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=pending_older_than_s)
    pending = session.execute(sa.select(Payment.id, Payment.processor_key).where(
        Payment.status == "pending", Payment.updated_at < cutoff).limit(limit)).all()
    failed = session.execute(sa.select(Payment.id, Payment.processor_key).where(
        Payment.status == "failed", Payment.checked_at.is_(None),
        Payment.updated_at < cutoff, Payment.updated_at > now - FAILED_RECHECK_WINDOW)
        .limit(limit)).all()
    orphans = session.scalars(sa.select(Payment.processor_key).where(
        Payment.status == "captured", Payment.order_id.is_(None)).limit(limit)).all()
    return pending, failed, orphans


def mark_checked(session, payment_ids, now=None):
    """Failed payments the processor confirmed (by key) as having charged nothing."""
    if payment_ids:
        session.execute(sa.update(Payment).where(Payment.id.in_(payment_ids),
                                                 Payment.status == "failed")
                        .values(checked_at=now or utcnow()))


def orders_of(session, user_id):
    return session.scalars(sa.select(Order).where(Order.user_id == user_id)
                           .order_by(Order.created_at.desc(), Order.id.desc())).all()


def order_of(session, user_id, order_id):
    """The buyer's order; NotFound for anyone else's."""
    order = session.get(Order, order_id)
    if order is None or order.user_id != user_id:
        raise NotFound.of("no_order", order_id=order_id)
    return order
