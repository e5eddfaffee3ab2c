"""Admission tokens: signed, bound to the account and the event, expiring; and time helpers."""
import time
from datetime import datetime, timezone

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer

from ..errors import Forbidden


def _token_serializer():
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="boxoffice-admission")


def issue_token(user_id, event_id, expires_at):
    """An admission token: {user, event, expiry} signed with the app's key."""
    return _token_serializer().dumps({"u": user_id, "e": event_id, "x": int(expires_at)})


def check_token(token, user_id, event_id, now=None):
    """Raise Forbidden(not_admitted) unless token admits this user to this event now."""
    now = time.time() if now is None else now
    try:
        data = _token_serializer().loads(token) if isinstance(token, str) and token else None
    except BadSignature:
        data = None
    if (not isinstance(data, dict) or data.get("u") != user_id or data.get("e") != event_id
            or not isinstance(data.get("x"), int) or data["x"] <= now):
        raise Forbidden.of("not_admitted", reason="not_admitted", event_id=event_id)


def iso(ts):
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def unix(naive_utc):
    return naive_utc.replace(tzinfo=timezone.utc).timestamp() if naive_utc else None
