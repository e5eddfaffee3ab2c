"""The durable record of answered client requests (what makes every task idempotent)."""
import json

import sqlalchemy as sa

from .models import RequestRecord


def recorded(session, keys):
    """{(user_id, request_id): (event, payload)} of the requests among keys already answered."""
    if not keys:
        return {}
    rows = session.scalars(sa.select(RequestRecord).where(
        sa.tuple_(RequestRecord.user_id, RequestRecord.request_id).in_(list(keys))))
    return {(r.user_id, r.request_id): (r.event, json.loads(r.result)) for r in rows}


RESULT_EVENTS = {"hold": "hold_result", "release": "release_result", "pay": "payment_result"}
_KIND_OF = {event: kind for kind, event in RESULT_EVENTS.items()}


def record(session, entries, now):
    """Store answers: entries are (user_id, request_id, result event, payload)."""
    if entries:
        # The table, not the entity: no ORM bulk machinery for plain rows.
        session.execute(sa.insert(RequestRecord.__table__), [
            {"user_id": uid, "request_id": rid, "kind": _KIND_OF[event], "event": event,
             "result": json.dumps(payload), "created_at": now}
            for uid, rid, event, payload in entries])
