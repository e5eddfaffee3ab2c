"""Socket.IO transport: authenticate, validate, pre-check, ack at once, enqueue.

No booking rule is decided here for good: the checks below only refuse early
what a worker would refuse anyway, so that bad requests never reach a worker.
The worker (booking.holds) decides under row locks.
"""
import logging
import time
from collections import Counter

import redis
from sqlalchemy.exc import OperationalError
from flask import current_app, request, session
from flask_login import current_user
from flask_socketio import join_room, leave_room
from socketio.exceptions import ConnectionRefusedError as SocketRefused
from marshmallow import ValidationError

from . import catalog, checkout, holds
from .auth import user_id_from_token
from .broadcast import subscribe_forever
from .dispatch import BatchingDispatcher, InlineDispatcher
from .errors import (Busy, BookingError, Conflict, HoldExpired, HoldNotOwned, InvalidRequest,
                     LimitExceeded, NotFound, from_validation)
from .extensions import db, socketio
from .metrics import SOCKETS
from .models import utcnow
from .schemas import EventRefSchema, HoldRequestSchema, PayRequestSchema, ReleaseRequestSchema
from .state import PENDING

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
    rt.seat_maps = {}            # event_id -> {seat_id: price_cents}; seats never move
    from workers.tasks import enqueue, run_inline
    if app.config["REDIS_URL"]:
        rt.dispatcher = BatchingDispatcher(socketio, enqueue, app.config["REQUEST_BATCH_MAX"])
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
                                       lambda: _resync(app))
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
        except Exception:
            log.warning("presence refresh failed", exc_info=True)


def _sweep_inline(app):
    """The embedded mode's beat: the same periodic tasks, in this process."""
    from workers.tasks import reconcile_payments, sweep_holds
    interval = app.config["SWEEP_INTERVAL_SECONDS"]
    every = max(1, round(app.config["RECONCILE_INTERVAL_SECONDS"] / interval))
    ticks = 0
    while True:
        socketio.sleep(interval)
        ticks += 1
        for task, due in ((sweep_holds, True), (reconcile_payments, ticks % every == 0)):
            if due:
                try:
                    task.apply(throw=True)
                except Exception:
                    log.exception("%s failed", task.name)


def _resync(app):
    """Re-send full snapshots of watched events (after seat-change messages may have been lost)."""
    rt = app.extensions["boxoffice"]
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
    session["bo_uid"] = uid
    join_room(f"user:{uid}")
    rt = _rt()
    rt.local_users[uid] += 1
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
    SOCKETS.dec()
    try:
        rt.presence.touch([uid])
    except redis.RedisError:
        log.warning("presence not recorded for user %s", uid)


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
        rt.rate_limit.check(_user_id())
        payload = _load(_event_ref, data)
        event_id = payload["event_id"]
        if _seat_map(event_id) is None:
            raise NotFound("No such event.", event_id=event_id)
        # Join before reading, so that no change falls between snapshot and feed.
        join_room(f"event:{event_id}")
        seats = catalog.seat_states(db.session, event_id)
        rt.metrics.request("join_event", "ok")
        return {"ok": True, "event_id": event_id, "seats": seats}
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
        rt.rate_limit.check(uid)
        payload = _load(schema, data)
        seen = rt.ledger.lookup(uid, rid)
        if seen == PENDING:
            rt.metrics.request(kind, "repeat")
            return {"ok": True, "request_id": rid, "queued": True}
        if seen is not None:
            event, result = seen
            socketio.emit(event, result, to=request.sid)
            rt.metrics.request(kind, "repeat")
            return {"ok": True, "request_id": rid, "queued": False}
        item = accept(uid, payload)
        item.update(kind=kind, user_id=uid, request_id=rid, received_at=received_at)
        if not rt.ledger.begin(item):
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
    except (redis.RedisError, OperationalError):
        log.warning("shared state or database unavailable", exc_info=True)
        rt.metrics.request(kind, "busy")
        return _failure(rid, Busy("The box office cannot take requests right now.",
                                  retry_after_s=2))
    except Exception:
        log.exception("%s request failed", kind)
        rt.metrics.request(kind, "internal")
        return _failure(rid, BookingError(code="internal"))


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
    settings = _rt().settings
    seat_map = _seat_map(p["event_id"])
    if seat_map is None:
        raise NotFound("No such event.", event_id=p["event_id"])
    missing = [s for s in p["seat_ids"] if s not in seat_map]
    if missing:
        raise NotFound("Those seats are not part of this event.", seat_ids=missing)
    if len(p["seat_ids"]) > settings.max_seats_per_order:
        raise LimitExceeded(f"At most {settings.max_seats_per_order} seats per order.",
                            limit="seats_per_order", max=settings.max_seats_per_order)
    if holds.open_hold_count(db.session, uid) >= settings.max_open_holds:
        raise LimitExceeded(f"At most {settings.max_open_holds} open holds at a time.",
                            limit="open_holds", max=settings.max_open_holds)
    return {"event_id": p["event_id"], "seat_ids": p["seat_ids"]}


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
