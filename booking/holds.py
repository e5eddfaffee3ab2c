"""Holding and releasing seats: the rules MySQL enforces for every click.

A batch of requests (from many buyers) is decided in one short transaction:
lock the buyers' user rows, then every seat the batch touches in ascending id
order, decide each request in arrival order against the locked rows, write the
outcome, and let the caller commit. All workers lock in the same order (users,
then seats, then holds), so concurrent batches wait for each other instead of
deadlocking; rows locked with FOR UPDATE cannot change under a decision, so
"every seat or none" holds per request and no seat is ever granted twice.

Functions here take a session and plain values, return plain values, and never
commit or emit: the task that calls them does that after commit.
"""
import logging
from dataclasses import dataclass
from datetime import timedelta, timezone

import sqlalchemy as sa

from .errors import (BookingError, Conflict, HoldNotOwned, LimitExceeded, NotFound, SeatUnavailable)
from . import best_seats, records
from .locking import lock_holds, lock_seat_rows, lock_seats, lock_users, write_seat_rows
from .models import HOLD_OPEN_STATUSES, Event, Hold, HoldSeat, Seat, utcnow
from .outcome import Outcome, seat_state, set_seat
from .payloads import reply

log = logging.getLogger(__name__)


@dataclass
class Settings:
    hold_ttl_seconds: int
    max_seats_per_order: int
    max_open_holds: int
    # Best available never leaves a lone free seat when another choice exists.
    avoid_single_seats: bool = True


def _is_free(seat, now):
    """Available and not kept from sale, or held by a hold whose time ran out (lazy
    expiry; never while paying)."""
    if seat.get("blocked"):
        return False
    return seat["status"] == "available" or (
        seat["status"] == "held" and seat["hold_expires_at"] is not None
        and seat["hold_expires_at"] <= now)


def _open_hold_counts(session, user_ids, now):
    rows = session.execute(
        sa.select(Hold.user_id, sa.func.count()).where(
            Hold.user_id.in_(user_ids), Hold.status.in_(HOLD_OPEN_STATUSES),
            sa.or_(Hold.status == "paying", Hold.expires_at > now))
        .group_by(Hold.user_id)).all()
    return dict(rows)


def process_requests(session, items, settings, now=None):
    """Decide a batch of hold and release requests in one transaction.

    items: dicts with kind ('hold' or 'release'), user_id, request_id, and
    event_id + seat_ids (hold) or hold_id (release). Each request is all or
    nothing; a request already answered is answered again from its record.
    Returns an Outcome; the caller commits, then sends it. Database errors
    propagate (the caller retries deadlocks and lock timeouts).

    This is the hot path of an on-sale, so seats are handled as plain rows:
    one locking read, decisions in memory, one UPDATE for every changed seat
    and one multi-row INSERT for the new holds, whatever the batch size.
    """
    now = now or utcnow()
    outcome = Outcome()
    if not items:
        return outcome

    # Lock order: users, seats (ascending), then holds. Locking the buyers
    # first serializes each buyer's requests across workers, so the repeat
    # check and the open-hold count below cannot race a concurrent batch.
    lock_users(session, {i["user_id"] for i in items})

    # Repeats: a redelivered task, or the same request_id sent twice.
    recorded = records.recorded(session, {(i["user_id"], i["request_id"]) for i in items})
    fresh, seen = [], set()
    for item in items:
        key = (item["user_id"], item["request_id"])
        if key in recorded:
            event, payload = recorded[key]
            outcome.results.append((key[0], key[1], event, payload))
        elif key not in seen:
            seen.add(key)
            fresh.append(item)
    if not fresh:
        return outcome

    release_ids = {i["hold_id"] for i in fresh if i["kind"] == "release"}
    release_seats = session.execute(
        sa.select(HoldSeat.hold_id, HoldSeat.seat_id)
        .where(HoldSeat.hold_id.in_(release_ids))).all() if release_ids else []
    # Best-available requests get proposed seats, locked with the others below.
    focals = best_seats.propose(session, fresh, settings.avoid_single_seats, now)
    seat_ids = {s for i in fresh if i["kind"] == "hold" for s in i["seat_ids"]}
    seat_ids |= {seat_id for _, seat_id in release_seats}
    seats = lock_seat_rows(session, seat_ids)
    holds = {h.id: h for h in lock_holds(session, release_ids)}
    open_holds = _open_hold_counts(session, {i["user_id"] for i in fresh}, now)
    batch = _Batch(seats, now)
    events, decided = {}, []

    for item in fresh:
        event_name = records.RESULT_EVENTS[item["kind"]]
        try:
            if item["kind"] == "hold":
                if item["event_id"] not in events:
                    events[item["event_id"]] = session.get(Event, item["event_id"])
                if item.get("best") and events[item["event_id"]] is not None:
                    item = dict(item, seat_ids=best_seats.settle(
                        session, item, batch.seats, focals.get(item["event_id"]),
                        settings.avoid_single_seats, now, lambda row: _is_free(row, now)))
                value = _hold_one(batch, item, events[item["event_id"]], open_holds, settings)
            else:
                value = _release_one(batch, item, holds)
            decided.append((item, event_name, True, value))
        except BookingError as err:
            decided.append((item, event_name, False, err))

    batch.write(session, outcome)
    if batch.stale:
        # Seats taken over from expired holds: those holds can never be paid now.
        _close_holds(session, outcome, batch.stale, "expired")

    answers = []
    for item, event_name, ok, value in decided:
        uid, rid = item["user_id"], item["request_id"]
        if ok and item["kind"] == "hold":
            payload = reply(rid, event=event_name, hold_id=value["id"],
                            event_id=value["event_id"], seat_ids=value["seat_ids"],
                            expires_at=value["expires_at"], amount_cents=value["amount_cents"],
                            currency=value["currency"])
        elif ok:
            payload = reply(rid, event=event_name, **value)
        else:
            payload = reply(rid, value, event=event_name)
        answers.append((uid, rid, event_name, payload))
    records.record(session, answers, now)
    outcome.results += answers
    return outcome


class _Batch:
    """The locked seat rows of one batch, the changes decided on them, and new holds."""

    def __init__(self, seats, now):
        self.seats = seats          # {id: row dict}, locked
        self.now = now
        self.changed = {}           # id -> row dict, final state
        self.new_holds = []         # row dicts; "id" filled in by write()
        self.stale = set()          # expired holds whose seats were taken over

    def set(self, seat, status, hold=None, expires_at=None):
        seat["status"] = status
        seat["hold"] = hold
        seat["hold_id"] = None
        seat["hold_expires_at"] = expires_at
        seat["version"] += 1
        self.changed[seat["id"]] = seat

    def write(self, session, outcome):
        """Insert the new holds, then every changed seat in one statement."""
        if self.new_holds:
            table = Hold.__table__
            ids = session.execute(
                sa.insert(table).returning(table.c.id, sort_by_parameter_order=True),
                [{k: h[k] for k in ("user_id", "event_id", "status", "amount_cents", "currency",
                                    "expires_at", "created_at")} for h in self.new_holds]
            ).scalars().all()
            for hold, hold_id in zip(self.new_holds, ids):
                hold["id"] = hold_id
            session.execute(sa.insert(HoldSeat.__table__), [
                {"hold_id": h["id"], "seat_id": s, "price_cents": p}
                for h in self.new_holds for s, p in zip(h["seat_ids"], h["prices"])])
        for seat in self.changed.values():
            if seat.get("hold") is not None:
                seat["hold_id"] = seat["hold"]["id"]
            outcome.seats.setdefault(seat["event_id"], {})[seat["id"]] = seat_state(
                seat["id"], seat["status"], seat["version"], seat["hold_expires_at"])
        write_seat_rows(session, list(self.changed.values()))


# ------------------------------------------------------------------ the rules
# Each is called twice: by the web tier as a pre-check (on what it can read
# without locks, so that bad requests never reach a worker), and by the worker
# as the decision, under locks.

def check_hold_request(settings, event_id, seat_ids, event_seats, open_holds, count=None):
    """What a hold request must satisfy before its seats' states are looked at.

    event_seats: the ids of the event's seats (any container; None: no such
    event). open_holds: how many open holds the buyer has. count: the seats a
    best-available request asks for. Raises NotFound (no such event, seats not
    of this event) or LimitExceeded (seats per order, open holds).
    """
    if event_seats is None:
        raise NotFound.of("no_event", event_id=event_id)
    if max(len(seat_ids), count or 0) > settings.max_seats_per_order:
        raise LimitExceeded.of("seats_per_order", limit="seats_per_order",
                               max=settings.max_seats_per_order)
    check_open_holds(settings, open_holds)
    missing = [s for s in seat_ids if s not in event_seats]
    if missing:
        raise NotFound.of("seats_not_in_event", seat_ids=missing)


def check_open_holds(settings, open_holds):
    """Raise LimitExceeded once a buyer has MAX_OPEN_HOLDS open holds."""
    if open_holds >= settings.max_open_holds:
        raise open_holds_limit(settings)


def open_holds_limit(settings):
    """The error for a buyer whose open holds and hold requests in flight reach the limit."""
    return LimitExceeded.of("open_holds", limit="open_holds", max=settings.max_open_holds)


def check_owner(hold_id, owner_id, user_id):
    """Raise NotFound (owner_id None: no such hold) or HoldNotOwned unless it is user_id's."""
    if owner_id is None:
        raise NotFound.of("no_hold", hold_id=hold_id)
    if owner_id != user_id:
        raise HoldNotOwned(hold_id=hold_id)


def check_release(hold_id, owner_id, status, user_id):
    """Raise unless user_id may release the hold: NotFound (owner_id None: no such hold),
    HoldNotOwned, Conflict (being paid for, or paid). A released or expired hold may be
    released again: that changes nothing and succeeds."""
    check_owner(hold_id, owner_id, user_id)
    if status == "paying":
        raise Conflict.of("hold_paying_release", hold_id=hold_id)
    if status == "paid":
        raise Conflict.of("hold_paid", hold_id=hold_id)


# ------------------------------------------------------------ the decisions

def _hold_one(batch, item, event, open_holds, settings):
    uid, seat_ids, seats, now = item["user_id"], item["seat_ids"], batch.seats, batch.now
    event_seats = None if event is None else {
        s for s in seat_ids if s in seats and seats[s]["event_id"] == event.id}
    check_hold_request(settings, item["event_id"], seat_ids, event_seats,
                       open_holds.get(uid, 0))
    taken = [s for s in seat_ids if not _is_free(seats[s], now)]
    if taken:
        raise SeatUnavailable(seat_ids=sorted(taken))

    ordered = sorted(seat_ids)
    hold = {"user_id": uid, "event_id": event.id, "status": "held", "currency": event.currency,
            "amount_cents": sum(seats[s]["price_cents"] for s in ordered),
            "expires_at": now + timedelta(seconds=settings.hold_ttl_seconds),
            "created_at": now, "seat_ids": ordered,
            "prices": [seats[s]["price_cents"] for s in ordered]}
    batch.new_holds.append(hold)
    batch.stale.update(seats[s]["hold_id"] for s in ordered
                       if seats[s]["status"] == "held" and seats[s]["hold_id"])
    for s in ordered:
        batch.set(seats[s], "held", hold=hold, expires_at=hold["expires_at"])
    open_holds[uid] = open_holds.get(uid, 0) + 1
    return hold


def _release_one(batch, item, holds):
    hold = holds.get(item["hold_id"])
    check_release(item["hold_id"], hold.user_id if hold else None,
                  hold.status if hold else None, item["user_id"])
    if hold.status == "held":
        hold.status = "released"
        for seat in batch.seats.values():
            if seat["hold_id"] == hold.id and seat["status"] == "held":
                batch.set(seat, "available")
    # Released or expired already: releasing again changes nothing and succeeds.
    return {"hold_id": hold.id}


def _close_holds(session, outcome, hold_ids, new_status):
    """Mark still-'held' holds closed, free the given seats of theirs, notify owners."""
    holds = lock_holds(session, hold_ids, Hold.status == "held")
    for hold in holds:
        hold.status = new_status
        outcome.notices.append((hold.user_id, "hold_closed",
                                {"hold_id": hold.id, "event_id": hold.event_id,
                                 "reason": new_status}))
    return holds


def release_expired(session, now=None, limit=2000):
    """Free seats whose hold ran out (the sweep behind lazy expiry). Returns an Outcome.

    Seats held for a payment in progress have no expiry and are left alone. As
    plain rows, like a batch of requests: in a sale where holds run out, the
    sweep through ORM objects took a fifth of the workers' CPU.

    Seats another transaction has locked are skipped, not waited for: that is a
    request deciding on them (buyers ask for seats the moment their holds run
    out), which takes them over or leaves them for the next sweep. Waiting, the
    sweep held its other locks meanwhile, requests waited for it in turn, and
    sweeps took seconds in a sale (docs/BENCHMARKS.md, "#13: one task per interval").
    """
    now = now or utcnow()
    outcome = Outcome()
    candidates = session.scalars(sa.select(Seat.id).where(
        Seat.status == "held", Seat.hold_expires_at <= now).order_by(Seat.id).limit(limit)).all()
    seats = [s for s in lock_seat_rows(session, candidates, skip_locked=True).values()
             if s["status"] == "held" and s["hold_expires_at"] is not None
             and s["hold_expires_at"] <= now]
    if not seats:
        return outcome
    # Lock order: seats, then holds (as every transaction takes them).
    closed = session.execute(
        sa.select(Hold.id, Hold.user_id, Hold.event_id)
        .where(Hold.id.in_(sorted({s["hold_id"] for s in seats})), Hold.status == "held")
        .order_by(Hold.id).with_for_update()).all()
    if closed:
        session.execute(sa.update(Hold).where(Hold.id.in_([h.id for h in closed]))
                        .values(status="expired"))
    outcome.notices += [(h.user_id, "hold_closed",
                         {"hold_id": h.id, "event_id": h.event_id, "reason": "expired"})
                        for h in closed]
    for seat in seats:
        seat.update(status="available", hold_id=None, hold_expires_at=None,
                    version=seat["version"] + 1)
        outcome.seats.setdefault(seat["event_id"], {})[seat["id"]] = seat_state(
            seat["id"], "available", seat["version"])
    write_seat_rows(session, seats)
    return outcome


def release_holds(session, hold_ids, new_status="released"):
    """Close open holds not being paid (a buyer gone) and free their seats. Returns an Outcome."""
    outcome = Outcome()
    if not hold_ids:
        return outcome
    seat_ids = session.scalars(sa.select(Seat.id).where(Seat.hold_id.in_(hold_ids))).all()
    seats = lock_seats(session, seat_ids)
    with session.no_autoflush:
        closed = {h.id for h in _close_holds(session, outcome, hold_ids, new_status)}
        for seat in seats.values():
            if seat.hold_id in closed and seat.status == "held":
                set_seat(outcome, seat, "available")
    session.flush()
    return outcome


def holders(session):
    """The buyers with an open hold not being paid (each once).

    The sweep reads them every few seconds to find buyers who left: one row per
    buyer, not per hold (12,000 open holds of 1,000 buyers: 5 ms of CPU instead of
    40, bench/holds.py's steady state); held_by() then reads the holds of the few
    who are gone.
    """
    return session.scalars(sa.select(Hold.user_id).where(Hold.status == "held").distinct()).all()


def held_by(session, user_ids):
    """The ids of the open holds not being paid of these buyers."""
    if not user_ids:
        return []
    return session.scalars(sa.select(Hold.id).where(
        Hold.user_id.in_(user_ids), Hold.status == "held").order_by(Hold.id)).all()


def open_hold_expiries(session, user_id, settings, now=None):
    """{hold_id: unix time it stops counting} of the buyer's open holds, as the worker
    counts them: held until its expiry; being paid for, a hold's time from now."""
    now = now or utcnow()
    rows = session.execute(sa.select(Hold.id, Hold.status, Hold.expires_at).where(
        Hold.user_id == user_id, Hold.status.in_(HOLD_OPEN_STATUSES),
        sa.or_(Hold.status == "paying", Hold.expires_at > now))).all()
    paying_until = now + timedelta(seconds=settings.hold_ttl_seconds)
    return {hold_id: _unix(paying_until if status == "paying" else expires_at)
            for hold_id, status, expires_at in rows}


def _unix(moment):
    return moment.replace(tzinfo=timezone.utc).timestamp()


def hold_state(session, hold_id):
    """(user_id, status, expires_at) of a hold, or (None, None, None): the web tier's pre-checks."""
    row = session.execute(sa.select(Hold.user_id, Hold.status, Hold.expires_at)
                          .where(Hold.id == hold_id)).first()
    return tuple(row) if row else (None, None, None)


def open_holds_of(session, user_id, event_id, now=None):
    """The buyer's open holds on an event, oldest first: held and not run out, or being paid.

    [{hold_id, event_id, seat_ids, status, expires_at, amount_cents, currency}]: what
    join_event tells every socket of the buyer, so that a tab opened after the hold
    (or after the tab that asked for it closed) shows the seats as theirs and offers
    to pay for them or give them back.
    """
    now = now or utcnow()
    rows = session.scalars(
        sa.select(Hold).where(Hold.user_id == user_id, Hold.event_id == event_id,
                              Hold.status.in_(HOLD_OPEN_STATUSES),
                              sa.or_(Hold.status == "paying", Hold.expires_at > now))
        .order_by(Hold.id)).all()
    return [{"hold_id": h.id, "event_id": h.event_id, "seat_ids": [s.seat_id for s in h.seats],
             "status": h.status, "expires_at": h.expires_at, "amount_cents": h.amount_cents,
             "currency": h.currency} for h in rows]
