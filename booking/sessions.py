"""Signed-in sessions: how long they last, how their cookie is sent, how they end.

Every session cookie and bearer token carries the user's session version at the
time it was issued (User.get_id, auth.issue_token); the cookie loader, the
bearer loader and the socket connect accept it only while it is the user's
current version. Signing out bumps the version, in the database, so every
cookie and token of the account stops working at once on every web process,
and the account's open sockets are disconnected on every web process (by sid,
through the Socket.IO message queue).

Cookies: Secure unless the site is served on plain localhost (COOKIE_SECURE
auto|true|false), and a session lasts SESSION_LIFETIME_SECONDS from its last
use (each request renews it).
"""
import ipaddress
import logging
import os
from datetime import timedelta

import redis
import sqlalchemy as sa
from flask import has_request_context, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_login import login_user, logout_user

from .extensions import db, socketio
from .models import User
from .runtime import runtime

log = logging.getLogger(__name__)

_COOKIE_SECURE = {"auto": None, "true": True, "1": True, "yes": True,
                  "false": False, "0": False, "no": False}


def settings_from_environment():
    return {
        # auto: Secure unless the request's host is localhost (make run, the local cluster).
        "COOKIE_SECURE": os.environ.get("COOKIE_SECURE", "auto").strip().lower(),
        "SESSION_LIFETIME_SECONDS": int(os.environ.get("SESSION_LIFETIME_SECONDS") or 12 * 3600),
    }


def _is_localhost(host):
    name = (host or "").rsplit(":", 1)[0] if not (host or "").startswith("[") \
        else host[1:host.find("]")]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed cookie, Secure by the COOKIE_SECURE setting."""

    def get_cookie_secure(self, app):
        setting = _COOKIE_SECURE[app.config["COOKIE_SECURE"]]
        if setting is not None:
            return setting
        return not (has_request_context() and _is_localhost(request.host))


def init_app(app):
    for key, value in settings_from_environment().items():
        app.config.setdefault(key, value)
    if app.config["COOKIE_SECURE"] not in _COOKIE_SECURE:
        raise ValueError("COOKIE_SECURE must be auto, true or false")
    app.config["SESSION_COOKIE_SECURE"] = _COOKIE_SECURE[app.config["COOKIE_SECURE"]] or False
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(
        seconds=app.config["SESSION_LIFETIME_SECONDS"])
    # Each request renews the cookie: the lifetime counts from the last use.
    app.config["SESSION_REFRESH_EACH_REQUEST"] = True
    app.session_interface = SessionCookies()


def start_session(user):
    """Sign the user in on this browser: a fresh session (nothing from before carries over)."""
    session.clear()
    login_user(user)
    session.permanent = True


def is_current(user_id, version):
    """True while version is the user's session version (read fresh from the database)."""
    current = db.session.scalar(sa.select(User.session_version).where(User.id == user_id))
    return current is not None and current == version


def end_sessions(user_id):
    """Sign the user out everywhere: every cookie, token and socket of the account.

    Commits the new session version first, then disconnects the account's
    sockets on every web process. Raises the database's errors (nothing is
    signed out then); a Redis failure while finding sockets is logged, and the
    sockets of this process are still disconnected.
    """
    db.session.execute(sa.update(User).where(User.id == user_id)
                       .values(session_version=User.session_version + 1))
    db.session.commit()
    disconnect_sockets(user_id)


def disconnect_sockets(user_id):
    """Disconnect every socket of the account, here and (through the message queue) elsewhere."""
    sids = set()
    server = socketio.server
    if server is None:  # a worker process: it serves no sockets
        return 0
    rt = runtime()
    try:
        sids.update(rt.sockets.members(user_id))
    except redis.RedisError:
        log.error("sockets of user %s on other web processes not found (Redis); "
                  "disconnecting this process's only", user_id)
    sids.update(sid for sid, _eio in server.manager.get_participants("/", f"user:{user_id}"))
    for sid in sids:
        server.disconnect(sid, namespace="/")
    return len(sids)


def sign_out(user):
    """End every session of the signed-in user (if any) and clear this browser's cookie."""
    if user is not None and user.is_authenticated:
        end_sessions(user.id)
    logout_user()
    session.clear()
