"""Bad input over Socket.IO: every malformed or hostile payload gets its error code in
the ack, and nothing changes (no hold, no record, no seat version moves)."""
import sqlalchemy as sa
import pytest

from booking.extensions import db, socketio
from booking.models import Hold, RequestRecord, Seat
from tests.harness import inside_one_minute
from tests.test_holds_idempotency import _event

BIG = list(range(1, 10_001))


def _cases(event_id, other_event_id, seats, other_seats, foreign_hold, own_hold):
    rid = "req-1"
    ok_hold = {"request_id": rid, "event_id": event_id, "seat_ids": [seats[0]]}
    return [
        # event, payload, expected code, fields that must be named
        ("join_event", None, "invalid_request", []),
        ("join_event", [], "invalid_request", []),
        ("join_event", "1", "invalid_request", []),
        ("join_event", {}, "invalid_request", ["event_id"]),
        ("join_event", {"event_id": "1"}, "invalid_request", ["event_id"]),
        ("join_event", {"event_id": -1}, "invalid_request", ["event_id"]),
        ("join_event", {"event_id": 1.5}, "invalid_request", ["event_id"]),
        ("join_event", {"event_id": True}, "invalid_request", ["event_id"]),
        ("join_event", {"event_id": 2**40}, "invalid_request", ["event_id"]),
        ("join_event", {"event_id": 999999}, "not_found", []),
        ("leave_event", {"event_id": "x"}, "invalid_request", ["event_id"]),
        ("hold", None, "invalid_request", []),
        ("hold", 42, "invalid_request", []),
        ("hold", {}, "invalid_request", ["request_id", "event_id", "seat_ids"]),
        ("hold", dict(ok_hold, request_id=""), "invalid_request", ["request_id"]),
        ("hold", dict(ok_hold, request_id="x" * 65), "invalid_request", ["request_id"]),
        ("hold", dict(ok_hold, request_id="bad id!"), "invalid_request", ["request_id"]),
        ("hold", dict(ok_hold, request_id=123), "invalid_request", ["request_id"]),
        ("hold", dict(ok_hold, event_id=str(event_id)), "invalid_request", ["event_id"]),
        ("hold", dict(ok_hold, event_id=None), "invalid_request", ["event_id"]),
        ("hold", dict(ok_hold, seat_ids=[]), "invalid_request", ["seat_ids"]),
        ("hold", dict(ok_hold, seat_ids=str(seats[0])), "invalid_request", ["seat_ids"]),
        ("hold", dict(ok_hold, seat_ids=[str(seats[0])]), "invalid_request", ["seat_ids"]),
        ("hold", dict(ok_hold, seat_ids=[-5]), "invalid_request", ["seat_ids"]),
        ("hold", dict(ok_hold, seat_ids=[seats[0], seats[0]]), "invalid_request", ["seat_ids"]),
        ("hold", dict(ok_hold, seat_ids=[{"id": 1}]), "invalid_request", ["seat_ids"]),
        ("hold", dict(ok_hold, seat_ids=BIG), "invalid_request", ["seat_ids"]),
        ("hold", dict(ok_hold, event_id=999999), "not_found", []),
        ("hold", dict(ok_hold, seat_ids=[999999]), "not_found", []),
        ("hold", dict(ok_hold, seat_ids=[other_seats[0]]), "not_found", []),
        ("hold", dict(ok_hold, seat_ids=seats[:9]), "limit_exceeded", []),
        ("release", {}, "invalid_request", ["request_id", "hold_id"]),
        ("release", {"request_id": rid, "hold_id": "1"}, "invalid_request", ["hold_id"]),
        ("release", {"request_id": rid, "hold_id": 0}, "invalid_request", ["hold_id"]),
        ("release", {"request_id": rid, "hold_id": 999999}, "not_found", []),
        ("release", {"request_id": rid, "hold_id": foreign_hold}, "hold_not_owned", []),
    ]


def _snapshot(app):
    with app.app_context():
        return (db.session.scalar(sa.select(sa.func.count()).select_from(Hold)),
                db.session.scalar(sa.select(sa.func.count()).select_from(RequestRecord)),
                db.session.execute(sa.select(Seat.id, Seat.status, Seat.version)
                                   .order_by(Seat.id)).all())


@pytest.mark.app_config(USER_RATE_LIMIT="1000/second")
def test_every_bad_payload_is_refused_and_changes_nothing(app, make_users):
    """Table-driven: each malformed or hostile payload, its code, and no change."""
    from booking import holds
    event_id, seats = _event(app, seats=10)
    other_event_id, other_seats = _event(app, seats=2)
    (me, tok), (them, _t) = make_users(2)
    settings = app.extensions["boxoffice"].settings
    with app.app_context():
        out = holds.process_requests(db.session, [
            {"kind": "hold", "user_id": them, "request_id": "theirs", "event_id": event_id,
             "seat_ids": [seats[9]]}], settings)
        db.session.commit()
        foreign_hold = out.results[0][3]["hold_id"]
    before = _snapshot(app)
    client = socketio.test_client(app, auth={"token": tok})
    failures = []
    for event, payload, code, fields in _cases(event_id, other_event_id, seats, other_seats,
                                               foreign_hold, None):
        ack = client.emit(event, payload, callback=True)
        if not isinstance(ack, dict) or ack.get("ok") is not False:
            failures.append((event, payload, ack))
            continue
        err = ack["error"]
        if err["code"] != code or not err["message"] or not isinstance(err["details"], dict):
            failures.append((event, str(payload)[:80], err))
        if code == "invalid_request" and fields:
            named = set(err["details"].get("fields", {}))
            if not set(fields) <= named:
                failures.append((event, str(payload)[:80], "fields", named))
    client.disconnect()
    assert not failures, failures
    assert _snapshot(app) == before


def test_open_holds_limit_refused_in_ack(app, make_users):
    """A buyer with MAX_OPEN_HOLDS open holds is refused another in the ack.

    The holds are granted by the worker's task (in this process), which records them
    in the request ledger after commit: what the edge counts (no database read)."""
    from workers.tasks import process_requests
    event_id, seats = _event(app, seats=4)
    (me, tok), = make_users(1)
    settings = app.extensions["boxoffice"].settings
    with app.app_context():
        process_requests.apply(args=[[
            {"kind": "hold", "user_id": me, "request_id": f"r{i}", "event_id": event_id,
             "seat_ids": [seats[i]]} for i in range(settings.max_open_holds)]], throw=True)
    before = _snapshot(app)
    client = socketio.test_client(app, auth={"token": tok})
    ack = client.emit("hold", {"request_id": "more", "event_id": event_id,
                               "seat_ids": [seats[3]]}, callback=True)
    assert ack["ok"] is False and ack["error"]["code"] == "limit_exceeded"
    assert ack["error"]["details"]["limit"] == "open_holds"
    assert _snapshot(app) == before
    client.disconnect()


@pytest.mark.parametrize("auth", [{"token": "forged.token.value"}, {"token": 12},
                                  {"token": "x" * 5000}])
def test_unauthenticated_socket_is_refused(app, auth):
    """A token that is not valid: the connect is refused, nothing is served. (No
    credentials at all is a signed-out visitor's read-only socket: test_buyer_view.py.)"""
    client = socketio.test_client(app, auth=auth)
    assert not client.is_connected()


@pytest.mark.app_config(USER_RATE_LIMIT="5/minute")
def test_rate_limit_refuses_a_flood(app, make_users):
    """A client that floods gets rate_limited in the ack; another user is unaffected."""
    (me, tok), (other, tok2) = make_users(2)
    flooder = socketio.test_client(app, auth={"token": tok})
    inside_one_minute()
    codes = [flooder.emit("release", {"request_id": f"f{i}", "hold_id": 999999},
                          callback=True)["error"]["code"] for i in range(10)]
    assert codes[:5] == ["not_found"] * 5
    assert set(codes[5:]) == {"rate_limited"}
    calm = socketio.test_client(app, auth={"token": tok2})
    ack = calm.emit("release", {"request_id": "c1", "hold_id": 999999}, callback=True)
    assert ack["error"]["code"] == "not_found"
    flooder.disconnect()
    calm.disconnect()


def test_the_edge_answers_as_the_worker_decides(app, make_users):
    """One rule, one answer: a hold's state refuses a pay or release in the ack with the
    very code and message the worker gives when the same request reaches it."""
    from booking import checkout, holds
    from booking.models import utcnow
    event_id, seats = _event(app, seats=4)
    (me, tok), = make_users(1)
    settings = app.extensions["boxoffice"].settings
    with app.app_context():
        out = holds.process_requests(db.session, [
            {"kind": "hold", "user_id": me, "request_id": f"h{i}", "event_id": event_id,
             "seat_ids": [seats[i]]} for i in range(2)], settings)
        db.session.commit()
        released, paying = (r[3]["hold_id"] for r in out.results)
        holds.process_requests(db.session, [{"kind": "release", "user_id": me,
                                             "request_id": "rel", "hold_id": released}],
                               settings)
        db.session.get(Hold, paying).status = "paying"
        db.session.commit()
        # What the worker answers (its decision, under locks).
        worker_pay = checkout.begin_payment(db.session, {
            "user_id": me, "request_id": "w-pay", "hold_id": released,
            "idempotency_key": "k-w", "brand": "visa", "last4": "4242"}, "simulated",
            now=utcnow()).outcome.results[0][3]["error"]
        worker_release = holds.process_requests(db.session, [{
            "kind": "release", "user_id": me, "request_id": "w-rel", "hold_id": paying}],
            settings).results[0][3]["error"]
        db.session.rollback()
    before = _snapshot(app)
    client = socketio.test_client(app, auth={"token": tok})
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"}
    pay_ack = client.emit("pay", {"request_id": "e-pay", "hold_id": released,
                                  "idempotency_key": "k-e", "card": card}, callback=True)
    release_ack = client.emit("release", {"request_id": "e-rel", "hold_id": paying},
                              callback=True)
    client.disconnect()
    assert pay_ack["ok"] is False and release_ack["ok"] is False
    assert worker_pay["code"] == "conflict" and worker_release["code"] == "conflict"
    assert pay_ack["error"] == worker_pay
    assert release_ack["error"] == worker_release
    assert _snapshot(app) == before


def test_an_event_racing_its_sockets_disconnect_is_answered_busy(app, make_users):
    """A draining process closes its sockets with events in flight: an event whose
    socket's disconnect already ran (no buyer or visitor known for it) is answered
    busy, nothing done, so that the client sends it again once reconnected; not
    `unauthorized`, which would end an accepted request as never performed."""
    from booking import sockets
    event_id, seats = _event(app, seats=2)
    make_users(1)
    before = _snapshot(app)
    with app.app_context():
        ack = sockets._request("hold", {"request_id": "gone-1", "event_id": event_id,
                                        "seat_ids": [seats[0]]},
                               sockets._hold_request, "sid-already-disconnected")
    assert ack["ok"] is False and ack["error"]["code"] == "busy", ack
    assert ack["error"]["details"]["retry_after_s"] >= 1
    assert _snapshot(app) == before
