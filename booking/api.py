"""The REST API, v1 (see API.md)."""
import hashlib
import threading
import time

from flask import Blueprint, Response, jsonify, request
from flask_login import current_user, login_required

from . import account_links, accounts, catalog, checkout, seat_plans, sessions
from .ratelimits import check_sign_in
from .auth import issue_token
from .errors import MalformedRequest
from .extensions import db
from .outcome import seat_state
from .runtime import runtime
from .schemas import (EventDetailSchema, EventSchema, NewUserSchema, OrderSchema, SeatSchema,
                      SessionSchema, UserSchema)

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def dispatch_mail(outbox_ids):
    """Hand committed outbox rows to the mail task (never sent on the request path)."""
    from workers.after_sale import dispatch
    dispatch(outbox_ids)

_new_user = NewUserSchema()
_session = SessionSchema()
_user = UserSchema()
_events = EventSchema(many=True)
_event = EventDetailSchema()
_seats = SeatSchema(many=True)
_order = OrderSchema()
_orders = OrderSchema(many=True)


def json_body(schema):
    """The request's JSON object loaded through schema (400 if not an object, 422 if invalid)."""
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        # Deeply nested JSON fits in 64 KiB; the parser gives up with this rather
        # than the ValueError that silent=True swallows.
        data = None
    if not isinstance(data, dict):
        raise MalformedRequest("The body must be a JSON object.")
    return schema.load(data)


def _signed_in(user, status):
    login_id = sessions.start_session(user)
    # One sign-in: the cookie and the token share its login id (signing out ends both).
    body = _user.dump(user) | {"token": issue_token(user, login_id)}
    return jsonify(body), status


@bp.post("/users")
def create_user():
    """Sign up: create an account, sign it in, and return a bearer token."""
    fields = json_body(_new_user)
    check_sign_in(fields["email"])
    user = accounts.register_user(db.session, **fields)
    outbox_id = account_links.queue_verification(db.session, user)
    db.session.commit()
    dispatch_mail([outbox_id])
    return _signed_in(user, 201)


@bp.post("/session")
def create_session():
    """Sign in with email and password."""
    fields = json_body(_session)
    check_sign_in(fields["email"])
    user = accounts.authenticate(db.session, **fields)
    db.session.commit()  # a rehashed password, if the parameters changed
    return _signed_in(user, 200)


@bp.delete("/session")
def delete_session():
    """Sign out of this sign-in: its cookie, its token and its sockets stop working."""
    sessions.sign_out(current_user)
    return "", 204


@bp.delete("/sessions")
@login_required
def delete_sessions():
    """Sign out everywhere: every cookie, token and socket of the account stops working."""
    sessions.sign_out_everywhere(current_user)
    return "", 204


@bp.get("/events")
def list_events():
    """Every event with its seat counts."""
    return jsonify(_events.dump(catalog.list_events(db.session)))


@bp.get("/events/<int:event_id>")
def get_event(event_id):
    """One event with its sections and rows."""
    return jsonify(_event.dump(catalog.get_event(db.session, event_id)))


@bp.get("/events/<int:event_id>/seats")
def get_seats(event_id):
    """Every seat of an event with its status and version."""
    seats = catalog.event_seats(db.session, event_id)
    # A held seat whose hold has run out reads available, with the snapshot's rule.
    states = catalog.as_of_now([seat_state(s.id, s.status, s.version, s.hold_expires_at)
                                for s in seats])
    return jsonify({"event_id": event_id,
                    "seats": [dict(body, **state) for body, state in zip(_seats.dump(seats),
                                                                        states)]})


# The seat plan of an event, kept per process for PLAN_MAX_AGE_S: building a
# 20,000-seat plan reads every seat, and every buyer's page asks for it at open.
PLAN_MAX_AGE_S = 30
_plans = {}  # event_id -> (built at, body, etag)
_plans_lock = threading.Lock()


def _plan_body(event_id):
    now = time.monotonic()
    with _plans_lock:
        cached = _plans.get(event_id)
    if cached and now - cached[0] < PLAN_MAX_AGE_S:
        return cached[1], cached[2]
    body = seat_plans.encode_plan(seat_plans.seat_plan(db.session, event_id))
    etag = hashlib.sha256(body).hexdigest()[:20]
    with _plans_lock:
        if len(_plans) > 500:
            _plans.clear()
        _plans[event_id] = (now, body, etag)
    return body, etag


@bp.get("/events/<int:event_id>/seatmap")
def get_seat_plan(event_id):
    """The event's static seat map (where seats are, names, prices, marks), compact, cacheable."""
    body, etag = _plan_body(event_id)
    response = Response(body, mimetype="application/json")
    response.set_etag(etag)
    # Prices and marks may change while an event sells: caches keep it briefly
    # and then ask again with the ETag (a 304 costs nothing).
    response.headers["Cache-Control"] = f"public, max-age={PLAN_MAX_AGE_S}"
    return response.make_conditional(request)


@bp.get("/events/<int:event_id>/board")
def get_board(event_id):
    """Every seat's status and version, compact (for pages without a live connection)."""
    catalog.require_event(db.session, event_id)
    states = catalog.as_of_now(runtime().coalescer.snapshot(
        event_id, lambda: catalog.seat_states(db.session, event_id)))
    response = jsonify({"event_id": event_id, "board": seat_plans.compact_board(states)})
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/orders")
@login_required
def list_orders():
    """The caller's orders, newest first."""
    return jsonify(_orders.dump(checkout.orders_of(db.session, current_user.id)))


@bp.get("/orders/<int:order_id>")
@login_required
def get_order(order_id):
    """One of the caller's orders (404 for anyone else's)."""
    return jsonify(_order.dump(checkout.order_of(db.session, current_user.id, order_id)))
