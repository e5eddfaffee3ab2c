"""State shared by every web instance: Redis when REDIS_URL is set, process memory otherwise.

Nothing here is the truth about seats or holds (MySQL is). It holds what
coordinates the web tier: which requests are in flight or answered, when each
buyer was last connected, and rate-limit counters.
"""
import json
import threading
import time

import redis
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from .errors import RateLimited

REQUEST_TTL_SECONDS = 24 * 3600
# An in-flight mark outlives any backlog; a request whose task was lost is
# found by the overdue sweep long before this.
PENDING_TTL_SECONDS = 3600
PENDING = "pending"


class RedisState:
    """Key-value state with expiry, in Redis."""

    def __init__(self, url):
        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3,
                                          health_check_interval=30)

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


class LocalState:
    """The same interface in process memory, for the one-process embedded mode."""

    def __init__(self):
        self._data = {}
        self._indexes = {}
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

    def _key(self, user_id, request_id):
        return f"{self.prefix}:{user_id}:{request_id}"

    def lookup(self, user_id, request_id):
        """None (never seen), PENDING, or the recorded (event, payload)."""
        value = self.state.get(self._key(user_id, request_id))
        if value is None:
            return None
        record = json.loads(value)
        if "pending" in record:
            return PENDING
        return record["event"], record["payload"]

    def begin(self, item):
        """Mark a request in flight; False if it already was (a concurrent repeat)."""
        uid, rid = item["user_id"], item["request_id"]
        if not self.state.add(self._key(uid, rid), json.dumps({"pending": item}),
                              PENDING_TTL_SECONDS):
            return False
        self.state.index_add(self.index, f"{uid}:{rid}", time.time())
        return True

    def forget(self, user_id, request_id):
        """Drop a request that was never performed, so that its repeat is tried afresh."""
        self.state.delete(self._key(user_id, request_id))
        self.state.index_remove(self.index, [f"{user_id}:{request_id}"])

    def finish_many(self, outcomes):
        """Record answered requests: [(user_id, request_id, event, payload)]."""
        if not outcomes:
            return
        self.state.put_many({
            self._key(uid, rid): json.dumps({"event": event, "payload": payload})
            for uid, rid, event, payload in outcomes}, REQUEST_TTL_SECONDS)
        self.state.index_remove(self.index, [f"{uid}:{rid}" for uid, rid, _e, _p in outcomes])

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


class UserRateLimit:
    """A per-account request rate, counted in Redis so that it holds across instances."""

    def __init__(self, app):
        url = app.config["REDIS_URL"]
        self.storage = (storage_from_string(url, key_prefix=f"{app.config['REDIS_NAMESPACE']}:limits")
                        if url else storage_from_string("memory://"))
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.limits = parse_many(app.config["USER_RATE_LIMIT"])

    def check(self, user_id):
        """Count one request; raise RateLimited if the account is over its rate."""
        for limit in self.limits:
            if not self.limiter.hit(limit, "user", str(user_id)):
                reset = self.limiter.get_window_stats(limit, "user", str(user_id)).reset_time
                raise RateLimited(retry_after_s=max(1, round(reset - time.time())))
