"""The buyer's view (issue 18): what a buyer's socket is told about seats and holds.

- every socket of a buyer learns the buyer's open holds on the event when it joins,
  so a tab opened after the hold (or after the asking tab closed) can pay or release;
- a seat whose hold has run out reads available at once (snapshots, the compact
  board, REST), before the sweep writes it; seat states carry the hold's expiry so
  that clients free the seat when it passes; a seat being paid for stops expiring;
- a signed-out visitor's socket watches read-only: it joins and leaves events and is
  told `unauthorized` for everything else; a waiting room still needs an account.

These run the app in one process (the embedded mode on MariaDB); the read-only
watchers across two web processes behind Redis, and their per-IP cap, are in
tests/test_anonymous_watchers.py.
"""
from datetime import timedelta

import pytest
import sqlalchemy as sa

from booking import checkout, holds, waiting_room
from booking.extensions import db, socketio
from booking.models import Event, Seat, iso_utc, utcnow
from booking.payments import Charge
from tests.contract import row_counts
from tests.test_holds_idempotency import _event

TTL = 300  # the product's HOLD_TTL_SECONDS


def _hold(app, uid, event_id, seat_ids, rid, now=None):
    """A hold decided by the worker's own service (at `now`); returns its hold_result."""
    with app.app_context():
        out = holds.process_requests(db.session, [{
            "kind": "hold", "user_id": uid, "request_id": rid, "event_id": event_id,
            "seat_ids": seat_ids}], app.extensions["boxoffice"].settings, now=now)
        db.session.commit()
    result = out.results[0][3]
    assert result["ok"], result
    return result, out


def _release(app, uid, hold_id, rid):
    with app.app_context():
        out = holds.process_requests(db.session, [{
            "kind": "release", "user_id": uid, "request_id": rid, "hold_id": hold_id}],
            app.extensions["boxoffice"].settings)
        db.session.commit()
    assert out.results[0][3]["ok"]


def _begin_payment(app, uid, hold_id, now=None):
    """Phase 1 of a payment (the hold turns `paying`); returns the PaymentStart."""
    with app.app_context():
        start = checkout.begin_payment(db.session, {
            "user_id": uid, "request_id": f"pay-{hold_id}", "hold_id": hold_id,
            "idempotency_key": f"key-{hold_id}", "card_token": "tok", "brand": "visa",
            "last4": "4242"}, "simulated", now=now)
        db.session.commit()
    assert start.payment_id is not None
    return start


def _join(client, event_id, compact=False):
    ack = client.emit("join_event", {"event_id": event_id, "compact": compact}, callback=True)
    assert ack["ok"], ack
    return ack


def _by_id(seats):
    return {s["id"]: s for s in seats}


def expiry_iso(moment):
    from booking.outcome import expiry_iso as write   # new with these tests
    return write(moment)


@pytest.mark.app_config(MAX_OPEN_HOLDS=5)
def test_every_socket_of_a_buyer_learns_their_open_holds_on_join(app, make_users):
    """A tab opened after the hold hears of it in the join answer, seats and all."""
    event_id, seats = _event(app, seats=6)
    other_event, other_seats = _event(app, seats=2)
    (ann, ann_tok), (bob, bob_tok) = make_users(2)
    first, _ = _hold(app, ann, event_id, seats[:2], "a1")
    _hold(app, ann, other_event, other_seats[:1], "a2")        # another event's: not listed
    bobs, _ = _hold(app, bob, event_id, [seats[4]], "b1")

    new_tab = socketio.test_client(app, auth={"token": ann_tok})
    expected = [{"hold_id": first["hold_id"], "event_id": event_id, "seat_ids": seats[:2],
                 "status": "held", "expires_at": first["expires_at"], "amount_cents": 2000,
                 "currency": "EUR"}]
    assert _join(new_tab, event_id)["holds"] == expected
    # The compact snapshot (what the page asks for) carries them too.
    assert _join(new_tab, event_id, compact=True)["holds"] == expected
    # Only the buyer's own: another buyer's socket hears of theirs alone.
    bob_tab = socketio.test_client(app, auth={"token": bob_tok})
    assert [h["hold_id"] for h in _join(bob_tab, event_id)["holds"]] == [bobs["hold_id"]]

    # A hold being paid for is still the buyer's (status paying); a released one is gone.
    _begin_payment(app, ann, first["hold_id"])
    assert [(h["hold_id"], h["status"]) for h in _join(new_tab, event_id)["holds"]] == [
        (first["hold_id"], "paying")]
    second, _ = _hold(app, ann, event_id, [seats[3]], "a3")
    _release(app, ann, second["hold_id"], "a4")
    assert [h["hold_id"] for h in _join(new_tab, event_id)["holds"]] == [first["hold_id"]]
    new_tab.disconnect()
    bob_tab.disconnect()


def test_a_lapsed_hold_reads_available_at_once_and_can_be_taken(app, client, make_users):
    """The sweep has not run: the database still says held, every snapshot says available,
    and the worker grants the seat to the next buyer."""
    event_id, seats = _event(app, seats=4)
    (ann, _t), (bob, _t2), (cat, cat_tok) = make_users(3)
    lapsed, _ = _hold(app, ann, event_id, seats[:2], "a1",
                      now=utcnow() - timedelta(seconds=TTL + 1))
    _live, out = _hold(app, bob, event_id, [seats[2]], "b1")
    with app.app_context():
        assert db.session.scalars(sa.select(Seat.status).where(Seat.id.in_(seats[:2]))
                                  ).all() == ["held", "held"]
        expires = db.session.scalar(sa.select(Seat.hold_expires_at).where(Seat.id == seats[2]))

    watcher = socketio.test_client(app, auth={"token": cat_tok})
    snapshot = _by_id(_join(watcher, event_id)["seats"])
    # Same version: whatever the database does to the seat next is newer.
    assert snapshot[seats[0]] == {"id": seats[0], "status": "available", "version": 1}
    assert snapshot[seats[1]] == {"id": seats[1], "status": "available", "version": 1}
    live_expiry = expiry_iso(expires)
    assert snapshot[seats[2]] == {"id": seats[2], "status": "held", "version": 1,
                                  "expires_at": live_expiry}
    # seats_changed carries a held seat's expiry (the client frees it when it passes).
    assert out.seat_changes() == {event_id: [
        {"id": seats[2], "status": "held", "version": 1, "expires_at": live_expiry}]}
    board = _join(watcher, event_id, compact=True)["board"]
    assert board["status"] == "aaha"
    assert board["expiring"] == [{"expires_at": live_expiry, "ids": [[seats[2], 1]]}]
    # The REST reads say the same.
    assert client.get(f"/api/v1/events/{event_id}/board").get_json()["board"] == board
    rest = _by_id(client.get(f"/api/v1/events/{event_id}/seats").get_json()["seats"])
    assert [rest[s]["status"] for s in seats] == ["available", "available", "held", "available"]
    assert rest[seats[2]]["expires_at"] == live_expiry and "expires_at" not in rest[seats[0]]

    # The worker, the judge, lets a new hold take a lapsed seat the sweep has not freed.
    _taken, out = _hold(app, cat, event_id, [seats[0]], "c1")
    assert out.seat_changes()[event_id][0]["version"] == 2
    assert any(n[1] == "hold_closed" and n[2]["hold_id"] == lapsed["hold_id"]
               for n in out.notices)
    watcher.disconnect()


def test_expiry_is_written_to_the_millisecond_rounded_up():
    """Seat expiries compare as strings: one width, never earlier than the real one."""
    from datetime import datetime
    assert expiry_iso(datetime(2030, 1, 1, 12, 0, 0)) == "2030-01-01T12:00:00.000Z"
    assert expiry_iso(datetime(2030, 1, 1, 12, 0, 0, 1)) == "2030-01-01T12:00:00.001Z"
    assert expiry_iso(datetime(2030, 1, 1, 12, 0, 59, 999001)) == "2030-01-01T12:01:00.000Z"
    assert expiry_iso(None) is None


def test_a_seat_being_paid_for_stops_expiring_and_watchers_are_told(app, make_users):
    """A payment that starts before the hold runs out keeps the seats held past its expiry
    (a new version without expires_at); a decline gives the expiry back."""
    event_id, seats = _event(app, seats=3)
    (ann, _t), (cat, cat_tok) = make_users(2)
    began = utcnow() - timedelta(seconds=TTL + 5)   # the hold ran out 5 s ago ...
    hold, _ = _hold(app, ann, event_id, [seats[0]], "a1", now=began)
    start = _begin_payment(app, ann, hold["hold_id"], now=began + timedelta(seconds=10))
    # ... but its payment began in time: the seat is held, with no expiry, at version 2.
    assert start.outcome.seat_changes() == {event_id: [
        {"id": seats[0], "status": "held", "version": 2}]}
    watcher = socketio.test_client(app, auth={"token": cat_tok})
    assert _by_id(_join(watcher, event_id)["seats"])[seats[0]] == {
        "id": seats[0], "status": "held", "version": 2}
    assert _join(watcher, event_id, compact=True)["board"]["expiring"] == []

    # The card is declined: the hold is the buyer's again until its own expiry.
    with app.app_context():
        out = checkout.finish_payment(db.session, start.payment_id,
                                      Charge(status="declined", decline_reason="card_declined"))
        db.session.commit()
        expires_at = db.session.scalar(sa.select(Seat.hold_expires_at)
                                       .where(Seat.id == seats[0]))
    assert out.seat_changes() == {event_id: [
        {"id": seats[0], "status": "held", "version": 3, "expires_at": expiry_iso(expires_at)}]}
    assert iso_utc(expires_at) == hold["expires_at"]
    watcher.disconnect()


def test_a_signed_out_socket_watches_and_may_do_nothing_else(app, make_users):
    """No credentials at all: a read-only socket. It joins, hears seat changes, leaves; every
    other event is refused `unauthorized` and changes nothing."""
    event_id, seats = _event(app, seats=4)
    (ann, ann_tok), = make_users(1)
    ann_hold, _ = _hold(app, ann, event_id, [seats[3]], "a0")
    guest = socketio.test_client(app)
    assert guest.is_connected()
    ack = _join(guest, event_id)
    assert "holds" not in ack
    assert _by_id(ack["seats"])[seats[3]]["status"] == "held"

    # A change reaches the watcher like any other socket of the event.
    rt = app.extensions["boxoffice"]
    _, out = _hold(app, ann, event_id, [seats[0]], "a1")
    rt.broadcaster.seats(out.seat_changes())
    rt.coalescer.flush()
    changed = [m["args"][0] for m in guest.get_received() if m["name"] == "seats_changed"]
    assert [s["id"] for m in changed for s in m["seats"]] == [seats[0]]
    assert changed[0]["seats"][0]["status"] == "held"

    before = row_counts(app)
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123",
            "name": "Guest"}
    refused = {
        "hold": {"request_id": "g1", "event_id": event_id, "seat_ids": [seats[1]]},
        "release": {"request_id": "g2", "hold_id": ann_hold["hold_id"]},
        "pay": {"request_id": "g3", "hold_id": ann_hold["hold_id"], "idempotency_key": "k",
                "card": card},
        "confirm_payment": {"request_id": "g4", "hold_id": ann_hold["hold_id"],
                            "idempotency_key": "k"},
        "join_dashboard": {"event_id": event_id},
        "leave_dashboard": {"event_id": event_id},
    }
    for event, payload in refused.items():
        answer = guest.emit(event, payload, callback=True)
        assert answer["ok"] is False and answer["error"]["code"] == "unauthorized", (event, answer)
    assert row_counts(app) == before
    assert guest.emit("leave_event", {"event_id": event_id}, callback=True) == {
        "ok": True, "request_id": None, "event_id": event_id}
    guest.disconnect()


def test_a_waiting_room_needs_an_account(app, make_users):
    """A signed-out visitor of a gated sale gets no place and no seat map: it sees what a
    waiting buyer sees (nothing) and its join adds nobody to the queue."""
    event_id, _seats = _event(app, seats=2)
    with app.app_context():
        db.session.execute(sa.update(Event).where(Event.id == event_id)
                           .values(waiting_room="open", on_sale_at=utcnow() + timedelta(hours=1)))
        db.session.commit()
    guest = socketio.test_client(app)
    for compact in (False, True):
        ack = guest.emit("join_event", {"event_id": event_id, "compact": compact}, callback=True)
        assert ack["ok"] is False, ack
        assert ack["error"]["code"] == "unauthorized"
        assert ack["error"]["details"] == {"reason": "waiting_room"}
    rt = app.extensions["boxoffice"]
    with app.app_context():
        status = waiting_room.room_status(db.session, rt.waiting_room, event_id)
    assert status["pre_queue"] == 0 and status.get("queued", 0) == 0, status
    # A buyer still takes a place.
    (ann, ann_tok), = make_users(1)
    buyer = socketio.test_client(app, auth={"token": ann_tok})
    ack = _join(buyer, event_id)
    assert ack["waiting_room"]["state"] == "pre_queue" and ack["seats"] == []
    guest.disconnect()
    buyer.disconnect()


@pytest.mark.parametrize("auth", [{"token": ""}, {"token": "forged.token.value"},
                                  {"token": 12}, {"token": "x" * 5000}])
def test_credentials_that_do_not_hold_are_refused_not_made_read_only(app, auth):
    """A bad token is refused (the client must learn its session is gone)."""
    assert not socketio.test_client(app, auth=auth).is_connected()


def test_a_signed_out_cookie_is_refused_and_the_event_page_drops_it(app, client):
    """The cookie of a session that was signed out elsewhere opens no socket; the event page
    forgets it, so that the page's socket then watches read-only."""
    from tests.contract import STRONG_PASSWORD
    from booking.models import User
    body = client.post("/api/v1/users", json={"email": "gone@example.test",
                                               "password": STRONG_PASSWORD}).get_json()
    assert socketio.test_client(app, flask_test_client=client).is_connected()
    with app.app_context():   # signed out on another device: the version moves on
        db.session.execute(sa.update(User).where(User.id == body["id"])
                           .values(session_version=User.session_version + 1))
        db.session.commit()
    assert not socketio.test_client(app, flask_test_client=client).is_connected()
    event_id, _ = _event(app, seats=1)
    assert client.get(f"/events/{event_id}").status_code == 200
    watcher = socketio.test_client(app, flask_test_client=client)
    assert watcher.is_connected()
    assert "holds" not in _join(watcher, event_id)
    watcher.disconnect()
