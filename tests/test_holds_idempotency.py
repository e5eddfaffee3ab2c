"""A request is performed once, however often it is sent or its task delivered."""
import json

import sqlalchemy as sa

from booking import catalog, holds
from booking.extensions import db
from booking.models import Hold, RequestRecord, Seat
from tests.harness import wait_until


def _event(app, seats=4):
    with app.app_context():
        from datetime import datetime
        event = catalog.create_event(db.session, name="E", venue="V",
                                     starts_at=datetime(2030, 1, 1),
                                     sections=[("Main", 1, seats, 1000)])
        db.session.commit()
        ids = db.session.scalars(sa.select(Seat.id).where(Seat.event_id == event.id)
                                 .order_by(Seat.id)).all()
        return event.id, ids


def test_task_delivered_twice_holds_once(app, make_users):
    """The same batch run twice (a redelivery) makes one hold and answers the same."""
    from workers.tasks import process_requests
    (uid, _tok), = make_users(1)
    event_id, seats = _event(app)
    items = [{"kind": "hold", "user_id": uid, "request_id": "r-1", "event_id": event_id,
              "seat_ids": seats[:2]}]
    with app.app_context():
        first = holds.process_requests(db.session, items, app.extensions["boxoffice"].settings)
        db.session.commit()
        process_requests.apply(args=[items], throw=True)
        again = holds.process_requests(db.session, items, app.extensions["boxoffice"].settings)
        db.session.commit()
        assert again.results == first.results
        assert not again.seats, "a repeat changes no seat"
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Hold)) == 1
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RequestRecord)) == 1
        versions = db.session.scalars(sa.select(Seat.version).where(Seat.id.in_(seats[:2]))).all()
        assert versions == [1, 1]


def test_duplicate_in_one_batch_is_performed_once(app, make_users):
    """Two copies of a request in the same batch: one hold, one answer each."""
    (uid, _tok), = make_users(1)
    event_id, seats = _event(app)
    item = {"kind": "hold", "user_id": uid, "request_id": "dup", "event_id": event_id,
            "seat_ids": [seats[0]]}
    with app.app_context():
        out = holds.process_requests(db.session, [item, dict(item)],
                                     app.extensions["boxoffice"].settings)
        db.session.commit()
        assert len(out.results) == 1 and out.results[0][3]["ok"]
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Hold)) == 1


def test_same_request_id_over_socket(app, make_users):
    """Re-sent while answered: queued false and the recorded result again; one hold."""
    from booking.extensions import socketio
    (uid, tok), = make_users(1)
    event_id, seats = _event(app)
    client = socketio.test_client(app, auth={"token": tok})
    assert client.is_connected()
    payload = {"request_id": "same-1", "event_id": event_id, "seat_ids": seats[:2]}
    first_ack = client.emit("hold", payload, callback=True)
    assert first_ack == {"ok": True, "request_id": "same-1", "queued": True}

    received = []

    def results():
        received.extend(m for m in client.get_received() if m["name"] == "hold_result")
        return received
    wait_until(lambda: results(), 30, "hold_result")
    second_ack = client.emit("hold", payload, callback=True)
    assert second_ack == {"ok": True, "request_id": "same-1", "queued": False}
    wait_until(lambda: len(results()) == 2, 30, "the recorded result sent again")
    assert received[0]["args"][0] == received[1]["args"][0]
    assert received[0]["args"][0]["ok"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Hold)) == 1
        rec = db.session.scalar(sa.select(RequestRecord))
        assert json.loads(rec.result) == received[0]["args"][0]

    # Another user's request with the same request_id is a different request.
    (uid2, tok2), = make_users(1)
    other = socketio.test_client(app, auth={"token": tok2})
    ack = other.emit("hold", dict(payload, seat_ids=[seats[3]]), callback=True)
    assert ack["queued"] is True
    client.disconnect()
    other.disconnect()
