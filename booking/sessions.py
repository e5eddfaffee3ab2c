"""Signed-in sessions: how long they last, how their cookie is sent, how they end.

Two ways to end them (docs/API.md, "Signing out"):

- Signing out (DELETE /api/v1/session, the Log out button) ends this sign-in
  only: each sign-in gets a random login id, carried by its session cookie
  (LOGIN_KEY) and by the bearer token issued with it; signing out records the
  id in ended_logins, so that cookie and that token stop working at once on
  every web process, and disconnects the sockets opened with them (each
  socket's login id is kept in the shared state, by sid). Other devices and
  browsers stay signed in.
- Signing out everywhere (DELETE /api/v1/sessions, the account page's button)
  bumps the user's session version: every cookie and token carries the
  version it was issued under (User.get_id, auth.issue_token), and the cookie
  loader, the bearer loader and the socket connect accept only the current
  one. Every socket of the account is disconnected on every web process (by
  sid, through the Socket.IO message queue).

A cookie or token from before login ids has none: signing out of it signs out
everywhere.

Cookies: Secure unless the site is served on plain localhost (COOKIE_SECURE
auto|true|false), and a session lasts SESSION_LIFETIME_SECONDS from its last
use (each request renews it).
"""
import ipaddress
import logging
import os
import secrets
from datetime import timedelta

import redis
import sqlalchemy as sa
from flask import current_app, has_request_context, request, session
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


# Files that are the same for everyone: their answers never carry the session cookie.
STATIC_ENDPOINTS = frozenset({"static", "pages.vendor"})


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed cookie, Secure by the COOKIE_SECURE setting, renewed by every
    request but those for static files."""

    def save_session(self, app, session, response):
        # A static file's answer would write back the cookie as it was when the file
        # was asked for: one still loading when its page logs out put the ended
        # session's cookie back (and lost the "signed out" note). Its "Vary: Cookie"
        # (Flask-Login reads the session after every request) would also make the
        # browser fetch the file again after each renewal of the cookie.
        if request.endpoint in STATIC_ENDPOINTS and not session.modified:
            return
        super().save_session(app, session, response)

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


LOGIN_KEY = "bo_login"


def start_session(user):
    """Sign the user in on this browser: a fresh session (nothing from before carries
    over) under a new login id, which it returns (a token issued now shares it)."""
    session.clear()
    login_user(user)
    session.permanent = True
    session[LOGIN_KEY] = secrets.token_hex(16)
    return session[LOGIN_KEY]


def is_current(user_id, version, login_id=None):
    """True while version is the user's session version and the sign-in login_id (if
    any) was not signed out of (read fresh from the database)."""
    from .auth import login_ended
    current = db.session.scalar(sa.select(User.session_version).where(User.id == user_id))
    if current is None or current != version:
        return False
    return login_id is None or not login_ended(login_id)


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


def disconnect_sockets(user_id, only_logins=None):
    """Disconnect every socket of the account (or only those opened with one of
    only_logins), here and (through the message queue) elsewhere."""
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
    if only_logins is not None:
        sids = sorted(sids)
        try:
            logins = rt.state.get_many([_socket_key(sid) for sid in sids])
        except redis.RedisError:
            log.error("sign-ins of user %s's sockets unknown (Redis); disconnecting all "
                      "(the others reconnect with their own credentials)", user_id)
            logins = list(only_logins)[:1] * len(sids)
        sids = [sid for sid, lid in zip(sids, logins) if lid in only_logins]
    for sid in sids:
        server.disconnect(sid, namespace="/")
    return len(sids)


def _socket_key(sid):
    return f"{current_app.config['REDIS_NAMESPACE']}:socket_login:{sid}"


def note_socket(sid, login_id):
    """Remember which sign-in a socket was opened with (for signing out of it)."""
    if login_id:
        ttl = int(max(current_app.config["TOKEN_MAX_AGE_SECONDS"],
                      current_app.config["SESSION_LIFETIME_SECONDS"]))
        runtime().state.put_many({_socket_key(sid): login_id}, ttl)


def login_of_connect(auth):
    """The login id of a socket's credentials: its bearer token's, else its cookie's."""
    from .auth import token_login
    if isinstance(auth, dict) and auth.get("token"):
        return token_login(auth["token"])
    lid = session.get(LOGIN_KEY)
    return lid if isinstance(lid, str) else None


def forget_socket(sid):
    runtime().state.delete(_socket_key(sid))


def request_logins(user_id):
    """The login ids of this request's credentials: its session cookie's and its bearer
    token's (those issued to user_id)."""
    from .auth import bearer_token, token_login, user_id_from_token
    found = set()
    if isinstance(session.get(LOGIN_KEY), str):
        found.add(session[LOGIN_KEY])
    token = bearer_token()
    if token and user_id_from_token(token) == user_id and token_login(token):
        found.add(token_login(token))
    return found


def end_login(user_id, login_ids):
    """End these sign-ins of the user: their cookies and tokens, and their sockets.

    Commits first, then disconnects the sockets opened with them on every web
    process. Raises the database's errors (nothing is signed out then).
    """
    from .models import EndedLogin
    for lid in login_ids:
        if db.session.get(EndedLogin, lid) is None:
            db.session.add(EndedLogin(id=lid, user_id=user_id))
    try:
        db.session.commit()
    except sa.exc.IntegrityError:
        db.session.rollback()   # ended concurrently (a double click): ended all the same
    disconnect_sockets(user_id, only_logins=set(login_ids))


def sign_out(user):
    """Sign out of this sign-in (its cookie, its token, its sockets) and clear this
    browser's cookie. A cookie or token without a login id signs out everywhere."""
    if user is not None and user.is_authenticated:
        logins = request_logins(user.id)
        if logins:
            end_login(user.id, logins)
        else:
            end_sessions(user.id)
    logout_user()
    session.clear()


def sign_out_everywhere(user):
    """End every session, token and socket of the signed-in user; clear this browser's cookie."""
    if user is not None and user.is_authenticated:
        end_sessions(user.id)
    logout_user()
    session.clear()
