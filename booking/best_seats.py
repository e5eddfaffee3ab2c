"""Best-available hold requests: which seats, decided in the transaction that holds them.

A request `hold {event_id, best: {count, section?, max_price_cents?}}` names no
seats. Inside the worker's batch transaction (booking.holds.process_requests):

1. `propose` reads the event's seats without locks and lets the pure picker
   (booking.best_available.choose_seats) choose for each best request of the batch
   in turn, each after the ones before it; the proposals join the seats the batch
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

import sqlalchemy as sa

from .best_available import Candidate, choose_seats
from .errors import SeatUnavailable
from .locking import lock_seat_rows
from .models import Event, Seat, Venue

ATTEMPTS = 3


def _free(row, now):
    """Available and not kept from sale, or held by a hold whose time ran out."""
    if row["blocked"]:
        return False
    return row["status"] == "available" or (
        row["status"] == "held" and row["hold_expires_at"] is not None
        and row["hold_expires_at"] <= now)


def _read(session, event_id):
    return [dict(r._mapping) for r in session.execute(
        sa.select(Seat.id, Seat.section, Seat.row, Seat.number, Seat.x, Seat.y,
                  Seat.price_cents, Seat.status, Seat.hold_expires_at, Seat.blocked)
        .where(Seat.event_id == event_id))]


def _focal(session, event_id):
    layout = session.scalar(sa.select(Venue.layout).join(Event, Event.venue_id == Venue.id)
                            .where(Event.id == event_id))
    if not layout:
        return None
    point = json.loads(layout).get("focal_point")
    return (point["x"], point["y"]) if point else None


def _choose(rows, taken, best, focal, avoid_singles, now):
    candidates = [Candidate(id=r["id"], section=r["section"], row=r["row"], number=r["number"],
                            price_cents=r["price_cents"],
                            free=r["id"] not in taken and _free(r, now), x=r["x"], y=r["y"])
                  for r in rows]
    return choose_seats(candidates, best["count"], focal=focal, section=best.get("section"),
                        max_price_cents=best.get("max_price_cents"),
                        avoid_singles=avoid_singles) or []


def propose(session, items, avoid_singles, now):
    """Set each best request's seat_ids to a proposal ([] when too few seats match).

    items: the batch's fresh requests in order; only holds with `best` are touched.
    Returns {event_id: focal point} for settle.
    """
    focals, rows, taken = {}, {}, {}
    for item in items:
        if item["kind"] != "hold" or not item.get("best"):
            continue
        event_id = item["event_id"]
        if event_id not in rows:
            rows[event_id] = _read(session, event_id)
            focals[event_id] = _focal(session, event_id)
            taken[event_id] = set()
        item["seat_ids"] = _choose(rows[event_id], taken[event_id], item["best"],
                                   focals[event_id], avoid_singles, now)
        taken[event_id].update(item["seat_ids"])
    return focals


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
        seat_ids = _choose(_read(session, item["event_id"]), taken, item["best"], focal,
                           avoid_singles, now)
        if not seat_ids:
            break
        locked.update(lock_seat_rows(session, [s for s in seat_ids if s not in locked]))
    raise SeatUnavailable.of("no_best_seats", wanted=item["best"]["count"])
