"""An organizer's events: made on a venue's layout, then edited safely while they sell.

What may change once seats are held or sold is what cannot alter a buyer's deal:

- a tier's price, only while none of its seats is held or sold (every seat of a
  tier costs the tier's price; a buyer holding one was quoted it). Unsold seats
  can still be repriced by moving them to another tier;
- a seat's tier or blocked state, only while it is available (taken under its
  row lock, so a concurrent hold either comes first and the change is refused,
  or comes after and finds the seat blocked);
- the currency, only before anything is held or sold;
- the venue never (the seats were made from its layout); seats are never
  deleted: one taken out of sale is blocked as a 'kill'.

Name, description, start time and accessibility marks may change at any time.
`editability` says which of these are locked now and why, for the pages.
Functions take a session and never commit.
"""
import sqlalchemy as sa

from .errors import Conflict, InvalidRequest, NotFound
from .layouts import expand_layout, layout_tiers, load_layout
from .locking import lock_seats
from .models import BLOCK_REASONS, Event, PriceTier, Seat, Venue
from .venues import create_venue, get_venue, venue_layout

SEAT_FLAGS = ("wheelchair", "companion", "restricted_view")
MAX_TIERS = 50


def _check_text(field, value, column, required=True):
    length = column.type.length
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > length:
        raise InvalidRequest(f"The {field} must have {1 if required else 0} to {length} characters.",
                             fields={field: [f"Must have 1 to {length} characters."]})
    return value.strip()


def _check_tiers(price_tiers):
    names = [t["name"] for t in price_tiers]
    if len(set(names)) != len(names):
        raise InvalidRequest("A tier may be listed once.",
                             fields={"price_tiers": ["A tier may be listed once."]})
    return {t["name"]: t["price_cents"] for t in price_tiers}


def create_event(session, organizer_id, *, venue_id, name, starts_at, price_tiers,
                 currency="EUR", description=None, on_sale_at=None, waiting_room=False,
                 admission_rate_per_min=None):
    """An event on the organizer's venue, one seat per seat of the layout, priced by tier.

    price_tiers: [{name, price_cents}] covering every tier the layout's seats use.
    Raises NotFound (not the organizer's venue), InvalidRequest (a venue without a
    layout, a missing or repeated tier, bad names).
    """
    venue = get_venue(session, organizer_id, venue_id)
    layout = venue_layout(venue)
    if layout is None:
        raise InvalidRequest("This venue has no layout; make one from a layout file.",
                             fields={"venue_id": ["The venue has no layout."]})
    prices = _check_tiers(price_tiers)
    seats = expand_layout(layout)
    missing = sorted({s["tier"] for s in seats} - set(prices))
    if missing:
        raise InvalidRequest("Every tier of the venue needs a price.",
                             fields={"price_tiers": [f"No price for tier {t!r}." for t in missing]})
    event = Event(organizer_id=organizer_id, venue_id=venue.id, name=name, starts_at=starts_at,
                  currency=currency, description=description or None, on_sale_at=on_sale_at,
                  waiting_room="open" if waiting_room else None,
                  admission_rate_per_min=admission_rate_per_min if waiting_room else None)
    session.add(event)
    session.flush()
    session.execute(sa.insert(PriceTier), [
        {"event_id": event.id, "name": t["name"], "price_cents": t["price_cents"], "position": i}
        for i, t in enumerate(price_tiers)])
    for start in range(0, len(seats), 2000):
        session.execute(sa.insert(Seat), [
            dict(s, event_id=event.id, price_cents=prices[s["tier"]], status="available",
                 version=0) for s in seats[start:start + 2000]])
    return event


def create_event_on_layout(session, organizer_id, *, venue_name, venue_timezone, layout, name,
                           starts_at, currency, prices, default_price=None):
    """An event on the venue of that name, made from layout when the organizer has none.

    prices: {tier: cents}; a tier without one costs default_price (when given). A
    venue of that name must have the same layout. Raises InvalidRequest (a bad
    layout, a tier without a price, a price for no tier of the layout), Conflict
    (the venue exists with another layout).
    """
    name = _check_text("name", name, Event.__table__.c.name)
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise InvalidRequest("Currency must be an ISO code such as EUR.",
                             fields={"currency": ["Use a three-letter ISO code."]})
    currency = currency.upper()
    venue = session.scalar(sa.select(Venue).where(
        Venue.name == venue_name, Venue.organizer_id.is_(None) if organizer_id is None
        else Venue.organizer_id == organizer_id))
    loaded = load_layout(layout)
    if venue is None:
        venue = create_venue(session, organizer_id, venue_name, venue_timezone, layout)
    elif venue_layout(venue) != loaded:
        raise Conflict(f"The venue {venue_name!r} exists with another layout.",
                       fields={"venue": ["Exists with another layout; use another name."]})
    tiers = layout_tiers(loaded)
    unknown = sorted(set(prices) - set(tiers))
    if unknown:
        raise InvalidRequest("A price is given for a tier the layout's seats do not use.",
                             fields={"tier_price": [f"No seats of tier {t!r}." for t in unknown]})
    price_tiers = [{"name": t, "price_cents": prices.get(t, default_price)} for t in tiers
                   if t in prices or default_price is not None]
    return create_event(session, organizer_id, venue_id=venue.id, name=name,
                        starts_at=starts_at, price_tiers=price_tiers, currency=currency)


def list_events(session, organizer_id):
    """The organizer's events, soonest first."""
    return session.scalars(sa.select(Event).where(Event.organizer_id == organizer_id)
                           .order_by(Event.starts_at, Event.id)).all()


def tiers_of(session, event_id):
    """[{name, price_cents, seats, held, sold, locked}] of an event, in its order."""
    counts = {}
    for tier, status, n in session.execute(
            sa.select(Seat.tier, Seat.status, sa.func.count()).where(Seat.event_id == event_id)
            .group_by(Seat.tier, Seat.status)):
        counts.setdefault(tier, {})[status] = n
    tiers = []
    for tier in session.scalars(sa.select(PriceTier).where(PriceTier.event_id == event_id)
                                .order_by(PriceTier.position, PriceTier.name)):
        c = counts.get(tier.name, {})
        busy = c.get("held", 0) + c.get("sold", 0)
        tiers.append({"name": tier.name, "price_cents": tier.price_cents,
                      "seats": sum(c.values()), "held": c.get("held", 0),
                      "sold": c.get("sold", 0),
                      "locked": (f"{busy} of its seats {'is' if busy == 1 else 'are'} held "
                                 "or sold: their buyers were quoted this price. Move unsold "
                                 "seats to another tier to sell them at another price.")
                      if busy else None})
    return tiers


def editability(session, event):
    """{field: reason} for every field locked now (absent: it may change)."""
    busy = session.scalar(sa.select(sa.func.count()).select_from(Seat).where(
        Seat.event_id == event.id, Seat.status != "available"))
    locked = {"venue_id": "The seats were made from this venue's layout; make a new event "
                          "for another venue."}
    if busy:
        locked["currency"] = (f"{busy} seat{' is' if busy == 1 else 's are'} held or sold "
                              f"in {event.currency}.")
    return locked


def update_event(session, event, changes):
    """Apply {name?, description?, starts_at?, currency?} to the event.

    Raises Conflict (details.fields says why) for a locked field, InvalidRequest.
    """
    locked = editability(session, event)
    refused = {k: [locked[k]] for k in changes if k in locked and
               changes[k] != getattr(event, k)}
    if refused:
        raise Conflict("Some fields cannot change now.", reason="locked", fields=refused)
    if "name" in changes:
        event.name = _check_text("name", changes["name"], Event.__table__.c.name)
    if "description" in changes:
        event.description = (changes["description"] or "").strip() or None
    if "starts_at" in changes:
        event.starts_at = changes["starts_at"]
    if "currency" in changes:
        event.currency = changes["currency"]
    session.flush()
    return event


def set_tier(session, event, name, price_cents):
    """Add a tier, or change its price while none of its seats is held or sold.

    The tier's seats are locked (ascending id, as the workers lock them), so a
    hold racing this either lands first and the change is refused, or comes
    after and is quoted the new price. Raises Conflict (details.reason
    'tier_has_sales'), InvalidRequest.
    """
    name = _check_text("name", name, PriceTier.__table__.c.name)
    tier = session.get(PriceTier, (event.id, name))
    if tier is None:
        count = session.scalar(sa.select(sa.func.count()).select_from(PriceTier)
                               .where(PriceTier.event_id == event.id))
        if count >= MAX_TIERS:
            raise InvalidRequest(f"At most {MAX_TIERS} tiers per event.")
        tier = PriceTier(event_id=event.id, name=name, price_cents=price_cents, position=count)
        session.add(tier)
        session.flush()
        return tier
    ids = session.scalars(sa.select(Seat.id).where(Seat.event_id == event.id,
                                                   Seat.tier == name)).all()
    seats = lock_seats(session, ids)
    busy = [s for s in seats.values() if s.status != "available"]
    if busy:
        raise Conflict(f"{len(busy)} seats of tier {name!r} are held or sold; its price is "
                       "locked.", reason="tier_has_sales", tier=name, seats=len(busy))
    tier.price_cents = price_cents
    if ids:
        session.execute(sa.update(Seat).where(Seat.id.in_(ids)).values(price_cents=price_cents))
    session.flush()
    return tier


def delete_tier(session, event, name):
    """Remove a tier no seat uses. Raises NotFound, Conflict."""
    tier = session.get(PriceTier, (event.id, name))
    if tier is None:
        raise NotFound("No such tier.", tier=name)
    used = session.scalar(sa.select(sa.func.count()).select_from(Seat).where(
        Seat.event_id == event.id, Seat.tier == name))
    if used:
        raise Conflict(f"{used} seats are in tier {name!r}; move them first.",
                       reason="tier_in_use", tier=name, seats=used)
    session.delete(tier)
    session.flush()


def select_seats(session, event_id, *, seat_ids=None, section=None, rows=None, numbers=None):
    """Seat ids of the event: given by id, or a section (and rows, and numbers).

    Raises InvalidRequest when nothing (or a seat of another event) is selected.
    """
    query = sa.select(Seat.id).where(Seat.event_id == event_id)
    if seat_ids:
        found = set(session.scalars(query.where(Seat.id.in_(seat_ids))).all())
        strangers = sorted(set(seat_ids) - found)
        if strangers:
            raise InvalidRequest("Some seats are not part of this event.",
                                 fields={"seat_ids": [f"Not seats of this event: {strangers[:20]}"]})
        return sorted(found)
    if section is None:
        raise InvalidRequest("Choose seats by seat_ids or by section.",
                             fields={"section": ["Give seat_ids, or a section."]})
    query = query.where(Seat.section == section)
    if rows:
        query = query.where(Seat.row.in_(rows))
    if numbers:
        query = query.where(Seat.number.in_(numbers))
    ids = session.scalars(query.order_by(Seat.id)).all()
    if not ids:
        raise InvalidRequest("No seat matches.", fields={"section": ["No seat matches."]})
    return ids


def change_seats(session, event, seat_ids, changes):
    """Set tier, blocked and accessibility flags of some seats, all or none.

    changes: {tier?, blocked? ('hold', 'kill' or None to release), wheelchair?,
    companion?, restricted_view?}. A tier or blocked change needs every seat
    available (checked under the seats' row locks). Raises Conflict (details:
    reason 'seats_not_available' and the labels), InvalidRequest, NotFound.
    """
    if not changes:
        raise InvalidRequest("Nothing to change.", fields={"set": ["Name at least one change."]})
    if "tier" in changes and session.get(PriceTier, (event.id, changes["tier"])) is None:
        raise InvalidRequest("No such tier.", fields={"set.tier": ["Add the tier first."]})
    if "blocked" in changes and changes["blocked"] not in (None, *BLOCK_REASONS):
        raise InvalidRequest("blocked is hold, kill or null.")
    seats = lock_seats(session, seat_ids)
    if "tier" in changes or changes.get("blocked"):
        busy = [s.label for s in seats.values() if s.status != "available"]
        if busy:
            raise Conflict(f"{len(busy)} of these seats are held or sold; nothing was changed.",
                           reason="seats_not_available", labels=busy[:50])
    price = None
    if "tier" in changes:
        price = session.get(PriceTier, (event.id, changes["tier"])).price_cents
    for seat in seats.values():
        if "tier" in changes:
            seat.tier, seat.price_cents = changes["tier"], price
        if "blocked" in changes:
            seat.blocked = changes["blocked"]
        for flag in SEAT_FLAGS:
            if flag in changes:
                setattr(seat, flag, bool(changes[flag]))
    session.flush()
    return len(seats)


def seat_summary(session, event_id):
    """Per section and row: seat counts by status, blocked, and accessibility marks."""
    rows = session.execute(
        sa.select(Seat.section, Seat.row, sa.func.count(),
                  sa.func.sum(sa.case((Seat.status == "sold", 1), else_=0)),
                  sa.func.sum(sa.case((Seat.status == "held", 1), else_=0)),
                  sa.func.sum(sa.case((Seat.blocked.is_not(None), 1), else_=0)),
                  sa.func.sum(sa.case((Seat.wheelchair, 1), else_=0)),
                  sa.func.sum(sa.case((Seat.companion, 1), else_=0)),
                  sa.func.sum(sa.case((Seat.restricted_view, 1), else_=0)),
                  sa.func.min(Seat.number), sa.func.max(Seat.number),
                  sa.func.min(Seat.id))
        .where(Seat.event_id == event_id).group_by(Seat.section, Seat.row)
        .order_by(sa.func.min(Seat.id))).all()
    sections = {}
    for section, row, n, sold, held, blocked, wc, comp, rv, lo, hi, _first in rows:
        sections.setdefault(section, []).append({
            "row": row, "seats": n, "sold": int(sold or 0), "held": int(held or 0),
            "blocked": int(blocked or 0), "wheelchair": int(wc or 0),
            "companion": int(comp or 0), "restricted_view": int(rv or 0),
            "numbers": [lo, hi]})
    return [{"section": s, "rows": r} for s, r in sections.items()]
