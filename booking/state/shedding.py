"""Load shedding: the bound on accepted, unanswered work past which new holds are refused."""
import math
import time


class LoadShedding:
    """How much accepted, unanswered work the system takes before new holds are refused `busy`.

    Depth is counted in requests in flight (accepted, not yet answered: the
    ledger's index), not in broker messages: one Celery message carries from 1
    to REQUEST_BATCH_MAX requests, so the list's length says little about the
    work in it. The bound is SHED_QUEUE_DEPTH when set; otherwise what the
    workers finished per second lately times SHED_MAX_WAIT_SECONDS (the wait
    after which a buyer has given up), and never under SHED_FLOOR_RPS times
    that wait (the smallest deployment's worst case, measured: see
    docs/WAITING_ROOM.md). The derived bound is recomputed once a second.
    """

    def __init__(self, ledger, config):
        self.ledger = ledger
        self.config = config
        self._cached = (0.0, None)

    def _pace(self):
        """What the workers answered a second lately (every instance), read again once a
        second."""
        at, value = self._cached
        now = time.monotonic()
        if value is None or now - at > 1.0:
            if value is not None:
                # Requests arriving while it is read again (a Redis round trip, other
                # green threads run meanwhile) keep the last figures: one read a second
                # per process, not one per request of that moment.
                self._cached = (now, value)
            value = self.ledger.finished_per_second()
            self._cached = (time.monotonic(), value)
        return value

    def bound(self):
        if self.config.get("SHED_QUEUE_DEPTH"):
            return int(self.config["SHED_QUEUE_DEPTH"])
        rate = max(self.config["SHED_FLOOR_RPS"], self._pace())
        return int(rate * self.config["SHED_MAX_WAIT_SECONDS"])

    def retry_after(self):
        """Seconds after which the backlog has likely halved, 1 to 30, for `busy` answers."""
        rate = max(self.config["SHED_FLOOR_RPS"], self._pace())
        return max(1, min(30, math.ceil(self.ledger.depth() / 2 / rate)))

    def pressure(self):
        """(requests in flight, the shedding bound, the shares of recent answers late and slow)."""
        return (self.ledger.depth(), self.bound(), *self.ledger.answer_shares())
