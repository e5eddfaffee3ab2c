"""Who is asking: password hashing (Argon2id), signed bearer tokens, session cookies.

A cookie or token is accepted while its user's session version is current (not
signed out everywhere) and its sign-in (login id) was not signed out of.
"""
import os
import sys

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, request, session
from itsdangerous import BadSignature, URLSafeTimedSerializer
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from .extensions import db, login_manager
from .models import User

_hasher = PasswordHasher()
# zxcvbn's list of the 30,000 most common passwords (from leaked password sets).
_COMMON = frozenset(FREQUENCY_LISTS["passwords"])
MIN_PASSWORD_LENGTH = 10


def password_problem(password):
    """Why a password is too weak, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if password.lower() in _COMMON:
        return "That password is too common; choose another."
    return None


def _off_the_hub(fn, *args):
    """fn(*args) in a real OS thread when serving on eventlet, else here.

    Argon2 is tens of milliseconds of CPU by design; on the eventlet hub it
    would stop every other request and socket of the process meanwhile. The
    hashing library releases the GIL, so the pool's threads also use the
    machine's other cores. Elsewhere (workers, the CLI, threading mode) the
    caller is already a real thread.
    """
    if _eventlet_patched():
        from eventlet import tpool
        # At most PASSWORD_HASH_THREADS hashes at once: a burst of logins must
        # leave the hub's own thread a core, or it starves all the same.
        with _hash_slots():
            return tpool.execute(fn, *args)
    return fn(*args)


def _eventlet_patched():
    patcher = sys.modules.get("eventlet.patcher")
    return patcher is not None and patcher.is_monkey_patched("thread")


_slots = None


def _hash_slots():
    global _slots
    if _slots is None:
        from eventlet.semaphore import Semaphore
        default = max(1, (os.cpu_count() or 2) // 2)
        _slots = Semaphore(int(os.environ.get("PASSWORD_HASH_THREADS") or default))
    return _slots


def hash_password(password):
    """An Argon2id hash of the password (computed off the eventlet hub)."""
    return _off_the_hub(_hasher.hash, password)


def _verify(password_hash, password):
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def verify_password(user, password):
    """True if the password is the user's; rehashes it if the parameters changed."""
    if not _off_the_hub(_verify, user.password_hash, password):
        return False
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return True


def _serializer():
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="boxoffice-api-token")


def issue_token(user, login_id=None):
    """A bearer token for the user, valid until it expires, its sign-in (login_id) is
    signed out of, or the user signs out everywhere."""
    data = {"uid": user.id, "sv": user.session_version}
    if login_id:
        data["lid"] = login_id
    return _serializer().dumps(data)


def _token_data(token):
    if not isinstance(token, str) or len(token) > 512:
        return None
    try:
        data = _serializer().loads(token, max_age=current_app.config["TOKEN_MAX_AGE_SECONDS"])
    except BadSignature:
        return None
    return data if isinstance(data, dict) else None


def token_login(token):
    """The sign-in a valid bearer token was issued by (its login id), or None."""
    data = _token_data(token)
    lid = data.get("lid") if data else None
    return lid if isinstance(lid, str) else None


def login_ended(login_id):
    """True if the sign-in login_id was signed out of (booking.sessions.sign_out)."""
    from .models import EndedLogin
    return db.session.get(EndedLogin, login_id) is not None


def _current(user, version):
    """The user if version is their current session version (not signed out since), else None."""
    if user is None or version != user.session_version:
        return None
    return user


def user_from_token(token):
    """The user a bearer token was issued for, or None if forged, expired or signed out."""
    data = _token_data(token)
    if data is None:
        return None
    uid, version, lid = data.get("uid"), data.get("sv", 0), data.get("lid")
    if not isinstance(uid, int) or not isinstance(version, int) or \
            not isinstance(lid, (str, type(None))):
        return None
    user = _current(db.session.get(User, uid), version)
    if user is None or (lid is not None and login_ended(lid)):
        return None
    return user


def user_id_from_token(token):
    """The id of the user a valid, not signed-out bearer token was issued for, or None."""
    user = user_from_token(token)
    return user.id if user else None


def bearer_token():
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


@login_manager.user_loader
def _load_user(user_id):
    # "<id>:<session version>" (User.get_id); a bare "<id>" is a cookie from before versions.
    uid, _, version = str(user_id).partition(":")
    try:
        uid, version = int(uid), int(version or 0)
    except ValueError:
        return None
    user = _current(db.session.get(User, uid), version)
    # The sign-in this cookie belongs to (booking.sessions.LOGIN_KEY), unless signed out of.
    lid = session.get("bo_login")
    if user is None or (isinstance(lid, str) and login_ended(lid)):
        return None
    return user


@login_manager.request_loader
def _load_user_from_bearer(req):
    token = bearer_token()
    return user_from_token(token) if token else None


@login_manager.unauthorized_handler
def _unauthorized():
    from .errors import Unauthorized
    raise Unauthorized()
