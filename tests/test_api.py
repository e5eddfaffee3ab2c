"""The REST API as a client sees it: reading events and seats, health probes, malformed bodies.

Accounts (sign-up, sign-in) have their own module; here are the reads every page
and load test depends on and the refusals every endpoint shares.
"""
import re
from datetime import datetime

import pytest
import sqlalchemy as sa

from booking.extensions import db
from booking.models import Hold, Seat, User, utcnow

from tests.contract import assert_error, make_event, row_counts

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")
EVENT_FIELDS = {"id", "name", "venue", "starts_at", "currency", "seats_total", "seats_available"}
SEAT_FIELDS = {"id", "label", "section", "row", "number", "price_cents", "status", "version",
               # v1.1: the seat on the venue's plan and its marks (the back office).
               "x", "y", "tier", "blocked", "wheelchair", "companion", "restricted_view"}
POST_ENDPOINTS = ["/api/v1/users", "/api/v1/session"]


@pytest.fixture
def gala(app):
    """An event with two priced sections: Stalls 2 rows x 3 at 25.00, Circle 1 row x 2 at 15.00."""
    return make_event(app, name="Spring Gala", venue="Test Hall",
                      sections=[("Stalls", 2, 3, 2500), ("Circle", 1, 2, 1500)])


def test_health_and_readiness(client):
    """Liveness always answers; readiness answers 200 with the database checked."""
    r = client.get("/healthz")
    assert r.status_code == 200
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.get_json()["checks"]["database"] == "ok"


def test_no_events_is_an_empty_list(client):
    r = client.get("/api/v1/events")
    assert r.status_code == 200
    assert r.get_json() == []


def test_list_events_with_counts(app, client, gala):
    """The list carries every contract field, with live seat counts and a UTC time."""
    make_event(app, name="Late Show", venue="Test Hall", sections=[("Main", 1, 1, 900)],
               starts_at=datetime(2031, 1, 1))
    r = client.get("/api/v1/events")
    assert r.status_code == 200
    events = r.get_json()
    assert [e["name"] for e in events] == ["Spring Gala", "Late Show"]  # soonest first
    first = events[0]
    assert EVENT_FIELDS <= set(first)
    assert first["id"] == gala
    assert first["venue"] == "Test Hall"
    assert first["starts_at"] == "2030-05-01T19:30:00Z"
    assert first["currency"] == "EUR"
    assert first["seats_total"] == first["seats_available"] == 8


def test_event_detail_lists_sections_and_rows(client, gala):
    """The detail adds sections in seating order, each with its rows."""
    r = client.get(f"/api/v1/events/{gala}")
    assert r.status_code == 200
    event = r.get_json()
    assert EVENT_FIELDS <= set(event)
    assert event["id"] == gala and event["seats_total"] == 8
    assert event["sections"] == [{"name": "Stalls", "rows": ["A", "B"]},
                                 {"name": "Circle", "rows": ["A"]}]


def test_event_seats(client, gala):
    """Every seat, in id order, available at version 0, with its section's price."""
    r = client.get(f"/api/v1/events/{gala}/seats")
    assert r.status_code == 200
    body = r.get_json()
    assert body["event_id"] == gala
    seats = body["seats"]
    assert len(seats) == 8
    assert all(set(s) == SEAT_FIELDS for s in seats)
    assert [s["id"] for s in seats] == sorted(s["id"] for s in seats)
    assert {s["status"] for s in seats} == {"available"}
    assert {s["version"] for s in seats} == {0}
    first, last = seats[0], seats[-1]
    assert (first["label"], first["section"], first["row"], first["number"],
            first["price_cents"]) == ("Stalls A1", "Stalls", "A", 1, 2500)
    assert (last["label"], last["price_cents"]) == ("Circle A2", 1500)


def test_seat_counts_follow_seat_status(app, client, gala):
    """A held seat no longer counts as available in the list or the detail."""
    with app.app_context():
        user = User(email="h@example.test", name="", password_hash="x")
        db.session.add(user)
        db.session.flush()
        hold = Hold(user_id=user.id, event_id=gala, status="held", amount_cents=2500,
                    currency="EUR", expires_at=utcnow())
        db.session.add(hold)
        db.session.flush()
        seat = db.session.scalars(sa.select(Seat).where(Seat.event_id == gala)).first()
        seat.status, seat.hold_id, seat.version = "held", hold.id, 1
        db.session.commit()
        seat_id = seat.id
        db.session.remove()
    assert client.get("/api/v1/events").get_json()[0]["seats_available"] == 7
    assert client.get(f"/api/v1/events/{gala}").get_json()["seats_available"] == 7
    seats = client.get(f"/api/v1/events/{gala}/seats").get_json()["seats"]
    assert [(s["status"], s["version"]) for s in seats if s["id"] == seat_id] == [("held", 1)]


@pytest.mark.parametrize("path", [
    "/api/v1/events/999999",
    "/api/v1/events/999999/seats",
    "/api/v1/events/0",
    "/api/v1/events/99999999999999999999",
    "/api/v1/events/abc",
    "/api/v1/events/-1/seats",
    "/api/v1/nothing-here",
])
def test_unknown_ids_are_not_found(client, gala, path):
    """Unknown or impossible ids answer 404 not_found in the contract's shape."""
    assert_error(client.get(path), 404, "not_found")


def test_unknown_event_names_the_id(client):
    error = assert_error(client.get("/api/v1/events/424242"), 404, "not_found")
    assert error["details"] == {"event_id": 424242}


def test_wrong_method_is_an_error_in_the_contract_shape(client):
    assert_error(client.put("/api/v1/events"), 405, "invalid_request")


@pytest.mark.parametrize("path", POST_ENDPOINTS)
@pytest.mark.parametrize("body, content_type", [
    ("{not json", "application/json"),
    ("", "application/json"),
    ('{"email": "a@example.test"', "application/json"),
    ('{"email": "a@example.test", "password": "correct-horse-battery"}', "text/plain"),
    ("email=a@example.test&password=correct-horse-battery",
     "application/x-www-form-urlencoded"),
    ("[]", "application/json"),
    ('["a@example.test", "correct-horse-battery"]', "application/json"),
    ('"a@example.test"', "application/json"),
    ("42", "application/json"),
    ("null", "application/json"),
    ("true", "application/json"),
    (b"\xff\xfe{}", "application/json"),                  # not UTF-8
    ("[" * 30000 + "]" * 30000, "application/json"),       # nested past the parser's depth
    ('{"a":' * 10000 + "1" + "}" * 10000, "application/json"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_body_not_a_json_object_is_400(app, client, path, body, content_type):
    """Not JSON, not declared as JSON, or not an object: 400 invalid_request, nothing written."""
    before = row_counts(app)
    r = client.post(path, data=body, content_type=content_type)
    assert_error(r, 400, "invalid_request")
    assert row_counts(app) == before


@pytest.mark.parametrize("path", POST_ENDPOINTS)
def test_body_over_64_kib_is_413(app, client, path):
    """A body over 64 KiB is refused with 413 before it is parsed; nothing is written."""
    before = row_counts(app)
    big = '{"email": "a@example.test", "password": "correct-horse-battery", "name": "%s"}' % (
        "x" * (64 * 1024))
    r = client.post(path, data=big, content_type="application/json")
    error = assert_error(r, 413, "invalid_request")
    assert error["details"]["limit_bytes"] == 64 * 1024
    assert row_counts(app) == before


def test_body_just_under_64_kib_is_read(client):
    """The limit is 64 KiB, not less: a body just under it reaches validation (422, not 413)."""
    body = '{"email": "a@example.test", "password": "correct-horse-battery", "name": "%s"}'
    padding = 64 * 1024 - len(body % "")
    r = client.post("/api/v1/users", data=body % ("x" * padding), content_type="application/json")
    assert len(body % ("x" * padding)) == 64 * 1024
    assert_error(r, 422, "invalid_request")  # the name is over 100 characters
