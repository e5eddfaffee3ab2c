"""The audit: every booking invariant, checked from the database."""
from datetime import timedelta

import sqlalchemy as sa

from .models import Hold, Order, OrderSeat, Payment, Refund, Seat, Ticket, utcnow

# Orders whose remaining tickets admit people (their seats are sold to them).
LIVE_ORDER = ("paid", "partially_refunded")

# A held seat may outlive its expiry until the next sweep, plus this slack.
SWEEP_SLACK_S = 5


def run_audit(session, event_id=None, sweep_interval_s=2.0, processor=None,
              settle_after_s=60.0, mail_after_s=900.0):
    """{events: [...], problems: [...]}: counts per event and every broken invariant.

    With a processor that can list its ledger, every charge it holds is matched
    against the payments and orders recorded here, to the cent.
    """
    now = utcnow()
    seat_filter = [Seat.event_id == event_id] if event_id else []
    order_filter = [Order.event_id == event_id] if event_id else []
    problems = []

    counts = {}
    for ev, status, n in session.execute(
            sa.select(Seat.event_id, Seat.status, sa.func.count()).where(*seat_filter)
            .group_by(Seat.event_id, Seat.status)):
        counts.setdefault(ev, {"available": 0, "held": 0, "sold": 0})[status] = n
    orders = {ev: n for ev, n in session.execute(
        sa.select(Order.event_id, sa.func.count())
        .where(Order.status.in_(LIVE_ORDER), *order_filter).group_by(Order.event_id))}
    sales = {ev: amount for ev, amount in session.execute(
        sa.select(Order.event_id, sa.func.coalesce(sa.func.sum(Order.amount_cents), 0))
        .where(*order_filter).group_by(Order.event_id))}
    sold_for = {ev: amount for ev, amount in session.execute(
        sa.select(Order.event_id, sa.func.coalesce(sa.func.sum(Payment.amount_cents), 0))
        .join(Order, Order.id == Payment.order_id)
        .where(Payment.status == "captured", *order_filter).group_by(Order.event_id))}
    refunded = {ev: amount for ev, amount in session.execute(
        sa.select(Order.event_id, sa.func.coalesce(sa.func.sum(Refund.amount_cents), 0))
        .join(Order, Order.id == Refund.order_id)
        .where(Refund.status == "succeeded", *order_filter).group_by(Order.event_id))}
    captured = {ev: amount for ev, amount in session.execute(
        sa.select(Hold.event_id, sa.func.coalesce(sa.func.sum(Payment.amount_cents), 0))
        .join(Hold, Hold.id == Payment.hold_id)
        .where(Payment.status == "captured", *([Hold.event_id == event_id] if event_id else []))
        .group_by(Hold.event_id))}

    # A sold seat belongs to exactly one paid order.
    for seat_id, order_id, status in session.execute(
            sa.select(Seat.id, Seat.order_id, Order.status)
            .outerjoin(Order, Order.id == Seat.order_id)
            .where(Seat.status == "sold", *seat_filter)):
        if status not in LIVE_ORDER:
            problems.append({"kind": "sold_seat_without_paid_order", "seat_id": seat_id,
                             "order_id": order_id})
    # A seat admits through one ticket at most (void tickets of refunded seats aside).
    for seat_id, n in session.execute(
            sa.select(Ticket.seat_id, sa.func.count()).join(Order, Order.id == Ticket.order_id)
            .where(Ticket.status != "void", *order_filter)
            .group_by(Ticket.seat_id).having(sa.func.count() > 1)):
        problems.append({"kind": "seat_in_several_paid_orders", "seat_id": seat_id, "orders": n})
    for seat_id, order_id in session.execute(
            sa.select(Ticket.seat_id, Ticket.order_id).join(Order, Order.id == Ticket.order_id)
            .join(Seat, Seat.id == Ticket.seat_id)
            .where(Ticket.status != "void", sa.or_(Seat.status != "sold",
                                                   Seat.order_id != Ticket.order_id),
                   *order_filter)):
        problems.append({"kind": "paid_order_seat_not_sold_to_it", "seat_id": seat_id,
                         "order_id": order_id})
    problems += _ticket_problems(session, order_filter)

    # An order's amount equals its seats' prices and its captured payment.
    for order in session.scalars(sa.select(Order).where(*order_filter)):
        seats_total = sum(i.price_cents for i in order.items)
        if seats_total != order.amount_cents:
            problems.append({"kind": "order_amount_differs_from_seats", "order_id": order.id,
                             "amount_cents": order.amount_cents, "seats_cents": seats_total})
        payment = order.payment
        if payment is None or payment.status != "captured" \
                or payment.amount_cents != order.amount_cents:
            problems.append({"kind": "order_without_matching_capture", "order_id": order.id})

    # A captured payment became an order or was refunded.
    for pid, hold_id in session.execute(
            sa.select(Payment.id, Payment.hold_id).join(Hold, Hold.id == Payment.hold_id)
            .where(Payment.status == "captured", Payment.order_id.is_(None),
                   *([Hold.event_id == event_id] if event_id else []))):
        problems.append({"kind": "capture_without_order", "payment_id": pid, "hold_id": hold_id})

    # No seat stays held long past its expiry.
    late = now - timedelta(seconds=sweep_interval_s + SWEEP_SLACK_S)
    for seat_id, expires in session.execute(
            sa.select(Seat.id, Seat.hold_expires_at).where(
                Seat.status == "held", Seat.hold_expires_at < late, *seat_filter)):
        problems.append({"kind": "seat_held_past_expiry", "seat_id": seat_id,
                         "expired_at": expires.isoformat() + "Z"})

    # A payment left pending longer than reconciliation allows.
    stale = now - timedelta(seconds=settle_after_s)
    for pid, updated in session.execute(sa.select(Payment.id, Payment.updated_at).where(
            Payment.status == "pending", Payment.updated_at < stale)):
        problems.append({"kind": "payment_unsettled", "payment_id": pid,
                         "since": updated.isoformat() + "Z"})

    # A refund the processor never answered is settled by reconciliation in time.
    for rid, updated in session.execute(sa.select(Refund.id, Refund.updated_at).where(
            Refund.status == "pending", Refund.updated_at < stale)):
        problems.append({"kind": "refund_unsettled", "refund_id": rid,
                         "since": updated.isoformat() + "Z"})

    from .mail import unsent_problems
    problems += unsent_problems(session, mail_after_s, now=now)

    if processor is not None and hasattr(processor, "ledger") and not event_id:
        problems += _ledger_problems(session, processor.ledger())

    events = []
    for ev in sorted(counts):
        gross, back = int(sales.get(ev, 0)), int(refunded.get(ev, 0))
        events.append({"event_id": ev, "seats": counts[ev], "orders_paid": orders.get(ev, 0),
                       "revenue_cents": gross - back,
                       "payments_captured_cents": int(captured.get(ev, 0)),
                       "refunded_cents": back})
        if gross != int(sold_for.get(ev, 0)):
            problems.append({"kind": "revenue_differs_from_captured_minus_refunded",
                             "event_id": ev, "revenue_cents": gross - back,
                             "captured_cents": int(sold_for.get(ev, 0)),
                             "refunded_cents": back})
    return {"events": events, "problems": problems}


def _ticket_problems(session, order_filter):
    """Every order has a ticket per seat, every ticket an order; refunds match void tickets."""
    problems = []
    tickets_by_order = dict(session.execute(
        sa.select(Ticket.order_id, sa.func.count()).group_by(Ticket.order_id)).all())
    seats_by_order = dict(session.execute(
        sa.select(OrderSeat.order_id, sa.func.count()).join(Order)
        .where(*order_filter).group_by(OrderSeat.order_id)).all())
    for order_id, n in seats_by_order.items():
        if tickets_by_order.get(order_id, 0) != n:
            problems.append({"kind": "order_without_its_tickets", "order_id": order_id,
                             "seats": n, "tickets": tickets_by_order.get(order_id, 0)})
    for ticket_id, order_id in session.execute(
            sa.select(Ticket.id, Ticket.order_id)
            .outerjoin(OrderSeat, sa.and_(OrderSeat.order_id == Ticket.order_id,
                                          OrderSeat.seat_id == Ticket.seat_id))
            .where(OrderSeat.order_id.is_(None))):
        problems.append({"kind": "ticket_without_order", "ticket_id": ticket_id,
                         "order_id": order_id})
    void = dict(session.execute(sa.select(Ticket.order_id, sa.func.sum(Ticket.price_cents))
                                .where(Ticket.status == "void").group_by(Ticket.order_id)).all())
    back = dict(session.execute(sa.select(Refund.order_id, sa.func.sum(Refund.amount_cents))
                                .where(Refund.status == "succeeded")
                                .group_by(Refund.order_id)).all())
    for order_id, status, n in session.execute(
            sa.select(Order.id, Order.status, sa.func.count(Ticket.id))
            .outerjoin(Ticket, sa.and_(Ticket.order_id == Order.id, Ticket.status != "void"))
            .where(*order_filter).group_by(Order.id, Order.status)):
        voided, refunded = int(void.get(order_id) or 0), int(back.get(order_id) or 0)
        if voided != refunded:
            problems.append({"kind": "void_tickets_differ_from_refunds", "order_id": order_id,
                             "void_cents": voided, "refunded_cents": refunded})
        expected = ("refunded" if n == 0 else "partially_refunded"
                    if order_id in void else "paid")
        if status != expected:
            problems.append({"kind": "order_status_differs_from_tickets", "order_id": order_id,
                             "status": status, "expected": expected})
    return problems


def _ledger_problems(session, ledger):
    """Charges the processor holds against payments recorded here, key by key."""
    problems = []
    back = dict(session.execute(sa.select(Refund.order_id, sa.func.sum(Refund.amount_cents))
                                .where(Refund.status == "succeeded")
                                .group_by(Refund.order_id)).all())
    ours = {key: (status, amount - int(back.get(order_id) or 0), order_id)
            for key, status, amount, order_id in session.execute(
                sa.select(Payment.processor_key, Payment.status, Payment.amount_cents,
                          Payment.order_id))}
    theirs = {c["idempotency_key"]: c for c in ledger}
    for key, charge in theirs.items():
        mine = ours.get(key)
        kept = charge["amount_cents"] - (charge.get("refunded_cents") or 0)
        if charge["status"] == "captured":
            if mine is None or mine[0] != "captured" or mine[2] is None:
                problems.append({"kind": "processor_capture_without_order", "key": key,
                                 "amount_cents": charge["amount_cents"],
                                 "payment_status": mine[0] if mine else None})
            elif mine[1] != kept:
                problems.append({"kind": "capture_amount_differs", "key": key,
                                 "processor_cents": kept, "payment_cents": mine[1]})
        elif charge["status"] == "refunded" and mine is not None and mine[0] == "captured" \
                and mine[2] is not None and mine[1] != 0:
            problems.append({"kind": "order_paid_by_refunded_charge", "key": key})
    for key, (status, net, order_id) in ours.items():
        theirs_status = theirs.get(key, {}).get("status")
        if status == "captured" and order_id is not None and net == 0 \
                and theirs_status == "refunded":
            continue  # an order refunded in full
        if status == "captured" and theirs_status != "captured":
            problems.append({"kind": "capture_missing_at_processor", "key": key})
    return problems
