"""Best-available hold requests decided by the worker, in the transaction that holds them."""
import sqlalchemy as sa

from booking import holds
from booking.extensions import db, socketio
from booking.models import Seat
from tests.contract import make_event


def _seats(app, event_id):
    with app.app_context():
        return {(s.row, s.number): s.id for s in db.session.scalars(
            sa.select(Seat).where(Seat.event_id == event_id))}


def _run(app, items):
    settings = app.extensions["boxoffice"].settings
    with app.app_context():
        out = holds.process_requests(db.session, items, settings)
        db.session.commit()
        return {rid: payload for _, rid, _, payload in out.results}


def _best(uid, rid, event_id, count, **more):
    return {"kind": "hold", "user_id": uid, "request_id": rid, "event_id": event_id,
            "seat_ids": [], "best": {"count": count, **more}}


def test_best_seats_are_together_in_front_and_never_twice(app, make_users):
    event_id = make_event(app, sections=(("Stalls", 3, 10, 2500),))
    seats = _seats(app, event_id)
    users = make_users(3)
    answers = _run(app, [_best(users[0][0], "a", event_id, 4), _best(users[1][0], "b", event_id, 4),
                         _best(users[2][0], "c", event_id, 3)])
    groups = [answers[r]["seat_ids"] for r in "abc"]
    assert all(answers[r]["ok"] for r in "abc")
    every = [s for g in groups for s in g]
    assert len(every) == len(set(every)) == 11
    by_id = {v: k for k, v in seats.items()}
    for group in groups:
        rows = {by_id[s][0] for s in group}
        numbers = sorted(by_id[s][1] for s in group)
        assert len(rows) == 1 and numbers == list(range(numbers[0], numbers[0] + len(group)))
    # The first buyer gets the middle of the front row.
    assert sorted(by_id[s] for s in groups[0]) == [("A", 4), ("A", 5), ("A", 6), ("A", 7)]
    assert answers["a"]["amount_cents"] == 4 * 2500
    with app.app_context():
        held = db.session.scalar(sa.select(sa.func.count()).select_from(Seat)
                                 .where(Seat.event_id == event_id, Seat.status == "held"))
    assert held == 11


def test_best_in_a_section_under_a_price_and_refusals(app, make_users):
    event_id = make_event(app, sections=(("Stalls", 1, 4, 5000), ("Circle", 1, 4, 2000)))
    [(uid, _)] = make_users(1)
    answers = _run(app, [_best(uid, "cheap", event_id, 2, max_price_cents=2500)])
    assert answers["cheap"]["ok"]
    seats = _seats(app, event_id)
    with app.app_context():
        chosen = db.session.scalars(sa.select(Seat.section).where(
            Seat.id.in_(answers["cheap"]["seat_ids"]))).all()
    assert set(chosen) == {"Circle"}
    [(other, _)] = make_users(1)
    answers = _run(app, [_best(other, "too-many", event_id, 3, section="Circle"),
                         _best(other, "none", event_id, 1, section="Balcony")])
    for rid in ("too-many", "none"):
        assert answers[rid]["ok"] is False
        assert answers[rid]["error"]["code"] == "seat_unavailable"
    assert "not 3 seats left" in answers["too-many"]["error"]["message"]
    del seats


def test_best_overtaken_proposal_is_chosen_again_under_the_lock(app, make_users, monkeypatch):
    """Seats proposed from the unlocked read but gone by the time they are locked (here: taken
    out of sale in between) are never granted: the request is chosen again from the locks."""
    from booking import best_seats
    event_id = make_event(app, sections=(("Stalls", 1, 10, 2500),))
    seats = _seats(app, event_id)
    [(uid, _)] = make_users(1)
    real = best_seats.propose
    proposed = []

    def overtaken(session, items, avoid, now):
        focals = real(session, items, avoid, now)
        proposed.extend(items[0]["seat_ids"])
        session.execute(sa.update(Seat).where(Seat.id.in_(proposed)).values(blocked="kill"))
        return focals
    monkeypatch.setattr(best_seats, "propose", overtaken)
    answers = _run(app, [_best(uid, "a", event_id, 2)])
    assert answers["a"]["ok"], answers
    got = answers["a"]["seat_ids"]
    assert len(got) == 2 and not set(got) & set(proposed)
    by_id = {v: k for k, v in seats.items()}
    numbers = sorted(by_id[s][1] for s in got)
    assert numbers[1] == numbers[0] + 1


def test_best_request_over_the_socket(app, make_users):
    event_id = make_event(app, sections=(("Stalls", 2, 6, 2500),))
    [(uid, token)] = make_users(1)
    client = socketio.test_client(app, auth={"token": token})
    ack = client.emit("hold", {"request_id": "best-1", "event_id": event_id,
                               "best": {"count": 3}}, callback=True)
    assert ack["ok"], ack
    import time
    received, deadline = [], time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        received = [e for e in client.get_received() if e["name"] == "hold_result"]
        time.sleep(0.05)
    result = received[0]["args"][0]
    assert result["ok"] and len(result["seat_ids"]) == 3
    for payload, field in [
        ({"request_id": "x1", "event_id": event_id}, "seat_ids"),
        ({"request_id": "x2", "event_id": event_id, "seat_ids": [1], "best": {"count": 1}},
         "seat_ids"),
        ({"request_id": "x3", "event_id": event_id, "best": {"count": 0}}, "best"),
        ({"request_id": "x4", "event_id": event_id, "best": {"count": 2, "section": ""}}, "best"),
        ({"request_id": "x5", "event_id": event_id, "best": {"count": "2"}}, "best"),
    ]:
        bad = client.emit("hold", payload, callback=True)
        assert bad["ok"] is False and bad["error"]["code"] == "invalid_request", (payload, bad)
        assert any(f.startswith(field) for f in bad["error"]["details"]["fields"]), bad
    too_many = client.emit("hold", {"request_id": "x6", "event_id": event_id,
                                    "best": {"count": 50}}, callback=True)
    assert too_many["ok"] is False and too_many["error"]["code"] == "limit_exceeded"
    client.disconnect()
