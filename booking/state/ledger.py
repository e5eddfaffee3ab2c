"""The request ledger: which client requests are in flight and what the finished ones answered."""
import json
import time
from datetime import datetime, timezone

from .backends import Begin, Finish

REQUEST_TTL_SECONDS = 24 * 3600
# An in-flight mark outlives any backlog; a request whose task was lost is
# found by the overdue sweep long before this.
PENDING_TTL_SECONDS = 3600
PENDING = "pending"


class QueueFull(Exception):
    """The bound on requests in flight is reached (see LoadShedding)."""


class TooManyHolds(Exception):
    """The buyer's open holds and hold requests in flight reach the cap."""

    def __init__(self, open_holds=0):
        super().__init__(open_holds)
        self.open_holds = open_holds  # of them, open holds the ledger counted


def open_hold_changes(results, notices=()):
    """([(user_id, hold_id, expiry unix)] granted, [(user_id, hold_id)] ended): what
    answered requests and notices say of buyers' open holds, for finish_many().

    Granted: a hold_result ok. Ended: a release_result or payment_result ok (paid),
    a hold_closed notice (expired, given up, taken over). A hold ended another way
    stays counted until its expiry, or until the edge re-derives the buyer's open
    holds from the database (it does before refusing a hold on their count).
    """
    opened, closed = [], []
    for uid, _rid, event, payload in results:
        if not payload.get("ok"):
            continue
        if event == "hold_result":
            opened.append((uid, payload["hold_id"], unix_time(payload["expires_at"])))
        elif event in ("release_result", "payment_result") and payload.get("hold_id"):
            closed.append((uid, payload["hold_id"]))
    for uid, event, payload in notices:
        if event == "hold_closed":
            closed.append((uid, payload["hold_id"]))
    return opened, closed


def unix_time(moment):
    """A naive UTC datetime, or its ISO-8601 form with a Z, as unix time."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.removesuffix("Z"))
    return moment.replace(tzinfo=timezone.utc).timestamp()


class RequestLedger:
    """Which client requests are in flight and what the finished ones answered.

    An accepted request is also indexed with its payload until a worker answers
    it, so that one lost on its way (the Redis broker can lose a message whose
    worker is killed at the wrong instant) is found and enqueued again.
    """

    def __init__(self, state, namespace):
        self.state = state
        self.prefix = f"{namespace}:req"
        self.index = f"{namespace}:req-pending"
        self.holds_prefix = f"{namespace}:req-holds"
        # Each buyer's open holds (hold id scored by expiry), kept by the workers
        # after commit: what the edge pre-checks MAX_OPEN_HOLDS against.
        self.open_prefix = f"{namespace}:req-open"
        self.done_prefix = f"{namespace}:req-done"
        self.late_prefix = f"{namespace}:req-late"
        self.slow_prefix = f"{namespace}:req-slow"

    def _key(self, user_id, request_id):
        return f"{self.prefix}:{user_id}:{request_id}"

    def _holds_key(self, user_id):
        return f"{self.holds_prefix}:{user_id}"

    def depth(self):
        """Requests accepted and not answered yet, on every instance (queued or being decided)."""
        return self.state.index_size(self.index)

    def _window_sums(self, prefixes, window_s, now):
        """Each per-second counter summed over the last window_s seconds, in one read."""
        now = int(time.time() if now is None else now)
        seconds = range(now - window_s + 1, now + 1)
        values = self.state.get_many([f"{p}:{t}" for p in prefixes for t in seconds])
        return [sum(int(v) for v in values[i:i + window_s] if v)
                for i in range(0, len(values), window_s)]

    def finished_per_second(self, window_s=10, now=None):
        """Requests the workers answered per second, averaged over the last window_s seconds."""
        return self._window_sums([self.done_prefix], window_s, now)[0] / window_s

    def answer_shares(self, window_s=5, now=None):
        """(late, slow): of the requests answered in the last window_s seconds, the shares
        answered later than LATENCY_TARGET_MS after the web process received them, and
        later than half of it (the early warning), as counted by the workers that
        answered them. (0.0, 0.0) when none was answered.
        """
        done, late, slow = self._window_sums(
            [self.done_prefix, self.late_prefix, self.slow_prefix], window_s, now)
        if not done:
            return 0.0, 0.0
        # (A repeat in a batch is counted among the late ones but answered
        # once: the shares are capped at 1.)
        return min(1.0, late / done), min(1.0, slow / done)

    def _open_key(self, user_id):
        return f"{self.open_prefix}:{user_id}"

    @staticmethod
    def _decode(value):
        record = json.loads(value)
        if "pending" in record:
            return PENDING
        return record["event"], record["payload"]

    def lookup(self, user_id, request_id):
        """None (never seen), PENDING, or the recorded (event, payload)."""
        value = self.state.get(self._key(user_id, request_id))
        return None if value is None else self._decode(value)

    def admit(self, budgets, user_id, request_id, item=None, bound=0, holds_cap=None):
        """A socket request's admission in one round trip to the state.

        Counts the rate budgets ([(counter key, limit, window s)], all or none),
        then looks the request up, then, with item, marks it in flight (as
        begin() does). Returns (outcome, detail): ('limited', (budget index,
        seconds)), ('seen', PENDING or (event, payload)), ('new', None: not
        seen, nothing begun) or ('ok', None: begun). Raises QueueFull and
        TooManyHolds as begin() does.
        """
        key = self._key(user_id, request_id) if request_id is not None else None
        begin = None
        if item is not None:
            begin = self._begin_args(item, bound, holds_cap)
        outcome, detail = self.state.admit(budgets, key, begin)
        if outcome == "seen":
            return outcome, self._decode(detail)
        if outcome == "full":
            raise QueueFull()
        if outcome == "group_full":
            raise TooManyHolds(detail)
        return outcome, detail

    def _begin_args(self, item, bound, holds_cap):
        uid, rid = item["user_id"], item["request_id"]
        capped = holds_cap is not None
        now = time.time()
        return Begin(value=json.dumps({"pending": item}), ttl=PENDING_TTL_SECONDS,
                     index=self.index, member=f"{uid}:{rid}", score=now,
                     now=now, bound=bound or 0,
                     group=self._holds_key(uid) if capped else None,
                     open_key=self._open_key(uid) if capped else None,
                     cap=holds_cap or 0)

    def begin(self, item, bound=0, holds_cap=None):
        """Mark a request in flight; False if it already was (a concurrent repeat).

        bound: refuse (raise QueueFull) while this many requests are in flight
        already. holds_cap: for a hold, refuse (raise TooManyHolds) while the
        buyer's open holds (as the workers recorded them, until each one's
        expiry) and hold requests in flight reach it.
        """
        outcome, _ = self.admit([], item["user_id"], item["request_id"], item, bound, holds_cap)
        return outcome == "ok"

    def reset_open_holds(self, user_id, holds):
        """Replace what the ledger knows of a buyer's open holds ({hold_id: expiry, unix})
        with what the database says (when they would refuse a hold)."""
        self.state.open_reset(self._open_key(user_id), {str(h): e for h, e in holds.items()},
                              time.time())

    def forget(self, user_id, request_id):
        """Drop a request that was never performed, so that its repeat is tried afresh."""
        self.state.delete(self._key(user_id, request_id))
        self.state.index_remove(self.index, [f"{user_id}:{request_id}"])
        self.state.group_remove([(self._holds_key(user_id), f"{user_id}:{request_id}")])

    def finish_many(self, outcomes, late=0, slow=0, opened=(), closed=(), counts=None):
        """Record answered requests: [(user_id, request_id, event, payload)], at once.

        late, slow: how many of them were answered later than the latency
        target, and later than half of it. opened: [(user_id, hold_id, expiry
        as unix time)] holds granted; closed: [(user_id, hold_id)] holds that
        ended (see open_hold_changes). counts: other per-second counters
        ({key: amount}, kept two minutes) to add in the same round trip.
        """
        if not (outcomes or opened or closed or counts):
            return
        now = time.time()
        done = Finish(now=now, ttl=REQUEST_TTL_SECONDS, index=self.index)
        for uid, rid, event, payload in outcomes:
            done.records[self._key(uid, rid)] = json.dumps({"event": event, "payload": payload})
            done.index_members.append(f"{uid}:{rid}")
            if event == "hold_result":
                done.group_members.append((self._holds_key(uid), f"{uid}:{rid}"))
        done.opened = [(self._open_key(uid), str(h), expiry) for uid, h, expiry in opened]
        done.closed = [(self._open_key(uid), str(h)) for uid, h in closed]
        done.counts.update(counts or {})
        if outcomes:
            # What the workers finish, per second: the measure behind the derived
            # shedding bound and admission rate.
            second = int(now)
            done.counts[f"{self.done_prefix}:{second}"] = len(outcomes)
            if late:
                done.counts[f"{self.late_prefix}:{second}"] = late
            if slow:
                done.counts[f"{self.slow_prefix}:{second}"] = slow
        self.state.finish(done)

    def overdue(self, older_than_s, limit=500):
        """Requests accepted longer ago than older_than_s and still unanswered: their items.

        Each returned request is re-stamped, so that it is returned again only
        after another older_than_s.
        """
        now = time.time()
        members = self.state.index_older_than(self.index, now - older_than_s, limit)
        items, done = [], []
        for member in members:
            uid, rid = member.split(":", 1)
            value = self.state.get(self._key(int(uid), rid))
            record = json.loads(value) if value else {}
            if "pending" in record:
                items.append(record["pending"])
                self.state.index_add(self.index, member, now)
            else:
                done.append(member)
        self.state.index_remove(self.index, done)
        return items
