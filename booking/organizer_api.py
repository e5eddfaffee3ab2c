"""The organizer API, /api/v1/organizer/ (docs/BACK_OFFICE.md).

Every route authorizes first through booking.organizers: someone who is not a
member of the organizer is told its events and venues do not exist (404); a
staff member's write is 403; signed-out callers get 401. Then parse -> one
service -> answer.
"""
from flask import Blueprint, Response, jsonify, request, stream_with_context
from flask_login import current_user, login_required

from . import event_admin, exports, members, order_search, organizers, sales, venues, verdicts
from . import waiting_room
from .api import json_body
from .errors import Forbidden, InvalidRequest, NotFound
from .extensions import db
from .models import ID_MAX, Venue, iso_utc
from .organizer_schemas import (EventChangesSchema, NewEventSchema, NewMemberSchema,
                                NewVenueSchema, OrderSearchSchema, OrganizerQuerySchema,
                                SaleControlsSchema, SeatSelectionSchema, TierPriceSchema)
from .runtime import runtime

bp = Blueprint("organizer_api", __name__, url_prefix="/api/v1/organizer")

# A venue's layout file may be larger than the API's usual 64 KiB body.
LAYOUT_MAX_BYTES = 2 * 1024 * 1024

_new_venue, _new_event = NewVenueSchema(), NewEventSchema()
_event_changes, _tier_price = EventChangesSchema(), TierPriceSchema()
_seat_selection, _sale_controls = SeatSelectionSchema(), SaleControlsSchema()
_new_member, _order_search, _organizer_ref = NewMemberSchema(), OrderSearchSchema(), OrganizerQuerySchema()


@bp.before_request
@login_required
def _signed_in():
    """Every organizer route needs a signed-in caller (401 otherwise)."""


def _uid():
    return current_user.id


def pick_organizer(session, user_id, organizer_id, need):
    """The organizer a call acts for: the one named, or the caller's only one.

    Raises NotFound (named, not a member), Forbidden (a member of none, or staff
    where an admin is needed), InvalidRequest (several and none named).
    """
    if organizer_id is not None:
        organizers.authorize_organizer(session, user_id, organizer_id, need)
        return organizer_id
    mine = organizers.organizers_of(session, user_id)
    if not mine:
        raise Forbidden("You are not a member of any organizer.", reason="not_a_member")
    if len(mine) > 1:
        raise InvalidRequest("You belong to several organizers: name one.",
                             fields={"organizer_id": ["Name the organizer to act for."]})
    organizers.authorize_organizer(session, user_id, mine[0][0].id, need)
    return mine[0][0].id


def describe_event(session, event, full=False):
    """The event as the organizer API answers it."""
    body = {"id": event.id, "organizer_id": event.organizer_id, "venue_id": event.venue_id,
            "venue": event.venue.name, "timezone": event.venue.timezone, "name": event.name,
            "description": event.description, "starts_at": iso_utc(event.starts_at),
            "currency": event.currency, "on_sale_at": iso_utc(event.on_sale_at),
            "waiting_room": event.waiting_room,
            "admission_rate_per_min": event.admission_rate_per_min}
    if full:
        body["price_tiers"] = event_admin.tiers_of(session, event.id)
        body["locked"] = event_admin.editability(session, event)
    return body


@bp.get("/organizers")
def list_organizers():
    """The caller's organizers and role in each."""
    return jsonify([{"id": o.id, "name": o.name, "role": role}
                    for o, role in organizers.organizers_of(db.session, _uid())])


@bp.get("/venues")
def list_venues():
    """The organizer's venues."""
    ref = _organizer_ref.load(request.args)
    oid = pick_organizer(db.session, _uid(), ref["organizer_id"], "staff")
    return jsonify(venues.list_venues(db.session, oid))


@bp.post("/venues")
def create_venue():
    """A venue from a layout (admin)."""
    request.max_content_length = LAYOUT_MAX_BYTES
    fields = json_body(_new_venue)
    oid = pick_organizer(db.session, _uid(), fields["organizer_id"], "admin")
    venue = venues.create_venue(db.session, oid, fields["name"], fields["timezone"],
                                fields["layout"])
    db.session.commit()
    return jsonify(venues.describe_venue(venue, events=0)), 201


def _venue(venue_id, need="staff"):
    """The venue when the caller's role in its organizer satisfies need (NotFound otherwise)."""
    venue = db.session.get(Venue, venue_id) if 0 < venue_id <= ID_MAX else None
    if venue is None or venue.organizer_id is None:
        raise NotFound("No such venue.", venue_id=venue_id)
    try:
        organizers.authorize_organizer(db.session, _uid(), venue.organizer_id, need)
    except NotFound:
        raise NotFound("No such venue.", venue_id=venue_id) from None
    return venue


@bp.get("/venues/<int:venue_id>")
def get_venue(venue_id):
    """One venue with its layout."""
    return jsonify(venues.describe_venue(_venue(venue_id), with_layout=True))


@bp.get("/events")
def list_events():
    """The organizer's events."""
    ref = _organizer_ref.load(request.args)
    oid = pick_organizer(db.session, _uid(), ref["organizer_id"], "staff")
    return jsonify([describe_event(db.session, e)
                    for e in event_admin.list_events(db.session, oid)])


@bp.post("/events")
def create_event():
    """An event on one of the organizer's venues (admin)."""
    fields = json_body(_new_event)
    venue = _venue(fields.pop("venue_id"), "admin")
    event = event_admin.create_event(db.session, venue.organizer_id, venue_id=venue.id, **fields)
    db.session.commit()
    return jsonify(describe_event(db.session, event, full=True)), 201


def _event(event_id, need="staff"):
    return organizers.authorize_event(db.session, _uid(), event_id, need)


@bp.get("/events/<int:event_id>")
def get_event(event_id):
    """One event with its tiers and what is locked."""
    return jsonify(describe_event(db.session, _event(event_id), full=True))


@bp.patch("/events/<int:event_id>")
def update_event(event_id):
    """Change name, description, start or currency (admin; some fields lock once selling)."""
    event = _event(event_id, "admin")
    changes = json_body(_event_changes)
    event_admin.update_event(db.session, event, changes)
    db.session.commit()
    return jsonify(describe_event(db.session, event, full=True))


@bp.put("/events/<int:event_id>/tiers/<name>")
def set_tier(event_id, name):
    """Add a tier or change its price (admin; locked once its seats sell)."""
    event = _event(event_id, "admin")
    fields = json_body(_tier_price)
    event_admin.set_tier(db.session, event, name, fields["price_cents"])
    db.session.commit()
    return jsonify(event_admin.tiers_of(db.session, event.id))


@bp.delete("/events/<int:event_id>/tiers/<name>")
def delete_tier(event_id, name):
    """Remove a tier no seat uses (admin)."""
    event = _event(event_id, "admin")
    event_admin.delete_tier(db.session, event, name)
    db.session.commit()
    return jsonify(event_admin.tiers_of(db.session, event.id))


@bp.get("/events/<int:event_id>/seats")
def seat_summary(event_id):
    """Seats per section and row: sold, held, blocked, accessibility marks."""
    event = _event(event_id)
    return jsonify({"event_id": event.id,
                    "sections": event_admin.seat_summary(db.session, event.id)})


@bp.post("/events/<int:event_id>/seats")
def change_seats(event_id):
    """Block, release, re-tier or mark seats (admin), all or none."""
    event = _event(event_id, "admin")
    fields = json_body(_seat_selection)
    ids = event_admin.select_seats(db.session, event.id, seat_ids=fields.get("seat_ids"),
                                   section=fields.get("section"), rows=fields.get("rows"),
                                   numbers=fields.get("numbers"))
    changed = event_admin.change_seats(db.session, event, ids, fields["set"])
    db.session.commit()
    return jsonify({"event_id": event.id, "changed": changed})


def sale_status(session, event):
    """The on-sale settings and the waiting room's queue, with the expected wait."""
    rt = runtime()
    status = waiting_room.room_status(session, rt.waiting_room, event.id)
    rate = status.get("admission_rate_per_min") or status.get("current_rate_per_min")
    waiting = status["queued"] + status["pre_queue"]
    status["expected_wait_s"] = round(waiting / rate * 60) if rate and waiting else (
        0 if not waiting else None)
    status["rate_mode"] = "auto" if status.get("admission_rate_per_min") is None else "fixed"
    return status


@bp.get("/events/<int:event_id>/sale")
def get_sale(event_id):
    """On-sale time, waiting room state and rate, queue length and expected wait."""
    event = _event(event_id)
    return jsonify(sale_status(db.session, event))


@bp.post("/events/<int:event_id>/sale")
def change_sale(event_id):
    """Move the on-sale, open/pause/drain the waiting room, set its rate (admin)."""
    event = _event(event_id, "admin")
    apply_sale_controls(db.session, event, json_body(_sale_controls))
    db.session.commit()
    return jsonify(sale_status(db.session, event))


def apply_sale_controls(session, event, fields):
    """The waiting room's own setters (every web process follows within a second)."""
    if "on_sale_at" in fields:
        waiting_room.set_on_sale(session, event.id, fields["on_sale_at"])
    if "waiting_room" in fields:
        waiting_room.set_room(session, event.id, fields["waiting_room"])
    if "admission_rate_per_min" in fields:
        waiting_room.set_rate(session, event.id, fields["admission_rate_per_min"])


@bp.get("/events/<int:event_id>/sales")
def get_sales(event_id):
    """Seats by status, revenue, refunds and orders, per section too."""
    event = _event(event_id)
    return jsonify(sales.sales_of(db.session, event.id))


@bp.get("/events/<int:event_id>/audit")
def get_audit(event_id):
    """The audit's verdict on the event, problems in words."""
    event = _event(event_id)
    verdict = verdicts.event_verdict(db.session, event.id)
    return jsonify({k: v for k, v in verdict.items()})


@bp.get("/events/<int:event_id>/orders")
def find_orders(event_id):
    """Orders by buyer e-mail, order number or seat (?q=), newest first."""
    event = _event(event_id)
    args = _order_search.load(request.args)
    return jsonify(order_search.search_orders(db.session, event.id, args["q"], args["limit"]))


@bp.get("/events/<int:event_id>/orders/<int:order_id>")
def get_order(event_id, order_id):
    """One order of the event with its buyer, seats and payment."""
    event = _event(event_id)
    return jsonify(order_search.order_of_event(db.session, event.id, order_id))


def export_response(event, kind):
    """The streamed export (kind 'csv' or 'xlsx') as a download."""
    session = db.session
    if kind == "csv":
        body, mime = exports.csv_chunks(session, event.id), "text/csv; charset=utf-8"
    else:
        body = exports.xlsx_chunks(session, event.id, event.name)
        mime = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    response = Response(stream_with_context(body), mimetype=mime)
    response.headers["Content-Disposition"] = \
        f'attachment; filename="event-{event.id}-orders.{kind}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/events/<int:event_id>/orders.csv")
def orders_csv(event_id):
    """The orders, one row per ticket, as CSV (streamed)."""
    return export_response(_event(event_id), "csv")


@bp.get("/events/<int:event_id>/orders.xlsx")
def orders_xlsx(event_id):
    """The orders, one row per ticket, as an Excel workbook (streamed)."""
    return export_response(_event(event_id), "xlsx")


@bp.get("/organizers/<int:organizer_id>/members")
def list_members(organizer_id):
    """Members and open invitations (admin)."""
    organizers.authorize_organizer(db.session, _uid(), organizer_id, "admin")
    found = members.members_of(db.session, organizer_id)
    for invite in found["invitations"]:
        invite["created_at"] = iso_utc(invite["created_at"])
    return jsonify(found)


@bp.post("/organizers/<int:organizer_id>/members")
def add_member(organizer_id):
    """Add a registered user, or invite an e-mail without an account (admin)."""
    organizers.authorize_organizer(db.session, _uid(), organizer_id, "admin")
    fields = json_body(_new_member)
    outcome, _ = members.add_or_invite(db.session, organizer_id, fields["email"],
                                       fields["role"], invited_by=_uid())
    db.session.commit()
    return jsonify({"outcome": outcome, "email": fields["email"].lower(),
                    "role": fields["role"]}), 201 if outcome == "invited" else 200


@bp.delete("/organizers/<int:organizer_id>/members/<int:user_id>")
def remove_member(organizer_id, user_id):
    """End a membership (admin; the last admin stays)."""
    organizers.authorize_organizer(db.session, _uid(), organizer_id, "admin")
    organizers.remove_member(db.session, organizer_id, user_id)
    db.session.commit()
    return "", 204


@bp.delete("/organizers/<int:organizer_id>/invitations/<int:invitation_id>")
def cancel_invitation(organizer_id, invitation_id):
    """Withdraw an invitation (admin)."""
    organizers.authorize_organizer(db.session, _uid(), organizer_id, "admin")
    members.cancel_invitation(db.session, organizer_id, invitation_id)
    db.session.commit()
    return "", 204
