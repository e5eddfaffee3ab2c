"""Links sent by e-mail: verify the address, reset the password.

A link's token is signed (itsdangerous, salted per purpose) and time-limited,
and names a user_tokens row holding the SHA-256 of its random part: a link
works once (consuming it is one conditional UPDATE on used_at), and a
database leak does not hand out working links. Functions take a session and
never commit.
"""
import hashlib
import secrets
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from . import mail
from .auth import hash_password, password_problem
from .errors import InvalidRequest
from .models import User, UserToken, utcnow

LIFETIME = {"verify_email": timedelta(days=3), "password_reset": timedelta(minutes=60)}


class LinkInvalid(Exception):
    """A link that is forged, expired or used already."""


def _serializer(purpose):
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"link-{purpose}")


def _digest(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def _issue(session, user, purpose, now):
    secret = secrets.token_urlsafe(24)
    row = UserToken(user_id=user.id, purpose=purpose, token_hash=_digest(secret),
                    expires_at=now + LIFETIME[purpose], created_at=now)
    session.add(row)
    session.flush()
    return row, _serializer(purpose).dumps({"t": row.id, "s": secret})


def queue_verification(session, user, now=None):
    """Write the verification e-mail of a new account to the outbox; returns its outbox id."""
    now = now or utcnow()
    row, token = _issue(session, user, "verify_email", now)
    return mail.queue_mail(session, kind="verify_email", dedupe_key=f"verify:{row.id}",
                           to_addr=user.email, user_id=user.id, now=now,
                           params={"token": token, "hours": 72}).id


def queue_password_reset(session, email, now=None):
    """The reset e-mail for this address's account, if there is one; returns the outbox id or None.

    The caller answers the same either way, so that the form does not tell
    which addresses have accounts.
    """
    now = now or utcnow()
    user = session.scalar(sa.select(User).where(User.email == (email or "").strip().lower()))
    if user is None:
        return None
    recent = session.scalar(sa.select(sa.func.count()).select_from(UserToken).where(
        UserToken.user_id == user.id, UserToken.purpose == "password_reset",
        UserToken.created_at > now - timedelta(minutes=15)))
    if recent >= 3:
        return None  # enough links in the inbox already; no mail bombing through this form
    row, token = _issue(session, user, "password_reset", now)
    return mail.queue_mail(session, kind="password_reset", dedupe_key=f"reset:{row.id}",
                           to_addr=user.email, user_id=user.id, now=now,
                           params={"token": token, "minutes": 60}).id


def _row_of(session, token, purpose, now):
    try:
        data = _serializer(purpose).loads(
            token, max_age=int(LIFETIME[purpose].total_seconds()))
    except BadSignature:
        raise LinkInvalid() from None
    if not isinstance(data, dict) or not isinstance(data.get("t"), int) \
            or not isinstance(data.get("s"), str):
        raise LinkInvalid()
    row = session.get(UserToken, data["t"])
    if row is None or row.purpose != purpose or row.token_hash != _digest(data["s"]) \
            or row.used_at is not None or row.expires_at <= now:
        raise LinkInvalid()
    return row


def _consume(session, row, now):
    done = session.execute(sa.update(UserToken).where(
        UserToken.id == row.id, UserToken.used_at.is_(None)).values(used_at=now))
    if done.rowcount != 1:
        raise LinkInvalid()


def check_reset_link(session, token, now=None):
    """The user a reset link is for, without using it up; raises LinkInvalid."""
    row = _row_of(session, token, "password_reset", now or utcnow())
    return session.get(User, row.user_id)


def verify_email(session, token, now=None):
    """Mark the address verified; returns the user. Raises LinkInvalid."""
    now = now or utcnow()
    row = _row_of(session, token, "verify_email", now)
    _consume(session, row, now)
    user = session.get(User, row.user_id)
    user.email_verified_at = user.email_verified_at or now
    return user


def reset_password(session, token, password, now=None):
    """Set a new password through a reset link (once). Raises LinkInvalid, InvalidRequest."""
    now = now or utcnow()
    row = _row_of(session, token, "password_reset", now)
    problem = password_problem(password)
    if problem:
        raise InvalidRequest(problem, fields={"password": [problem]})
    _consume(session, row, now)
    user = session.get(User, row.user_id)
    user.password_hash = hash_password(password)
    # The reset proves the address too; every other reset link dies with this one.
    user.email_verified_at = user.email_verified_at or now
    session.execute(sa.update(UserToken).where(
        UserToken.user_id == user.id, UserToken.purpose == "password_reset",
        UserToken.used_at.is_(None)).values(used_at=now))
    return user
