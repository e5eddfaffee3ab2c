"""The rooms' store: in Redis (every step one Lua script) or in process memory (embedded mode).

Both keep the same semantics; tests/test_state_backends.py runs the same
behaviour tests against each.
"""
import math
import threading
import time

PRE_QUEUE, QUEUED, ADMITTED = "pre_queue", "queued", "admitted"


def make_room_store(app, state):
    """The rooms' store: in Redis (state's client) when REDIS_URL is set, else in memory."""
    if app.config["REDIS_URL"]:
        return RedisRoomStore(state.redis, app.config["REDIS_NAMESPACE"])
    return LocalRoomStore()


class RedisRoomStore:
    """The queue in Redis: every web instance serves it, and it outlives any process."""

    _JOIN = """
    local seq = redis.call('GET', KEYS[6]) or '0'
    local exp = redis.call('HGET', KEYS[4], ARGV[1])
    if exp then
      if tonumber(exp) > tonumber(ARGV[2]) then return {'admitted', exp, seq} end
      -- The token ran out unused: this is a new arrival, at the back.
      redis.call('HDEL', KEYS[4], ARGV[1])
    end
    local r = redis.call('ZRANK', KEYS[2], ARGV[1])
    if r then return {'queued', r, seq} end
    if redis.call('EXISTS', KEYS[5]) == 0 then
      redis.call('ZADD', KEYS[1], 'NX', ARGV[3], ARGV[1])
      return {'pre_queue', redis.call('ZCARD', KEYS[1]), seq}
    end
    local t = redis.call('INCR', KEYS[3])
    redis.call('ZADD', KEYS[2], t, ARGV[1])
    return {'queued', redis.call('ZRANK', KEYS[2], ARGV[1]), seq}
    """
    _DRAW = """
    if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
    local members = redis.call('ZRANGE', KEYS[1], 0, -1)
    local t = tonumber(redis.call('GET', KEYS[3]) or '0')
    for i, m in ipairs(members) do redis.call('ZADD', KEYS[2], t + i, m) end
    redis.call('SET', KEYS[3], t + #members)
    redis.call('SET', KEYS[4], '1')
    redis.call('DEL', KEYS[1])
    return #members
    """
    _ADMIT = """
    local now = tonumber(ARGV[1])
    local st = redis.call('HMGET', KEYS[3], 'credit', 'last')
    local credit = tonumber(st[1] or '0')
    local last = tonumber(st[2] or ARGV[1])
    credit = math.min(credit + math.max(0, now - last) * tonumber(ARGV[2]) / 60,
                      tonumber(ARGV[3]))
    local n = math.min(math.floor(credit), tonumber(ARGV[5]))
    local out = {}
    if n > 0 then
      local popped = redis.call('ZPOPMIN', KEYS[1], n)
      local exp = now + tonumber(ARGV[4])
      local seq = tonumber(redis.call('GET', KEYS[4]) or '0')
      for i = 1, #popped, 2 do
        seq = seq + 1
        redis.call('HSET', KEYS[2], popped[i], exp)
        out[#out + 1] = {popped[i], tostring(exp), seq}
      end
      redis.call('SET', KEYS[4], seq)
      credit = credit - #out
    end
    if #out == 0 and redis.call('ZCARD', KEYS[1]) == 0 then credit = math.min(credit, 1) end
    redis.call('HSET', KEYS[3], 'credit', tostring(credit), 'last', ARGV[1])
    return out
    """

    def __init__(self, client, namespace):
        self.redis = client
        self.prefix = f"{namespace}:wr"
        self._join = client.register_script(self._JOIN)
        self._draw = client.register_script(self._DRAW)
        self._admit = client.register_script(self._ADMIT)

    def _k(self, event_id, part):
        return f"{self.prefix}:{event_id}:{part}"

    def _keys(self, event_id, *parts):
        return [self._k(event_id, p) for p in parts]

    def register(self, event_id):
        self.redis.sadd(f"{self.prefix}:events", event_id)

    def known_events(self):
        return sorted(int(e) for e in self.redis.smembers(f"{self.prefix}:events"))

    def join(self, event_id, user_id, now, ticket):
        """The buyer's place, entering them if they have none: {state, ahead|pre_queue|expires_at, seq}."""
        self.register(event_id)
        state, value, seq = self._join(
            keys=self._keys(event_id, "pre", "q", "tail", "adm", "drawn", "seq"),
            args=[user_id, repr(now), ticket])
        state = state.decode()
        # seq is read in the same script as the rank: the pair is consistent.
        place = {"state": state, "user_id": user_id, "seq": int(seq)}
        if state == ADMITTED:
            place["expires_at"] = float(value)
        elif state == QUEUED:
            place["ahead"] = int(value)
        else:
            place["pre_queue"] = int(value)
        return place

    def draw(self, event_id):
        """Turn the pre-queue into the queue in ticket order (once); returns how many."""
        return int(self._draw(keys=self._keys(event_id, "pre", "q", "tail", "drawn")))

    def drawn(self, event_id):
        return bool(self.redis.exists(self._k(event_id, "drawn")))

    def admit(self, event_id, now, rate_per_min, burst, ttl_s, max_n):
        """Admit from the front as the rate allows: [(user_id, expires_at, seq)]."""
        rows = self._admit(keys=self._keys(event_id, "q", "adm", "credit", "seq"),
                           args=[repr(now), repr(rate_per_min), repr(burst), ttl_s, max_n])
        return [(int(u), float(e), int(s)) for u, e, s in rows]

    def queued(self, event_id, limit=None):
        end = -1 if limit is None else limit - 1
        return [int(m) for m in self.redis.zrange(self._k(event_id, "q"), 0, end)]

    def seq(self, event_id):
        return int(self.redis.get(self._k(event_id, "seq")) or 0)

    def current_rate(self, event_id):
        value = self.redis.get(self._k(event_id, "rate"))
        return float(value) if value is not None else None

    def set_rate(self, event_id, rate):
        self.redis.set(self._k(event_id, "rate"), repr(float(rate)))

    def full_update_due(self, event_id, now, every_s, mark=False):
        key = self._k(event_id, "full-update")
        last = float(self.redis.get(key) or 0)
        due = now - last >= every_s
        if due and mark:
            self.redis.set(key, repr(now))
        return due

    def empty(self, event_id):
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self._k(event_id, "pre"))
        pipe.zcard(self._k(event_id, "q"))
        return sum(pipe.execute()) == 0

    def sizes(self, event_id, now=None):
        now = time.time() if now is None else now
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self._k(event_id, "pre"))
        pipe.zcard(self._k(event_id, "q"))
        pipe.hvals(self._k(event_id, "adm"))
        pipe.get(self._k(event_id, "seq"))
        pre, queued, expiries, seq = pipe.execute()
        return {"pre_queue": pre, "queued": queued,
                "admitted_active": sum(1 for e in expiries if float(e) > now),
                "admitted_total": int(seq or 0)}

    def stats(self, event_ids):
        return {e: dict(self.sizes(e), rate=self.current_rate(e)) for e in event_ids}

    def try_lock(self, event_id, ttl):
        return bool(self.redis.set(self._k(event_id, "lock"), "1", nx=True, ex=ttl))

    def unlock(self, event_id):
        self.redis.delete(self._k(event_id, "lock"))


class LocalRoomStore:
    """The same queue in process memory, for the embedded one-process mode.

    It lives and dies with the process: a restart empties every room (the
    buyers re-join at the back). The Redis store is the one for real on-sales.
    """

    def __init__(self):
        self._lock = threading.RLock()
        self._rooms = {}
        self._locks = set()

    def _room(self, event_id):
        return self._rooms.setdefault(event_id, {
            "pre": {}, "q": {}, "tail": 0, "adm": {}, "drawn": False, "credit": 0.0,
            "last": None, "seq": 0, "rate": None, "full": 0.0})

    def register(self, event_id):
        with self._lock:
            self._room(event_id)

    def known_events(self):
        with self._lock:
            return sorted(self._rooms)

    def _rank(self, room, user_id):
        ticket = room["q"][user_id]
        return sum(1 for t in room["q"].values() if t < ticket)

    def join(self, event_id, user_id, now, ticket):
        with self._lock:
            room = self._room(event_id)
            place = {"user_id": user_id, "seq": room["seq"]}
            exp = room["adm"].get(user_id)
            if exp is not None and exp > now:
                return dict(place, state=ADMITTED, expires_at=exp)
            room["adm"].pop(user_id, None)
            if user_id in room["q"]:
                return dict(place, state=QUEUED, ahead=self._rank(room, user_id))
            if not room["drawn"]:
                room["pre"].setdefault(user_id, ticket)
                return dict(place, state=PRE_QUEUE, pre_queue=len(room["pre"]))
            room["tail"] += 1
            room["q"][user_id] = room["tail"]
            return dict(place, state=QUEUED, ahead=self._rank(room, user_id))

    def draw(self, event_id):
        with self._lock:
            room = self._room(event_id)
            if room["drawn"]:
                return 0
            order = sorted(room["pre"], key=lambda u: (room["pre"][u], u))
            for uid in order:
                room["tail"] += 1
                room["q"][uid] = room["tail"]
            room["pre"].clear()
            room["drawn"] = True
            return len(order)

    def drawn(self, event_id):
        with self._lock:
            return self._room(event_id)["drawn"]

    def admit(self, event_id, now, rate_per_min, burst, ttl_s, max_n):
        with self._lock:
            room = self._room(event_id)
            last = room["last"] if room["last"] is not None else now
            credit = min(room["credit"] + max(0.0, now - last) * rate_per_min / 60, burst)
            n = min(math.floor(credit), max_n)
            out = []
            for uid in sorted(room["q"], key=room["q"].get)[:max(0, n)]:
                del room["q"][uid]
                room["seq"] += 1
                room["adm"][uid] = now + ttl_s
                out.append((uid, now + ttl_s, room["seq"]))
            credit -= len(out)
            if not out and not room["q"]:
                credit = min(credit, 1.0)
            room["credit"], room["last"] = credit, now
            return out

    def queued(self, event_id, limit=None):
        with self._lock:
            room = self._room(event_id)
            order = sorted(room["q"], key=room["q"].get)
            return order if limit is None else order[:limit]

    def seq(self, event_id):
        with self._lock:
            return self._room(event_id)["seq"]

    def current_rate(self, event_id):
        with self._lock:
            return self._room(event_id)["rate"]

    def set_rate(self, event_id, rate):
        with self._lock:
            self._room(event_id)["rate"] = float(rate)

    def full_update_due(self, event_id, now, every_s, mark=False):
        with self._lock:
            room = self._room(event_id)
            due = now - room["full"] >= every_s
            if due and mark:
                room["full"] = now
            return due

    def empty(self, event_id):
        with self._lock:
            room = self._room(event_id)
            return not room["pre"] and not room["q"]

    def sizes(self, event_id, now=None):
        now = time.time() if now is None else now
        with self._lock:
            room = self._room(event_id)
            return {"pre_queue": len(room["pre"]), "queued": len(room["q"]),
                    "admitted_active": sum(1 for e in room["adm"].values() if e > now),
                    "admitted_total": room["seq"]}

    def stats(self, event_ids):
        return {e: dict(self.sizes(e), rate=self.current_rate(e)) for e in event_ids}

    def try_lock(self, event_id, ttl):
        with self._lock:
            if event_id in self._locks:
                return False
            self._locks.add(event_id)
            return True

    def unlock(self, event_id):
        with self._lock:
            self._locks.discard(event_id)
