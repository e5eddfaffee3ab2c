"""Getting committed changes to browsers.

Results (hold_result, release_result, ...) go to the buyer's room through
Flask-SocketIO's message queue, so every web instance delivers them to its own
sockets of that buyer.

Seat changes take a different path so that they can be coalesced: whoever
commits publishes them on one Redis channel; every web instance subscribes,
keeps the newest version of each changed seat per event, and every
SEATS_CHANGED_INTERVAL_MS emits one `seats_changed` per event to its own
sockets only (`ignore_queue`), so a thousand watchers cost a thousand sends per
interval, not per change. Redis pub/sub drops messages while a subscriber is
disconnected, so after reconnecting (also when redis-py re-subscribed by itself:
booking.delivery.WatchedPubSub) a web instance re-sends full snapshots of the
events its sockets watch; per-seat versions make repeats harmless.
"""
import json
import logging
import threading
import time
from datetime import datetime, timezone

import redis

from . import payloads
from .delivery import ResultsManager, WatchedPubSub, has_local_sockets
from .state.backends import redis_client

log = logging.getLogger(__name__)


def seats_channel(namespace):
    return f"{namespace}:seat-changes"


def positions_channel(namespace):
    return f"{namespace}:queue-positions"


def iso_now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Broadcaster:
    """Sends what a committed transaction changed. Call only after commit."""

    def __init__(self, socketio, redis_url=None, namespace="boxoffice", coalescer=None):
        self.socketio = socketio
        self.redis = redis_client(redis_url) if redis_url else None
        self.channel = seats_channel(namespace)
        self.positions = positions_channel(namespace)
        self.coalescer = coalescer

    def results(self, outcomes):
        """outcomes: [(user_id, request_id, event, payload)], each to its buyer's room."""
        self.to_users([(user_id, event, payload) for user_id, _rid, event, payload in outcomes])

    def to_user(self, user_id, event, payload):
        self.socketio.emit(event, payload, to=f"user:{user_id}")

    def to_users(self, messages):
        """messages: [(user_id, event, payload)], each to its buyer's room; through the
        message queue, all in one publish (booking.delivery.ResultsManager.emit_many)."""
        if not messages:
            return
        manager = getattr(self.socketio.server, "manager", None)
        if isinstance(manager, ResultsManager):
            manager.emit_many([(event, payload, f"user:{user_id}")
                               for user_id, event, payload in messages])
            return
        for user_id, event, payload in messages:
            self.socketio.emit(event, payload, to=f"user:{user_id}")

    def queue_positions(self, message):
        """A waiting room's positions (waiting_room.position_updates): one message for all."""
        if self.redis is not None:
            self.redis.publish(self.positions, json.dumps(message))
            return
        from .waiting_room import position_updates
        for user_id, payload in position_updates(message):
            self.to_user(user_id, "queue_update", payload)

    def seats(self, changes):
        """changes: {event_id: [{id, status, version}]}."""
        committed_at = iso_now()
        for event_id, seats in changes.items():
            if not seats:
                continue
            if self.redis is not None:
                self.redis.publish(self.channel, json.dumps(
                    payloads.seats_changed(event_id, seats, committed_at)))
            else:
                self.coalescer.add(event_id, seats, committed_at)


def _keep_newer(into, seats):
    for seat in seats:
        old = into.get(seat["id"])
        if old is None or old["version"] < seat["version"]:
            into[seat["id"]] = seat


class SeatsCoalescer:
    """Collects seat changes per event and emits them to local sockets in batches.

    It also keeps a live board per event this process has served a snapshot
    of: the seats read once from the database, then every change the process
    receives applied by version. A join answers from it (snapshot()) instead
    of reading every seat of the event again: at an on-sale's admissions, joins
    of 2,000-seat snapshots took a quarter of a web process's CPU and held its
    green threads (hold answers waited behind them). The board is read again
    from the database after BOARD_MAX_AGE_S, and after the process's
    subscription to seat changes was lost (forget_boards, from the resync).
    """

    BOARD_MAX_AGE_S = 30.0

    def __init__(self, socketio, interval_s, local_only):
        self.socketio = socketio
        self.interval_s = interval_s
        self.local_only = local_only
        self._pending = {}
        self._boards = {}   # event_id -> {"built": monotonic or None, "seats": {id: seat}}
        self._lock = threading.Lock()
        self.on_flush = None  # (event_id, seat_count) -> None, for metrics
        self.on_change = None  # (event_id, committed_at) -> None, for the dashboard

    def add(self, event_id, seats, committed_at):
        with self._lock:
            entry = self._pending.setdefault(event_id, {"seats": {}, "committed_at": committed_at})
            entry["committed_at"] = min(entry["committed_at"], committed_at)
            _keep_newer(entry["seats"], seats)
            board = self._boards.get(event_id)
            if board is not None:
                _keep_newer(board["seats"], seats)
        if self.on_change:
            self.on_change(event_id, committed_at)

    def snapshot(self, event_id, load):
        """[{id, status, version}] of every seat of an event, in id order, from the live board.

        load() reads them from the database; it is called when this process
        has no board for the event yet or its board is older than
        BOARD_MAX_AGE_S. Call after the asking socket joined the event's room:
        a change received before this call is in the board, and one received
        after it reaches the socket through the feed. Changes received while
        load() runs are kept (the newer version wins).
        """
        now = time.monotonic()
        with self._lock:
            board = self._boards.setdefault(event_id, {"built": None, "seats": {}})
            if board["built"] is not None and now - board["built"] < self.BOARD_MAX_AGE_S:
                return list(board["seats"].values())
        rows = load()
        with self._lock:
            received = board["seats"]
            seats = {}
            for row in rows:
                newer = received.get(row["id"])
                seats[row["id"]] = newer if newer and newer["version"] > row["version"] else row
            board["seats"], board["built"] = seats, now
            return list(seats.values())

    def forget_boards(self):
        """Read every board from the database at its next join (changes may have been lost)."""
        with self._lock:
            for board in self._boards.values():
                board["built"] = None

    def flush(self):
        with self._lock:
            pending, self._pending = self._pending, {}
        for event_id, entry in pending.items():
            if not self._watched_here(f"event:{event_id}"):
                continue   # nobody here watches it: no payload built and encoded for nobody
            payload = payloads.seats_changed(
                event_id, sorted(entry["seats"].values(), key=lambda s: s["id"]),
                entry["committed_at"], sent_at=iso_now())
            kwargs = {"ignore_queue": True} if self.local_only else {}
            self.socketio.emit("seats_changed", payload, to=f"event:{event_id}", **kwargs)
            if self.on_flush:
                self.on_flush(event_id, len(payload["seats"]))

    def _watched_here(self, room):
        """Whether a socket of this process is in room (every seats_changed is local)."""
        manager = getattr(self.socketio.server, "manager", None)
        return manager is None or has_local_sockets(manager, room)

    def run_forever(self):
        while True:
            self.socketio.sleep(self.interval_s)
            try:
                self.flush()
            except Exception:
                log.exception("seats_changed flush failed")


def subscribe_forever(socketio, redis_url, namespace, coalescer, resync, on_positions):
    """Feed the coalescer from the seat-change channel; resync after every reconnect.

    Waiting rooms' position messages go to on_positions (a lost one is made
    good by the next tick's, and a waiting page asks again every 20-40 s).
    """
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=3, health_check_interval=10)
    failures = 0
    restored = []   # set by WatchedPubSub when redis-py re-subscribed by itself
    while True:
        try:
            pubsub = WatchedPubSub(client.connection_pool, lambda: restored.append(True),
                                   ignore_subscribe_messages=True)
            pubsub.subscribe(seats_channel(namespace), positions_channel(namespace))
            positions = positions_channel(namespace).encode()
            if failures:
                log.warning("seat-change subscription restored; resyncing watchers")
                resync()
            failures = 0
            while True:
                if restored:
                    # Re-subscribed without an error reaching us (redis-py's
                    # own reconnect): changes in the gap are lost all the same.
                    restored.clear()
                    log.warning("seat-change subscription restored; resyncing watchers")
                    resync()
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                data = json.loads(message["data"])
                if message["channel"] == positions:
                    on_positions(data)
                else:
                    coalescer.add(data["event_id"], data["seats"], data["committed_at"])
        except Exception:
            failures += 1
            log.warning("seat-change subscription lost (attempt %d)", failures, exc_info=True)
            socketio.sleep(min(5.0, 0.2 * 2 ** min(failures, 5)))
