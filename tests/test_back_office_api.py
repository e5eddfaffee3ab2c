"""The organizer API's behaviour: layouts in, events made from them, safe edits while
selling, blocked seats never held, and hostile input refused with nothing changed."""
import copy

import pytest
import sqlalchemy as sa

from booking import holds
from booking.extensions import db
from booking.models import Seat
from tests.back_office import (TIERS, buy, example_layout, fingerprint,
                               seat_ids_of, small_layout)
from tests.contract import assert_error

V, E = "/api/v1/organizer/venues", "/api/v1/organizer/events"


def _theatre(client, office):
    r = client.post(V, json={"name": "Theatre", "timezone": "Europe/Amsterdam",
                             "layout": example_layout()}, headers=office.h("admin"))
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def test_the_example_theatre_imports_with_its_geometry_and_marks(app, client, office):
    venue = _theatre(client, office)
    assert venue["seats"] == 2000 and venue["tiers"] == ["Premium", "Standard", "Restricted"]
    assert venue["blocked"] == 11 and venue["wheelchair"] == 6
    assert venue["sections"] == ["Stalls", "Dress Circle", "Upper Circle", "Box Left",
                                 "Box Right"]
    r = client.post(E, json={"venue_id": venue["id"], "name": "Opening",
                             "starts_at": "2031-06-01T19:30:00+02:00", "price_tiers": TIERS,
                             "on_sale_at": "2031-05-01T10:00:00Z", "waiting_room": True},
                    headers=office.h("admin"))
    assert r.status_code == 201, r.get_json()
    event = r.get_json()
    assert event["starts_at"] == "2031-06-01T17:30:00Z" and event["waiting_room"] == "open"
    assert [t["name"] for t in event["price_tiers"]] == ["Premium", "Standard", "Restricted"]
    seats = client.get(f"/api/v1/events/{event['id']}/seats").get_json()["seats"]
    assert len(seats) == 2000
    # Every seat is placed on the plan, distinct, priced by its tier; the marks carried over.
    assert len({(s["x"], s["y"]) for s in seats}) == 2000
    assert all(0 <= s["x"] <= 1000 and 0 <= s["y"] <= 960 for s in seats)
    price = {t["name"]: t["price_cents"] for t in TIERS}
    assert all(s["price_cents"] == price[s["tier"]] for s in seats)
    killed = [s["label"] for s in seats if s["blocked"]]
    assert killed == [f"Stalls T{n}" for n in range(24, 35)]
    assert sum(s["wheelchair"] for s in seats) == 6 and sum(s["companion"] for s in seats) == 4
    listed = client.get("/api/v1/events").get_json()
    mine = next(e for e in listed if e["id"] == event["id"])
    assert mine["seats_total"] == 2000 and mine["seats_available"] == 2000 - 11
    sales = client.get(f"{E}/{event['id']}/sales", headers=office.h("staff")).get_json()
    assert sales["seats"] == {"available": 1989, "held": 0, "sold": 0, "blocked": 11}


def _bad_layouts():
    good = small_layout()
    cases = []
    for path, value, field in [
            (("format",), "other", "layout.format"),
            (("sections", 0, "rows", 1, "seats"), 0, "layout.sections.0.rows.1.seats"),
            (("sections", 0, "rows", 1, "seats"), "5", "layout.sections.0.rows.1.seats"),
            (("sections", 0, "tier"), "Gold", "layout.sections.0.tier"),
            (("sections", 0, "rows", 0, "curve_radius"), 1.0,
             "layout.sections.0.rows.0.curve_radius"),
            (("sections", 0, "position", "x"), float("inf"), "layout.sections.0.position.x"),
            (("sections", 0, "marks"), [{"rows": ["Z"], "blocked": "kill"}],
             "layout.sections.0.marks.0"),
            (("sections", 0, "rows", 0, "gaps_after"), [5], "layout.sections.0.rows.0.gaps_after"),
            (("sections", 0, "seat_spacing"), -1, "layout.sections.0.seat_spacing"),
            (("sections", 0, "surprise"), 1, "layout.sections.0.surprise"),
    ]:
        layout = copy.deepcopy(good)
        target = layout
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        cases.append((layout, field))
    dup = copy.deepcopy(good)
    dup["sections"][0]["rows"][1]["name"] = "A"
    cases.append((dup, "layout.sections.0.rows.1.name"))
    return cases


@pytest.mark.parametrize("layout,field", _bad_layouts())
def test_a_bad_layout_is_refused_with_the_field_path(app, client, office, layout, field):
    before = fingerprint(app)
    r = client.post(V, json={"name": "Bad", "timezone": "UTC", "layout": layout},
                    headers=office.h("admin"))
    error = assert_error(r, 422, "invalid_request")
    assert field in error["details"]["fields"], error
    assert fingerprint(app) == before


HOSTILE = [
    ("POST", V, "not json", 400), ("POST", V, [1, 2], 400),
    ("POST", V, {"name": "", "timezone": "UTC", "layout": {}}, 422),
    ("POST", V, {"name": "X", "timezone": "Mars/Olympus", "layout": "SMALL"}, 422),
    ("POST", V, {"name": "X" * 201, "timezone": "UTC", "layout": "SMALL"}, 422),
    ("POST", V, {"name": "Alpha Hall", "timezone": "UTC", "layout": "SMALL"}, 409),
    ("POST", E, {"venue_id": "{vb}", "name": "x", "starts_at": "2031-01-01T10:00:00Z",
                 "price_tiers": [{"name": "Front", "price_cents": 1},
                                 {"name": "Back", "price_cents": 1}]}, 404),
    ("POST", E, {"venue_id": "{va}", "name": "x", "starts_at": "2031-01-01T10:00:00",
                 "price_tiers": [{"name": "Front", "price_cents": 1}]}, 422),
    ("POST", E, {"venue_id": "{va}", "name": "x", "starts_at": "2031-01-01T10:00:00Z",
                 "price_tiers": [{"name": "Front", "price_cents": 1}]}, 422),
    ("POST", E, {"venue_id": "{va}", "name": "x", "starts_at": "2031-01-01T10:00:00Z",
                 "price_tiers": [{"name": "Front", "price_cents": -1},
                                 {"name": "Back", "price_cents": 1}]}, 422),
    ("POST", E, {"venue_id": 2**40, "name": "x", "starts_at": "2031-01-01T10:00:00Z",
                 "price_tiers": []}, 422),
    ("PATCH", "{e}", {}, 422), ("PATCH", "{e}", {"starts_at": "tomorrow"}, 422),
    ("PATCH", "{e}", {"name": None}, 422), ("PATCH", "{e}", {"currency": "EURO"}, 422),
    ("PUT", "{e}/tiers/Front", {"price_cents": "10"}, 422),
    ("PUT", "{e}/tiers/Front", {"price_cents": 10**9}, 422),
    ("DELETE", "{e}/tiers/Nope", None, 404), ("DELETE", "{e}/tiers/Front", None, 409),
    ("POST", "{e}/seats", {"set": {"blocked": "kill"}}, 422),
    ("POST", "{e}/seats", {"section": "Hall", "set": {}}, 422),
    ("POST", "{e}/seats", {"section": "Nowhere", "set": {"blocked": "kill"}}, 422),
    ("POST", "{e}/seats", {"seat_ids": "{sb}", "set": {"blocked": "kill"}}, 422),
    ("POST", "{e}/seats", {"section": "Hall", "set": {"blocked": "gone"}}, 422),
    ("POST", "{e}/seats", {"section": "Hall", "set": {"tier": "Nope"}}, 422),
    ("POST", "{e}/sale", {}, 422), ("POST", "{e}/sale", {"waiting_room": "closed"}, 422),
    ("POST", "{e}/sale", {"waiting_room": "paused"}, 422),
    ("POST", "{e}/sale", {"admission_rate_per_min": 0}, 422),
    ("POST", "{e}/sale", {"admission_rate_per_min": "fast"}, 422),
    ("POST", "{e}/sale", {"on_sale_at": "soon"}, 422),
    ("GET", "{e}/orders?limit=9999", None, 422), ("GET", "{e}/orders/999999", None, 404),
    ("POST", "/api/v1/organizer/organizers/{a}/members", {"email": "nope", "role": "admin"},
     422),
    ("POST", "/api/v1/organizer/organizers/{a}/members", {"email": "a@b.test", "role": "boss"},
     422),
    ("DELETE", "/api/v1/organizer/organizers/{a}/members/{admin}", None, 409),
]


@pytest.mark.app_config(USER_RATE_LIMIT="1000/second")
def test_hostile_input_on_every_organizer_route_changes_nothing(app, client, office):
    ids = office.ids
    before = fingerprint(app)
    for method, path, body, status in HOSTILE:
        path = path.format(e=f"{E}/{ids['event_a']}", a=ids["org_a"],
                           admin=office.uid("admin"))
        if isinstance(body, dict):
            other_seat = seat_ids_of(app, ids["event_b"])[:1]
            body = {k: (small_layout() if v == "SMALL" else other_seat if v == "{sb}" else
                        ids["venue_b"] if v == "{vb}" else ids["venue_a"] if v == "{va}" else v)
                    for k, v in body.items()}
        kwargs = {"data": body, "content_type": "application/json"} if isinstance(body, str) \
            else {"json": body}
        r = client.open(path, method=method, headers=office.h("admin"), **kwargs)
        assert r.status_code == status, (method, path, body, r.get_json())
        assert_error(r, status, r.get_json()["error"]["code"])
    assert fingerprint(app) == before, "a refused call changed something"


def test_a_tier_price_locks_once_its_seats_sell_and_unsold_seats_can_move(app, client, office):
    e = office.ids["event_a"]
    front = seat_ids_of(app, e, row="A")
    assert buy(app, office.uid("buyer"), e, front[:1])
    h = office.h("admin")
    r = client.put(f"{E}/{e}/tiers/Front", json={"price_cents": 9999}, headers=h)
    error = assert_error(r, 409, "conflict")
    assert error["details"]["reason"] == "tier_has_sales"
    detail = client.get(f"{E}/{e}", headers=h).get_json()
    tier = next(t for t in detail["price_tiers"] if t["name"] == "Front")
    assert tier["price_cents"] == 5000 and "held or sold" in tier["locked"]
    assert "currency" in detail["locked"]
    r = client.patch(f"{E}/{e}", json={"currency": "USD"}, headers=h)
    assert_error(r, 409, "conflict")
    # The other tier has no sales: its price changes, on every one of its seats.
    assert client.put(f"{E}/{e}/tiers/Back", json={"price_cents": 3500}, headers=h).status_code == 200
    # A new tier, and the unsold front seats moved to it; the sold one cannot move.
    assert client.put(f"{E}/{e}/tiers/Late", json={"price_cents": 4000}, headers=h).status_code == 200
    r = client.post(f"{E}/{e}/seats", json={"seat_ids": front[:2], "set": {"tier": "Late"}},
                    headers=h)
    assert assert_error(r, 409, "conflict")["details"]["reason"] == "seats_not_available"
    r = client.post(f"{E}/{e}/seats", json={"seat_ids": front[1:], "set": {"tier": "Late"}},
                    headers=h)
    assert r.status_code == 200 and r.get_json()["changed"] == 4
    with app.app_context():
        prices = dict(db.session.execute(sa.select(Seat.id, Seat.price_cents)
                                         .where(Seat.event_id == e)).all())
        tiers = dict(db.session.execute(sa.select(Seat.id, Seat.tier)
                                        .where(Seat.event_id == e)).all())
        db.session.remove()
    assert prices[front[0]] == 5000 and tiers[front[0]] == "Front"
    assert all(prices[s] == 4000 and tiers[s] == "Late" for s in front[1:])
    assert all(p == 3500 for s, p in prices.items() if tiers[s] == "Back")
    # Name, description and start change any time.
    r = client.patch(f"{E}/{e}", json={"name": "Alpha night (moved)",
                                       "starts_at": "2031-03-02T20:00:00Z"}, headers=h)
    assert r.status_code == 200 and r.get_json()["starts_at"] == "2031-03-02T20:00:00Z"
    # A sold seat cannot be blocked (and seats are never deleted).
    r = client.post(f"{E}/{e}/seats", json={"seat_ids": front[:1], "set": {"blocked": "kill"}},
                    headers=h)
    assert_error(r, 409, "conflict")


def test_a_blocked_seat_is_never_held(app, client, office):
    e = office.ids["event_a"]
    row_b = seat_ids_of(app, e, row="B")
    h = office.h("admin")
    r = client.post(f"{E}/{e}/seats", json={"section": "Hall", "rows": ["B"], "numbers": [1, 2],
                                           "set": {"blocked": "hold"}}, headers=h)
    assert r.status_code == 200 and r.get_json()["changed"] == 2
    rt = app.extensions["boxoffice"]
    with app.app_context():
        out = holds.process_requests(db.session, [
            {"kind": "hold", "user_id": office.uid("buyer"), "request_id": "r1", "event_id": e,
             "seat_ids": [row_b[1], row_b[2]]}], rt.settings)
        db.session.commit()
        answer = out.results[0][3]
        assert not answer["ok"] and answer["error"]["code"] == "seat_unavailable"
        assert answer["error"]["details"]["seat_ids"] == [row_b[1]]
        statuses = set(db.session.scalars(sa.select(Seat.status).where(Seat.id.in_(row_b))))
        assert statuses == {"available"}
        db.session.remove()
    # Released for sale, the same seat can be held.
    r = client.post(f"{E}/{e}/seats", json={"seat_ids": row_b[:2], "set": {"blocked": None}},
                    headers=h)
    assert r.status_code == 200
    with app.app_context():
        out = holds.process_requests(db.session, [
            {"kind": "hold", "user_id": office.uid("buyer"), "request_id": "r2", "event_id": e,
             "seat_ids": [row_b[1]]}], rt.settings)
        db.session.commit()
        assert out.results[0][3]["ok"]
        db.session.remove()
    # The schema refuses a blocked seat that is not available, whatever writes it.
    with app.app_context():
        # (MariaDB reports a failed CHECK as error 4025, an OperationalError.)
        with pytest.raises((sa.exc.IntegrityError, sa.exc.OperationalError)):
            db.session.execute(sa.update(Seat).where(Seat.id == row_b[1]).values(blocked="kill"))
            db.session.flush()
        db.session.rollback()
        db.session.remove()


def test_an_invitation_becomes_a_membership_at_sign_up(app, client, office):
    a = office.ids["org_a"]
    r = client.post(f"/api/v1/organizer/organizers/{a}/members",
                    json={"email": "Newcomer@Example.test", "role": "staff"},
                    headers=office.h("admin"))
    assert r.status_code == 201 and r.get_json()["outcome"] == "invited"
    found = client.get(f"/api/v1/organizer/organizers/{a}/members",
                       headers=office.h("admin")).get_json()
    assert [i["email"] for i in found["invitations"]] == ["newcomer@example.test"]
    fresh = app.test_client()
    token = fresh.post("/api/v1/users", json={"email": "newcomer@example.test",
                                              "password": "correct-horse-battery"}
                       ).get_json()["token"]
    mine = app.test_client().get("/api/v1/organizer/organizers",
                                 headers={"Authorization": f"Bearer {token}"}).get_json()
    assert [(o["id"], o["role"]) for o in mine] == [(a, "staff")]
    found = client.get(f"/api/v1/organizer/organizers/{a}/members",
                       headers=office.h("admin")).get_json()
    assert found["invitations"] == []
