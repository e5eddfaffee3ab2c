"""What a transaction decided, to send once it has committed (docs/DESIGN.md, rule 4)."""
from dataclasses import dataclass, field


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
        self.seats.setdefault(seat.event_id, {})[seat.id] = {
            "id": seat.id, "status": seat.status, "version": seat.version}


def set_seat(outcome, seat, status, hold=None, expires_at=None, order_id=None):
    """Change a seat's status (its version grows by one) and note it for broadcast."""
    seat.status = status
    seat.hold = hold
    seat.hold_expires_at = expires_at
    seat.order_id = order_id
    seat.version += 1
    outcome.record_seat(seat)

