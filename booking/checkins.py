"""Check-in at the door: a valid ticket lets one person in, exactly once.

The database decides: one conditional UPDATE turns a ticket from valid to
checked_in; of any number of concurrent scans of the same code, on any number
of web processes, exactly one changes the row and the others find it checked
in already (MariaDB makes the losers wait for the winner's commit, then
re-check the condition). Functions take a session and never commit.
"""
from datetime import timedelta

import sqlalchemy as sa

from .errors import Conflict, Forbidden, InvalidRequest, NotFound
from .models import Event, Ticket, iso_utc, utcnow
from .organizers import authorize_event
from .ticket_codes import CodeInvalid, same_code
from .tickets import event_counts, signer, ticket_json, void_ticket_ids

# An offline scan uploaded later keeps the time it was made, within reason.
OFFLINE_MAX_AGE = timedelta(days=2)


def _staff_event(session, user_id, event_id):
    """The event, if the caller is staff or admin of its organizer; Forbidden otherwise."""
    try:
        return authorize_event(session, user_id, event_id, need="staff")
    except NotFound:
        # The code is signed, so the event is real; whoever is not its staff is refused.
        raise Forbidden("You are not door staff of this event's organizer.") from None


def check_in(session, user_id, code, gate=None, event_id=None, scanned_at=None, now=None):
    """Check a ticket in; returns {ticket, checked_in_at, gate}.

    Raises InvalidRequest (forged or malformed code), Forbidden (caller not
    staff of the ticket's organizer), Conflict with details.reason
    already_checked_in (with checked_in_at, gate), void, refund_pending or
    wrong_event (the scanner is set to another event).
    """
    now = now or utcnow()
    try:
        ticket_id, code_event = signer().verify(code)
    except CodeInvalid as err:
        raise InvalidRequest("This is not a genuine ticket code.", reason="forged",
                             fields={"code": [f"Not a genuine ticket code ({err})."]}) from None
    _staff_event(session, user_id, code_event)
    ticket = session.get(Ticket, ticket_id)
    if ticket is None or ticket.event_id != code_event or not same_code(ticket.code or "", code):
        raise InvalidRequest("This is not a genuine ticket code.", reason="forged",
                             fields={"code": ["No ticket has this code."]})
    if event_id is not None and event_id != ticket.event_id:
        other = session.get(Event, ticket.event_id)
        raise Conflict(f"This ticket is for another event: {other.name}.", reason="wrong_event",
                       ticket=ticket_json(ticket), event_id=ticket.event_id)
    moment = now
    if scanned_at is not None and now - OFFLINE_MAX_AGE <= scanned_at <= now:
        moment = scanned_at
    done = session.execute(sa.update(Ticket).where(
        Ticket.id == ticket_id, Ticket.status == "valid", Ticket.refund_id.is_(None))
        .values(status="checked_in", checked_in_at=moment, gate=gate, checked_in_by=user_id))
    session.refresh(ticket)
    if done.rowcount == 1:
        return {"ticket": ticket_json(ticket), "checked_in_at": iso_utc(ticket.checked_in_at),
                "gate": ticket.gate}
    if ticket.status == "checked_in":
        raise Conflict("This ticket was checked in already.", reason="already_checked_in",
                       checked_in_at=iso_utc(ticket.checked_in_at), gate=ticket.gate,
                       ticket=ticket_json(ticket))
    if ticket.status == "void":
        raise Conflict("This ticket was refunded; it does not admit anyone.", reason="void",
                       ticket=ticket_json(ticket))
    raise Conflict("This ticket is being refunded.", reason="refund_pending",
                   ticket=ticket_json(ticket))


def door_state(session, user_id, event_id):
    """What a scanner needs for an event: counts, void ticket ids, the public keys.

    Raises NotFound when the caller is not staff of the event's organizer.
    """
    event = authorize_event(session, user_id, event_id, need="staff")
    return {"event_id": event.id, "name": event.name, "venue": event.venue.name,
            "starts_at": iso_utc(event.starts_at), "timezone": event.venue.timezone,
            **event_counts(session, event.id),
            "void_ticket_ids": void_ticket_ids(session, event.id),
            "keys": signer().public_keys()}


def events_at_door(session, user_id):
    """Events the caller may check tickets in for, soonest first."""
    from .models import Membership
    rows = session.scalars(sa.select(Event).join(
        Membership, Membership.organizer_id == Event.organizer_id)
        .where(Membership.user_id == user_id).order_by(Event.starts_at, Event.id))
    return [{"id": e.id, "name": e.name, "venue": e.venue.name, "starts_at": iso_utc(e.starts_at)}
            for e in rows]
