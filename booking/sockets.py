"""Socket.IO transport: authenticate, validate, pre-check, ack at once, enqueue.

No booking rule is decided here for good: the checks below only refuse early
what a worker would refuse anyway, so that bad requests never reach a worker.
The worker (booking.holds) decides under row locks.
"""
import logging
import time
from collections import Counter

import redis
from sqlalchemy.exc import OperationalError, TimeoutError as PoolTimeout
from flask import current_app, request, session
from flask_login import current_user
from flask_socketio import join_room, leave_room
from socketio.exceptions import ConnectionRefusedError as SocketRefused
from marshmallow import ValidationError

from . import catalog, checkout, holds, records, seat_plans, waiting_room
from .auth import user_id_from_token
from .broadcast import subscribe_forever
from .dispatch import BatchingDispatcher, InlineDispatcher
from .errors import (Busy, BookingError, Conflict, HoldExpired, HoldNotOwned, InvalidRequest,
                     LimitExceeded, NotFound, from_validation)
from .extensions import db, socketio
from .metrics import SOCKETS
from .models import utcnow
from .ratelimits import client_ip
from .schemas import EventRefSchema, HoldRequestSchema, PayRequestSchema, ReleaseRequestSchema
from .state import PENDING, QueueFull, TooManyHolds

log = logging.getLogger(__name__)

_event_ref = EventRefSchema()
_hold_request = HoldRequestSchema()
_release_request = ReleaseRequestSchema()
_pay_request = PayRequestSchema()


def _rt():
    return current_app.extensions["boxoffice"]


def init_app(app):
    """Pick the dispatcher for the mode and prepare per-process socket state."""
    rt = app.extensions["boxoffice"]
    rt.local_users = Counter()   # user_id -> sockets connected to this process
    rt.local_sids = {}           # sid -> user_id, of sockets connected to this process
    rt.seat_maps = {}            # event_id -> {seat_id: price_cents}; seats never move
    from workers.tasks import enqueue, run_inline
    if app.config["REDIS_URL"]:
        rt.dispatcher = BatchingDispatcher(socketio, enqueue, app.config["REQUEST_BATCH_MAX"],
                                           app.config["REQUEST_BATCH_LINGER_MS"] / 1000)
    else:
        def run_here(items):
            try:
                run_inline(items)
            except Exception:
                log.exception("in-process task failed")
        rt.dispatcher = InlineDispatcher(socketio, run_here)


def start_background(app):
    """Start this web process's background loops (call once, when serving)."""
    rt = app.extensions["boxoffice"]
    socketio.start_background_task(rt.coalescer.run_forever)
    socketio.start_background_task(_refresh_presence, app)
    if app.config["REDIS_URL"]:
        socketio.start_background_task(subscribe_forever, socketio, app.config["REDIS_URL"],
                                       app.config["REDIS_NAMESPACE"], rt.coalescer,
                                       lambda: _resync(app), lambda m: _tell_positions(app, m))
    else:
        socketio.start_background_task(_sweep_inline, app)


def _refresh_presence(app):
    """Keep 'last seen' fresh for every buyer connected here, for the disconnect sweep."""
    rt = app.extensions["boxoffice"]
    interval = max(0.5, min(5.0, app.config["DISCONNECT_GRACE_SECONDS"] / 3))
    while True:
        socketio.sleep(interval)
        try:
            rt.presence.touch([u for u, n in rt.local_users.items() if n > 0])
            rt.sockets.touch([(u, sid) for sid, u in list(rt.local_sids.items())])
        except Exception:
            log.warning("presence refresh failed", exc_info=True)


def _sweep_inline(app):
    """The embedded mode's beat: the same periodic tasks, in this process."""
    from workers.tasks import admit_waiting_buyers, reconcile_payments, sweep_holds
    interval = min(app.config["SWEEP_INTERVAL_SECONDS"], app.config["ADMISSION_INTERVAL_SECONDS"])
    sweep_every = max(1, round(app.config["SWEEP_INTERVAL_SECONDS"] / interval))
    every = max(1, round(app.config["RECONCILE_INTERVAL_SECONDS"] / interval))
    ticks = 0
    while True:
        socketio.sleep(interval)
        ticks += 1
        for task, due in ((admit_waiting_buyers, True), (sweep_holds, ticks % sweep_every == 0),
                          (reconcile_payments, ticks % every == 0)):
            if due:
                try:
                    task.apply(throw=True)
                except Exception:
                    log.exception("%s failed", task.name)


def _tell_positions(app, message):
    """A waiting room's positions, to the sockets of this process's queued buyers."""
    local = app.extensions["boxoffice"].local_users
    try:
        for n, (user_id, payload) in enumerate(
                waiting_room.position_updates(message, only=local), 1):
            socketio.emit("queue_update", payload, to=f"user:{user_id}", ignore_queue=True)
            if n % 50 == 0:
                socketio.sleep(0)  # let hold requests in between: a full update is long
    except Exception:
        log.exception("queue positions not delivered")


def _resync(app):
    """Re-send full snapshots of watched events (after seat-change messages may have been lost)."""
    rt = app.extensions["boxoffice"]
    rt.coalescer.forget_boards()
    rooms = socketio.server.manager.rooms.get("/", {})
    event_ids = [int(r.split(":", 1)[1]) for r in list(rooms) if str(r).startswith("event:")]
    with app.app_context():
        for event_id in event_ids:
            rt.coalescer.add(event_id, catalog.seat_states(db.session, event_id),
                             "1970-01-01T00:00:00Z")
        db.session.remove()


def _user_id():
    return session.get("bo_uid")


@socketio.on("connect")
def on_connect(auth=None):
    """Accept a socket only with a valid bearer token or session cookie."""
    uid = None
    if isinstance(auth, dict) and auth.get("token"):
        uid = user_id_from_token(auth["token"])
    elif current_user.is_authenticated:
        uid = current_user.id
    if uid is None:
        _rt().metrics.request("connect", "unauthorized")
        refusal = SocketRefused("Sign in to connect.")
        # The connect_error data is the contract's error object.
        refusal.error_args = {"code": "unauthorized", "message": "Sign in to connect."}
        raise refusal
    rt = _rt()
    ip = client_ip()
    try:
        rt.rate_limit.check_ip(ip)
        if not rt.sockets.take(uid, request.sid):
            rt.metrics.request("connect", "limit_exceeded")
            cap = rt.sockets.cap
            refusal = SocketRefused(f"At most {cap} connections per account.")
            refusal.error_args = {"code": "limit_exceeded",
                                  "message": f"At most {cap} connections per account; "
                                             "close another tab or device first.",
                                  "details": {"limit": "sockets", "max": cap}}
            raise refusal
    except BookingError as err:
        rt.metrics.request("connect", err.code)
        refusal = SocketRefused(err.message)
        refusal.error_args = err.to_dict()
        raise refusal from None
    except redis.RedisError:
        # Counting needs Redis; a buyer is not turned away because Redis blinked.
        log.warning("socket limits unavailable for user %s", uid)
    session["bo_uid"] = uid
    session["bo_ip"] = ip
    join_room(f"user:{uid}")
    rt.local_users[uid] += 1
    rt.local_sids[request.sid] = uid
    SOCKETS.inc()
    try:
        rt.presence.touch([uid])
    except redis.RedisError:
        log.warning("presence not recorded for user %s", uid)


@socketio.on("disconnect")
def on_disconnect(reason=None):
    """Note when the buyer was last here; the sweep releases holds after the grace period."""
    uid = _user_id()
    if uid is None:
        return
    rt = _rt()
    rt.local_users[uid] -= 1
    if rt.local_users[uid] <= 0:
        del rt.local_users[uid]
    rt.local_sids.pop(request.sid, None)
    SOCKETS.dec()
    try:
        rt.presence.touch([uid])
        rt.sockets.release(uid, request.sid)
    except redis.RedisError:
        log.warning("presence not recorded for user %s", uid)


def _check_rate(uid):
    _rt().rate_limit.check(uid, session.get("bo_ip"))


def _load(schema, data):
    if not isinstance(data, dict):
        raise InvalidRequest("The payload must be a JSON object.")
    try:
        return schema.load(data)
    except ValidationError as err:
        raise from_validation(err) from err


def _failure(request_id, err):
    return {"ok": False, "request_id": request_id, "error": err.to_dict()}


@socketio.on("join_event")
def on_join_event(data=None):
    """Watch an event: answer its seat snapshot and subscribe to its changes."""
    rt = _rt()
    try:
        uid = _user_id()
        _check_rate(uid)
        payload = _load(_event_ref, data)
        event_id = payload["event_id"]
        if _seat_map(event_id) is None:
            raise NotFound("No such event.", event_id=event_id)
        gate = rt.gates.get(db.session, event_id)
        room = None
        if gate.gated:
            room = waiting_room.enter(rt.waiting_room, gate, uid)
            if room["state"] != waiting_room.ADMITTED:
                # A waiting buyer sees no seat map: no snapshot, no seats_changed
                # (a hundred thousand waiting sockets would otherwise get every
                # change). Joining again once admitted brings both.
                leave_room(f"event:{event_id}")
                rt.metrics.request("join_event", "waiting")
                empty = ({"board": seat_plans.compact_board([])} if payload["compact"]
                         else {"seats": []})
                return {"ok": True, "event_id": event_id, **empty, "waiting_room": room}
        # Join before reading, so that no change falls between snapshot and feed.
        join_room(f"event:{event_id}")
        seats = rt.coalescer.snapshot(event_id, lambda: catalog.seat_states(db.session, event_id))
        rt.metrics.request("join_event", "ok")
        if payload["compact"]:
            answer = {"ok": True, "event_id": event_id, "board": seat_plans.compact_board(seats)}
        else:
            answer = {"ok": True, "event_id": event_id, "seats": seats}
        if room is not None:
            answer["waiting_room"] = room
        return answer
    except BookingError as err:
        rt.metrics.request("join_event", err.code)
        return _failure(None, err)
    except (redis.RedisError, OperationalError):
        log.warning("join_event: shared state or database unavailable", exc_info=True)
        rt.metrics.request("join_event", "busy")
        return _failure(None, Busy("The box office cannot take requests right now.",
                                   retry_after_s=2))


@socketio.on("leave_event")
def on_leave_event(data=None):
    """Stop watching an event."""
    try:
        payload = _load(_event_ref, data)
    except BookingError as err:
        return _failure(None, err)
    leave_room(f"event:{payload['event_id']}")
    return {"ok": True, "event_id": payload["event_id"]}


@socketio.on("hold")
def on_hold(data=None):
    """Ask to hold seats: acked at once; hold_result follows."""
    return _request("hold", data, _hold_request, _accept_hold)


@socketio.on("release")
def on_release(data=None):
    """Give a hold back: acked at once; release_result follows."""
    return _request("release", data, _release_request, _accept_release)


@socketio.on("pay")
def on_pay(data=None):
    """Pay for a hold: acked at once; payment_result follows."""
    return _request("pay", data, _pay_request, _accept_pay)


def _request(kind, data, schema, accept):
    """The shared path of every request that a worker performs."""
    rt = _rt()
    received_at = time.time()
    rid = data.get("request_id") if isinstance(data, dict) else None
    rid = rid if isinstance(rid, str) and len(rid) <= 64 else None
    uid = _user_id()
    try:
        _check_rate(uid)
        payload = _load(schema, data)
        seen = rt.ledger.lookup(uid, rid)
        if seen == PENDING:
            rt.metrics.request(kind, "repeat")
            return {"ok": True, "request_id": rid, "queued": True}
        if seen is not None:
            return _answer_repeat(rt, kind, rid, *seen)
        try:
            item = accept(uid, payload)
        except BookingError:
            # A repeat of a finished request whose answer the shared ledger has
            # lost (Redis restarted) fails the pre-checks (the hold is paid
            # now, say): its durable record answers it instead.
            done = records.recorded(db.session, [(uid, rid)])
            if not done:
                raise
            return _answer_repeat(rt, kind, rid, *done[(uid, rid)])
        # The reads are done: give the pooled connection back before waiting on
        # Redis and the broker. Held until the handler ends, a burst of
        # requests waiting on the dispatcher holds every connection of the
        # pool (5 + 10) and the rest time out after 30 s as `internal`.
        db.session.remove()
        holds_cap = item.pop("_holds_cap", None)
        item.update(kind=kind, user_id=uid, request_id=rid, received_at=received_at)
        if not _begin(rt, item, holds_cap):
            rt.metrics.request(kind, "repeat")
            return {"ok": True, "request_id": rid, "queued": True}
        try:
            rt.dispatcher.submit(item)
        except Busy:
            rt.ledger.forget(uid, rid)
            raise
        rt.metrics.request(kind, "accepted")
        return {"ok": True, "request_id": rid, "queued": True}
    except BookingError as err:
        rt.metrics.request(kind, err.code)
        return _failure(rid, err)
    except (redis.RedisError, OperationalError, PoolTimeout):
        log.warning("shared state or database unavailable", exc_info=True)
        rt.metrics.request(kind, "busy")
        return _failure(rid, Busy("The box office cannot take requests right now.",
                                  retry_after_s=2))
    except Exception:
        log.exception("%s request failed", kind)
        rt.metrics.request(kind, "internal")
        return _failure(rid, BookingError(code="internal"))


def _answer_repeat(rt, kind, rid, event, result):
    """A finished request sent again: its recorded result once more, and an ack saying so."""
    socketio.emit(event, result, to=request.sid)
    rt.metrics.request(kind, "repeat")
    return {"ok": True, "request_id": rid, "queued": False}


def _begin(rt, item, holds_cap):
    """Record the request as in flight; new holds only while the backlog is under its bound.

    Releases and payments are never shed: they finish sales and free seats.
    Raises Busy (shed, with retry_after_s) or LimitExceeded (the buyer's hold
    requests in flight and open holds reach MAX_OPEN_HOLDS).
    """
    if item["kind"] != "hold":
        return rt.ledger.begin(item)
    try:
        return rt.ledger.begin(item, bound=rt.shedding.bound(), holds_cap=holds_cap)
    except QueueFull:
        raise Busy("The box office is very busy; please retry shortly.",
                   retry_after_s=rt.shedding.retry_after()) from None
    except TooManyHolds:
        cap = rt.settings.max_open_holds
        raise LimitExceeded(f"At most {cap} open holds at a time.", limit="open_holds",
                            max=cap) from None


def _seat_map(event_id):
    """{seat_id: price} of an event, cached in this process (an event's seats never change)."""
    seat_maps = _rt().seat_maps
    if event_id not in seat_maps:
        prices = catalog.seat_prices(db.session, event_id)
        if prices is None:
            return None
        seat_maps[event_id] = prices
    return seat_maps[event_id]


def _accept_hold(uid, p):
    rt = _rt()
    settings = rt.settings
    seat_map = _seat_map(p["event_id"])
    if seat_map is None:
        raise NotFound("No such event.", event_id=p["event_id"])
    # A gated event: only with this buyer's valid admission token for it.
    waiting_room.check_hold_allowed(rt.gates.get(db.session, p["event_id"]), uid,
                                    p.get("admission_token"))
    missing = [s for s in p["seat_ids"] if s not in seat_map]
    if missing:
        raise NotFound("Those seats are not part of this event.", seat_ids=missing)
    if len(p["seat_ids"]) > settings.max_seats_per_order:
        raise LimitExceeded(f"At most {settings.max_seats_per_order} seats per order.",
                            limit="seats_per_order", max=settings.max_seats_per_order)
    open_holds = holds.open_hold_count(db.session, uid)
    if open_holds >= settings.max_open_holds:
        raise LimitExceeded(f"At most {settings.max_open_holds} open holds at a time.",
                            limit="open_holds", max=settings.max_open_holds)
    # Hold requests still in flight count too (checked with the ledger, in Redis).
    return {"event_id": p["event_id"], "seat_ids": p["seat_ids"],
            "_holds_cap": settings.max_open_holds - open_holds}


def _accept_release(uid, p):
    owner = holds.hold_owner(db.session, p["hold_id"])
    if owner is None:
        raise NotFound("No such hold.", hold_id=p["hold_id"])
    if owner[0] != uid:
        raise HoldNotOwned(hold_id=p["hold_id"])
    return {"hold_id": p["hold_id"]}


def _accept_pay(uid, p):
    hold = checkout.hold_for_payment(db.session, p["hold_id"])
    if hold is None:
        raise NotFound("No such hold.", hold_id=p["hold_id"])
    owner, status, expires_at = hold
    if owner != uid:
        raise HoldNotOwned(hold_id=p["hold_id"])
    if status in ("expired", "released") or (status == "held" and expires_at <= utcnow()):
        raise HoldExpired(hold_id=p["hold_id"])
    if status == "paid":
        raise Conflict("This hold has been paid for already.", hold_id=p["hold_id"])
    # The card goes no further than this process: only the processor's token,
    # the brand and the last 4 digits travel to the workers.
    card = p.pop("card")
    token = _rt().processor.tokenize(**card)
    return {"hold_id": p["hold_id"], "idempotency_key": p["idempotency_key"],
            "card_token": token.token, "brand": token.brand, "last4": token.last4}
