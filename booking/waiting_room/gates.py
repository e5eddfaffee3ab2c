"""Gates: what the web tier needs to know about an event's sale, cached per process."""
import logging
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError, TimeoutError as PoolTimeout

from ..errors import Forbidden
from ..models import Event
from .tokens import check_token, iso, unix

log = logging.getLogger(__name__)


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
    instance within it.

    A hold's ack reads no database (intake): when a refresh finds the database
    unavailable, the last gate read goes on being served, for up to
    STALE_LIMIT_SECONDS, so that holds taken during an outage are queued and
    decided once it is back, as the workers do. Nothing changes a gate while the
    database is gone. One request refreshes an expired gate while the others keep
    using the one they have: a stalled database holds up one ack, not all of them.
    """

    TTL_SECONDS = 1.0
    STALE_LIMIT_SECONDS = 300.0

    def __init__(self):
        self._gates = {}   # event_id: (fresh until, read at, Gate), monotonic seconds

    def get(self, session, event_id):
        hit = self._gates.get(event_id)
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[2]
        if hit:
            # Whoever asks next within TTL_SECONDS uses this one while it is refreshed.
            self._gates[event_id] = (now + self.TTL_SECONDS, hit[1], hit[2])
        try:
            gate = read_gate(session, event_id)
        except (OperationalError, PoolTimeout):
            session.rollback()  # the caller's next statement starts afresh
            if hit is None or now - hit[1] > self.STALE_LIMIT_SECONDS:
                raise
            log.warning("database unavailable: event %s's gate as read %.0f s ago",
                        event_id, now - hit[1])
            return hit[2]
        self._gates[event_id] = (time.monotonic() + self.TTL_SECONDS, now, gate)
        return gate


def check_hold_allowed(gate, user_id, token, now=None):
    """Raise Forbidden unless this buyer may ask for holds on this event now."""
    now = time.time() if now is None else now
    if gate.gated:
        check_token(token, user_id, gate.event_id, now)
    elif gate.on_sale_at is not None and now < gate.on_sale_at:
        raise Forbidden.of("not_on_sale", reason="not_on_sale", on_sale_at=iso(gate.on_sale_at))
