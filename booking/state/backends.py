"""The two state backends: Redis (REDIS_URL set) and process memory (the embedded mode).

One interface (key-value with expiry, sorted indexes, capped groups and slots,
counters), so that the ledger, presence and socket slots are written once.
Each Redis script has its in-process twin here; tests/test_state_backends.py
runs the same behaviour tests against both, so they cannot drift apart.
"""
import threading
import time

import redis

# Redis connections per process; beyond it, callers queue (up to 5 s). The
# state, the rate limiter and the broadcaster share the one pool. 256: the
# two pools of 64 it replaces ran dry (callers waiting 5 s, then `busy`) when a
# restarted web process took 250 reconnecting buyers at once
# (tests/test_waiting_room.py), and one pool of 128 ran dry more often.
REDIS_POOL_MAX = 256
_pools = {}
_pools_lock = threading.Lock()


def redis_pool(url):
    """The process's connection pool to url (one per process and URL, made on first use).

    Blocking: green threads wait for a free connection instead of failing (the
    default pool raises MaxConnectionsError at its 101st concurrent user,
    which a web process under an on-sale reaches, and every request then
    answers `busy`). redis-py resets a pool inherited through fork (Celery's
    prefork children) on its first use in the child.
    """
    with _pools_lock:
        if url not in _pools:
            _pools[url] = redis.BlockingConnectionPool.from_url(
                url, max_connections=REDIS_POOL_MAX, timeout=5, socket_timeout=5,
                socket_connect_timeout=3, health_check_interval=30)
        return _pools[url]


def redis_client(url):
    """A client on the process's shared pool."""
    return redis.Redis(connection_pool=redis_pool(url))


class RedisState:
    """Key-value state with expiry, in Redis."""

    def __init__(self, url):
        self.redis = redis_client(url)

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

    def put_many(self, mapping, ttl):
        with self._lock:
            for key, value in mapping.items():
                self._data[key] = (str(value), time.monotonic() + ttl)

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
