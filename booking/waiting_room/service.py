"""The waiting room's service: entering, describing a place, the admission tick, ops setters.

Functions take a session, the room store and plain values; none commits or
sends. The admission tick returns what to send, and its task
(workers.tasks.admit_waiting_buyers) commits, then sends it.
"""
import logging
import secrets
import time
from dataclasses import dataclass, field

import sqlalchemy as sa

from ..errors import InvalidRequest, NotFound
from ..models import WAITING_ROOM_STATES, Event
from .gates import Gate, read_gate
from .rate import AutoRate
from .store import ADMITTED, PRE_QUEUE, QUEUED
from .tokens import iso, issue_token, unix

log = logging.getLogger(__name__)

# How many buyers are told their new position on every tick; those further
# back hear it every FULL_UPDATE_SECONDS (their wait changes slowly anyway).
# (Every update is a socket send from a web process: 2,000 a tick held web
# processes long enough to push hold answers past their target in
# bench/surge.py; the front 200 are the ones whose wait is seconds.)
FRONT_UPDATES = 200
FULL_UPDATE_SECONDS = 10.0


def enter(store, gate, user_id, rate_now=None, now=None):
    """Put a buyer in the room (once per account) and describe their place.

    Returns the contract's waiting_room object; an admitted buyer's carries the
    admission token again, so that a buyer who missed the `admitted` message
    (a reconnect, another tab, another instance) gets it from any join.
    """
    now = time.time() if now is None else now
    place = store.join(gate.event_id, user_id, now, secrets.randbits(52))
    rate = rate_now or gate.rate_per_min or store.current_rate(gate.event_id)
    return describe(gate, place, rate, now)


def describe(gate, place, rate_per_min, now):
    """The waiting_room / queue_update body for a place (state, rank or expiry, counts)."""
    state = place["state"]
    body = {"state": state, "seq": place["seq"]}
    if state == ADMITTED:
        body.update(position=0, ahead=0, eta_s=0, admission_token=issue_token(
            place["user_id"], gate.event_id, place["expires_at"]),
            expires_at=iso(place["expires_at"]))
        return body
    per_s = (rate_per_min or 0) / 60.0
    paused = gate.room == "paused"
    until_sale = max(0.0, (gate.on_sale_at or now) - now)
    if state == PRE_QUEUE:
        # The draw has not happened: the place is anywhere among the pre-queue.
        waiting = place["pre_queue"]
        body.update(position=None, ahead=None, pre_queue=waiting)
        if per_s and not paused:
            body.update(eta_s=round(until_sale + waiting / per_s / 2),
                        eta_range_s=[round(until_sale), round(until_sale + waiting / per_s)])
        else:
            body.update(eta_s=None, eta_range_s=[round(until_sale), None])
        return body
    ahead = place["ahead"]
    body.update(position=ahead + 1, ahead=ahead)
    if per_s and not paused:
        eta = (ahead + 1) / per_s
        # A set rate is kept to within a tick; a derived one may halve or grow.
        low, high = (eta, eta + 2) if gate.rate_per_min else (eta / 2, eta * 2 + 2)
        body.update(eta_s=round(eta), eta_range_s=[round(low), round(high)])
    else:
        body.update(eta_s=None, eta_range_s=[None, None])
    if paused:
        body["paused"] = True
    return body


@dataclass
class Tick:
    """What one admission tick did, and what to send once its changes are committed."""
    admitted: dict = field(default_factory=dict)   # {event_id: buyers admitted}
    notices: list = field(default_factory=list)    # (user_id, "admitted", payload)
    positions: list = field(default_factory=list)  # one queue-positions message per room


def admit_due(session, store, pressure, config, now=None):
    """One admission tick for every event with a waiting room; returns a Tick.

    Draws the pre-queue of events whose on-sale has come, admits buyers at each
    room's rate (in Redis: a lost message is recovered by the buyer's next
    join), and turns off a drained room that is empty (in session: the caller
    commits, then sends the Tick's notices and positions). Raises nothing for
    one bad room: it is logged and the others go on.
    """
    now = time.time() if now is None else now
    rows = session.execute(sa.select(Event.id, Event.on_sale_at, Event.waiting_room,
                                     Event.admission_rate_per_min)
                           .where(Event.waiting_room.is_not(None))).all()
    session.rollback()
    tick = Tick()
    signals = None
    for row in rows:
        gate = Gate(row.id, row.waiting_room, unix(row.on_sale_at), row.admission_rate_per_min)
        try:
            if gate.rate_per_min is None and signals is None:
                signals = pressure()   # (depth, bound, late and slow shares): see AutoRate
            tick.admitted[gate.event_id] = _admit_one(session, store, tick, gate, signals,
                                                      config, now)
        except Exception:
            log.exception("admission for event %s failed", gate.event_id)
    return tick


def _admit_one(session, store, tick, gate, signals, config, now):
    event_id = gate.event_id
    store.register(event_id)
    if not store.try_lock(event_id, ttl=max(5, int(config["ADMISSION_INTERVAL_SECONDS"] * 5))):
        return 0  # another tick is still at it (a slow worker); it keeps positions in order
    try:
        if gate.rate_per_min is not None:
            rate = float(gate.rate_per_min)
        else:
            rate = store.current_rate(event_id) or config["AUTO_ADMISSION_START_PER_MIN"]
            # It adapts only while the door is what holds buyers back. Before
            # the draw, while paused or with nobody queued there is nothing to
            # learn: an idle pipeline would grow the rate to its maximum, and
            # the on-sale would open with a flood.
            if gate.room != "paused" and store.drawn(event_id) and store.queued(event_id, 1):
                depth, bound, late, slow = signals or (0, 1, 0.0, 0.0)
                rate = AutoRate.next(rate, depth, bound, config["AUTO_ADMISSION_MIN_PER_MIN"],
                                     config["AUTO_ADMISSION_MAX_PER_MIN"], late=late, slow=slow)
        store.set_rate(event_id, rate)
        burst = max(1.0, rate * config["ADMISSION_INTERVAL_SECONDS"] * 2 / 60)
        ttl = config["ADMISSION_TTL_SECONDS"]
        if gate.on_sale_at is None or now >= gate.on_sale_at:
            drawn = store.draw(event_id)
            if drawn:
                log.info("event %s: on-sale draw put %d buyers in random order", event_id, drawn)
                # The draw's tick only tells everyone their place; admission
                # starts from it, so that each buyer hears a position first.
                store.admit(event_id, now, 0.0, burst, ttl, 0)
                store.full_update_due(event_id, now, 0, mark=True)
                tick.positions.append(_positions(store, gate, rate, now, front_only=False))
                return 0
        open_door = gate.room != "paused" and store.drawn(event_id)
        admitted = store.admit(event_id, now, rate if open_door else 0.0, burst, ttl,
                               100_000 if open_door else 0)
        tick.notices += [(uid, "admitted", {"event_id": event_id,
                                            "admission_token": issue_token(uid, event_id, exp),
                                            "expires_at": iso(exp)})
                         for uid, exp, _seq in admitted]
        full = store.full_update_due(event_id, now, FULL_UPDATE_SECONDS, mark=True)
        if admitted or full:
            tick.positions.append(_positions(store, gate, rate, now, front_only=not full))
        if gate.room == "draining" and store.empty(event_id):
            session.execute(sa.update(Event).where(Event.id == event_id,
                                                   Event.waiting_room == "draining")
                            .values(waiting_room=None))
            log.info("event %s: waiting room drained and turned off", event_id)
        return len(admitted)
    finally:
        store.unlock(event_id)


def _positions(store, gate, rate, now, front_only):
    """The message telling queued buyers their place: one for all (see position_updates)."""
    seq = store.seq(gate.event_id)
    members = store.queued(gate.event_id, FRONT_UPDATES if front_only else None)
    return {"event_id": gate.event_id, "room": gate.room, "on_sale_at": gate.on_sale_at,
            "rate_per_min": gate.rate_per_min, "rate": rate, "now": now, "seq": seq,
            "members": members}


def position_updates(message, only=None):
    """(user_id, queue_update payload) for each buyer of a positions message.

    The message lists the queue's members in order, so that one message per
    tick reaches every web instance, which tells its own sockets (only: the
    user ids connected there) instead of one message per waiting buyer
    through the Socket.IO queue, decoded by every instance.
    """
    gate = Gate(message["event_id"], message["room"], message["on_sale_at"],
                message["rate_per_min"])
    for ahead, uid in enumerate(message["members"]):
        if only is not None and uid not in only:
            continue
        body = describe(gate, {"state": QUEUED, "ahead": ahead, "seq": message["seq"]},
                        message["rate"], message["now"])
        yield uid, {"event_id": gate.event_id, **body}


def set_room(session, event_id, state):
    """Open, pause or drain an event's waiting room. Raises NotFound, InvalidRequest."""
    if state not in WAITING_ROOM_STATES:
        raise InvalidRequest(f"Unknown waiting room state {state!r}.")
    event = _event(session, event_id)
    if state != "open" and event.waiting_room is None:
        raise InvalidRequest("This event has no waiting room; open one first.")
    event.waiting_room = state
    return event


def set_on_sale(session, event_id, on_sale_at):
    """Move an event's on-sale time (naive UTC, or None: on sale now). Raises NotFound."""
    event = _event(session, event_id)
    event.on_sale_at = on_sale_at
    return event


def set_rate(session, event_id, per_minute):
    """Set an event's admission rate (None: derived). Raises NotFound, InvalidRequest."""
    if per_minute is not None and per_minute < 1:
        raise InvalidRequest("The admission rate is at least 1 buyer a minute.")
    event = _event(session, event_id)
    event.admission_rate_per_min = per_minute
    return event


def _event(session, event_id):
    event = session.get(Event, event_id)
    if event is None:
        raise NotFound.of("no_event", event_id=event_id)
    return event


def room_status(session, store, event_id):
    """The room's settings and sizes, for ops. Raises NotFound."""
    gate = read_gate(session, event_id)
    if gate is None:
        raise NotFound.of("no_event", event_id=event_id)
    sizes = store.sizes(event_id)
    return {"event_id": event_id, "waiting_room": gate.room,
            "on_sale_at": iso(gate.on_sale_at) if gate.on_sale_at else None,
            "admission_rate_per_min": gate.rate_per_min,
            "current_rate_per_min": store.current_rate(event_id), **sizes}
