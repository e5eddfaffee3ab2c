"""An organizer's members as its admins manage them: add an existing user, or invite an
e-mail that has no account yet (the membership waits as an Invitation and is claimed
when someone signs up with that e-mail: `claim_invitations`, called at sign-up).

No mail is sent for an invitation (the product has no invitation mail yet): the
admin tells the person to sign up with that address. Functions take a session and
never commit; the caller authorized an admin of the organizer.
"""
import sqlalchemy as sa

from . import organizers
from .errors import InvalidRequest, NotFound
from .models import MEMBER_ROLES, Invitation, Membership, User


def members_of(session, organizer_id):
    """{members: [{user_id, email, name, role}], invitations: [{id, email, role}]}."""
    members = session.execute(
        sa.select(User.id, User.email, User.name, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.organizer_id == organizer_id).order_by(User.email)).all()
    invites = session.scalars(sa.select(Invitation).where(Invitation.organizer_id == organizer_id)
                              .order_by(Invitation.email)).all()
    return {"members": [{"user_id": i, "email": e, "name": n, "role": r}
                        for i, e, n, r in members],
            "invitations": [{"id": v.id, "email": v.email, "role": v.role,
                             "created_at": v.created_at} for v in invites]}


def add_or_invite(session, organizer_id, email, role, invited_by=None):
    """Make the user with this e-mail a member, or invite the e-mail if it has no account.

    Returns ('member', Membership) or ('invited', Invitation). Raises InvalidRequest.
    """
    if role not in MEMBER_ROLES:
        raise InvalidRequest("Role must be admin or staff.", fields={"role": ["Must be admin or staff."]})
    email = (email or "").strip().lower()
    try:
        return "member", organizers.add_member(session, organizer_id, email, role)
    except NotFound:
        pass
    invite = session.scalar(sa.select(Invitation).where(Invitation.organizer_id == organizer_id,
                                                        Invitation.email == email))
    if invite is None:
        invite = Invitation(organizer_id=organizer_id, email=email, role=role,
                            invited_by=invited_by)
        session.add(invite)
    else:
        invite.role = role
    session.flush()
    return "invited", invite


def cancel_invitation(session, organizer_id, invitation_id):
    """Withdraw an invitation. Raises NotFound."""
    invite = session.get(Invitation, invitation_id)
    if invite is None or invite.organizer_id != organizer_id:
        raise NotFound("No such invitation.")
    session.delete(invite)
    session.flush()


def claim_invitations(session, user):
    """Turn the invitations waiting for the user's e-mail into memberships. Returns how many."""
    invites = session.scalars(sa.select(Invitation).where(Invitation.email == user.email)).all()
    for invite in invites:
        if session.get(Membership, (invite.organizer_id, user.id)) is None:
            session.add(Membership(organizer_id=invite.organizer_id, user_id=user.id,
                                   role=invite.role))
        session.delete(invite)
    session.flush()
    return len(invites)
