"""What the API contract (API.md) promises every client, as reusable test assertions.

Kept apart from conftest.py so that the REST, account and command tests share one
reading of the error shape and one way of making real rows.
"""
from datetime import datetime

import sqlalchemy as sa

from booking import catalog
from booking.extensions import db

ERROR_CODES = {"invalid_request", "unauthorized", "forbidden", "not_found", "conflict",
               "seat_unavailable", "hold_expired", "hold_not_owned", "limit_exceeded",
               "payment_declined", "payment_error", "rate_limited", "busy", "internal"}
STRONG_PASSWORD = "correct-horse-battery"


def assert_error(response, status, code):
    """The response is the contract's one error shape with this status and code; returns it."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code and code in ERROR_CODES, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["details"], dict), error
    return error


def assert_invalid_fields(response, status, fields):
    """An invalid_request whose details.fields names exactly these fields, each with messages."""
    error = assert_error(response, status, "invalid_request")
    reported = error["details"].get("fields")
    assert isinstance(reported, dict), error
    assert set(reported) == set(fields), error
    for messages in reported.values():
        assert isinstance(messages, list) and messages, error
        assert all(isinstance(m, str) and m for m in messages), error
    return error


def row_counts(app):
    """{table: rows} of every table, to show that a refused request changed nothing."""
    with app.app_context():
        counts = {t.name: db.session.scalar(sa.select(sa.func.count()).select_from(t))
                  for t in db.metadata.sorted_tables}
        db.session.remove()
    return counts


def make_event(app, name="Spring Gala", venue="Test Hall", sections=(("Stalls", 2, 3, 2500),),
               starts_at=datetime(2030, 5, 1, 19, 30), currency="EUR"):
    """Create an event with real seat rows through the catalog service; returns its id."""
    with app.app_context():
        event = catalog.create_event(db.session, name=name, venue=venue, starts_at=starts_at,
                                     sections=list(sections), currency=currency)
        db.session.commit()
        event_id = event.id
        db.session.remove()
    return event_id


def sign_up(client, email="ada@example.test", password=STRONG_PASSWORD, name="Ada"):
    """Create an account over REST; returns the response body (id, email, name, token)."""
    r = client.post("/api/v1/users", json={"email": email, "password": password, "name": name})
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()
