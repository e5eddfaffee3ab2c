"""The audit's verdict on one event, with each problem said in words for the organizer."""
from flask import current_app

from .audit import run_audit

_WORDS = {
    "sold_seat_without_paid_order": "Seat {seat_id} is sold but no paid order holds it (order {order_id}).",
    "seat_in_several_paid_orders": "Seat {seat_id} is in {orders} paid orders at once.",
    "paid_order_seat_not_sold_to_it": "Order {order_id} is paid for seat {seat_id}, but the seat is not sold to it.",
    "order_amount_differs_from_seats": "Order {order_id} charged {amount_cents} cents, but its seats add up to {seats_cents}.",
    "order_without_matching_capture": "Order {order_id} has no captured payment of its amount.",
    "capture_without_order": "Payment {payment_id} was captured but became no order and was not refunded.",
    "seat_held_past_expiry": "Seat {seat_id} is still held although its hold ended at {expired_at}.",
    "payment_unsettled": "Payment {payment_id} has waited for the card processor since {since}.",
}


def problem_words(problem):
    """One audit problem as a sentence (unknown kinds are named with their details)."""
    template = _WORDS.get(problem.get("kind"))
    if template:
        try:
            return template.format(**problem)
        except (KeyError, IndexError):
            pass
    details = ", ".join(f"{k} {v}" for k, v in problem.items() if k != "kind")
    return f"{str(problem.get('kind', 'problem')).replace('_', ' ').capitalize()}: {details}."


def event_verdict(session, event_id):
    """{ok, problems: [sentence], counts} of run_audit for one event."""
    config = current_app.config
    report = run_audit(session, event_id=event_id,
                       sweep_interval_s=config["SWEEP_INTERVAL_SECONDS"],
                       settle_after_s=config["PAYMENT_TIMEOUT_SECONDS"] * 2
                       + config["RECONCILE_INTERVAL_SECONDS"] * 2)
    events = report["events"]
    return {"ok": not report["problems"],
            "problems": [problem_words(p) for p in report["problems"]],
            "raw": report["problems"], "counts": events[0] if events else None}
