"""Organizers and their members: who may see and run which events.

An organizer owns venues and events. A user is a member of an organizer with a role:
`admin` (everything) or `staff` (check-in and read-only sales). Buyers are members of
nothing. Every organizer route asks `authorize_organizer` or `authorize_event` first:
someone who is not a member is told the thing does not exist (NotFound, so another
organizer's events are not revealed), and staff asking for an admin's action get
Forbidden. Functions take a session and never commit.
"""
import sqlalchemy as sa

from .errors import Conflict, Forbidden, InvalidRequest, NotFound
from .models import ID_MAX, MEMBER_ROLES, Event, Membership, Organizer, User

# Which roles satisfy which need: admins can do everything staff can.
_SATISFIES = {"staff": ("staff", "admin"), "admin": ("admin",)}


def _user_by_email(session, email):
    user = session.scalar(sa.select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"No account uses {email}; the person must sign up first.")
    return user


def _check_role(role):
    if role not in MEMBER_ROLES:
        raise InvalidRequest("Role must be admin or staff.", fields={"role": ["Must be admin or staff."]})


def create_organizer(session, name, admin_email):
    """Create an organizer with a first admin. Raises NotFound (no such user), Conflict (name taken)."""
    name = (name or "").strip()
    if not name or len(name) > Organizer.__table__.c.name.type.length:
        raise InvalidRequest("An organizer's name must have 1 to 200 characters.",
                             fields={"name": ["Must have 1 to 200 characters."]})
    user = _user_by_email(session, admin_email)
    if session.scalar(sa.select(Organizer.id).where(Organizer.name == name)) is not None:
        raise Conflict(f"An organizer named {name!r} exists already.")
    organizer = Organizer(name=name)
    session.add(organizer)
    session.flush()
    session.add(Membership(organizer_id=organizer.id, user_id=user.id, role="admin"))
    session.flush()
    return organizer


def add_member(session, organizer_id, email, role):
    """Make an existing user a member with `role` (or change their role). Raises NotFound, InvalidRequest."""
    _check_role(role)
    if session.get(Organizer, organizer_id) is None:
        raise NotFound("No such organizer.")
    user = _user_by_email(session, email)
    membership = session.get(Membership, (organizer_id, user.id))
    if membership is None:
        membership = Membership(organizer_id=organizer_id, user_id=user.id, role=role)
        session.add(membership)
    else:
        membership.role = role
    session.flush()
    return membership


def remove_member(session, organizer_id, user_id):
    """End a membership. Raises NotFound; Conflict when it would leave the organizer without an admin."""
    membership = session.get(Membership, (organizer_id, user_id))
    if membership is None:
        raise NotFound("No such member.")
    if membership.role == "admin":
        admins = session.scalar(sa.select(sa.func.count()).select_from(Membership).where(
            Membership.organizer_id == organizer_id, Membership.role == "admin"))
        if admins <= 1:
            raise Conflict("An organizer keeps at least one admin.")
    session.delete(membership)
    session.flush()


def role_of(session, user_id, organizer_id):
    """The user's role in the organizer, or None."""
    if user_id is None or organizer_id is None:
        return None
    return session.scalar(sa.select(Membership.role).where(
        Membership.organizer_id == organizer_id, Membership.user_id == user_id))


def organizers_of(session, user_id):
    """[(Organizer, role)] for every organizer the user is a member of, by name."""
    rows = session.execute(
        sa.select(Organizer, Membership.role)
        .join(Membership, Membership.organizer_id == Organizer.id)
        .where(Membership.user_id == user_id).order_by(Organizer.name))
    return [(organizer, role) for organizer, role in rows]


def authorize_organizer(session, user_id, organizer_id, need="staff"):
    """The caller's role when it satisfies `need`. Raises NotFound (not a member), Forbidden (staff for admin)."""
    role = role_of(session, user_id, organizer_id) if 0 < (organizer_id or 0) <= ID_MAX else None
    if role is None:
        raise NotFound("No such organizer.")
    if role not in _SATISFIES[need]:
        raise Forbidden("Only an admin of this organizer may do that.")
    return role


def authorize_event(session, user_id, event_id, need="staff"):
    """The event when the caller's role in its organizer satisfies `need`.

    Raises NotFound for an unknown event, an event without an organizer, or a caller
    who is not a member (all look the same from outside), Forbidden for staff asking
    for an admin's action.
    """
    event = session.get(Event, event_id) if 0 < (event_id or 0) <= ID_MAX else None
    if event is None or event.organizer_id is None:
        raise NotFound("No such event.")
    try:
        authorize_organizer(session, user_id, event.organizer_id, need)
    except NotFound:
        raise NotFound("No such event.") from None
    return event
