"""What an event has sold: the sales aggregates and the live dashboard's figures.

`sales_of` is the organizer API's `/sales`. `dashboard_of` adds what the live
dashboard charts: holds and orders a minute, payment declines and errors, and
the hold answers' latency (p50/p99) that the workers count per event in shared
state (`record_hold_answers`, called by the task that sends the answers). Every
query here is an indexed aggregate over one event; booking.dashboard runs them
at most once a second per event, whoever watches.
"""
import time
from datetime import datetime, timedelta

import sqlalchemy as sa

from .models import Hold, Order, OrderSeat, Payment, Seat, iso_utc, utcnow

# Upper bounds (ms) of the hold-latency buckets the workers count.
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000, 10000)
LATENCY_WINDOW_S = 30
CHART_MINUTES = 30


def sales_of(session, event_id):
    """{seats: {available, held, sold, blocked}, revenue_cents, refunded_cents, orders, by_section}."""
    sections, totals = {}, {"available": 0, "held": 0, "sold": 0, "blocked": 0}
    for section, status, blocked, n in session.execute(
            sa.select(Seat.section, Seat.status, Seat.blocked.is_not(None), sa.func.count())
            .where(Seat.event_id == event_id)
            .group_by(Seat.section, Seat.status, Seat.blocked.is_not(None))
            .order_by(sa.func.min(Seat.id))):
        key = "blocked" if blocked else status
        entry = sections.setdefault(section, {"section": section, "available": 0, "held": 0,
                                              "sold": 0, "blocked": 0, "revenue_cents": 0})
        entry[key] += n
        totals[key] += n
    for section, revenue in session.execute(
            sa.select(Seat.section, sa.func.sum(OrderSeat.price_cents))
            .join(Seat, Seat.id == OrderSeat.seat_id)
            .join(Order, Order.id == OrderSeat.order_id)
            .where(Order.event_id == event_id, Seat.status == "sold",
                   Seat.order_id == OrderSeat.order_id)
            .group_by(Seat.section)):
        if section in sections:
            sections[section]["revenue_cents"] = int(revenue or 0)
    by_status = dict((status, (n, int(amount or 0))) for status, n, amount in session.execute(
        sa.select(Order.status, sa.func.count(), sa.func.sum(Order.amount_cents))
        .where(Order.event_id == event_id).group_by(Order.status)))
    paid_n, paid = by_status.get("paid", (0, 0))
    refunded_n, refunded = by_status.get("refunded", (0, 0))
    partial_n, partial = by_status.get("partially_refunded", (0, 0))
    revenue = sum(s["revenue_cents"] for s in sections.values())
    return {"event_id": event_id, "seats": totals,
            "revenue_cents": revenue,
            # Whole refunds; what a partial refund gave back is the order's amount less
            # what its still-sold seats bring in.
            "refunded_cents": refunded + max(0, paid + partial - revenue),
            "orders": paid_n + partial_n, "orders_refunded": refunded_n,
            "by_section": list(sections.values())}


EPOCH = datetime(1970, 1, 1)


def _per_minute(session, column, event_column, event_id, since, *where):
    """{minute since the epoch: rows} of an event's rows created since `since`."""
    if session.get_bind().dialect.name in ("mysql", "mariadb"):
        # Arithmetic on the stored naive UTC value: UNIX_TIMESTAMP() would read
        # it in the connection's time zone.
        minute = sa.func.timestampdiff(sa.text("MINUTE"), EPOCH, column)
    else:
        minute = sa.cast(sa.func.strftime("%s", column), sa.Integer) / 60
    rows = session.execute(sa.select(minute, sa.func.count())
                           .where(event_column == event_id, column >= since, *where)
                           .group_by(minute)).all()
    return {int(m): n for m, n in rows}


def activity_of(session, event_id, now=None):
    """Holds and orders a minute over the last CHART_MINUTES, and recent payment failures."""
    now = now or utcnow()
    since = (now - timedelta(minutes=CHART_MINUTES - 1)).replace(second=0, microsecond=0)
    holds = _per_minute(session, Hold.created_at, Hold.event_id, event_id, since)
    orders = _per_minute(session, Order.created_at, Order.event_id, event_id, since)
    first = int((since - EPOCH).total_seconds() // 60)
    minutes = [first + i for i in range(CHART_MINUTES)]
    recent = now - timedelta(minutes=10)
    failures = dict(session.execute(
        sa.select(Payment.status, sa.func.count()).join(Hold, Hold.id == Payment.hold_id)
        .where(Hold.event_id == event_id, Payment.status.in_(("declined", "failed")),
               Payment.updated_at >= recent).group_by(Payment.status)).all())
    return {"minutes": [iso_utc(EPOCH + timedelta(minutes=m)) for m in minutes],
            "holds": [holds.get(m, 0) for m in minutes],
            "orders": [orders.get(m, 0) for m in minutes],
            "declines_10min": failures.get("declined", 0),
            "errors_10min": failures.get("failed", 0)}


def _latency_key(namespace, event_id, second, bucket):
    return f"{namespace}:dash:lat:{event_id}:{second}:{bucket}"


def record_hold_answers(state, namespace, items, now=None):
    """Count hold answers per event by latency bucket, per second (kept two minutes).

    items: the requests just answered ({kind, event_id, received_at}). One
    shared-state write for the whole batch.
    """
    counts = hold_answer_counts(namespace, items, now)
    if counts:
        state.incr(counts, COUNTS_TTL_S)


COUNTS_TTL_S = 120


def hold_answer_counts(namespace, items, now=None):
    """{counter key: amount} that record_hold_answers adds (for a caller that writes them
    together with its own, in one round trip: workers.tasks.send)."""
    now = time.time() if now is None else now
    second = int(now)
    counts = {}
    for item in items:
        if item.get("kind") != "hold" or not item.get("received_at") or not item.get("event_id"):
            continue
        ms = (now - item["received_at"]) * 1000
        bucket = next((i for i, b in enumerate(LATENCY_BUCKETS_MS) if ms <= b),
                      len(LATENCY_BUCKETS_MS))
        key = _latency_key(namespace, item["event_id"], second, bucket)
        counts[key] = counts.get(key, 0) + 1
    return counts


def latency_of(state, namespace, event_id, now=None, window_s=LATENCY_WINDOW_S):
    """{answers, p50_ms, p99_ms} of the event's hold answers over the last window_s seconds.

    A percentile is the upper bound of the bucket it falls in (None: no answers).
    """
    now = int(time.time() if now is None else now)
    n = len(LATENCY_BUCKETS_MS) + 1
    keys = [_latency_key(namespace, event_id, s, b)
            for s in range(now - window_s + 1, now + 1) for b in range(n)]
    values = state.get_many(keys)
    counts = [0] * n
    for i, v in enumerate(values):
        if v:
            counts[i % n] += int(v)
    total = sum(counts)

    def percentile(p):
        if not total:
            return None
        rank, seen = p * total, 0
        for b, c in enumerate(counts):
            seen += c
            if seen >= rank:
                # Past the last bucket reads as its bound: "10 s or more".
                return LATENCY_BUCKETS_MS[min(b, len(LATENCY_BUCKETS_MS) - 1)]
        return None
    return {"answers": total, "p50_ms": percentile(0.5), "p99_ms": percentile(0.99),
            "window_s": window_s}
