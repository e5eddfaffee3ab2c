"""Accounts: signing up, signing in and out, and who a socket connect belongs to.

Every refusal is checked for the contract's error shape and for leaving the
users table as it was.
"""
import pytest
import sqlalchemy as sa
from itsdangerous import URLSafeTimedSerializer

from booking.extensions import db, socketio
from booking.models import User
from tests.contract import (STRONG_PASSWORD, assert_error, assert_invalid_fields, row_counts,
                            sign_up)

USER_FIELDS = {"id", "email", "name", "token"}


def _stored_user(app, email):
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.email == email))
        db.session.remove()
    return user


def _session_cookie(client):
    return client.get_cookie("session")


def test_sign_up_creates_a_signed_in_account(app, client):
    """201 with id, email, name and a token, plus a session cookie; the row is real."""
    r = client.post("/api/v1/users", json={"email": "ada@example.test",
                                           "password": STRONG_PASSWORD, "name": "Ada"})
    assert r.status_code == 201
    body = r.get_json()
    assert set(body) == USER_FIELDS
    assert body["email"] == "ada@example.test" and body["name"] == "Ada"
    assert isinstance(body["id"], int) and isinstance(body["token"], str) and body["token"]
    assert _session_cookie(client) is not None
    assert "password" not in r.get_data(as_text=True)
    user = _stored_user(app, "ada@example.test")
    assert user.id == body["id"] and user.name == "Ada"


def test_password_is_stored_as_argon2id_hash(app, client):
    """The database never holds the password itself, only an Argon2id hash of it."""
    sign_up(client, email="hash@example.test")
    user = _stored_user(app, "hash@example.test")
    assert user.password_hash.startswith("$argon2id$")
    assert STRONG_PASSWORD not in user.password_hash


def test_name_is_optional_and_unknown_fields_are_ignored(app, client):
    """A client may omit name and may send fields a later API version knows."""
    r = client.post("/api/v1/users", json={"email": "min@example.test",
                                           "password": STRONG_PASSWORD, "is_admin": True})
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["name"] == ""


def test_email_is_case_insensitive(app, client):
    """An address is one account however it is capitalised, for sign-up and sign-in."""
    body = sign_up(client, email="Grace.Hopper@Example.TEST")
    assert body["email"] == "grace.hopper@example.test"
    r = client.post("/api/v1/session", json={"email": "GRACE.HOPPER@example.test",
                                             "password": STRONG_PASSWORD})
    assert r.status_code == 200 and r.get_json()["id"] == body["id"]
    before = row_counts(app)
    r = client.post("/api/v1/users", json={"email": "grace.hopper@EXAMPLE.test",
                                           "password": STRONG_PASSWORD})
    assert_error(r, 409, "conflict")
    assert row_counts(app) == before


def test_taken_email_is_a_conflict(app, client):
    """Signing up twice with one address: 409 conflict, the first account untouched."""
    first = sign_up(client, email="taken@example.test")
    hash_before = _stored_user(app, "taken@example.test").password_hash
    before = row_counts(app)
    r = client.post("/api/v1/users", json={"email": "taken@example.test",
                                           "password": "another-long-passphrase"})
    error = assert_error(r, 409, "conflict")
    assert error["details"] == {"field": "email"}
    assert row_counts(app) == before
    user = _stored_user(app, "taken@example.test")
    assert (user.id, user.password_hash) == (first["id"], hash_before)


@pytest.mark.parametrize("body, fields", [
    ({}, {"email", "password"}),
    ({"password": STRONG_PASSWORD}, {"email"}),
    ({"email": "a@example.test"}, {"password"}),
    ({"email": None, "password": None}, {"email", "password"}),
    ({"email": 123, "password": STRONG_PASSWORD}, {"email"}),
    ({"email": ["a@example.test"], "password": STRONG_PASSWORD}, {"email"}),
    ({"email": "a@example.test", "password": 12345678901}, {"password"}),
    ({"email": "a@example.test", "password": {"p": STRONG_PASSWORD}}, {"password"}),
    ({"email": "a@example.test", "password": STRONG_PASSWORD, "name": 7}, {"name"}),
    ({"email": "a@example.test", "password": STRONG_PASSWORD, "name": None}, {"name"}),
    ({"email": "a@example.test", "password": STRONG_PASSWORD, "name": "n" * 101}, {"name"}),
    ({"email": "not-an-email", "password": STRONG_PASSWORD}, {"email"}),
    ({"email": "", "password": STRONG_PASSWORD}, {"email"}),
    ({"email": "a@", "password": STRONG_PASSWORD}, {"email"}),
    ({"email": "a" * 250 + "@example.test", "password": STRONG_PASSWORD}, {"email"}),
    ({"email": "a@example.test", "password": "x" * 1025}, {"password"}),
], ids=lambda v: None if isinstance(v, dict) else "-".join(sorted(v)))
def test_sign_up_field_errors_are_422(app, client, body, fields):
    """Missing, mistyped and out-of-range fields: 422 naming each field; no account made."""
    before = row_counts(app)
    r = client.post("/api/v1/users", json=body)
    assert_invalid_fields(r, 422, fields)
    assert row_counts(app) == before
    assert _session_cookie(client) is None


@pytest.mark.parametrize("password", [
    "",
    "short",
    "nine-char",           # 9 characters: one short
    "qwertyuiop",          # common, although 10 characters long
    "password123",
    "PASSWORD123",         # common whatever the case
    "1234567890",
    "manchester",
])
def test_weak_passwords_are_refused(app, client, password):
    """Under 10 characters or among the most common passwords: 422 on password only."""
    before = row_counts(app)
    r = client.post("/api/v1/users", json={"email": "weak@example.test", "password": password})
    error = assert_invalid_fields(r, 422, {"password"})
    assert row_counts(app) == before
    assert error["details"]["fields"]["password"]


def test_ten_characters_are_enough(client):
    """The boundary: an uncommon password of exactly 10 characters is accepted."""
    r = client.post("/api/v1/users", json={"email": "ten@example.test", "password": "xq7-vb2!kz"})
    assert r.status_code == 201, r.get_json()


def test_sign_in_returns_the_account(app, client):
    """The right password answers the same account with a fresh token and a cookie."""
    created = sign_up(client, email="in@example.test")
    fresh = app.test_client()
    r = fresh.post("/api/v1/session", json={"email": "in@example.test",
                                            "password": STRONG_PASSWORD})
    assert r.status_code == 200
    body = r.get_json()
    assert set(body) == USER_FIELDS
    assert (body["id"], body["email"], body["name"]) == (created["id"], created["email"], "Ada")
    assert body["token"]
    assert _session_cookie(fresh) is not None


@pytest.mark.parametrize("email, password", [
    ("in@example.test", "wrong-horse-battery"),
    ("in@example.test", STRONG_PASSWORD.upper()),
    ("nobody@example.test", STRONG_PASSWORD),
    ("in@example.test", "x"),
])
def test_wrong_credentials_are_401(app, client, email, password):
    """A wrong password and an unknown email get the same answer (accounts stay private)."""
    sign_up(client, email="in@example.test")
    fresh = app.test_client()
    before = row_counts(app)
    r = fresh.post("/api/v1/session", json={"email": email, "password": password})
    error = assert_error(r, 401, "unauthorized")
    assert error["message"] == "Wrong email or password."
    assert "token" not in r.get_data(as_text=True)
    assert _session_cookie(fresh) is None
    assert row_counts(app) == before


@pytest.mark.parametrize("body, fields", [
    ({}, {"email", "password"}),
    ({"email": "in@example.test"}, {"password"}),
    ({"password": STRONG_PASSWORD}, {"email"}),
    ({"email": "", "password": ""}, {"email", "password"}),
    ({"email": 5, "password": STRONG_PASSWORD}, {"email"}),
    ({"email": "in@example.test", "password": None}, {"password"}),
    ({"email": "in@example.test", "password": ["x"]}, {"password"}),
], ids=lambda v: None if isinstance(v, dict) else "-".join(sorted(v)))
def test_sign_in_field_errors_are_422(client, body, fields):
    assert_invalid_fields(client.post("/api/v1/session", json=body), 422, fields)


def test_sign_out_is_204_and_ends_the_cookie_session(app, client):
    """After DELETE /session this browser is signed out: its socket is only a signed-out
    visitor's read-only one (a hold is refused); signing out twice is fine."""
    sign_up(client, email="out@example.test")
    sock = socketio.test_client(app, flask_test_client=client)
    assert sock.is_connected()
    sock.disconnect()

    r = client.delete("/api/v1/session")
    assert r.status_code == 204 and r.get_data() == b""
    after = socketio.test_client(app, flask_test_client=client)
    ack = after.emit("hold", {"request_id": "r", "event_id": 1, "seat_ids": [1]}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "unauthorized"
    after.disconnect()
    assert client.delete("/api/v1/session").status_code == 204


def test_socket_connect_with_bearer_token(app, client):
    """A token from sign-up opens a socket without any cookie."""
    token = sign_up(client, email="sock@example.test")["token"]
    sock = socketio.test_client(app, auth={"token": token})
    assert sock.is_connected()
    sock.disconnect()


def _forged_tokens(app, token):
    other_key = URLSafeTimedSerializer("not-the-secret", salt="boxoffice-api-token")
    right_key = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="another-salt")
    return [
        "forged",
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # signature altered
        other_key.dumps({"uid": 1}),                                 # signed with another key
        right_key.dumps({"uid": 1}),                                 # another purpose's signature
        "x" * 600,
        "",
    ]


def test_forged_tokens_are_refused_on_connect(app, client):
    """Altered, foreign-signed and junk tokens, and an empty one: refused."""
    token = sign_up(client, email="forge@example.test")["token"]
    for forged in _forged_tokens(app, token):
        assert not socketio.test_client(app, auth={"token": forged}).is_connected(), forged
    # No credentials at all is a signed-out visitor: read-only (tests/test_buyer_view.py).
    for auth in ({}, None):
        guest = socketio.test_client(app, auth=auth)
        ack = guest.emit("release", {"request_id": "r", "hold_id": 1}, callback=True)
        assert ack["error"]["code"] == "unauthorized"
        guest.disconnect()
