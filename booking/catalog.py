"""Events and seats: creating them and reading them."""
from dataclasses import dataclass

import sqlalchemy as sa

from .errors import InvalidRequest, NotFound
from .models import ID_MAX, Event, Organizer, PriceTier, Seat, Venue, utcnow
from .outcome import expiry_iso, seat_state


def _row_name(index):
    """Row 0 -> 'A', 25 -> 'Z', 26 -> 'AA'."""
    name = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        name = chr(65 + rem) + name
    return name


def _check_name(what, value, column):
    """Refuse a blank name or one longer than its column (MariaDB would refuse the row)."""
    if not value.strip() or len(value) > column.type.length:
        raise InvalidRequest(f"{what} must have 1 to {column.type.length} characters.")


def _get_event(session, event_id):
    return session.get(Event, event_id) if 0 < event_id <= ID_MAX else None


def create_event(session, *, name, venue, starts_at, sections, currency="EUR",
                 venue_timezone="UTC", organizer_id=None):
    """Create an event and its seats.

    sections: [(section_name, rows, seats_per_row, price_cents)]; rows are named
    A, B, ... within each section. The venue is the organizer's venue of that name
    (made when it has none). Raises InvalidRequest for impossible layouts and for
    names that are blank or too long, NotFound for an unknown organizer.
    """
    if not sections:
        raise InvalidRequest("An event needs at least one section.")
    _check_name("The event name", name, Event.__table__.c.name)
    _check_name("The venue name", venue, Venue.__table__.c.name)
    if len(currency) != 3 or not currency.isalpha():
        raise InvalidRequest("Currency must be an ISO code such as EUR.")
    for section, rows, per_row, price in sections:
        _check_name("A section name", section, Seat.__table__.c.section)
        if rows < 1 or per_row < 1 or rows * per_row > 100_000 or price < 0:
            raise InvalidRequest(f"Section {section!r} has an impossible layout or price.")
    if organizer_id is not None and session.get(Organizer, organizer_id) is None:
        raise NotFound(f"No organizer has id {organizer_id}.")
    place = session.scalar(sa.select(Venue).where(
        Venue.name == venue, Venue.organizer_id.is_(None) if organizer_id is None
        else Venue.organizer_id == organizer_id))
    if place is None:
        place = Venue(name=venue, timezone=venue_timezone, organizer_id=organizer_id)
        session.add(place)
    event = Event(name=name, venue=place, starts_at=starts_at, currency=currency.upper(),
                  organizer_id=organizer_id)
    session.add(event)
    session.flush()
    rows_out = []
    for section, rows, per_row, price in sections:
        for r in range(rows):
            row = _row_name(r)
            for n in range(1, per_row + 1):
                rows_out.append({
                    "event_id": event.id, "section": section, "row": row, "number": n,
                    "label": f"{section} {row}{n}", "tier": section,
                    "price_cents": price, "status": "available", "version": 0})
    # One price tier per section, so that the back office can reprice and re-tier.
    session.execute(sa.insert(PriceTier), [
        {"event_id": event.id, "name": section, "price_cents": price, "position": i}
        for i, (section, _rows, _per_row, price) in enumerate(sections)])
    session.execute(sa.insert(Seat), rows_out)
    return event


@dataclass
class EventView:
    event: Event
    seats_total: int
    seats_available: int
    price_min_cents: int
    price_max_cents: int

    def __getattr__(self, name):
        return getattr(self.event, name)


def _with_counts(session, events):
    if not events:
        return []
    counts = session.execute(
        sa.select(Seat.event_id, sa.func.count(),
                  sa.func.sum(sa.case(((Seat.status == "available") & Seat.blocked.is_(None), 1),
                                  else_=0)),
                  sa.func.min(Seat.price_cents), sa.func.max(Seat.price_cents))
        .where(Seat.event_id.in_([e.id for e in events])).group_by(Seat.event_id)).all()
    by_event = {row[0]: row[1:] for row in counts}
    return [EventView(e, *(int(x or 0) for x in by_event.get(e.id, (0, 0, 0, 0))))
            for e in events]


def list_events(session):
    """Every event, soonest first, with its seat counts."""
    events = session.scalars(sa.select(Event).order_by(Event.starts_at, Event.id)).all()
    return _with_counts(session, events)


def get_event(session, event_id):
    """One event with seat counts and its sections; raises NotFound."""
    event = _get_event(session, event_id)
    if event is None:
        raise NotFound.of("no_event", event_id=event_id)
    view = _with_counts(session, [event])[0]
    rows = session.execute(
        sa.select(Seat.section, Seat.row).where(Seat.event_id == event_id)
        .group_by(Seat.section, Seat.row).order_by(sa.func.min(Seat.id))).all()
    sections = {}
    for section, row in rows:
        sections.setdefault(section, []).append(row)
    view.sections = [{"name": s, "rows": r} for s, r in sections.items()]
    return view


def require_event(session, event_id):
    """The event; raises NotFound."""
    event = _get_event(session, event_id)
    if event is None:
        raise NotFound("No such event.", event_id=event_id)
    return event


def event_seats(session, event_id):
    """All seats of an event in id order; raises NotFound."""
    if _get_event(session, event_id) is None:
        raise NotFound.of("no_event", event_id=event_id)
    return session.scalars(
        sa.select(Seat).where(Seat.event_id == event_id).order_by(Seat.id)).all()


def seat_states(session, event_id):
    """[{id, status, version, expires_at?}] of every seat of an event: the live snapshot
    (outcome.seat_state: a held seat whose hold can run out carries its expiry)."""
    rows = session.execute(
        sa.select(Seat.id, Seat.status, Seat.version, Seat.hold_expires_at)
        .where(Seat.event_id == event_id).order_by(Seat.id)).all()
    return [seat_state(*row) for row in rows]


def as_of_now(states, now=None):
    """Seat states as a buyer may be told them now: a held seat whose hold has run out is
    available (a worker grants it to the next buyer who asks; the sweep writes it later).

    Its version stays the same, so that whatever the database does to the seat next
    (the sweep, another buyer's hold) is newer. states is not changed; the answer is
    states itself when nothing has run out.
    """
    cutoff = expiry_iso(now or utcnow())
    out = None
    for i, seat in enumerate(states):
        expires_at = seat.get("expires_at")
        if expires_at is not None and expires_at <= cutoff:
            if out is None:
                out = list(states)
            out[i] = {"id": seat["id"], "status": "available", "version": seat["version"]}
    return states if out is None else out


def seat_prices(session, event_id):
    """{seat_id: price_cents} of an event, or None if there is no such event."""
    if _get_event(session, event_id) is None:
        return None
    return dict(session.execute(
        sa.select(Seat.id, Seat.price_cents).where(Seat.event_id == event_id)).all())
