"""When each buyer was last connected, and the sockets each account holds open."""
import time


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
