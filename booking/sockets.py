"""Socket.IO transport: authenticate, validate, hand to intake, ack at once.

Every handler is parse -> authorize -> call -> ack: requests that workers
perform go to booking.intake.submit(); no booking rule is decided here.
"""
import contextlib
import logging
import time

import redis
from sqlalchemy.exc import OperationalError, TimeoutError as PoolTimeout
from flask import current_app, request, session
from flask_login import current_user
from flask_socketio import join_room, leave_room
from socketio.exceptions import ConnectionRefusedError as SocketRefused
from marshmallow import ValidationError

from . import catalog, holds, intake, payloads, sessions, settlement, waiting_room
from .auth import user_from_token
from .errors import (Busy, BookingError, InvalidRequest, LimitExceeded, NotFound, Unauthorized,
                     from_validation)
from .extensions import db, socketio
from .metrics import SOCKETS
from .payloads import reply
from .ratelimits import client_ip
from .payments import ProcessorUnavailable
from .runtime import runtime
from .schemas import (ConfirmPaymentSchema, EventRefSchema, HoldRequestSchema, PayRequestSchema,
                      ReleaseRequestSchema)

log = logging.getLogger(__name__)

_event_ref = EventRefSchema()
_hold_request = HoldRequestSchema()
_release_request = ReleaseRequestSchema()
_pay_request = PayRequestSchema()
_confirm_request = ConfirmPaymentSchema()


def _user_id():
    return session.get("bo_uid")


@socketio.on("connect")
def on_connect(auth=None):
    """Accept a buyer's socket (a valid bearer token or session cookie), or a signed-out
    visitor's read-only one (no credentials at all), each within its cap.

    Credentials that do not hold (a forged or expired token, the cookie of a session
    that was signed out) are refused, never downgraded to read-only: the client must
    learn that its session ended. A database that does not answer in time (a
    reconnect storm can hold every pooled connection) is refused `busy`: an
    unanswered connect would leave the client waiting with no session and no error.
    """
    try:
        _accept(auth)
    except (OperationalError, PoolTimeout):
        log.warning("socket connect refused: database unavailable", exc_info=True)
        raise _refusal(_unavailable()) from None


def _accept(auth):
    token = auth.get("token") if isinstance(auth, dict) else None
    if token is not None:
        user = user_from_token(token)
        if user is None:
            raise _refusal(Unauthorized("Sign in to connect.")) from None
    elif current_user.is_authenticated:
        user = current_user
    elif session.get("_user_id") is not None:
        # A login cookie whose session has ended (signed out, here or elsewhere).
        raise _refusal(Unauthorized("Signed out: sign in again.")) from None
    else:
        _connect_watcher()
        return
    uid, version = user.id, user.session_version
    rt = runtime()
    ip = client_ip()
    try:
        rt.rate_limit.check_ip(ip)
        if not rt.sockets.take(uid, request.sid):
            raise LimitExceeded.of("sockets", limit="sockets", max=rt.sockets.cap)
    except BookingError as err:
        raise _refusal(err) from None
    except redis.RedisError:
        # Counting needs Redis; a buyer is not turned away because Redis blinked.
        log.warning("socket limits unavailable for user %s", uid)
    login_id = sessions.login_of_connect(auth)
    try:
        # The sign-in this socket belongs to: signing out of it disconnects the socket.
        sessions.note_socket(request.sid, login_id)
    except redis.RedisError:
        log.warning("sign-in of socket %s not recorded", request.sid)
    try:
        # Signed out while connecting: read again after taking the slot (and noting
        # the sign-in), so that a sign-out either sees this socket or this check sees it.
        current = sessions.is_current(uid, version, login_id)
    except (OperationalError, PoolTimeout):
        _give_back(rt, uid)
        raise
    if not current:
        _give_back(rt, uid)
        raise _refusal(Unauthorized("Signed out: sign in again.")) from None
    session["bo_uid"] = uid
    session["bo_ip"] = ip
    join_room(f"user:{uid}")
    rt.local_users[uid] += 1
    rt.local_sids[request.sid] = uid
    rt.local_ips[request.sid] = ip
    SOCKETS.inc()
    try:
        rt.presence.touch([uid])
    except redis.RedisError:
        log.warning("presence not recorded for user %s", uid)


def _unavailable():
    """The answer while Redis or the database does not answer in time: nothing was
    done, try again shortly."""
    return Busy("The box office cannot take requests right now.", retry_after_s=2)


def _give_back(rt, uid):
    """Undo a refused connect's socket slot and sign-in note."""
    with contextlib.suppress(redis.RedisError):
        rt.sockets.release(uid, request.sid)
        sessions.forget_socket(request.sid)


def _connect_watcher():
    """A signed-out visitor's socket: it may only join_event and leave_event (every other
    event is answered `unauthorized`), at most MAX_ANONYMOUS_SOCKETS_PER_IP from one
    client address across every web process."""
    rt = runtime()
    ip = client_ip()
    try:
        rt.rate_limit.check_ip(ip)
        if not rt.watchers.take(ip, request.sid):
            raise LimitExceeded.of("anonymous_sockets", limit="anonymous_sockets",
                                   max=rt.watchers.cap)
    except BookingError as err:
        raise _refusal(err) from None
    except redis.RedisError:
        # Without the count there is no cap: refuse read-only sockets until Redis is back
        # (the client retries by itself; buyers are still let in).
        log.warning("anonymous socket cap unavailable (Redis)")
        raise _refusal(Busy("Live updates are unavailable for a moment.", retry_after_s=5)) from None
    session["bo_watch_ip"] = ip
    rt.local_watchers[request.sid] = ip
    SOCKETS.inc()


def _refusal(err):
    """A connect's refusal: the connect_error's data is the contract's error object.

    The packet carries the object's fields ({code, message, details}: what
    python-socketio clients receive) and the object again under `data`, which is
    what the JavaScript client hands its connect_error handler as `err.data`.
    """
    runtime().metrics.request("connect", err.code)
    refusal = SocketRefused(err.message)
    error = payloads.error_object(err)
    refusal.error_args = {**error, "data": error}
    return refusal


@socketio.on("disconnect")
def on_disconnect(reason=None):
    """Note when the buyer was last here; the sweep releases holds after the grace period."""
    uid = _user_id()
    rt = runtime()
    if uid is None:
        ip = rt.local_watchers.pop(request.sid, None)
        if ip is not None:
            SOCKETS.dec()
            try:
                rt.watchers.release(ip, request.sid)
            except redis.RedisError:
                log.warning("anonymous socket slot not released (Redis); it lapses by itself")
        return
    rt.local_users[uid] -= 1
    if rt.local_users[uid] <= 0:
        del rt.local_users[uid]
    rt.local_sids.pop(request.sid, None)
    rt.local_ips.pop(request.sid, None)
    SOCKETS.dec()
    try:
        rt.presence.touch([uid])
        rt.sockets.release(uid, request.sid)
        sessions.forget_socket(request.sid)
    except redis.RedisError:
        log.warning("presence not recorded for user %s", uid)


def _check_rate(uid):
    """A buyer's event: refused `unauthorized` on a signed-out visitor's read-only socket,
    else counted against the account's and the client address's budgets."""
    if uid is None:
        raise Unauthorized("Sign in to choose seats.")
    runtime().rate_limit.check(uid, session.get("bo_ip"))


def _load(schema, data):
    if not isinstance(data, dict):
        raise InvalidRequest("The payload must be a JSON object.")
    try:
        return schema.load(data)
    except ValidationError as err:
        raise from_validation(err) from err


@socketio.on("join_event")
def on_join_event(data=None):
    """Watch an event: answer its seat snapshot (and a buyer's open holds on it) and
    subscribe to its changes. A signed-out visitor may watch an event without a waiting
    room; a waiting room needs an account."""
    rt = runtime()
    try:
        uid = _user_id()
        if uid is None:
            rt.rate_limit.check_ip(session.get("bo_watch_ip"))
        else:
            _check_rate(uid)
        payload = _load(_event_ref, data)
        event_id = payload["event_id"]
        if intake.seat_map(event_id) is None:
            raise NotFound.of("no_event", event_id=event_id)
        gate = rt.gates.get(db.session, event_id)
        room = None
        if gate.gated:
            if uid is None:
                # A place in the queue is per account: a signed-out visitor gets
                # none, and no more than a waiting buyer sees (no seat map, no
                # seats_changed), so read-only sockets can neither jump nor swell it.
                leave_room(f"event:{event_id}")
                raise Unauthorized.of("queue_sign_in", reason="waiting_room")
            room = waiting_room.enter(rt.waiting_room, gate, uid)
            if room["state"] != waiting_room.ADMITTED:
                # A waiting buyer sees no seat map: no snapshot, no seats_changed
                # (a hundred thousand waiting sockets would otherwise get every
                # change). Joining again once admitted brings both.
                leave_room(f"event:{event_id}")
                rt.metrics.request("join_event", "waiting")
                return payloads.snapshot(event_id, [], waiting_room=room,
                                         compact=payload["compact"])
        # Join before reading, so that no change falls between snapshot and feed.
        join_room(f"event:{event_id}")
        seats = rt.coalescer.snapshot(event_id, lambda: catalog.seat_states(db.session, event_id))
        mine = None if uid is None else _open_holds(uid, event_id)
        # The reads are done: give the pooled connection back before the answer is
        # built (a whole board), so that a crowd re-joining at once (a restarted
        # process's sockets) does not wait on the pool.
        db.session.remove()
        rt.metrics.request("join_event", "ok")
        return payloads.snapshot(event_id, catalog.as_of_now(seats), waiting_room=room,
                                 compact=payload["compact"], holds=mine)
    except BookingError as err:
        rt.metrics.request("join_event", err.code)
        return reply(None, err)
    except (redis.RedisError, OperationalError, PoolTimeout):
        log.warning("join_event: shared state or database unavailable", exc_info=True)
        rt.metrics.request("join_event", "busy")
        return reply(None, _unavailable())


def _open_holds(uid, event_id):
    """The buyer's open holds on the event, or None when the database cannot say now: the
    join still answers (its board needs no database), without `holds`."""
    try:
        return holds.open_holds_of(db.session, uid, event_id)
    except (OperationalError, PoolTimeout):
        log.warning("join_event: open holds of user %s not read (database)", uid, exc_info=True)
        db.session.rollback()
        return None


@socketio.on("leave_event")
def on_leave_event(data=None):
    """Stop watching an event."""
    try:
        payload = _load(_event_ref, data)
    except BookingError as err:
        return reply(None, err)
    leave_room(f"event:{payload['event_id']}")
    return reply(None, event_id=payload["event_id"])


# ----------------------------------------------------------- the hot events
# hold, release and pay are registered on python-socketio itself
# (register_hot_events, after each socketio.init_app), so that each event
# skips Flask-SocketIO's request context and session copy: an app context is
# all they need. Authentication is unchanged: a socket's account and IP are
# the ones on_connect accepted (bo_uid, bo_ip in its session), which it also
# keeps for this process in rt.local_sids and rt.local_ips until disconnect.

_HOT_EVENTS = {
    "hold": _hold_request,        # hold seats: acked at once; hold_result follows
    "release": _release_request,  # give a hold back: acked at once; release_result follows
    "pay": _pay_request,          # pay for a hold: acked at once; payment_result follows
}


def register_hot_events(app):
    """Register hold, release and pay on this app's python-socketio server."""
    for kind, schema in _HOT_EVENTS.items():
        socketio.server.on(kind, _hot_handler(app, kind, schema), namespace="/")


def _hot_handler(app, kind, schema):
    def handler(sid, data=None, *_extra):
        with app.app_context():
            return _request(kind, data, schema, sid)
    handler.__name__ = f"on_{kind}"
    return handler


def _request(kind, data, schema, sid):
    """The shared path of every request that a worker performs: parse, authorize, submit, ack."""
    rt = runtime()
    received_at = time.time()
    rid = data.get("request_id") if isinstance(data, dict) else None
    rid = rid if isinstance(rid, str) and len(rid) <= 64 else None
    uid, ip = rt.local_sids.get(sid), rt.local_ips.get(sid)
    try:
        if uid is None:
            if sid in rt.local_watchers:
                raise Unauthorized("Sign in to choose seats.")
            # Neither a buyer's nor a visitor's socket here: one whose disconnect ran
            # while this event waited its turn (a draining process closes sockets
            # with their events in flight). Nothing was done: "not now", so that a
            # client re-sending an accepted request keeps waiting for its answer.
            raise Busy("This connection is closing; send it again once reconnected.",
                       retry_after_s=1)
        try:
            payload = _load(schema, data)
        except BookingError:
            rt.rate_limit.check(uid, ip)  # a refused request counts too
            raise
        # The rate budgets are counted by intake, in its one round trip to Redis.
        receipt = intake.submit(kind, uid, rid, payload, received_at, ip)
        if receipt.answer is not None:
            # The asking socket is on this process: no detour through the message
            # queue, whose publish could stall the ack while Redis is unwell.
            socketio.emit(*receipt.answer, to=sid, ignore_queue=True)
        rt.metrics.request(kind, receipt.outcome)
        return reply(rid, queued=receipt.queued)
    except BookingError as err:
        rt.metrics.request(kind, err.code)
        return reply(rid, err)
    except (redis.RedisError, OperationalError, PoolTimeout):
        log.warning("shared state or database unavailable", exc_info=True)
        rt.metrics.request(kind, "busy")
        return reply(rid, _unavailable())
    except Exception:
        log.exception("%s request failed", kind)
        rt.metrics.request(kind, "internal")
        return reply(rid, BookingError(code="internal"))


@socketio.on("confirm_payment")
def on_confirm_payment(data=None):
    """The browser finished the processor's 3-D Secure challenge: acked at once; the
    payment's payment_result follows once the processor's record is read."""
    rid = data.get("request_id") if isinstance(data, dict) else None
    rid = rid if isinstance(rid, str) and len(rid) <= 64 else None
    uid = _user_id()
    try:
        _check_rate(uid)
        p = _load(_confirm_request, data)
        key = settlement.payment_key(db.session, uid, p["hold_id"], p["idempotency_key"])
        db.session.remove()
    except BookingError as err:
        return reply(rid, err)
    except (OperationalError, PoolTimeout):
        log.warning("database unavailable for a payment confirmation", exc_info=True)
        return reply(rid, _unavailable())
    socketio.start_background_task(_settle_in_background, current_app._get_current_object(), key)
    return reply(rid, queued=True)


def _settle_in_background(app, key):
    with app.app_context():
        try:
            settlement.settle_key(runtime(app), key, app.config["PAYMENT_TIMEOUT_SECONDS"])
        except ProcessorUnavailable:
            log.warning("processor did not answer a confirmation; reconciliation will settle it")
        except Exception:
            log.exception("settling a confirmed payment failed; reconciliation will retry")
        finally:
            db.session.remove()
