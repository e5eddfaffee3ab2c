"""REST routes after the sale: tickets, the PDF, calendar files, e-mail again, refunds,
check-in (see docs/TICKETS.md). Each route: parse, call a service, answer."""
from datetime import timezone
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, jsonify
from flask_login import current_user, login_required
from marshmallow import fields, validate

from . import catalog, checkins, checkout, mail, refunds, tickets
from .calendar import event_ics
from .extensions import db
from .errors import BookingError
from .models import Order, Refund
from .schemas import ClientKey, Id, InputSchema, OrderSchema, SEAT_LIST_MAX
from .ticket_pdf import render_tickets_pdf
from .runtime import runtime

bp = Blueprint("tickets_api", __name__, url_prefix="/api/v1")
_order = OrderSchema()


class RefundSchema(InputSchema):
    seat_ids = fields.List(Id(), validate=validate.Length(min=1, max=SEAT_LIST_MAX))
    idempotency_key = ClientKey(required=True)


class CheckinSchema(InputSchema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=400))
    gate = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))
    event_id = Id(load_default=None, allow_none=True)
    # When an offline scanner made the scan (uploaded later).
    scanned_at = fields.AwareDateTime(load_default=None, allow_none=True,
                                      default_timezone=None)


def _body(schema):
    from .api import json_body
    return json_body(schema)


def _send(outcome):
    from workers.tasks import send
    send(outcome)


@bp.get("/ticket-key")
def ticket_key():
    """The public keys that verify ticket codes (for scanners working offline)."""
    resp = jsonify({"keys": tickets.signer().public_keys()})
    resp.cache_control.max_age = 300
    return resp


@bp.get("/orders/<int:order_id>/tickets.pdf")
@login_required
def order_pdf(order_id):
    """The buyer's tickets as one PDF, a page per ticket."""
    order = checkout.order_of(db.session, current_user.id, order_id)
    _, event, buyer, items = tickets.order_documents(db.session, order.id)
    pdf = render_tickets_pdf(order, event, buyer, items)
    return Response(pdf, mimetype="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="tickets-order-{order.id}.pdf"',
        "Cache-Control": "private, no-store"})


@bp.get("/orders/<int:order_id>/tickets/<int:ticket_id>/qr.svg")
@login_required
def ticket_qr(order_id, ticket_id):
    """A ticket's QR code as SVG (the order page shows it; sharp at any size)."""
    order = checkout.order_of(db.session, current_user.id, order_id)
    svg = tickets.qr_svg(order, ticket_id)
    return Response(svg, mimetype="image/svg+xml",
                    headers={"Cache-Control": "private, max-age=3600"})


@bp.get("/events/<int:event_id>/calendar.ics")
def event_calendar(event_id):
    """The event as a calendar file (public, as the event is)."""
    event = catalog.get_event(db.session, event_id)
    base = current_app.config["PUBLIC_URL"]
    body = event_ics(event, f"{base}/events/{event_id}", urlsplit(base).hostname or "boxoffice")
    return Response(body, mimetype="text/calendar", headers={
        "Content-Disposition": f'attachment; filename="event-{event_id}.ics"'})


@bp.post("/orders/<int:order_id>/email")
@login_required
def resend_email(order_id):
    """Send the order's e-mail again (one a minute, five a day). 202 {outbox_id}."""
    order = checkout.order_of(db.session, current_user.id, order_id)
    row = mail.queue_resend(db.session, order, current_user.email)
    db.session.commit()
    from workers.after_sale import dispatch
    dispatch([row.id])
    return jsonify({"queued": True, "to": row.to_addr}), 202


@bp.post("/orders/<int:order_id>/refund")
@login_required
def refund(order_id):
    """Refund seats of an order (organizer admins): 200 the order; 202 while the processor is silent."""
    fields_ = _body(RefundSchema())
    rt = runtime()
    refund_id = refunds.refund_order(rt, current_user.id, order_id, fields_.get("seat_ids"),
                                     fields_["idempotency_key"], _send)
    db.session.expire_all()
    row = db.session.get(Refund, refund_id)
    order = db.session.get(Order, row.order_id)
    body = _order.dump(order) | {"refund": refunds.refund_json(row)}
    if row.status == "failed":
        err = BookingError("The processor refused the refund; nothing was refunded.",
                           code="payment_error", reason=row.failure_reason, refund_id=row.id)
        return jsonify({"error": err.to_dict()}), 502
    return jsonify(body), 202 if row.status == "pending" else 200


@bp.post("/checkins")
@login_required
def create_checkin():
    """Check a ticket in by its code (staff of the event's organizer): 201 the first time."""
    f = _body(CheckinSchema())
    scanned = f["scanned_at"].astimezone(timezone.utc).replace(tzinfo=None) \
        if f["scanned_at"] else None
    result = checkins.check_in(db.session, current_user.id, f["code"], gate=f["gate"],
                               event_id=f["event_id"], scanned_at=scanned)
    db.session.commit()
    return jsonify(result), 201


@bp.get("/events/<int:event_id>/door")
@login_required
def door(event_id):
    """A scanner's view of an event: sold and checked-in counts, void tickets, keys."""
    state = checkins.door_state(db.session, current_user.id, event_id)
    db.session.rollback()
    return jsonify(state)


@bp.get("/door/events")
@login_required
def door_events():
    """Events the caller may scan tickets for."""
    return jsonify(checkins.events_at_door(db.session, current_user.id))

