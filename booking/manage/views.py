"""Back-office pages of an organizer: home, venues, members."""
import json

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from marshmallow import ValidationError

from . import CsrfForm, bp, committed, member_of, page_config, signed_in
from .. import event_admin, members, organizers, venues
from ..errors import InvalidRequest, from_validation
from ..extensions import db
from ..organizer_schemas import NewMemberSchema

_new_member = NewMemberSchema()
LAYOUT_MAX_BYTES = 2 * 1024 * 1024


@bp.get("")
@bp.get("/")
@signed_in
def home():
    """The organizers the caller belongs to; straight to the only one."""
    mine = organizers.organizers_of(db.session, current_user.id)
    if len(mine) == 1:
        return redirect(url_for("manage.organizer", organizer_id=mine[0][0].id))
    return render_template("manage/home.html", organizers=mine, page=page_config())


@bp.get("/o/<int:organizer_id>")
@signed_in
def organizer(organizer_id):
    """An organizer's events and venues."""
    org, role = member_of(organizer_id)
    events = event_admin.list_events(db.session, organizer_id)
    return render_template("manage/organizer.html", organizer=org, role=role, events=events,
                           venues=venues.list_venues(db.session, organizer_id),
                           page=page_config())


@bp.route("/o/<int:organizer_id>/venues", methods=["GET", "POST"])
@signed_in
def venue_list(organizer_id):
    """The organizer's venues; admins add one from a layout file."""
    org, role = member_of(organizer_id)
    form, errors, values = CsrfForm(), {}, {"name": "", "timezone": "Europe/Amsterdam"}
    if request.method == "POST":
        member_of(organizer_id, "admin")
        request.max_content_length = LAYOUT_MAX_BYTES
        values = {"name": request.form.get("name", ""),
                  "timezone": request.form.get("timezone", "")}
        if form.validate_on_submit():
            venue, errors = committed(lambda: venues.create_venue(
                db.session, organizer_id, values["name"], values["timezone"],
                _layout_file(request.files.get("layout"))))
            if venue is not None:
                flash(f"Venue {venue.name} made with {venues.describe_venue(venue)['seats']} "
                      "seats.", "success")
                return redirect(url_for("manage.venue", organizer_id=organizer_id,
                                        venue_id=venue.id))
    return render_template("manage/venues.html", organizer=org, role=role, form=form,
                           errors=errors, values=values,
                           venues=venues.list_venues(db.session, organizer_id),
                           page=page_config())


def _layout_file(upload):
    """The uploaded layout file as a JSON object; raises InvalidRequest."""
    if upload is None or not upload.filename:
        raise InvalidRequest("Choose a layout file.", fields={"layout": ["Choose a layout file."]})
    raw = upload.read(LAYOUT_MAX_BYTES + 1)
    if len(raw) > LAYOUT_MAX_BYTES:
        raise InvalidRequest("The layout file is too large.",
                             fields={"layout": ["At most 2 MiB."]})
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise InvalidRequest("The layout file is not JSON.",
                             fields={"layout": [f"Not a JSON file: {str(err)[:200]}"]}) from None


@bp.get("/o/<int:organizer_id>/venues/<int:venue_id>")
@signed_in
def venue(organizer_id, venue_id):
    """A venue: its sections, tiers and a plan drawn from its seats."""
    org, role = member_of(organizer_id)
    place = venues.get_venue(db.session, organizer_id, venue_id)
    return render_template("manage/venue.html", organizer=org, role=role,
                           venue=venues.describe_venue(place, with_layout=True),
                           page=page_config(venue_id=venue_id, organizer_id=organizer_id))


@bp.get("/o/<int:organizer_id>/venues/<int:venue_id>/seats.json")
@signed_in
def venue_seats(organizer_id, venue_id):
    """The venue's seats with plan coordinates (the plan preview draws them)."""
    from ..layouts import expand_layout
    member_of(organizer_id)
    place = venues.get_venue(db.session, organizer_id, venue_id)
    layout = venues.venue_layout(place)
    seats = expand_layout(layout) if layout else []
    return {"plan": layout and layout["plan"], "stage": layout and layout["stage"],
            "focal_point": layout and layout["focal_point"],
            "seats": [[s["x"], s["y"], s["tier"], bool(s["blocked"]), s["wheelchair"],
                       s["label"]] for s in seats],
            "tiers": layout["tiers"] if layout else []}


@bp.route("/o/<int:organizer_id>/members", methods=["GET", "POST"])
@signed_in
def member_list(organizer_id):
    """Members and invitations; admins add, invite and remove."""
    org, role = member_of(organizer_id, "admin")
    form, errors, values = CsrfForm(), {}, {"email": "", "role": "staff"}
    if request.method == "POST" and form.validate_on_submit():
        values = {"email": request.form.get("email", ""), "role": request.form.get("role", "")}
        message, errors = committed(lambda: _change_members(organizer_id, values,
                                                            request.form.get("action", "add")))
        if message is not None:
            flash(message, "success")
            return redirect(url_for("manage.member_list", organizer_id=organizer_id))
    return render_template("manage/members.html", organizer=org, role=role, form=form,
                           errors=errors, values=values,
                           found=members.members_of(db.session, organizer_id),
                           page=page_config())


def _change_members(organizer_id, values, action):
    """Remove a member, withdraw an invitation, or add (or invite) one; the flash text."""
    if action == "remove":
        organizers.remove_member(db.session, organizer_id, _int(request.form.get("user_id")))
        return "Member removed."
    if action == "cancel":
        members.cancel_invitation(db.session, organizer_id,
                                  _int(request.form.get("invitation_id")))
        return "Invitation withdrawn."
    try:
        fields = _new_member.load(values)
    except ValidationError as err:
        raise from_validation(err) from err
    outcome, _ = members.add_or_invite(db.session, organizer_id, fields["email"],
                                       fields["role"], invited_by=current_user.id)
    if outcome == "member":
        return f"{fields['email']} is now {fields['role']}."
    return (f"{fields['email']} has no account yet: they become {fields['role']} "
            "when they sign up with that address. Tell them so.")


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidRequest("Not a number.") from None
