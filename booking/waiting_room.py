"""The waiting room: a fair, shared queue in front of an event's on-sale.

Who waits where (per event, per account, never per socket):

- before the on-sale, arrivals enter a *pre-queue*. Each gets a secret random
  ticket (64 bits from the OS) the moment they arrive; at the on-sale the
  pre-queue is turned into the queue in ticket order, so the order is a uniform
  random draw and arriving early gives no edge;
- after the draw, arrivals join the back of the queue (first come, first served);
- admission moves people from the front at the event's rate (buyers per minute,
  set by ops, or derived from how the workers keep up: see AutoRate) and gives
  each an *admission token*: signed, bound to the account and the event,
  expiring. `hold` on a gated event needs a valid one.

The queue lives in Redis (RoomStore's Redis implementation, every step one Lua
script, so that web instances, workers and ops commands agree and no step is
half done), or in process memory in the embedded one-process mode
(LocalRoomStore, the same semantics under a lock). Nothing here decides a seat:
MySQL still does (DESIGN.md rule 1).

A position only ever falls: people ahead leave (admitted) and newcomers go
behind. Each update carries `seq`, the number admitted so far, so a client that
hears two updates out of order keeps the newer one.
"""
import logging
import math
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from flask import Blueprint, current_app, render_template
from itsdangerous import BadSignature, URLSafeSerializer

from .errors import Forbidden, InvalidRequest, NotFound
from .models import WAITING_ROOM_STATES, Event

log = logging.getLogger(__name__)
bp = Blueprint("waiting_room", __name__)

PRE_QUEUE, QUEUED, ADMITTED = "pre_queue", "queued", "admitted"
# How many buyers are told their new position on every tick; those further
# back hear it every FULL_UPDATE_SECONDS (their wait changes slowly anyway).
# (Every update is a socket send from a web process: 2,000 a tick held web
# processes long enough to push hold answers past their target in
# bench/surge.py; the front 200 are the ones whose wait is seconds.)
FRONT_UPDATES = 200
FULL_UPDATE_SECONDS = 10.0
ADMISSION_LOG_MAX = 200_000


def _env_int(name, default):
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def _env_float(name, default):
    value = os.environ.get(name)
    return default if value in (None, "") else float(value)


def settings_from_environment():
    """The waiting room's, shedding's and abuse limits' settings (docs/WAITING_ROOM.md)."""
    return {
        # How long an admission token lets its buyer ask for holds.
        "ADMISSION_TTL_SECONDS": _env_int("ADMISSION_TTL_SECONDS", 900),
        # How often admission runs (a beat task; the embedded mode's sweep loop).
        "ADMISSION_INTERVAL_SECONDS": _env_float("ADMISSION_INTERVAL_SECONDS", 1.0),
        # Bounds of the derived ("auto") admission rate, buyers per minute.
        "AUTO_ADMISSION_MIN_PER_MIN": _env_int("AUTO_ADMISSION_MIN_PER_MIN", 30),
        "AUTO_ADMISSION_START_PER_MIN": _env_int("AUTO_ADMISSION_START_PER_MIN", 120),
        "AUTO_ADMISSION_MAX_PER_MIN": _env_int("AUTO_ADMISSION_MAX_PER_MIN", 6000),
        # The click-to-hold_result time the derived rate keeps, from the web
        # process's receipt to the worker's answer: while more than 1% of recent
        # hold answers take longer, it admits fewer buyers. 200: the product's
        # 250 ms target less what the server cannot see (the buyer's network,
        # the load balancer, the socket's send; ~45 ms at p99 in bench/surge.py).
        "LATENCY_TARGET_MS": _env_int("LATENCY_TARGET_MS", 200),
        # Load shedding: accepted requests not yet answered, beyond which new
        # holds are refused `busy`. 0: derived (see ShedBound).
        "SHED_QUEUE_DEPTH": _env_int("SHED_QUEUE_DEPTH", 0),
        # How long a buyer waits for a hold result before giving up; the derived
        # bound is what the workers finish in this long.
        "SHED_MAX_WAIT_SECONDS": _env_float("SHED_MAX_WAIT_SECONDS", 10.0),
        # Requests a second the smallest deployment (one worker, concurrency 2)
        # finishes at worst (every message carrying one request): measured
        # ~60 single-request transactions a second per process on these machines.
        "SHED_FLOOR_RPS": _env_float("SHED_FLOOR_RPS", 120.0),
        # Per client IP (generous: a venue or carrier NATs thousands of buyers).
        "IP_RATE_LIMIT": os.environ.get("IP_RATE_LIMIT", "1000/second;30000/minute"),
        # Sockets one account may hold open across every web instance.
        "MAX_SOCKETS_PER_ACCOUNT": _env_int("MAX_SOCKETS_PER_ACCOUNT", 10),
    }


def init_app(app):
    """The room store, the queue page and the scrape-time metrics (settings: create_app)."""
    rt = app.extensions["boxoffice"]
    namespace = app.config["REDIS_NAMESPACE"]
    if app.config["REDIS_URL"]:
        store = RedisRoomStore(rt.state.redis, namespace)
    else:
        store = LocalRoomStore()
    rt.waiting_room = store
    rt.gates = GateCache()
    app.register_blueprint(bp)
    from . import metrics
    metrics.SCRAPE_SOURCES["waiting_rooms"] = lambda: store.stats(store.known_events())
    metrics.SCRAPE_SOURCES["shedding"] = rt.shedding.pressure


# ---------------------------------------------------------------- tokens

def _token_serializer():
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="boxoffice-admission")


def issue_token(user_id, event_id, expires_at):
    """An admission token: {user, event, expiry} signed with the app's key."""
    return _token_serializer().dumps({"u": user_id, "e": event_id, "x": int(expires_at)})


def check_token(token, user_id, event_id, now=None):
    """Raise Forbidden(not_admitted) unless token admits this user to this event now."""
    now = time.time() if now is None else now
    try:
        data = _token_serializer().loads(token) if isinstance(token, str) and token else None
    except BadSignature:
        data = None
    if (not isinstance(data, dict) or data.get("u") != user_id or data.get("e") != event_id
            or not isinstance(data.get("x"), int) or data["x"] <= now):
        raise Forbidden("Wait for your turn in the waiting room first.", reason="not_admitted",
                        event_id=event_id)


def iso(ts):
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def _unix(naive_utc):
    return naive_utc.replace(tzinfo=timezone.utc).timestamp() if naive_utc else None


# ---------------------------------------------------------------- gates

@dataclass(frozen=True)
class Gate:
    """What the web tier needs to know about an event's sale: read from the database."""
    event_id: int
    room: str | None          # open / paused / draining, or None: no waiting room
    on_sale_at: float | None  # unix time
    rate_per_min: int | None  # None: derived

    @property
    def gated(self):
        return self.room is not None


def read_gate(session, event_id):
    """The event's Gate, or None if there is no such event."""
    row = session.execute(sa.select(Event.on_sale_at, Event.waiting_room,
                                    Event.admission_rate_per_min)
                          .where(Event.id == event_id)).first()
    if row is None:
        return None
    return Gate(event_id, row.waiting_room, _unix(row.on_sale_at), row.admission_rate_per_min)


class GateCache:
    """Gates cached per process for a second: ops and back-office changes reach every
    instance within it."""

    TTL_SECONDS = 1.0

    def __init__(self):
        self._gates = {}

    def get(self, session, event_id):
        hit = self._gates.get(event_id)
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[1]
        gate = read_gate(session, event_id)
        self._gates[event_id] = (now + self.TTL_SECONDS, gate)
        return gate


def check_hold_allowed(gate, user_id, token, now=None):
    """Raise Forbidden unless this buyer may ask for holds on this event now."""
    now = time.time() if now is None else now
    if gate.gated:
        check_token(token, user_id, gate.event_id, now)
    elif gate.on_sale_at is not None and now < gate.on_sale_at:
        raise Forbidden("This event is not on sale yet.", reason="not_on_sale",
                        on_sale_at=iso(gate.on_sale_at))


# ---------------------------------------------------------------- entering

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


# ---------------------------------------------------------------- admitting

class AutoRate:
    """The derived admission rate: grow while the pipeline keeps up, cut it when it does not.

    Two signals, both shared by every instance through Redis: the work
    accepted and not yet answered (the depth load shedding uses), and the
    shares of hold answers of the last 5 s that came later than
    LATENCY_TARGET_MS ("late") and later than half of it ("slow") after
    their click reached a web process (counted by the workers that answered
    them; they see a slow web tier as well as a slow worker). More than 1%
    late (the p99 misses the target) cuts the rate by a quarter; a backlog
    over half the shedding bound halves it. The rate grows, by a twentieth
    (at least 30 buyers a minute; slowly, because buyers admitted now click
    seconds later), only while at most 1% are slow (the p99 is within
    half the target: the margin that absorbs the admissions already made
    when the signal turns) and the backlog is under a quarter of the bound.
    Between, it holds. So the door lets in what the pipeline answers in time,
    and slows before anything is shed.
    """

    CUT = 0.01
    GROW = 0.01

    @classmethod
    def next(cls, rate, depth, bound, low, high, late=0.0, slow=0.0):
        if depth > bound / 2:
            rate = rate / 2
        elif late > cls.CUT:
            rate = rate * 0.75
        elif depth < bound / 4 and slow <= cls.GROW:
            rate = rate + max(rate * 0.05, 30)
        return max(low, min(high, rate))


def admit_due(session, store, broadcaster, pressure, config, now=None):
    """One admission tick for every event with a waiting room; returns {event_id: admitted}.

    Draws the pre-queue of events whose on-sale has come, admits buyers at each
    room's rate, tells them (after Redis recorded it: a lost message is
    recovered by the buyer's next join), and turns off a drained room that is
    empty. Raises nothing for one bad room: it is logged and the others go on.
    """
    now = time.time() if now is None else now
    rows = session.execute(sa.select(Event.id, Event.on_sale_at, Event.waiting_room,
                                     Event.admission_rate_per_min)
                           .where(Event.waiting_room.is_not(None))).all()
    session.rollback()
    out = {}
    signals = None
    for row in rows:
        gate = Gate(row.id, row.waiting_room, _unix(row.on_sale_at), row.admission_rate_per_min)
        try:
            if gate.rate_per_min is None and signals is None:
                signals = pressure()   # (depth, bound, late and slow shares): see AutoRate
            out[gate.event_id] = _admit_one(session, store, broadcaster, gate, signals,
                                            config, now)
        except Exception:
            log.exception("admission for event %s failed", gate.event_id)
    return out


def _admit_one(session, store, broadcaster, gate, signals, config, now):
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
                _send_positions(store, broadcaster, gate, rate, now, front_only=False)
                return 0
        open_door = gate.room != "paused" and store.drawn(event_id)
        admitted = store.admit(event_id, now, rate if open_door else 0.0, burst, ttl,
                               100_000 if open_door else 0)
        for uid, expires_at, _seq in admitted:
            token = issue_token(uid, event_id, expires_at)
            broadcaster.to_user(uid, "admitted", {"event_id": event_id, "admission_token": token,
                                                 "expires_at": iso(expires_at)})
        full = store.full_update_due(event_id, now, FULL_UPDATE_SECONDS, mark=True)
        if admitted or full:
            _send_positions(store, broadcaster, gate, rate, now, front_only=not full)
        if gate.room == "draining" and store.empty(event_id):
            session.execute(sa.update(Event).where(Event.id == event_id,
                                                   Event.waiting_room == "draining")
                            .values(waiting_room=None))
            session.commit()
            log.info("event %s: waiting room drained and turned off", event_id)
        return len(admitted)
    finally:
        store.unlock(event_id)


def _send_positions(store, broadcaster, gate, rate, now, front_only):
    """Tell queued buyers their place: one message for all (see position_updates)."""
    seq = store.seq(gate.event_id)
    members = store.queued(gate.event_id, FRONT_UPDATES if front_only else None)
    broadcaster.queue_positions({"event_id": gate.event_id, "room": gate.room,
                                 "on_sale_at": gate.on_sale_at, "rate_per_min": gate.rate_per_min,
                                 "rate": rate, "now": now, "seq": seq, "members": members})


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


# ---------------------------------------------------------------- ops

def set_room(session, event_id, state):
    """Open, pause or drain an event's waiting room. Raises NotFound, InvalidRequest."""
    if state not in WAITING_ROOM_STATES:
        raise InvalidRequest(f"Unknown waiting room state {state!r}.")
    event = session.get(Event, event_id)
    if event is None:
        raise NotFound("No such event.", event_id=event_id)
    if state != "open" and event.waiting_room is None:
        raise InvalidRequest("This event has no waiting room; open one first.")
    event.waiting_room = state
    return event


def set_on_sale(session, event_id, on_sale_at):
    """Move an event's on-sale time (naive UTC, or None: on sale now). Raises NotFound."""
    event = session.get(Event, event_id)
    if event is None:
        raise NotFound("No such event.", event_id=event_id)
    event.on_sale_at = on_sale_at
    return event


def set_rate(session, event_id, per_minute):
    """Set an event's admission rate (None: derived). Raises NotFound, InvalidRequest."""
    if per_minute is not None and per_minute < 1:
        raise InvalidRequest("The admission rate is at least 1 buyer a minute.")
    event = session.get(Event, event_id)
    if event is None:
        raise NotFound("No such event.", event_id=event_id)
    event.admission_rate_per_min = per_minute
    return event


def room_status(session, store, event_id):
    """The room's settings and sizes, for ops. Raises NotFound."""
    gate = read_gate(session, event_id)
    if gate is None:
        raise NotFound("No such event.", event_id=event_id)
    sizes = store.sizes(event_id)
    return {"event_id": event_id, "waiting_room": gate.room,
            "on_sale_at": iso(gate.on_sale_at) if gate.on_sale_at else None,
            "admission_rate_per_min": gate.rate_per_min,
            "current_rate_per_min": store.current_rate(event_id), **sizes}


# ---------------------------------------------------------------- stores

class RedisRoomStore:
    """The queue in Redis: every web instance serves it, and it outlives any process."""

    _JOIN = """
    local seq = redis.call('GET', KEYS[6]) or '0'
    local exp = redis.call('HGET', KEYS[4], ARGV[1])
    if exp then
      if tonumber(exp) > tonumber(ARGV[2]) then return {'admitted', exp, seq} end
      -- The token ran out unused: this is a new arrival, at the back.
      redis.call('HDEL', KEYS[4], ARGV[1])
    end
    local r = redis.call('ZRANK', KEYS[2], ARGV[1])
    if r then return {'queued', r, seq} end
    if redis.call('EXISTS', KEYS[5]) == 0 then
      redis.call('ZADD', KEYS[1], 'NX', ARGV[3], ARGV[1])
      return {'pre_queue', redis.call('ZCARD', KEYS[1]), seq}
    end
    local t = redis.call('INCR', KEYS[3])
    redis.call('ZADD', KEYS[2], t, ARGV[1])
    return {'queued', redis.call('ZRANK', KEYS[2], ARGV[1]), seq}
    """
    _DRAW = """
    if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
    local members = redis.call('ZRANGE', KEYS[1], 0, -1)
    local t = tonumber(redis.call('GET', KEYS[3]) or '0')
    for i, m in ipairs(members) do redis.call('ZADD', KEYS[2], t + i, m) end
    redis.call('SET', KEYS[3], t + #members)
    redis.call('SET', KEYS[4], '1')
    redis.call('DEL', KEYS[1])
    return #members
    """
    _ADMIT = """
    local now = tonumber(ARGV[1])
    local st = redis.call('HMGET', KEYS[3], 'credit', 'last')
    local credit = tonumber(st[1] or '0')
    local last = tonumber(st[2] or ARGV[1])
    credit = math.min(credit + math.max(0, now - last) * tonumber(ARGV[2]) / 60,
                      tonumber(ARGV[3]))
    local n = math.min(math.floor(credit), tonumber(ARGV[5]))
    local out = {}
    if n > 0 then
      local popped = redis.call('ZPOPMIN', KEYS[1], n)
      local exp = now + tonumber(ARGV[4])
      local seq = tonumber(redis.call('GET', KEYS[5]) or '0')
      for i = 1, #popped, 2 do
        seq = seq + 1
        redis.call('HSET', KEYS[2], popped[i], exp)
        redis.call('RPUSH', KEYS[4], popped[i] .. ':' .. ARGV[1])
        out[#out + 1] = {popped[i], tostring(exp), seq}
      end
      redis.call('SET', KEYS[5], seq)
      redis.call('LTRIM', KEYS[4], -tonumber(ARGV[6]), -1)
      credit = credit - #out
    end
    if #out == 0 and redis.call('ZCARD', KEYS[1]) == 0 then credit = math.min(credit, 1) end
    redis.call('HSET', KEYS[3], 'credit', tostring(credit), 'last', ARGV[1])
    return out
    """

    def __init__(self, client, namespace):
        self.redis = client
        self.prefix = f"{namespace}:wr"
        self._join = client.register_script(self._JOIN)
        self._draw = client.register_script(self._DRAW)
        self._admit = client.register_script(self._ADMIT)

    def _k(self, event_id, part):
        return f"{self.prefix}:{event_id}:{part}"

    def _keys(self, event_id, *parts):
        return [self._k(event_id, p) for p in parts]

    def register(self, event_id):
        self.redis.sadd(f"{self.prefix}:events", event_id)

    def known_events(self):
        return sorted(int(e) for e in self.redis.smembers(f"{self.prefix}:events"))

    def join(self, event_id, user_id, now, ticket):
        """The buyer's place, entering them if they have none: {state, ahead|pre_queue|expires_at, seq}."""
        self.register(event_id)
        state, value, seq = self._join(
            keys=self._keys(event_id, "pre", "q", "tail", "adm", "drawn", "seq"),
            args=[user_id, repr(now), ticket])
        state = state.decode()
        # seq is read in the same script as the rank: the pair is consistent.
        place = {"state": state, "user_id": user_id, "seq": int(seq)}
        if state == ADMITTED:
            place["expires_at"] = float(value)
        elif state == QUEUED:
            place["ahead"] = int(value)
        else:
            place["pre_queue"] = int(value)
        return place

    def draw(self, event_id):
        """Turn the pre-queue into the queue in ticket order (once); returns how many."""
        return int(self._draw(keys=self._keys(event_id, "pre", "q", "tail", "drawn")))

    def drawn(self, event_id):
        return bool(self.redis.exists(self._k(event_id, "drawn")))

    def admit(self, event_id, now, rate_per_min, burst, ttl_s, max_n):
        """Admit from the front as the rate allows: [(user_id, expires_at, seq)]."""
        rows = self._admit(keys=self._keys(event_id, "q", "adm", "credit", "log", "seq"),
                           args=[repr(now), repr(rate_per_min), repr(burst), ttl_s, max_n,
                                 ADMISSION_LOG_MAX])
        return [(int(u), float(e), int(s)) for u, e, s in rows]

    def queued(self, event_id, limit=None):
        end = -1 if limit is None else limit - 1
        return [int(m) for m in self.redis.zrange(self._k(event_id, "q"), 0, end)]

    def seq(self, event_id):
        return int(self.redis.get(self._k(event_id, "seq")) or 0)

    def admission_log(self, event_id):
        """[(user_id, unix time admitted)] in admission order."""
        out = []
        for entry in self.redis.lrange(self._k(event_id, "log"), 0, -1):
            uid, at = entry.decode().split(":", 1)
            out.append((int(uid), float(at)))
        return out

    def current_rate(self, event_id):
        value = self.redis.get(self._k(event_id, "rate"))
        return float(value) if value is not None else None

    def set_rate(self, event_id, rate):
        self.redis.set(self._k(event_id, "rate"), repr(float(rate)))

    def full_update_due(self, event_id, now, every_s, mark=False):
        key = self._k(event_id, "full-update")
        last = float(self.redis.get(key) or 0)
        due = now - last >= every_s
        if due and mark:
            self.redis.set(key, repr(now))
        return due

    def empty(self, event_id):
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self._k(event_id, "pre"))
        pipe.zcard(self._k(event_id, "q"))
        return sum(pipe.execute()) == 0

    def sizes(self, event_id, now=None):
        now = time.time() if now is None else now
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self._k(event_id, "pre"))
        pipe.zcard(self._k(event_id, "q"))
        pipe.hvals(self._k(event_id, "adm"))
        pipe.get(self._k(event_id, "seq"))
        pre, queued, expiries, seq = pipe.execute()
        return {"pre_queue": pre, "queued": queued,
                "admitted_active": sum(1 for e in expiries if float(e) > now),
                "admitted_total": int(seq or 0)}

    def stats(self, event_ids):
        return {e: dict(self.sizes(e), rate=self.current_rate(e)) for e in event_ids}

    def try_lock(self, event_id, ttl):
        return bool(self.redis.set(self._k(event_id, "lock"), "1", nx=True, ex=ttl))

    def unlock(self, event_id):
        self.redis.delete(self._k(event_id, "lock"))


class LocalRoomStore:
    """The same queue in process memory, for the embedded one-process mode.

    It lives and dies with the process: a restart empties every room (the
    buyers re-join at the back). The Redis store is the one for real on-sales.
    """

    def __init__(self):
        self._lock = threading.RLock()
        self._rooms = {}
        self._locks = set()

    def _room(self, event_id):
        return self._rooms.setdefault(event_id, {
            "pre": {}, "q": {}, "tail": 0, "adm": {}, "drawn": False, "credit": 0.0,
            "last": None, "seq": 0, "log": [], "rate": None, "full": 0.0})

    def register(self, event_id):
        with self._lock:
            self._room(event_id)

    def known_events(self):
        with self._lock:
            return sorted(self._rooms)

    def _rank(self, room, user_id):
        ticket = room["q"][user_id]
        return sum(1 for t in room["q"].values() if t < ticket)

    def join(self, event_id, user_id, now, ticket):
        with self._lock:
            room = self._room(event_id)
            place = {"user_id": user_id, "seq": room["seq"]}
            exp = room["adm"].get(user_id)
            if exp is not None and exp > now:
                return dict(place, state=ADMITTED, expires_at=exp)
            room["adm"].pop(user_id, None)
            if user_id in room["q"]:
                return dict(place, state=QUEUED, ahead=self._rank(room, user_id))
            if not room["drawn"]:
                room["pre"].setdefault(user_id, ticket)
                return dict(place, state=PRE_QUEUE, pre_queue=len(room["pre"]))
            room["tail"] += 1
            room["q"][user_id] = room["tail"]
            return dict(place, state=QUEUED, ahead=self._rank(room, user_id))

    def draw(self, event_id):
        with self._lock:
            room = self._room(event_id)
            if room["drawn"]:
                return 0
            order = sorted(room["pre"], key=lambda u: (room["pre"][u], u))
            for uid in order:
                room["tail"] += 1
                room["q"][uid] = room["tail"]
            room["pre"].clear()
            room["drawn"] = True
            return len(order)

    def drawn(self, event_id):
        with self._lock:
            return self._room(event_id)["drawn"]

    def admit(self, event_id, now, rate_per_min, burst, ttl_s, max_n):
        with self._lock:
            room = self._room(event_id)
            last = room["last"] if room["last"] is not None else now
            credit = min(room["credit"] + max(0.0, now - last) * rate_per_min / 60, burst)
            n = min(math.floor(credit), max_n)
            out = []
            for uid in sorted(room["q"], key=room["q"].get)[:max(0, n)]:
                del room["q"][uid]
                room["seq"] += 1
                room["adm"][uid] = now + ttl_s
                room["log"].append((uid, now))
                out.append((uid, now + ttl_s, room["seq"]))
            credit -= len(out)
            if not out and not room["q"]:
                credit = min(credit, 1.0)
            room["credit"], room["last"] = credit, now
            del room["log"][:-ADMISSION_LOG_MAX]
            return out

    def queued(self, event_id, limit=None):
        with self._lock:
            room = self._room(event_id)
            order = sorted(room["q"], key=room["q"].get)
            return order if limit is None else order[:limit]

    def seq(self, event_id):
        with self._lock:
            return self._room(event_id)["seq"]

    def admission_log(self, event_id):
        with self._lock:
            return list(self._room(event_id)["log"])

    def current_rate(self, event_id):
        with self._lock:
            return self._room(event_id)["rate"]

    def set_rate(self, event_id, rate):
        with self._lock:
            self._room(event_id)["rate"] = float(rate)

    def full_update_due(self, event_id, now, every_s, mark=False):
        with self._lock:
            room = self._room(event_id)
            due = now - room["full"] >= every_s
            if due and mark:
                room["full"] = now
            return due

    def empty(self, event_id):
        with self._lock:
            room = self._room(event_id)
            return not room["pre"] and not room["q"]

    def sizes(self, event_id, now=None):
        now = time.time() if now is None else now
        with self._lock:
            room = self._room(event_id)
            return {"pre_queue": len(room["pre"]), "queued": len(room["q"]),
                    "admitted_active": sum(1 for e in room["adm"].values() if e > now),
                    "admitted_total": room["seq"]}

    def stats(self, event_ids):
        return {e: dict(self.sizes(e), rate=self.current_rate(e)) for e in event_ids}

    def try_lock(self, event_id, ttl):
        with self._lock:
            if event_id in self._locks:
                return False
            self._locks.add(event_id)
            return True

    def unlock(self, event_id):
        with self._lock:
            self._locks.discard(event_id)


# ---------------------------------------------------------------- the page

@bp.get("/events/<int:event_id>/waiting-room")
def waiting_room_page(event_id):
    """The waiting-room page: the buyer's live place in the queue; moves on to the seat map."""
    from flask_login import current_user
    from .pages import _page_config
    from .extensions import db
    gate = read_gate(db.session, event_id)
    if gate is None:
        return render_template("not_found.html", what="event", page=_page_config()), 404
    name = db.session.scalar(sa.select(Event.name).where(Event.id == event_id))
    return render_template("waiting_room.html", event_name=name, page=_page_config(
        event_id=event_id, on_sale_at=iso(gate.on_sale_at) if gate.on_sale_at else None,
        signed_in=current_user.is_authenticated))

