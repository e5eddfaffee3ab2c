"""The request ledger: which client requests are in flight and what the finished ones answered."""
import json
import time

REQUEST_TTL_SECONDS = 24 * 3600
# An in-flight mark outlives any backlog; a request whose task was lost is
# found by the overdue sweep long before this.
PENDING_TTL_SECONDS = 3600
PENDING = "pending"


class QueueFull(Exception):
    """The bound on requests in flight is reached (see LoadShedding)."""


class TooManyHolds(Exception):
    """The buyer has as many hold requests in flight as open holds allowed."""


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

    def lookup(self, user_id, request_id):
        """None (never seen), PENDING, or the recorded (event, payload)."""
        value = self.state.get(self._key(user_id, request_id))
        if value is None:
            return None
        record = json.loads(value)
        if "pending" in record:
            return PENDING
        return record["event"], record["payload"]

    def begin(self, item, bound=0, holds_cap=None):
        """Mark a request in flight; False if it already was (a concurrent repeat).

        bound: refuse (raise QueueFull) while this many requests are in flight
        already. holds_cap: for a hold, refuse (raise TooManyHolds) while the
        buyer has this many hold requests in flight.
        """
        uid, rid = item["user_id"], item["request_id"]
        group = self._holds_key(uid) if holds_cap is not None else None
        outcome = self.state.begin(self._key(uid, rid), json.dumps({"pending": item}),
                                   PENDING_TTL_SECONDS, self.index, f"{uid}:{rid}", time.time(),
                                   bound=bound, group=group, group_cap=holds_cap or 0)
        if outcome == "full":
            raise QueueFull()
        if outcome == "group_full":
            raise TooManyHolds()
        return outcome == "ok"

    def forget(self, user_id, request_id):
        """Drop a request that was never performed, so that its repeat is tried afresh."""
        self.state.delete(self._key(user_id, request_id))
        self.state.index_remove(self.index, [f"{user_id}:{request_id}"])
        self.state.group_remove([(self._holds_key(user_id), f"{user_id}:{request_id}")])

    def finish_many(self, outcomes, late=0, slow=0):
        """Record answered requests: [(user_id, request_id, event, payload)].

        late, slow: how many of them were answered later than the latency
        target, and later than half of it.
        """
        if not outcomes:
            return
        self.state.put_many({
            self._key(uid, rid): json.dumps({"event": event, "payload": payload})
            for uid, rid, event, payload in outcomes}, REQUEST_TTL_SECONDS)
        self.state.index_remove(self.index, [f"{uid}:{rid}" for uid, rid, _e, _p in outcomes])
        self.state.group_remove([(self._holds_key(uid), f"{uid}:{rid}")
                                 for uid, rid, event, _p in outcomes if event == "hold_result"])
        # What the workers finish, per second: the measure behind the derived
        # shedding bound and admission rate.
        second = int(time.time())
        counts = {f"{self.done_prefix}:{second}": len(outcomes)}
        if late:
            counts[f"{self.late_prefix}:{second}"] = late
        if slow:
            counts[f"{self.slow_prefix}:{second}"] = slow
        self.state.incr(counts, 120)

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
