"""The audit: every booking invariant, checked from the database."""
from datetime import timedelta

import sqlalchemy as sa

from .models import Hold, Order, OrderSeat, Payment, Seat, utcnow

# A held seat may outlive its expiry until the next sweep, plus this slack.
SWEEP_SLACK_S = 5


def run_audit(session, event_id=None, sweep_interval_s=2.0, processor=None,
              settle_after_s=60.0):
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
    orders = {ev: (n, rev) for ev, n, rev in session.execute(
        sa.select(Order.event_id, sa.func.count(), sa.func.coalesce(sa.func.sum(Order.amount_cents), 0))
        .where(Order.status == "paid", *order_filter).group_by(Order.event_id))}
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
        if status != "paid":
            problems.append({"kind": "sold_seat_without_paid_order", "seat_id": seat_id,
                             "order_id": order_id})
    for seat_id, n in session.execute(
            sa.select(OrderSeat.seat_id, sa.func.count()).join(Order)
            .where(Order.status == "paid", *order_filter)
            .group_by(OrderSeat.seat_id).having(sa.func.count() > 1)):
        problems.append({"kind": "seat_in_several_paid_orders", "seat_id": seat_id, "orders": n})
    for seat_id, order_id in session.execute(
            sa.select(OrderSeat.seat_id, OrderSeat.order_id).join(Order)
            .join(Seat, Seat.id == OrderSeat.seat_id)
            .where(Order.status == "paid", sa.or_(Seat.status != "sold",
                                                  Seat.order_id != OrderSeat.order_id),
                   *order_filter)):
        problems.append({"kind": "paid_order_seat_not_sold_to_it", "seat_id": seat_id,
                         "order_id": order_id})

    # An order's amount equals its seats' prices and its captured payment.
    for order in session.scalars(sa.select(Order).where(*order_filter)):
        seats_total = sum(i.price_cents for i in order.items)
        if seats_total != order.amount_cents:
            problems.append({"kind": "order_amount_differs_from_seats", "order_id": order.id,
                             "amount_cents": order.amount_cents, "seats_cents": seats_total})
        payment = order.payment
        if order.status == "paid" and (payment is None or payment.status != "captured"
                                       or payment.amount_cents != order.amount_cents):
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

    if processor is not None and hasattr(processor, "ledger") and not event_id:
        problems += _ledger_problems(session, processor.ledger())

    events = []
    for ev in sorted(counts):
        n, revenue = orders.get(ev, (0, 0))
        events.append({"event_id": ev, "seats": counts[ev], "orders_paid": n,
                       "revenue_cents": int(revenue),
                       "payments_captured_cents": int(captured.get(ev, 0))})
    return {"events": events, "problems": problems}


def _ledger_problems(session, ledger):
    """Charges the processor holds against payments recorded here, key by key."""
    problems = []
    ours = {key: (status, amount, order_id) for key, status, amount, order_id in session.execute(
        sa.select(Payment.processor_key, Payment.status, Payment.amount_cents, Payment.order_id))}
    theirs = {c["idempotency_key"]: c for c in ledger}
    for key, charge in theirs.items():
        mine = ours.get(key)
        if charge["status"] == "captured":
            if mine is None or mine[0] != "captured" or mine[2] is None:
                problems.append({"kind": "processor_capture_without_order", "key": key,
                                 "amount_cents": charge["amount_cents"],
                                 "payment_status": mine[0] if mine else None})
            elif mine[1] != charge["amount_cents"]:
                problems.append({"kind": "capture_amount_differs", "key": key,
                                 "processor_cents": charge["amount_cents"],
                                 "payment_cents": mine[1]})
        elif charge["status"] == "refunded" and mine is not None and mine[0] == "captured" \
                and mine[2] is not None:
            problems.append({"kind": "order_paid_by_refunded_charge", "key": key})
    for key, (status, _amount, _order) in ours.items():
        if status == "captured" and theirs.get(key, {}).get("status") != "captured":
            problems.append({"kind": "capture_missing_at_processor", "key": key})
    return problems
