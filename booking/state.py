"""State shared by every web instance: Redis when REDIS_URL is set, process memory otherwise.

Nothing here is the truth about seats or holds (MySQL is). It holds what
coordinates the web tier: which requests are in flight or answered, when each
buyer was last connected, how deep the backlog is and which sockets each
account holds. (Rate-limit counters: booking.ratelimits.)
"""
import json
import math
import threading
import time

import redis

REQUEST_TTL_SECONDS = 24 * 3600
# An in-flight mark outlives any backlog; a request whose task was lost is
# found by the overdue sweep long before this.
PENDING_TTL_SECONDS = 3600
PENDING = "pending"
# Redis connections per process and pool; beyond it, callers queue (up to 5 s).
REDIS_POOL_MAX = 64


class RedisState:
    """Key-value state with expiry, in Redis."""

    def __init__(self, url):
        # Green threads wait for a free connection instead of failing: the
        # default pool raises MaxConnectionsError at its 101st concurrent user,
        # which a web process under an on-sale reaches (every request then
        # answers `busy`).
        self.redis = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
            url, max_connections=REDIS_POOL_MAX, timeout=5, socket_timeout=5,
            socket_connect_timeout=3, health_check_interval=30))

    def add(self, key, value, ttl):
        """Set key only if absent; True if it was set."""
        return bool(self.redis.set(key, value, ex=ttl, nx=True))

    def put(self, key, value, ttl):
        self.redis.set(key, value, ex=ttl)

    def put_many(self, mapping, ttl):
        if not mapping:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key, value in mapping.items():
            pipe.set(key, value, ex=ttl)
        pipe.execute()

    def get(self, key):
        value = self.redis.get(key)
        return value.decode() if value is not None else None

    def get_many(self, keys):
        if not keys:
            return []
        return [v.decode() if v is not None else None for v in self.redis.mget(keys)]

    def delete(self, key):
        self.redis.delete(key)

    def index_add(self, index, member, score):
        self.redis.zadd(index, {member: score})

    def index_remove(self, index, members):
        if members:
            self.redis.zrem(index, *members)

    def index_older_than(self, index, score, limit):
        return [m.decode() for m in self.redis.zrangebyscore(index, "-inf", score, 0, limit)]

    def ping(self):
        return self.redis.ping()

    # Accepting a request: one script, so that the depth bound and the
    # per-account cap hold exactly however many web instances accept at once.
    _BEGIN = """
    if tonumber(ARGV[5]) > 0 and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
      return 'full'
    end
    if KEYS[3] ~= '' and redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[6]) then
      return 'group_full'
    end
    if not redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX') then return 'repeat' end
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
    if KEYS[3] ~= '' then
      redis.call('SADD', KEYS[3], ARGV[3])
      redis.call('EXPIRE', KEYS[3], ARGV[2])
    end
    return 'ok'
    """

    def begin(self, key, value, ttl, index, member, score, bound=0, group=None, group_cap=0):
        """Set key (if absent) and index it, unless the index or the group is full.

        Returns 'ok', 'repeat' (key present), 'full' (index has bound members)
        or 'group_full' (group has group_cap members).
        """
        if not hasattr(self, "_begin"):
            self._begin = self.redis.register_script(self._BEGIN)
        result = self._begin(keys=[key, index, group or ""],
                             args=[value, ttl, member, repr(score), bound or 0, group_cap])
        return result.decode() if isinstance(result, bytes) else result

    def group_remove(self, pairs):
        """Remove members from sets: [(group key, member)]."""
        if not pairs:
            return
        pipe = self.redis.pipeline(transaction=False)
        for group, member in pairs:
            pipe.srem(group, member)
        pipe.execute()

    def index_size(self, index):
        return self.redis.zcard(index)

    def incr(self, counts, ttl):
        """Add to counters ({key: amount}), each kept ttl seconds."""
        pipe = self.redis.pipeline(transaction=False)
        for key, amount in counts.items():
            pipe.incrby(key, amount)
            pipe.expire(key, ttl)
        pipe.execute()

    _SOCKET_IN = """
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
    if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false
       and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
      return 0
    end
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
    redis.call('EXPIRE', KEYS[1], ARGV[5])
    return 1
    """

    def slot_take(self, key, member, now, stale_before, cap, ttl):
        """Add member to a capped set of live members (stale ones dropped first); False if full."""
        if not hasattr(self, "_slot_take"):
            self._slot_take = self.redis.register_script(self._SOCKET_IN)
        return bool(self._slot_take(keys=[key], args=[member, repr(now), repr(stale_before),
                                                      cap, ttl]))

    def slot_touch(self, entries, now, ttl):
        """Mark members live: [(key, member)]."""
        if not entries:
            return
        pipe = self.redis.pipeline(transaction=False)
        for key, member in entries:
            pipe.zadd(key, {member: now}, xx=True)
            pipe.expire(key, ttl)
        pipe.execute()

    def slot_release(self, key, member):
        self.redis.zrem(key, member)

    def slot_members(self, key):
        return [m.decode() for m in self.redis.zrange(key, 0, -1)]


class LocalState:
    """The same interface in process memory, for the one-process embedded mode."""

    def __init__(self):
        self._data = {}
        self._indexes = {}
        self._groups = {}
        self._slots = {}
        self._lock = threading.Lock()

    def _live(self, key):
        item = self._data.get(key)
        if item and item[1] < time.monotonic():
            del self._data[key]
            return None
        return item

    def add(self, key, value, ttl):
        with self._lock:
            if self._live(key):
                return False
            self._data[key] = (str(value), time.monotonic() + ttl)
            return True

    def put(self, key, value, ttl):
        with self._lock:
            self._data[key] = (str(value), time.monotonic() + ttl)

    def put_many(self, mapping, ttl):
        for key, value in mapping.items():
            self.put(key, value, ttl)

    def get(self, key):
        with self._lock:
            item = self._live(key)
            return item[0] if item else None

    def get_many(self, keys):
        return [self.get(k) for k in keys]

    def delete(self, key):
        with self._lock:
            self._data.pop(key, None)

    def index_add(self, index, member, score):
        with self._lock:
            self._indexes.setdefault(index, {})[member] = score

    def index_remove(self, index, members):
        with self._lock:
            for m in members:
                self._indexes.get(index, {}).pop(m, None)

    def index_older_than(self, index, score, limit):
        with self._lock:
            items = sorted((v, m) for m, v in self._indexes.get(index, {}).items() if v <= score)
            return [m for _v, m in items[:limit]]

    def ping(self):
        return True

    def begin(self, key, value, ttl, index, member, score, bound=0, group=None, group_cap=0):
        with self._lock:
            if bound and len(self._indexes.get(index, {})) >= bound:
                return "full"
            if group and len(self._groups.get(group, ())) >= group_cap:
                return "group_full"
            if self._live(key):
                return "repeat"
            self._data[key] = (str(value), time.monotonic() + ttl)
            self._indexes.setdefault(index, {})[member] = score
            if group:
                self._groups.setdefault(group, set()).add(member)
            return "ok"

    def group_remove(self, pairs):
        with self._lock:
            for group, member in pairs:
                self._groups.get(group, set()).discard(member)

    def index_size(self, index):
        with self._lock:
            return len(self._indexes.get(index, {}))

    def incr(self, counts, ttl):
        with self._lock:
            for key, amount in counts.items():
                item = self._live(key)
                total = int(item[0]) + amount if item else amount
                self._data[key] = (str(total), time.monotonic() + ttl)

    def slot_take(self, key, member, now, stale_before, cap, ttl):
        with self._lock:
            slots = self._slots.setdefault(key, {})
            for m in [m for m, seen in slots.items() if seen <= stale_before]:
                del slots[m]
            if member not in slots and len(slots) >= cap:
                return False
            slots[member] = now
            return True

    def slot_touch(self, entries, now, ttl):
        with self._lock:
            for key, member in entries:
                if member in self._slots.get(key, {}):
                    self._slots[key][member] = now

    def slot_release(self, key, member):
        with self._lock:
            self._slots.get(key, {}).pop(member, None)

    def slot_members(self, key):
        with self._lock:
            return list(self._slots.get(key, {}))


def make_state(app):
    url = app.config["REDIS_URL"]
    return RedisState(url) if url else LocalState()


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

    def late_share(self, window_s=5, now=None):
        return self.answer_shares(window_s, now)[0]

    def slow_share(self, window_s=5, now=None):
        return self.answer_shares(window_s, now)[1]

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


class Presence:
    """When each buyer was last connected, by any socket on any web instance."""

    def __init__(self, state, grace_seconds, namespace):
        self.state = state
        self.ttl = max(3600, grace_seconds * 10)
        self.prefix = f"{namespace}:seen"

    def _key(self, user_id):
        return f"{self.prefix}:{user_id}"

    def touch(self, user_ids, now=None):
        now = time.time() if now is None else now
        self.state.put_many({self._key(u): repr(now) for u in user_ids}, self.ttl)

    def last_seen(self, user_ids):
        """{user_id: unix time last seen}; users with no record are left out."""
        values = self.state.get_many([self._key(u) for u in user_ids])
        return {u: float(v) for u, v in zip(user_ids, values) if v is not None}


class QueueFull(Exception):
    """The bound on requests in flight is reached (see LoadShedding)."""


class TooManyHolds(Exception):
    """The buyer has as many hold requests in flight as open holds allowed."""


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

    def bound(self):
        if self.config.get("SHED_QUEUE_DEPTH"):
            return int(self.config["SHED_QUEUE_DEPTH"])
        at, value = self._cached
        if value is None or time.monotonic() - at > 1.0:
            wait = self.config["SHED_MAX_WAIT_SECONDS"]
            rate = max(self.config["SHED_FLOOR_RPS"], self.ledger.finished_per_second())
            value = int(rate * wait)
            self._cached = (time.monotonic(), value)
        return value

    def retry_after(self):
        """Seconds after which the backlog has likely halved, 1 to 30, for `busy` answers."""
        rate = max(self.config["SHED_FLOOR_RPS"], self.ledger.finished_per_second())
        return max(1, min(30, math.ceil(self.ledger.depth() / 2 / rate)))

    def pressure(self):
        """(requests in flight, the shedding bound, the shares of recent answers late and slow)."""
        return (self.ledger.depth(), self.bound(), *self.ledger.answer_shares())


class SocketSlots:
    """Sockets each account holds open, across every web instance, capped.

    Each web process refreshes its own sockets' entries every few seconds; an
    entry not refreshed for STALE_SECONDS (its process died) stops counting.
    """

    STALE_SECONDS = 30

    def __init__(self, state, namespace, cap):
        self.state = state
        self.prefix = f"{namespace}:sockets"
        self.cap = cap

    def _key(self, user_id):
        return f"{self.prefix}:{user_id}"

    def take(self, user_id, sid):
        """Count a new socket; False if the account has cap sockets open already."""
        now = time.time()
        return self.state.slot_take(self._key(user_id), sid, now, now - self.STALE_SECONDS,
                                    self.cap, self.STALE_SECONDS * 4)

    def touch(self, sockets):
        """sockets: [(user_id, sid)] connected to this process."""
        self.state.slot_touch([(self._key(u), sid) for u, sid in sockets], time.time(),
                              self.STALE_SECONDS * 4)

    def release(self, user_id, sid):
        self.state.slot_release(self._key(user_id), sid)

    def members(self, user_id):
        """The sids of the account's sockets, on every web instance."""
        return self.state.slot_members(self._key(user_id))
