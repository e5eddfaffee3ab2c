"""Every payload the product sends about a request or a seat, built in one place.

REST errors are `{"error": {code, message, details}}`; socket acks and results
are `{request_id, ok, ...}` or `{request_id, ok: false, error}` (reply());
seats_changed and join_event's snapshot have their own schemas. Each is
dumped by a marshmallow schema (booking.schemas), as inputs are loaded by one.
"""
from .schemas import (ErrorSchema, HoldResultSchema, PaymentResultSchema, ReleaseResultSchema,
                      ReplySchema, SeatsChangedSchema, SnapshotSchema)

_error = ErrorSchema()
_ack = ReplySchema()
_results = {"hold_result": HoldResultSchema(), "release_result": ReleaseResultSchema(),
            "payment_result": PaymentResultSchema()}
_seats_changed = SeatsChangedSchema()
_snapshot = SnapshotSchema()


def error_object(err):
    """The contract's error object for a BookingError: {code, message, details}."""
    return _error.dump(err.to_dict())


def error_body(err):
    """A REST error body for a BookingError."""
    return {"error": error_object(err)}


def reply(request_id, error=None, event=None, **fields):
    """A socket ack (event None) or result event's payload: ok with fields, or error's object."""
    schema = _results[event] if event else _ack
    if error is not None:
        return schema.dump({"request_id": request_id, "ok": False, "error": error_object(error)})
    return schema.dump({"request_id": request_id, "ok": True, **fields})


def seats_changed(event_id, seats, committed_at, sent_at=None):
    """A seats_changed body ([{id, status, version}] in seat order); sent_at when it is sent."""
    body = {"event_id": event_id, "seats": seats, "committed_at": committed_at}
    if sent_at is not None:
        body["sent_at"] = sent_at
    return _seats_changed.dump(body)


def snapshot(event_id, seats, waiting_room=None, compact=False, holds=None):
    """join_event's ack: seats as the seat board holds them (already dumped), or with
    compact the same as a board (status letters, versions and expiries in seat id
    order); holds: the signed-in buyer's open holds on the event (a signed-out
    visitor's ack has none)."""
    from .seat_plans import compact_board
    body = {"ok": True, "event_id": event_id}
    if compact:
        body["board"] = compact_board(seats)
    else:
        body["seats"] = seats
    if waiting_room is not None:
        body["waiting_room"] = waiting_room
    if holds is not None:
        body["holds"] = holds
    return _snapshot.dump(body)
