"""The organizer's back office, /manage: server-rendered pages (Jinja + Bootstrap).

Every view asks booking.organizers first (through `member_of` / `event_for`):
someone who is not a member sees "not found", staff who try an admin's change
see "forbidden". Forms carry CSRF tokens; their fields go through the organizer
API's own marshmallow schemas and services, so the pages and the API keep one
set of rules. Scripts live in static/js/manage_*.js (no inline script).
"""
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm

from .. import organizers
from ..errors import BookingError
from ..extensions import db
from ..pages import sign_in_required

bp = Blueprint("manage", __name__, url_prefix="/manage")


class CsrfForm(FlaskForm):
    """Only the CSRF token: the fields are read by the views and loaded by the schemas."""


# Anonymous visitors go to the login page, and come back afterwards: the buyer pages' rule.
signed_in = sign_in_required


def member_of(organizer_id, need="staff"):
    """(organizer, role) when the caller's role satisfies need; raises NotFound, Forbidden."""
    from ..models import Organizer
    role = organizers.authorize_organizer(db.session, current_user.id, organizer_id, need)
    return db.session.get(Organizer, organizer_id), role


def event_for(event_id, need="staff"):
    """(event, role) when the caller's role in the event's organizer satisfies need."""
    event = organizers.authorize_event(db.session, current_user.id, event_id, need)
    return event, organizers.role_of(db.session, current_user.id, event.organizer_id)


def page_config(**extra):
    from ..pages import _page_config
    return _page_config(**extra)


def local_to_utc_iso(value, zone):
    """A datetime-local field's value ('2027-03-01T19:30') in a time zone, as ISO UTC with Z.

    Returns the value unchanged when it does not parse (the schema then says why).
    """
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment.astimezone(ZoneInfo("UTC")).isoformat().replace("+00:00", "Z")


def utc_to_local_input(moment, zone):
    """A stored naive UTC time as a datetime-local value in the zone ('' for None)."""
    if moment is None:
        return ""
    return moment.replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo(zone)).strftime(
        "%Y-%m-%dT%H:%M")


def field_errors(err):
    """{field: [message]} of a BookingError (its details.fields), else {'_': [message]};
    a refusal that names seats lists the first 20 of their labels after its message."""
    details = err.details if isinstance(err.details, dict) else {}
    errors = dict(details.get("fields") or {"_": [err.message]})
    if details.get("labels"):
        errors["_"] = [err.message + " " + ", ".join(details["labels"][:20])]
    return errors


def committed(change):
    """A back-office form's change: change() applied and committed, (its result, {}).
    Refused (a BookingError): rolled back, (None, errors by field) for the page to
    show again."""
    try:
        result = change()
        db.session.commit()
    except BookingError as err:
        db.session.rollback()
        return None, field_errors(err)
    return result, {}


@bp.app_context_processor
def _back_office_link():
    """Whether the navigation shows "Back office" (the caller is a member of an organizer)."""
    def is_member():
        if not current_user.is_authenticated:
            return False
        from ..models import Membership
        import sqlalchemy as sa
        return db.session.scalar(sa.select(Membership.organizer_id).where(
            Membership.user_id == current_user.id).limit(1)) is not None
    return {"back_office_member": is_member}


@bp.errorhandler(BookingError)
def _booking_error(err):
    """Not found, forbidden and the rest as pages (the API answers JSON instead)."""
    if err.code == "unauthorized":
        return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))
    return render_template("manage/error.html", error=err, page=page_config()), err.status


from . import event_views, views  # noqa: E402,F401  (routes)
