"""Refunds: an organizer's admin gives back some or all seats of an order.

Like a payment, in two phases around a keyed call to the processor:

1. begin_refund: the admin's idempotency key names one refund row (pending)
   with a processor refund key; the chosen tickets point at it, so no other
   refund and no check-in can take them meanwhile. Commit.
2. The processor refunds under the refund key (the same key never refunds twice).
3. finish_refund, in one transaction: on success the tickets turn void, their
   seats available (version + 1, broadcast after commit), the order refunded
   or partially_refunded, and the buyer's e-mail is written to the outbox; on
   refusal the refund is failed and the tickets are free again.

A refund whose answer never came stays pending; reconcile_refunds asks the
processor again under the same key and finishes it the same way.

A refund made at the processor itself (Stripe's dashboard), reported by its
webhook, is recorded by record_processor_refunds under the processor's
reference, and finished by the same finish_refund: the tickets its amount
covers turn void (take_processor_refund). Services
take a session and never commit, except refund_order and reconcile_refunds,
which run the phases (each its own transaction).
"""
import logging
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from . import mail
from .errors import Conflict, InvalidRequest, NotFound
from .locking import lock_seats
from .models import ID_MAX, Order, Payment, Refund, Ticket, User, utcnow
from .organizers import authorize_event
from .outcome import Outcome, set_seat
from .payments import ProcessorUnavailable, RefundAnswer

log = logging.getLogger(__name__)


@dataclass
class RefundStart:
    refund_id: int
    order_id: int
    status: str
    processor_key: str = ""
    charge_key: str = ""
    amount_cents: int = 0


def refund_key(order_id, idempotency_key):
    return f"rf:{order_id}:{idempotency_key}"


def _start(refund, charge_key):
    return RefundStart(refund.id, refund.order_id, refund.status, refund.processor_key,
                       charge_key, refund.amount_cents)


def begin_refund(session, user_id, order_id, seat_ids, idempotency_key, now=None):
    """Phase 1: the refund row for this key, made if new. Returns a RefundStart.

    Raises NotFound (no such order, or the caller is not a member of the
    event's organizer), Forbidden (staff, not admin), InvalidRequest (a seat
    not in the order), Conflict (details.reason: already_refunded, checked_in,
    refund_pending).
    """
    now = now or utcnow()
    order = session.get(Order, order_id) if 0 < order_id <= ID_MAX else None
    if order is None:
        raise NotFound("No such order.", order_id=order_id)
    authorize_event(session, user_id, order.event_id, need="admin")
    order = session.scalar(sa.select(Order).where(Order.id == order_id).with_for_update())
    charge_key = order.payment.processor_key
    existing = session.scalar(sa.select(Refund).where(
        Refund.order_id == order_id, Refund.idempotency_key == idempotency_key))
    if existing is not None:
        return _start(existing, charge_key)
    tickets = session.scalars(sa.select(Ticket).where(Ticket.order_id == order_id)
                              .order_by(Ticket.id).with_for_update()).all()
    by_seat = {t.seat_id: t for t in tickets}
    if seat_ids is None:
        chosen = [t for t in tickets if t.status != "void"]
        if not chosen:
            raise Conflict("This order is refunded already.", reason="already_refunded")
    else:
        unknown = [s for s in seat_ids if s not in by_seat]
        if unknown:
            raise InvalidRequest("Some seats are not in this order.", fields={
                "seat_ids": [f"Seat {s} is not in order {order_id}." for s in unknown]})
        chosen = [by_seat[s] for s in seat_ids]
    for t in chosen:
        if t.status == "void":
            raise Conflict(f"Seat {t.seat_id} is refunded already.", reason="already_refunded",
                           seat_id=t.seat_id)
        if t.status == "checked_in":
            raise Conflict(f"Seat {t.seat_id} was checked in; it cannot be refunded.",
                           reason="checked_in", seat_id=t.seat_id)
        if t.refund_id is not None:
            raise Conflict(f"Seat {t.seat_id} is being refunded.", reason="refund_pending",
                           seat_id=t.seat_id, refund_id=t.refund_id)
    refund = Refund(order_id=order_id, requested_by=user_id, idempotency_key=idempotency_key,
                    processor_key=refund_key(order_id, idempotency_key),
                    amount_cents=sum(t.price_cents for t in chosen), currency=order.currency,
                    status="pending", created_at=now, updated_at=now)
    session.add(refund)
    session.flush()
    for t in chosen:
        t.refund_id = refund.id
    return _start(refund, charge_key)


def finish_refund(session, refund_id, answer, now=None):
    """Phase 3: apply the processor's RefundAnswer; returns the Outcome to send after commit."""
    now = now or utcnow()
    outcome = Outcome()
    head = session.get(Refund, refund_id)
    tickets = session.scalars(sa.select(Ticket).where(Ticket.refund_id == refund_id)
                              .order_by(Ticket.id)).all()
    # Lock order: seats, then the order, then its refund and tickets.
    seats = lock_seats(session, [t.seat_id for t in tickets])
    order = session.scalar(sa.select(Order).where(Order.id == head.order_id).with_for_update())
    refund = session.scalar(sa.select(Refund).where(Refund.id == refund_id)
                            .with_for_update().execution_options(populate_existing=True))
    if refund.status != "pending":
        return outcome
    tickets = session.scalars(sa.select(Ticket).where(Ticket.refund_id == refund_id)
                              .with_for_update().execution_options(populate_existing=True)).all()
    refund.updated_at = now
    if answer.status != "succeeded":
        refund.status, refund.failure_reason = "failed", answer.reason or "refused"
        for t in tickets:
            t.refund_id = None
        return outcome
    refund.status, refund.reference = "succeeded", answer.reference
    for t in tickets:
        t.status = "void"
        seat = seats.get(t.seat_id)
        if seat is not None and seat.status == "sold" and seat.order_id == order.id:
            set_seat(outcome, seat, "available")
    live = session.scalar(sa.select(sa.func.count()).select_from(Ticket).where(
        Ticket.order_id == order.id, Ticket.status != "void"))
    order.status = "partially_refunded" if live else "refunded"
    _queue_refund_mail(session, outcome, order, refund, now)
    return outcome


def _ask_processor(rt, start):
    if start.amount_cents == 0:
        # Free seats: nothing to give back, so nothing to ask the processor.
        return RefundAnswer("succeeded", reference="free")
    return rt.processor.refund_part(key=start.charge_key, refund_key=start.processor_key,
                                    amount_cents=start.amount_cents,
                                    timeout_s=current_app.config["PAYMENT_TIMEOUT_SECONDS"])


def refund_order(rt, user_id, order_id, seat_ids, idempotency_key, send):
    """Run a refund: begin, ask the processor, finish, then send (seat changes, e-mail).

    Returns the Refund row's status afterwards (pending when the processor
    did not answer: reconciliation settles it). Raises what begin_refund raises.
    """
    from .transactions import run_transaction
    start = run_transaction(lambda s: begin_refund(s, user_id, order_id, seat_ids,
                                                   idempotency_key))
    if start.status != "pending":
        return start.refund_id
    try:
        answer = _ask_processor(rt, start)
    except ProcessorUnavailable:
        log.warning("processor did not answer refund %s; reconciliation will", start.refund_id)
        return start.refund_id
    outcome = run_transaction(lambda s: finish_refund(s, start.refund_id, answer))
    send(outcome)
    return start.refund_id


def pending_refunds(session, older_than_s, now=None, limit=100):
    now = now or utcnow()
    rows = session.execute(sa.select(Refund, Order).join(Order, Order.id == Refund.order_id)
                           .where(Refund.status == "pending",
                                  Refund.updated_at < now - timedelta(seconds=older_than_s))
                           .limit(limit)).all()
    return [_start(r, o.payment.processor_key) for r, o in rows]


def reconcile_refunds(rt, send=None, now=None):
    """Ask the processor again (same refund key) about refunds left pending; finish them."""
    from .extensions import db
    from .transactions import run_transaction
    if send is None:
        from workers.tasks import send
    timeout = current_app.config["PAYMENT_TIMEOUT_SECONDS"]
    starts = pending_refunds(db.session, timeout * 2, now=now)
    db.session.rollback()
    for start in starts:
        try:
            answer = _ask_processor(rt, start)
        except ProcessorUnavailable:
            continue
        log.info("reconciling refund %s: processor says %s", start.refund_id, answer.status)
        send(run_transaction(lambda s: finish_refund(s, start.refund_id, answer)))


# -------------------------------------------- refunds made at the processor

PROCESSOR_KEY_PREFIX = "processor:"
SUBSET_SEARCH_MAX = 100_000   # reachable sums explored when matching an amount to tickets


def _tickets_for_amount(tickets, amount_cents):
    """The tickets whose prices add up to amount_cents (the first such set in ticket
    order, fewest sums explored), or None when no set of them does."""
    if amount_cents == sum(t.price_cents for t in tickets):
        return list(tickets)
    reach = {0: ()}
    for t in tickets:
        for total, chosen in list(reach.items()):
            new = total + t.price_cents
            if new <= amount_cents and new not in reach:
                reach[new] = chosen + (t,)
        if amount_cents in reach or len(reach) > SUBSET_SEARCH_MAX:
            break
    found = reach.get(amount_cents)
    return list(found) if found else None


def take_processor_refund(session, charge_key, seen, now=None):
    """Record one refund the processor made of an order's charge (a ProcessorRefund), once.

    A refund we made ourselves (its refund key is one of our refund rows) or one
    recorded already (its reference) changes nothing: returns None. Otherwise a
    refund row is made under the processor's reference (unique: the same refund
    reported twice, even concurrently, is recorded once); the order's valid
    tickets whose prices add up to the amount are voided and their seats made
    available, exactly as a refund of those seats made here (finish_refund). An
    amount that no set of valid tickets adds up to (a goodwill refund, or
    checked-in seats) is recorded as money given back, with no ticket voided: the
    audit reports that difference for the organizer. Returns the Outcome.
    """
    now = now or utcnow()
    order_id = session.scalar(sa.select(Payment.order_id)
                              .where(Payment.processor_key == charge_key))
    if order_id is None:
        return None
    # Lock order (finish_refund's): seats, the order, then its refunds and tickets.
    lock_seats(session, session.scalars(sa.select(Ticket.seat_id)
                                        .where(Ticket.order_id == order_id)).all())
    order = session.scalar(sa.select(Order).where(Order.id == order_id).with_for_update())
    ours = [PROCESSOR_KEY_PREFIX + seen.reference] + ([seen.refund_key] if seen.refund_key
                                                      else [])
    known = session.scalar(sa.select(Refund.id).where(
        Refund.order_id == order_id,
        sa.or_(Refund.reference == seen.reference, Refund.processor_key.in_(ours)))
        .limit(1).with_for_update())
    if known is not None:
        return None
    tickets = session.scalars(sa.select(Ticket).where(
        Ticket.order_id == order_id, Ticket.status == "valid", Ticket.refund_id.is_(None))
        .order_by(Ticket.id).with_for_update().execution_options(populate_existing=True)).all()
    chosen = _tickets_for_amount(tickets, seen.amount_cents) or []
    refund = Refund(order_id=order_id, requested_by=None, idempotency_key=seen.reference[:64],
                    processor_key=PROCESSOR_KEY_PREFIX + seen.reference,
                    amount_cents=seen.amount_cents, currency=order.currency, status="pending",
                    created_at=now, updated_at=now)
    session.add(refund)
    session.flush()
    if chosen:
        for t in chosen:
            t.refund_id = refund.id
        session.flush()
        return finish_refund(session, refund.id, RefundAnswer("succeeded",
                                                              reference=seen.reference), now)
    log.warning("refund %s of order %s (%s cents) at the processor matches no set of its "
                "valid tickets; recorded without voiding any", seen.reference, order_id,
                seen.amount_cents)
    refund.status, refund.reference = "succeeded", seen.reference
    outcome = Outcome()
    _queue_refund_mail(session, outcome, order, refund, now)
    return outcome


def record_processor_refunds(rt, charge_key, send, timeout_s):
    """Record every refund the processor holds for an order's charge that is not recorded
    here yet (made in its dashboard, say); each its own transaction, sent after commit.

    Safe to run any number of times, and concurrently. Returns how many were recorded.
    Raises ProcessorUnavailable (nothing of what was not read is recorded; ask again).
    """
    from .transactions import run_transaction
    made = 0
    for seen in rt.processor.refunds_of(key=charge_key, timeout_s=timeout_s):
        if seen.status != "succeeded":
            continue
        outcome = run_transaction(lambda s, seen=seen: take_processor_refund(s, charge_key, seen))
        if outcome is not None:
            made += 1
            log.info("refund %s made at the processor recorded for charge %s",
                     seen.reference, charge_key)
            send(outcome)
    return made


def refund_json(refund):
    from .models import iso_utc
    return {"id": refund.id, "status": refund.status, "amount_cents": refund.amount_cents,
            "currency": refund.currency, "failure_reason": refund.failure_reason,
            "created_at": iso_utc(refund.created_at)}


def _queue_refund_mail(session, outcome, order, refund, now):
    """The buyer's refund e-mail, queued in the refund's transaction (sent after commit)."""
    buyer_email = session.scalar(sa.select(User.email).where(User.id == order.user_id))
    outcome.mails.append(mail.queue_mail(
        session, kind="refund", dedupe_key=f"refund:{refund.id}", to_addr=buyer_email,
        user_id=order.user_id, order_id=order.id, refund_id=refund.id, now=now).id)
    session.flush()
