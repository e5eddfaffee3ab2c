"""The seat map's compact data: the cacheable plan (REST) and the compact board (join, REST)."""
import json
from datetime import datetime

import pytest
import sqlalchemy as sa

from booking import event_admin, holds, seat_plans
from booking.extensions import db, socketio
from booking.layouts import expand_layout, load_layout
from booking.models import Seat
from tests.contract import make_event
from tests.harness import ROOT

THEATRE = json.loads((ROOT / "docs" / "examples" / "theatre-2000.json").read_text())


def _unrun(runs):
    return [first + k for first, count in runs for k in range(count)]


def _layout_event(app, layout=THEATRE, prices=None):
    prices = prices or {"Premium": 9000, "Standard": 5000, "Restricted": 2500}
    with app.app_context():
        event = event_admin.create_event_on_layout(
            db.session, None, venue_name="Example Theatre", venue_timezone="UTC", layout=layout,
            name="Gala", starts_at=datetime(2030, 1, 1, 19), currency="EUR", prices=prices)
        db.session.commit()
        return event.id


def test_plan_of_a_layout_event_matches_the_layout(app):
    event_id = _layout_event(app)
    with app.app_context():
        plan = seat_plans.seat_plan(db.session, event_id)
        seats = db.session.scalars(sa.select(Seat).where(Seat.event_id == event_id)
                                   .order_by(Seat.id)).all()
    expected = {s["label"]: s for s in expand_layout(load_layout(THEATRE))}
    arrays = plan["seats"]
    ids = _unrun(arrays["ids"])
    assert ids == [s.id for s in seats]
    assert {len(v) for k, v in arrays.items() if k != "ids"} == {len(seats)}
    assert plan["plan"] == THEATRE["plan"] and plan["focal_point"] == THEATRE["focal_point"]
    assert [t["name"] for t in plan["tiers"]] == ["Premium", "Standard", "Restricted"]
    for i, seat in enumerate(seats):
        section = plan["sections"][arrays["section"][i]]
        e = expected[seat.label]
        assert (section["name"], section["rows"][arrays["row"][i]], arrays["number"][i]) == (
            e["section"], e["row"], e["number"])
        assert (arrays["x"][i], arrays["y"][i]) == (pytest.approx(e["x"], abs=0.06),
                                                    pytest.approx(e["y"], abs=0.06))
        assert plan["prices"][arrays["price"][i]] == seat.price_cents
        assert plan["tiers"][arrays["tier"][i]]["name"] == e["tier"]
        flags = arrays["flags"][i]
        assert bool(flags & seat_plans.WHEELCHAIR) == e["wheelchair"]
        assert bool(flags & seat_plans.RESTRICTED_VIEW) == e["restricted_view"]
        assert bool(flags & seat_plans.BLOCKED) == (e["blocked"] is not None)


def test_plan_of_an_event_without_a_layout_is_a_grid(app):
    event_id = make_event(app, sections=(("Stalls", 3, 4, 2500), ("Circle", 2, 6, 1500)))
    with app.app_context():
        plan = seat_plans.seat_plan(db.session, event_id)
    arrays = plan["seats"]
    points = list(zip(arrays["x"], arrays["y"]))
    assert len(set(points)) == len(points) == 24
    assert [s["name"] for s in plan["sections"]] == ["Stalls", "Circle"]
    assert all(0 <= x <= plan["plan"]["width"] and 0 <= y <= plan["plan"]["height"]
               for x, y in points)
    # Rows go down the plan, away from the stage; numbers go left to right.
    stalls = [(r, n, x, y) for s, r, n, x, y in zip(arrays["section"], arrays["row"],
                                                     arrays["number"], *zip(*points)) if s == 0]
    assert all(y > plan["stage"]["y"] + plan["stage"]["height"] for *_, y in stalls)
    for (r1, n1, x1, y1), (r2, n2, x2, y2) in zip(stalls, stalls[1:]):
        if r1 == r2:
            assert n2 > n1 and x2 > x1 and y2 == y1
        else:
            assert y2 > y1
    circle_top = min(y for s, y in zip(arrays["section"], arrays["y"]) if s == 1)
    assert circle_top > max(y for *_, y in stalls)
    # catalog.create_event (the CLI's rectangular events) makes one price tier per section.
    assert plan["prices"] == [2500, 1500]
    assert plan["tiers"] == [{"name": "Stalls", "price_cents": 2500},
                             {"name": "Circle", "price_cents": 1500}]
    assert [t for s, t in sorted(set(zip(arrays["section"], arrays["tier"])))] == [0, 1]


def test_plan_over_rest_is_cacheable(client, app):
    event_id = make_event(app)
    r = client.get(f"/api/v1/events/{event_id}/seatmap")
    assert r.status_code == 200 and r.is_json
    assert "public" in r.headers["Cache-Control"] and "max-age" in r.headers["Cache-Control"]
    etag = r.headers["ETag"]
    again = client.get(f"/api/v1/events/{event_id}/seatmap", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert r.get_json()["event_id"] == event_id


@pytest.mark.parametrize("path", ["seatmap", "board"])
def test_unknown_event_is_404_in_the_error_shape(client, path):
    for event_id in (999_999, 2**40):
        r = client.get(f"/api/v1/events/{event_id}/{path}")
        assert r.status_code == 404
        assert r.get_json()["error"]["code"] == "not_found"


def test_compact_board_encodes_states_in_id_order():
    states = [{"id": 7, "status": "sold", "version": 3}, {"id": 5, "status": "available",
                                                           "version": 0},
              {"id": 6, "status": "held", "version": 1}, {"id": 9, "status": "available",
                                                          "version": 2}]
    assert seat_plans.compact_board(states) == {
        "ids": [[5, 3], [9, 1]], "status": "ahsa", "versions": [0, 1, 3, 2], "expiring": []}
    assert seat_plans.compact_board([]) == {"ids": [], "status": "", "versions": [],
                                            "expiring": []}
    # Held seats whose hold can run out, grouped by when (soonest first).
    later, sooner = "2030-01-01T12:05:00.000Z", "2030-01-01T12:00:00.000Z"
    held = [{"id": 3, "status": "held", "version": 1, "expires_at": later},
            {"id": 1, "status": "held", "version": 1, "expires_at": sooner},
            {"id": 2, "status": "held", "version": 2, "expires_at": sooner},
            {"id": 4, "status": "held", "version": 2}]   # being paid for: no expiry
    assert seat_plans.compact_board(held)["expiring"] == [
        {"expires_at": sooner, "ids": [[1, 2]]}, {"expires_at": later, "ids": [[3, 1]]}]


def _hold(app, user_id, event_id, seat_ids):
    settings = app.extensions["boxoffice"].settings
    with app.app_context():
        holds.process_requests(db.session, [{"kind": "hold", "user_id": user_id,
                                             "request_id": "r1", "event_id": event_id,
                                             "seat_ids": seat_ids}], settings)
        db.session.commit()


def test_board_and_compact_join_agree_with_the_seats(app, client, make_users):
    event_id = make_event(app, sections=(("Stalls", 2, 5, 2500),))
    with app.app_context():
        ids = db.session.scalars(sa.select(Seat.id).where(Seat.event_id == event_id)
                                 .order_by(Seat.id)).all()
    [(uid, token)] = make_users(1)
    _hold(app, uid, event_id, ids[2:4])
    board = client.get(f"/api/v1/events/{event_id}/board")
    assert board.status_code == 200 and board.headers["Cache-Control"] == "no-store"
    got = board.get_json()["board"]
    [expiring] = got.pop("expiring")
    assert expiring["ids"] == [[ids[2], 2]]
    expected = {"ids": [[ids[0], 10]], "status": "aahhaaaaaa",
                "versions": [0, 0, 1, 1, 0, 0, 0, 0, 0, 0]}
    assert got == expected
    expected["expiring"] = [expiring]
    sock = socketio.test_client(app, auth={"token": token})
    compact = sock.emit("join_event", {"event_id": event_id, "compact": True}, callback=True)
    holds = compact.pop("holds")
    assert [h["seat_ids"] for h in holds] == [ids[2:4]]
    assert compact == {"ok": True, "event_id": event_id, "board": expected}
    # Old clients, and compact: false, still get one object per seat.
    for payload in ({"event_id": event_id}, {"event_id": event_id, "compact": False}):
        old = sock.emit("join_event", payload, callback=True)
        assert old["ok"] and "board" not in old
        assert [(s["id"], s["status"]) for s in old["seats"]][:4] == [
            (ids[0], "available"), (ids[1], "available"), (ids[2], "held"), (ids[3], "held")]
    bad = sock.emit("join_event", {"event_id": event_id, "compact": "very"}, callback=True)
    assert bad["ok"] is False and "compact" in bad["error"]["details"]["fields"]
    sock.disconnect()
