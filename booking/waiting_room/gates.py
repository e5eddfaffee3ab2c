"""Gates: what the web tier needs to know about an event's sale, cached per process."""
import time
from dataclasses import dataclass

import sqlalchemy as sa

from ..errors import Forbidden
from ..models import Event
from .tokens import check_token, iso, unix


@dataclass(frozen=True)
class Gate:
    """What the web tier needs to know about an event's sale: read from the database."""
    event_id: int
    room: str | None          # open / paused / draining, or None: no waiting room
    on_sale_at: float | None  # unix time
    rate_per_min: int | None  # None: derived

    @property
    def gated(self):
        return self.room is not None


def read_gate(session, event_id):
    """The event's Gate, or None if there is no such event."""
    row = session.execute(sa.select(Event.on_sale_at, Event.waiting_room,
                                    Event.admission_rate_per_min)
                          .where(Event.id == event_id)).first()
    if row is None:
        return None
    return Gate(event_id, row.waiting_room, unix(row.on_sale_at), row.admission_rate_per_min)


class GateCache:
    """Gates cached per process for a second: ops and back-office changes reach every
    instance within it."""

    TTL_SECONDS = 1.0

    def __init__(self):
        self._gates = {}

    def get(self, session, event_id):
        hit = self._gates.get(event_id)
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[1]
        gate = read_gate(session, event_id)
        self._gates[event_id] = (now + self.TTL_SECONDS, gate)
        return gate


def check_hold_allowed(gate, user_id, token, now=None):
    """Raise Forbidden unless this buyer may ask for holds on this event now."""
    now = time.time() if now is None else now
    if gate.gated:
        check_token(token, user_id, gate.event_id, now)
    elif gate.on_sale_at is not None and now < gate.on_sale_at:
        raise Forbidden.of("not_on_sale", reason="not_on_sale", on_sale_at=iso(gate.on_sale_at))
