"""Back-office pages of one event: create, overview, edit, seats, on-sale, orders, live."""
from flask import flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from . import (CsrfForm, bp, committed, event_for, local_to_utc_iso, member_of, page_config,
               signed_in, utc_to_local_input)
from .. import event_admin, order_search, sales, venues, verdicts
from ..errors import InvalidRequest, from_validation
from ..extensions import db
from ..organizer_api import apply_sale_controls, sale_status
from ..organizer_schemas import (EventChangesSchema, NewEventSchema, SaleControlsSchema,
                                 SeatSelectionSchema, TierPriceSchema)

_new_event, _changes = NewEventSchema(), EventChangesSchema()
_tier_price, _selection, _sale = TierPriceSchema(), SeatSelectionSchema(), SaleControlsSchema()


def _load(schema, data):
    try:
        return schema.load(data)
    except ValidationError as err:
        raise from_validation(err) from err


def _cents(value):
    """A price typed as '45' or '45.50' as cents ('' stays '', for the schema to refuse)."""
    value = (value or "").strip().replace(",", ".")
    try:
        return round(float(value) * 100) if value else value
    except ValueError:
        return value


def _split(value, numbers=False):
    """'A-C, F' as ['A', 'B', 'C', 'F']; '1-4, 9' as [1, 2, 3, 4, 9] (numbers=True)."""
    out = []
    for part in (value or "").replace(" ", "").split(","):
        if not part:
            continue
        low, dash, high = part.partition("-")
        if numbers:
            if not (low.isdigit() and (not dash or high.isdigit())):
                raise InvalidRequest(f"Not a number or range: {part!r}.",
                                     fields={"numbers": [f"Not a number or range: {part!r}."]})
            a, b = int(low), int(high) if dash else int(low)
            if b < a or b - a > 1000:
                raise InvalidRequest(f"Not a range: {part!r}.", fields={"numbers": ["Bad range."]})
            out += list(range(a, b + 1))
        elif dash and len(low) == 1 and len(high) == 1 and low.isalpha() and high.isalpha():
            out += [chr(c) for c in range(ord(low.upper()), ord(high.upper()) + 1)]
        else:
            out.append(part)
    return out


@bp.route("/o/<int:organizer_id>/events/new", methods=["GET", "POST"])
@signed_in
def event_new(organizer_id):
    """Make an event: choose the venue, then name, start, tiers' prices, on-sale."""
    org, role = member_of(organizer_id, "admin")
    places = venues.list_venues(db.session, organizer_id)
    venue_id = request.values.get("venue_id", type=int)
    place = next((v for v in places if v["id"] == venue_id), None)
    form, errors = CsrfForm(), {}
    values = dict(request.form) if request.method == "POST" else {"currency": "EUR"}
    if request.method == "POST" and place and form.validate_on_submit():
        tiers = [{"name": t, "price_cents": _cents(request.form.get(f"tier_{i}"))}
                 for i, t in enumerate(place["tiers"])]
        data = {"venue_id": place["id"], "name": values.get("name", ""),
                "starts_at": local_to_utc_iso(values.get("starts_at"), place["timezone"]),
                "currency": values.get("currency", "EUR"), "price_tiers": tiers,
                "description": values.get("description") or None,
                "waiting_room": values.get("waiting_room") == "on"}
        if values.get("on_sale_at"):
            data["on_sale_at"] = local_to_utc_iso(values["on_sale_at"], place["timezone"])
        rate = (values.get("admission_rate") or "").strip()
        if rate not in ("", "auto"):
            data["admission_rate_per_min"] = int(rate) if rate.isdigit() else rate
        event, errors = committed(lambda: _create_event(organizer_id, place, data))
        if event is not None:
            flash(f"{event.name} is made.", "success")
            return redirect(url_for("manage.event", event_id=event.id))
    return render_template("manage/event_new.html", organizer=org, role=role, venues=places,
                           venue=place, form=form, errors=errors, values=values,
                           page=page_config())


def _create_event(organizer_id, place, data):
    fields = _load(_new_event, data)
    fields.pop("venue_id")
    return event_admin.create_event(db.session, organizer_id, venue_id=place["id"], **fields)


@bp.get("/events/<int:event_id>")
@signed_in
def event(event_id):
    """An event at a glance: sales, the audit's verdict, links to everything else."""
    ev, role = event_for(event_id)
    return render_template("manage/event.html", event=ev, role=role,
                           figures=sales.sales_of(db.session, ev.id),
                           verdict=verdicts.event_verdict(db.session, ev.id),
                           sale=sale_status(db.session, ev), page=page_config())


def _save(ev, form, change, endpoint):
    """An admin's form on an event page: the role and the CSRF token checked, change()
    applied (it returns the flash text) and committed, then back to the page. Refused:
    rolled back, (None, errors by field); the page is shown again with them."""
    event_for(ev.id, "admin")
    if not form.validate_on_submit():
        return None, {}
    message, errors = committed(change)
    if message is None:
        return None, errors
    flash(message, "success")
    return redirect(url_for(endpoint, event_id=ev.id)), {}


@bp.route("/events/<int:event_id>/edit", methods=["GET", "POST"])
@signed_in
def event_edit(event_id):
    """Name, start, description, currency; tiers and their prices (locked once selling)."""
    ev, role = event_for(event_id)
    form, errors = CsrfForm(), {}
    zone = ev.venue.timezone
    if request.method == "POST":
        done, errors = _save(ev, form, lambda: _apply_edit(ev, zone) or "Saved.",
                             "manage.event_edit")
        if done:
            return done
    return render_template("manage/event_edit.html", event=ev, role=role, form=form,
                           errors=errors, tiers=event_admin.tiers_of(db.session, ev.id),
                           locked=event_admin.editability(db.session, ev),
                           starts_local=utc_to_local_input(ev.starts_at, zone),
                           page=page_config())


def _apply_edit(ev, zone):
    action = request.form.get("action")
    if action == "details":
        changes = {"name": request.form.get("name", ""),
                   "description": request.form.get("description", ""),
                   "starts_at": local_to_utc_iso(request.form.get("starts_at"), zone)}
        if "currency" in request.form:
            changes["currency"] = request.form["currency"]
        event_admin.update_event(db.session, ev, _load(_changes, changes))
    elif action == "tier":
        price = _load(_tier_price, {"price_cents": _cents(request.form.get("price"))})
        event_admin.set_tier(db.session, ev, request.form.get("tier", ""), price["price_cents"])
    elif action == "delete_tier":
        event_admin.delete_tier(db.session, ev, request.form.get("tier", ""))
    else:
        raise InvalidRequest("Unknown action.")


SEAT_ACTIONS = {
    "block_hold": {"blocked": "hold"}, "block_kill": {"blocked": "kill"},
    "unblock": {"blocked": None},
    "wheelchair": {"wheelchair": True}, "no_wheelchair": {"wheelchair": False},
    "companion": {"companion": True}, "no_companion": {"companion": False},
    "restricted_view": {"restricted_view": True},
    "no_restricted_view": {"restricted_view": False},
}


@bp.route("/events/<int:event_id>/seats", methods=["GET", "POST"])
@signed_in
def event_seats(event_id):
    """Seats by row; block or release them, move them to a tier, mark accessibility."""
    ev, role = event_for(event_id)
    form, errors, values = CsrfForm(), {}, {}
    if request.method == "POST":
        event_for(event_id, "admin")
        values = dict(request.form)
        done, errors = _save(ev, form, lambda: _change_seats(ev, values), "manage.event_seats")
        if done:
            return done
    return render_template("manage/event_seats.html", event=ev, role=role, form=form,
                           errors=errors, values=values, actions=SEAT_ACTIONS,
                           sections=event_admin.seat_summary(db.session, ev.id),
                           tiers=event_admin.tiers_of(db.session, ev.id), page=page_config())


def _change_seats(ev, values):
    """Apply the seats form (a selection and one change); the flash text."""
    action = values.get("action", "")
    change = dict(SEAT_ACTIONS.get(action) or (
        {"tier": action[5:]} if action.startswith("tier:") else {}))
    if not change:
        raise InvalidRequest("Choose what to do.", fields={"action": ["Choose one."]})
    selection = {"section": values.get("section", ""),
                 "rows": _split(values.get("rows")) or None,
                 "numbers": _split(values.get("numbers"), numbers=True) or None,
                 "set": change}
    fields = _load(_selection, {k: v for k, v in selection.items() if v is not None})
    ids = event_admin.select_seats(db.session, ev.id, section=fields["section"],
                                   rows=fields.get("rows"), numbers=fields.get("numbers"))
    n = event_admin.change_seats(db.session, ev, ids, fields["set"])
    return f"{n} seats changed."


@bp.route("/events/<int:event_id>/sale", methods=["GET", "POST"])
@signed_in
def event_sale(event_id):
    """On-sale time, waiting room on/off/pause, admission rate; the queue, live."""
    ev, role = event_for(event_id)
    form, errors = CsrfForm(), {}
    zone = ev.venue.timezone
    if request.method == "POST":
        done, errors = _save(ev, form, lambda: _apply_sale(ev, zone), "manage.event_sale")
        if done:
            return done
    return render_template("manage/event_sale.html", event=ev, role=role, form=form,
                           errors=errors, sale=sale_status(db.session, ev),
                           on_sale_local=utc_to_local_input(ev.on_sale_at, zone),
                           page=page_config(event_id=ev.id))


def _apply_sale(ev, zone):
    """Apply one on-sale control of the form; the flash text."""
    action = request.form.get("action")
    if action == "on_sale":
        value = request.form.get("on_sale_at")
        data = {"on_sale_at": local_to_utc_iso(value, zone) if value else None}
    elif action == "now":
        from ..models import iso_utc, utcnow
        data = {"on_sale_at": iso_utc(utcnow().replace(microsecond=0))}
    elif action in ("open", "paused", "draining"):
        data = {"waiting_room": action}
    elif action == "rate":
        rate = (request.form.get("rate") or "").strip()
        data = {"admission_rate_per_min": "auto" if rate in ("", "auto") else
                (int(rate) if rate.isdigit() else rate)}
    else:
        raise InvalidRequest("Unknown action.")
    apply_sale_controls(db.session, ev, _load(_sale, data))
    return "Saved: every web process follows within a second."


@bp.get("/events/<int:event_id>/orders")
@signed_in
def event_orders(event_id):
    """Find orders by buyer e-mail, order number or seat; export them all."""
    ev, role = event_for(event_id)
    q = request.args.get("q", "")[:254]
    found = order_search.search_orders(db.session, ev.id, q, 100)
    return render_template("manage/event_orders.html", event=ev, role=role, q=q, orders=found,
                           page=page_config())


@bp.get("/events/<int:event_id>/orders/<int:order_id>")
@signed_in
def event_order(event_id, order_id):
    """One order: buyer, seats, payment; admins refund all or some seats."""
    ev, role = event_for(event_id)
    order = order_search.order_of_event(db.session, ev.id, order_id)
    return render_template("manage/event_order.html", event=ev, role=role, order=order,
                           page=page_config(order_id=order_id, event_id=ev.id,
                                            can_refund=role == "admin"))


@bp.get("/events/<int:event_id>/live")
@signed_in
def event_live(event_id):
    """The live dashboard (figures through the organizer's Socket.IO room)."""
    ev, role = event_for(event_id)
    return render_template("manage/event_live.html", event=ev, role=role,
                           page=page_config(event_id=ev.id))
