"""What a transaction decided, to send once it has committed (docs/DESIGN.md, rule 4)."""
from dataclasses import dataclass, field
from datetime import timedelta


def expiry_iso(moment):
    """A hold's expiry as seat states carry it: ISO-8601 UTC with milliseconds, always the
    same width (two compare as strings), rounded up to the millisecond (a client that
    frees the seat at that instant never does so before a worker would grant it)."""
    if moment is None:
        return None
    extra = moment.microsecond % 1000
    if extra:
        moment += timedelta(microseconds=1000 - extra)
    return moment.isoformat(timespec="milliseconds") + "Z"


def seat_state(seat_id, status, version, hold_expires_at=None):
    """A seat as snapshots and seats_changed carry it: {id, status, version}, plus
    expires_at for a held seat whose hold can run out (a seat being paid for has none).
    A client shows such a seat available once expires_at has passed (API.md)."""
    state = {"id": seat_id, "status": status, "version": version}
    if status == "held" and hold_expires_at is not None:
        state["expires_at"] = expiry_iso(hold_expires_at)
    return state


@dataclass
class Outcome:
    # (user_id, request_id, event name, payload) for every request answered
    results: list = field(default_factory=list)
    # {event_id: {seat_id: {id, status, version}}}
    seats: dict = field(default_factory=dict)
    # (user_id, event name, payload) notices not tied to a request
    notices: list = field(default_factory=list)
    # processor keys of charges that cannot become orders (refund after commit)
    refunds: list = field(default_factory=list)
    # outbox ids of e-mails this transaction made due (dispatched after commit)
    mails: list = field(default_factory=list)

    def seat_changes(self):
        return {e: sorted(s.values(), key=lambda x: x["id"]) for e, s in self.seats.items()}

    def record_seat(self, seat):
        self.seats.setdefault(seat.event_id, {})[seat.id] = seat_state(
            seat.id, seat.status, seat.version, seat.hold_expires_at)


def set_seat(outcome, seat, status, hold=None, expires_at=None, order_id=None):
    """Change a seat's status (its version grows by one) and note it for broadcast."""
    seat.status = status
    seat.hold = hold
    seat.hold_id = hold.id if hold is not None else None  # a new hold's: set at its flush
    seat.hold_expires_at = expires_at
    seat.order_id = order_id
    seat.version += 1
    outcome.record_seat(seat)


def merged(outcomes):
    """One Outcome of several (answers, notices, seat changes, refunds and mails of each)."""
    whole = Outcome()
    for outcome in outcomes:
        whole.results += outcome.results
        whole.notices += outcome.notices
        whole.refunds += outcome.refunds
        whole.mails += outcome.mails
        for event_id, seats in outcome.seats.items():
            whole.seats.setdefault(event_id, {}).update(seats)
    return whole
