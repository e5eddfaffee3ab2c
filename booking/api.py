"""The REST API, v1 (see API.md)."""
from flask import Blueprint, jsonify, request
from flask_login import current_user, login_required

from . import account_links, accounts, catalog, checkout, sessions
from .ratelimits import check_sign_in
from .auth import issue_token
from .errors import MalformedRequest
from .extensions import db
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
    sessions.start_session(user)
    body = _user.dump(user) | {"token": issue_token(user)}
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
    """Sign out everywhere: every cookie, token and socket of the account stops working."""
    sessions.sign_out(current_user)
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
    return jsonify({"event_id": event_id, "seats": _seats.dump(seats)})


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
