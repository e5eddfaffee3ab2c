"""Best-available hold requests: which seats, decided in the transaction that holds them.

A request `hold {event_id, best: {count, section?, max_price_cents?}}` names no
seats. Inside the worker's batch transaction (booking.holds.process_requests):

1. `propose` reads which seats are free now, without locks, and lets the venue's
   plan (booking.best_available.SeatPlan, its geometry read once per worker process
   and kept PLAN_TTL_S) choose for each best request of the batch in turn, each after
   the ones before it; the proposals join the seats the batch
   locks, in ascending id order with every other seat of the batch;
2. `settle`, for each best request in the batch's order, checks its proposal
   against the locked rows (what earlier requests of the batch took included). A
   proposal overtaken since the read (another worker's batch committed in
   between) is chosen again from a fresh read, and the new seats are locked
   before they count; after ATTEMPTS tries the buyer is told seat_unavailable.

A seat is only ever granted from its locked row, so two buyers asking at once never
get the same seat: the picker's read is a suggestion, the lock decides. Locking the
new seats of a second choice can take locks out of id order; InnoDB then reports a
deadlock and the worker runs the whole batch again (booking.transactions).
"""
import json
import time

import sqlalchemy as sa

from .best_available import Candidate, SeatPlan
from .errors import SeatUnavailable
from .locking import lock_seat_rows
from .models import Event, Seat, Venue

ATTEMPTS = 3
# A venue's geometry is read once and kept this long in each worker process; a seat
# id the plan does not know (seats added) rebuilds it at once. A layout edit reaches
# the picks within this time; the locks decide who gets a seat whatever the plan says.
PLAN_TTL_S = 30.0
_plans = {}   # event_id -> (built at, the event's created_at, SeatPlan)


def _plan(session, event_id, free_ids):
    """The event's SeatPlan, from this process's cache while it is fresh and complete.

    The cache knows an event by its id and creation time (a database made again, as
    tests do, reuses ids)."""
    created = session.scalar(sa.select(Event.created_at).where(Event.id == event_id))
    cached = _plans.get(event_id)
    now = time.monotonic()
    if (cached and cached[1] == created and now - cached[0] < PLAN_TTL_S
            and free_ids <= cached[2].ids):
        return cached[2]
    rows = session.execute(
        sa.select(Seat.id, Seat.section, Seat.row, Seat.number, Seat.x, Seat.y)
        .where(Seat.event_id == event_id)).all()
    plan = SeatPlan([Candidate(id=r.id, section=r.section, row=r.row, number=r.number,
                               price_cents=0, free=False, x=r.x, y=r.y) for r in rows],
                    _focal(session, event_id))
    _plans[event_id] = (now, created, plan)
    return plan


def _free_now(session, event_id, now):
    """{seat id: price} of the seats a hold may take now: available and not kept from
    sale, or held by a hold whose time ran out (the lock re-checks each)."""
    return dict(session.execute(
        sa.select(Seat.id, Seat.price_cents)
        .where(Seat.event_id == event_id, Seat.blocked.is_(None),
               sa.or_(Seat.status == "available",
                      sa.and_(Seat.status == "held", Seat.hold_expires_at <= now)))).all())


def _focal(session, event_id):
    layout = session.scalar(sa.select(Venue.layout).join(Event, Event.venue_id == Venue.id)
                            .where(Event.id == event_id))
    if not layout:
        return None
    point = json.loads(layout).get("focal_point")
    return (point["x"], point["y"]) if point else None


def _choose(session, event_id, prices, taken, best, avoid_singles):
    """prices: {id: price} of the seats free at the read; taken: ids gone since."""
    plan = _plan(session, event_id, prices.keys())
    return plan.choose(prices.keys() - taken, best["count"], prices=prices,
                       section=best.get("section"), max_price_cents=best.get("max_price_cents"),
                       avoid_singles=avoid_singles) or []


def propose(session, items, avoid_singles, now):
    """Set each best request's seat_ids to a proposal ([] when too few seats match).

    items: the batch's fresh requests in order; only holds with `best` are touched.
    Returns {event_id: None} for settle (kept for its signature: the focal point now
    lives in the cached plan).
    """
    events, taken = {}, {}
    for item in items:
        if item["kind"] != "hold" or not item.get("best"):
            continue
        event_id = item["event_id"]
        if event_id not in events:   # one read of the free seats per event and batch
            events[event_id] = _free_now(session, event_id, now)
        done = taken.setdefault(event_id, set())
        item["seat_ids"] = _choose(session, event_id, events[event_id], done, item["best"],
                                   avoid_singles)
        done.update(item["seat_ids"])
    return {event_id: None for event_id in events}


def settle(session, item, locked, focal, avoid_singles, now, is_free):
    """The seat ids the best request gets, each locked and free; raises SeatUnavailable.

    locked: the batch's locked seat rows ({id: row}, updated with what earlier
    requests took, and with rows this locks); is_free(row): the batch's test.
    """
    seat_ids = item["seat_ids"]
    for _ in range(ATTEMPTS):
        if seat_ids and all(s in locked and is_free(locked[s]) for s in seat_ids):
            return seat_ids
        # Seats taken since the read, by this batch or a committed one, count as taken.
        taken = {s for s, row in locked.items() if not is_free(row)}
        seat_ids = _choose(session, item["event_id"], _free_now(session, item["event_id"], now),
                           taken, item["best"], avoid_singles)
        if not seat_ids:
            break
        locked.update(lock_seat_rows(session, [s for s in seat_ids if s not in locked]))
    raise SeatUnavailable.of("no_best_seats", wanted=item["best"]["count"])
