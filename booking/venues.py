"""An organizer's venues: made from a layout file (docs/LAYOUTS.md), listed, read.

Functions take a session and never commit. The caller has authorized the
organizer (booking.organizers).
"""
import json
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .errors import Conflict, InvalidRequest, NotFound
from .layouts import expand_layout, load_layout
from .models import ID_MAX, Event, Venue

_ZONES = None


def check_timezone(name, field="timezone"):
    """name when it is an IANA time zone (Europe/Amsterdam); raises InvalidRequest."""
    global _ZONES
    if _ZONES is None:
        _ZONES = available_timezones()
    if not isinstance(name, str) or name not in _ZONES:
        raise InvalidRequest("Unknown time zone.", fields={
            field: ["Use an IANA time zone name such as Europe/Amsterdam or America/New_York."]})
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest("Unknown time zone.", fields={field: ["Unknown time zone."]}) from None
    return name


def _check_name(name):
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name or len(name) > Venue.__table__.c.name.type.length:
        raise InvalidRequest("A venue's name must have 1 to 200 characters.",
                             fields={"name": ["Must have 1 to 200 characters."]})
    return name


def create_venue(session, organizer_id, name, timezone, layout):
    """A new venue of the organizer from a layout (a parsed JSON object).

    Raises InvalidRequest (a bad name, zone or layout, with field paths) or
    Conflict (the organizer has a venue of that name).
    """
    name = _check_name(name)
    check_timezone(timezone)
    loaded = load_layout(layout)
    if session.scalar(sa.select(Venue.id).where(Venue.organizer_id == organizer_id,
                                                Venue.name == name)) is not None:
        raise Conflict(f"You have a venue named {name!r} already.",
                       fields={"name": ["Taken by another of your venues."]})
    venue = Venue(organizer_id=organizer_id, name=name, timezone=timezone,
                  layout=json.dumps(loaded, separators=(",", ":")))
    session.add(venue)
    try:
        session.flush()
    except IntegrityError as err:  # made concurrently
        raise Conflict(f"You have a venue named {name!r} already.") from err
    return venue


def get_venue(session, organizer_id, venue_id):
    """The organizer's venue; raises NotFound (also for another organizer's)."""
    venue = session.get(Venue, venue_id) if 0 < (venue_id or 0) <= ID_MAX else None
    if venue is None or venue.organizer_id != organizer_id:
        raise NotFound("No such venue.", venue_id=venue_id)
    return venue


def list_venues(session, organizer_id):
    """The organizer's venues by name, each with its seat count and number of events."""
    venues = session.scalars(sa.select(Venue).where(Venue.organizer_id == organizer_id)
                             .order_by(Venue.name)).all()
    counts = dict(session.execute(
        sa.select(Event.venue_id, sa.func.count()).where(Event.organizer_id == organizer_id)
        .group_by(Event.venue_id)).all())
    return [describe_venue(v, events=counts.get(v.id, 0)) for v in venues]


def venue_layout(venue):
    """The venue's validated layout (a dict), or None for a venue without one."""
    return json.loads(venue.layout) if venue.layout else None


def describe_venue(venue, events=None, with_layout=False):
    """The venue as the organizer API answers it."""
    layout = venue_layout(venue)
    seats = expand_layout(layout) if layout else []
    body = {"id": venue.id, "organizer_id": venue.organizer_id, "name": venue.name,
            "timezone": venue.timezone, "seats": len(seats),
            "sections": [s["name"] for s in layout["sections"]] if layout else [],
            "tiers": layout["tiers"] if layout else [],
            "blocked": sum(1 for s in seats if s["blocked"]),
            "wheelchair": sum(1 for s in seats if s["wheelchair"])}
    if events is not None:
        body["events"] = events
    if with_layout:
        body["layout"] = layout
    return body
