"""The two state backends: Redis (REDIS_URL set) and process memory (the embedded mode).

One interface (key-value with expiry, sorted indexes, capped groups and slots,
counters), so that the ledger, presence and socket slots are written once.
Each Redis script has its in-process twin here; tests/test_state_backends.py
runs the same behaviour tests against both, so they cannot drift apart.
"""
import math
import threading
import time
from dataclasses import dataclass, field

import redis
from limits.storage import MemoryStorage

from .redis_finish import RedisFinish
from .script_batch import ScriptBatch


@dataclass(frozen=True, slots=True)
class Begin:
    """What admit() records for a request taken in flight (see RequestLedger.admit)."""
    value: str            # the ledger record
    ttl: int
    index: str            # requests in flight, scored by acceptance time
    member: str
    score: float
    now: float            # unix time: open holds expiring after it count
    bound: int = 0        # refuse 'full' at this many in flight (0: no bound)
    group: str | None = None     # the buyer's hold requests in flight
    open_key: str | None = None  # the buyer's open holds, scored by expiry
    cap: int = 0          # refuse 'group_full' at this many open + in flight


@dataclass(slots=True)
class Finish:
    """What answered requests change, applied at once by finish()."""
    now: float
    ttl: int
    index: str
    records: dict = field(default_factory=dict)        # ledger key -> answer
    index_members: list = field(default_factory=list)  # leave the in-flight index
    group_members: list = field(default_factory=list)  # (group, member): leave the group
    opened: list = field(default_factory=list)         # (open key, hold id, expiry)
    closed: list = field(default_factory=list)         # (open key, hold id)
    counts: dict = field(default_factory=dict)         # per-second counters
    counts_ttl: int = 120


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

    def __init__(self, url, rate_prefix="limits"):
        self.redis = redis_client(url)
        self._finish = RedisFinish(self.redis)   # registers its script: no round trip
        # Where Flask-Limiter's Redis storage keeps its counters (its key_prefix).
        self.rate_prefix = rate_prefix

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

    # A socket request's whole admission, in one round trip: its rate budgets
    # (limits' sliding-window counter, on the very keys Flask-Limiter's
    # sliding-window-counter strategy uses for REST, so both draw on one
    # budget), the repeat lookup, and (mode 'begin') the in-flight begin with
    # the depth bound and the buyer's open-hold cap (open holds recorded by
    # the workers, scored by expiry, plus hold requests in flight).
    # Budgets: KEYS[2i-1], KEYS[2i] (previous, current window); ARGV[2i],
    # ARGV[2i+1] (limit, window in ms). Nothing is counted unless every
    # budget has room.
    _ADMIT = """
    local n = tonumber(ARGV[1])
    local windows = {}
    for i = 1, n do
      local prev, cur = KEYS[2 * i - 1], KEYS[2 * i]
      local limit, expiry = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
      local ct = redis.call('PTTL', cur)
      if ct > 0 and ct < expiry then
        redis.call('RENAME', cur, prev)
        redis.call('SET', cur, 0, 'PX', ct + expiry)
      end
      local pc = tonumber(redis.call('GET', prev)) or 0
      local pt = redis.call('PTTL', prev)
      local cc = tonumber(redis.call('GET', cur)) or 0
      ct = redis.call('PTTL', cur)
      if pt < 0 then pt = 0 end
      if ct < 0 then ct = 0 end
      if math.floor(pc * pt / expiry) + cc + 1 > limit then
        -- A remainder of 0 is a whole period (a counter set this very
        -- millisecond has 2 windows to live): never answer "retry after 0".
        local reset = expiry
        if pc > 0 then
          local step = expiry / pc
          local r = math.fmod(pt, step)
          if r == 0 then r = step end
          reset = math.min(reset, r)
        end
        if cc > 0 then
          local r = math.fmod(ct, expiry)
          if r == 0 then r = expiry end
          reset = math.min(reset, r)
        end
        return {'limited', i, math.max(1, math.floor(reset))}
      end
    end
    for i = 1, n do
      local cur = KEYS[2 * i]
      if redis.call('EXISTS', cur) == 1 then
        redis.call('INCRBY', cur, 1)
      else
        redis.call('SET', cur, 1, 'PX', 2 * tonumber(ARGV[2 * i + 1]))
      end
    end
    local mode = ARGV[2 * n + 2]
    if mode == 'rate' then return {'new'} end
    local k = 2 * n
    local seen = redis.call('GET', KEYS[k + 1])
    if seen then return {'seen', seen} end
    if mode ~= 'begin' then return {'new'} end
    local a = 2 * n + 2
    local bound = tonumber(ARGV[a + 5])
    if bound > 0 and redis.call('ZCARD', KEYS[k + 2]) >= bound then return {'full'} end
    local group = KEYS[k + 3]
    if group ~= '' then
      local open = redis.call('ZCOUNT', KEYS[k + 4], '(' .. ARGV[a + 7], '+inf')
      if open + redis.call('SCARD', group) >= tonumber(ARGV[a + 6]) then
        return {'group_full', open}
      end
    end
    redis.call('SET', KEYS[k + 1], ARGV[a + 1], 'EX', ARGV[a + 2])
    redis.call('ZADD', KEYS[k + 2], ARGV[a + 4], ARGV[a + 3])
    if group ~= '' then
      redis.call('SADD', group, ARGV[a + 3])
      redis.call('EXPIRE', group, ARGV[a + 2])
    end
    return {'ok'}
    """

    def admit(self, budgets, key=None, begin=None):
        """Count rate budgets, then look key up, then (begin given) mark it in flight.

        budgets: [(counter key, limit, window seconds)], counted only if all have
        room. begin: Begin(...) or None. Returns (outcome, detail): ('limited',
        (budget index, seconds until a slot frees)), ('seen', value), ('new',
        None: key absent, or no key), ('ok', None), ('full', None) or
        ('group_full', open holds counted).
        """
        if not hasattr(self, "_admit"):
            # Concurrent requests share a round trip (booking/state/script_batch.py).
            self._admit = ScriptBatch(self.redis, self._ADMIT)
        keys, args = [], [len(budgets)]
        prefix = self.rate_prefix
        for counter, limit, window in budgets:
            current = f"{prefix}:{{{counter}}}"
            keys += (current + "/-1", current)
            args += (limit, window * 1000)
        if key is None:
            args.append("rate")
        else:
            keys.append(key)
            if begin is None:
                args.append("lookup")
            else:
                keys += (begin.index, begin.group or "", begin.open_key or "")
                args += ("begin", begin.value, begin.ttl, begin.member, repr(begin.score),
                         begin.bound or 0, begin.cap, repr(begin.now))
        reply = self._admit(keys=keys, args=args)
        outcome = reply[0].decode()
        if outcome == "limited":
            return outcome, (int(reply[1]) - 1, int(reply[2]) / 1000)
        if outcome == "seen":
            return outcome, reply[1].decode()
        if outcome == "group_full":
            return outcome, int(reply[1])
        return outcome, None

    def finish(self, done):
        """Apply a Finish (answered requests, open holds gained and lost, counters) at once:
        one script, one round trip (booking/state/redis_finish.py)."""
        self._finish(done)

    def open_reset(self, key, members, now):
        """Replace the open-hold set key with members ({member: expiry}), re-derived."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        live = {m: e for m, e in members.items() if e > now}
        if live:
            pipe.zadd(key, live)
            pipe.expire(key, max(60, int(max(live.values()) - now) + 60))
        pipe.execute()

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

    def __init__(self, rate_storage=None):
        # Rate counters: limits' memory storage; the app hands it Flask-Limiter's,
        # so that REST calls and socket events draw on one budget here too.
        self.rate_storage = rate_storage or MemoryStorage()
        self._open = {}
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

    def admit(self, budgets, key=None, begin=None):
        with self._lock:
            limited = self._rate_hit(budgets)
            if limited is not None:
                return "limited", limited
            if key is None:
                return "new", None
            item = self._live(key)
            if item:
                return "seen", item[0]
            if begin is None:
                return "new", None
            b = begin
            if b.bound and len(self._indexes.get(b.index, {})) >= b.bound:
                return "full", None
            if b.group:
                open_holds = sum(1 for e in self._open.get(b.open_key, {}).values() if e > b.now)
                if open_holds + len(self._groups.get(b.group, ())) >= b.cap:
                    return "group_full", open_holds
            self._data[key] = (str(b.value), time.monotonic() + b.ttl)
            self._indexes.setdefault(b.index, {})[b.member] = b.score
            if b.group:
                self._groups.setdefault(b.group, set()).add(b.member)
            return "ok", None

    def _rate_hit(self, budgets):
        """limits' sliding-window counter on rate_storage (Flask-Limiter's own, in the
        app), all or nothing: None, or (budget index, seconds until a slot frees)."""
        storage = self.rate_storage
        for i, (counter, limit, window) in enumerate(budgets):
            pc, pt, cc, ct = storage.get_sliding_window(counter, window)
            if math.floor(pc * pt / window) + cc + 1 > limit:
                # A remainder of 0 is a whole period, as in the Redis script.
                reset = window
                if pc:
                    reset = min(reset, pt % (window / pc) or window / pc)
                if cc:
                    reset = min(reset, ct % window or window)
                return i, max(reset, 0.001)
        for counter, limit, window in budgets:
            storage.acquire_sliding_window_entry(counter, limit, window)
        return None

    def finish(self, done):
        with self._lock:
            expires = time.monotonic() + done.ttl
            for key, value in done.records.items():
                self._data[key] = (str(value), expires)
            index = self._indexes.get(done.index, {})
            for member in done.index_members:
                index.pop(member, None)
            for group, member in done.group_members:
                self._groups.get(group, set()).discard(member)
            for key, member, expiry in done.opened:
                self._open.setdefault(key, {})[member] = expiry
            for key, member in done.closed:
                self._open.get(key, {}).pop(member, None)
            for key in {k for k, _m, _e in done.opened} | {k for k, _m in done.closed}:
                live = {m: e for m, e in self._open.get(key, {}).items() if e > done.now}
                if live:
                    self._open[key] = live
                else:
                    self._open.pop(key, None)
            for key, amount in done.counts.items():
                item = self._live(key)
                total = int(item[0]) + amount if item else amount
                self._data[key] = (str(total), time.monotonic() + done.counts_ttl)

    def open_reset(self, key, members, now):
        with self._lock:
            live = {m: e for m, e in members.items() if e > now}
            if live:
                self._open[key] = live
            else:
                self._open.pop(key, None)

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
    if url:
        return RedisState(url, rate_prefix=f"{app.config['REDIS_NAMESPACE']}:limits")
    return LocalState()
