"""Accounts: signing up and signing in."""
import functools

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .auth import hash_password, verify_password
from .errors import Conflict, Unauthorized
from .models import User


@functools.cache
def _dummy():
    """Verified against when the email is unknown, so that a wrong email takes as long
    as a wrong password and does not reveal which accounts exist. Made at the first
    such sign-in, not at import: an Argon2 hash is a quarter of a second of CPU, and
    every web, worker and beat process imports this module."""
    return User(password_hash=hash_password("not-a-real-password-0"))


def register_user(session, *, email, password, name=""):
    """Create an account; raises Conflict if the email is taken."""
    email = email.strip().lower()
    if session.scalar(sa.select(User.id).where(User.email == email)) is not None:
        raise Conflict.of("email_taken", field="email")
    user = User(email=email, name=name.strip(), password_hash=hash_password(password))
    session.add(user)
    try:
        session.flush()
    except IntegrityError as err:  # registered concurrently
        raise Conflict.of("email_taken", field="email") from err
    from .members import claim_invitations
    claim_invitations(session, user)
    return user


def authenticate(session, *, email, password):
    """The user with these credentials; raises Unauthorized otherwise."""
    user = session.scalar(sa.select(User).where(User.email == email.strip().lower()))
    if user is None:
        verify_password(_dummy(), password)
        raise Unauthorized("Wrong email or password.")
    if not verify_password(user, password):
        raise Unauthorized("Wrong email or password.")
    return user
