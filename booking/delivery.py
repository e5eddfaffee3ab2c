"""The answers' path through Redis pub/sub: knowing when an answer may have been lost.

Results (hold_result, ...) reach a buyer's sockets through Flask-SocketIO's
message queue: a worker publishes on a Redis channel, every web process is
subscribed and emits to its own sockets of the buyer. Redis pub/sub keeps
nothing, so two things can lose an answer, and neither said so before:

- A web process's subscription drops (Redis kills it: `CLIENT KILL TYPE pubsub`,
  an output buffer over `client-output-buffer-limit pubsub`, a network blip).
  redis-py re-subscribes by itself, silently, and whatever was published in the
  gap is gone. WatchedPubSub notices every re-subscription, and the web process
  then tells its sockets to re-send what has no answer (`resend`, docs/API.md);
  the seat-change listener re-sends its snapshots instead (booking.broadcast).
- A worker's publish fails. python-socketio's Redis manager logs it and carries
  on; ResultsManager raises PublishFailed instead, so that the task runs again
  and re-sends the recorded answers (workers.tasks.send).

Whatever is still lost in between, the client's re-send rule recovers: a request
with no result after a few seconds is sent again with the same request_id and
answered from the ledger or the durable record (docs/API.md, "Recovery").
"""
import logging
import time

import redis
import redis.client
import socketio
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)


class PublishFailed(Exception):
    """A message for sockets could not be published (Redis unreachable): nobody got it."""


class WatchedPubSub(redis.client.PubSub):
    """A PubSub that calls on_restored() each time redis-py re-subscribes it after a lost
    connection (the first subscription is not a restore)."""

    def __init__(self, connection_pool, on_restored, **kwargs):
        super().__init__(connection_pool, **kwargs)
        self._on_restored = on_restored

    def on_connect(self, connection):
        # redis-py registers this callback after the first connect, so it runs
        # only on reconnects: it re-sends SUBSCRIBE for our channels first.
        super().on_connect(connection)
        if self.channels or self.patterns:
            log.warning("pub/sub subscription restored after a lost connection")
            try:
                self._on_restored()
            except Exception:
                log.exception("reacting to a restored subscription failed")


def has_local_sockets(manager, room, namespace="/"):
    """Whether a socket of this process is in room (manager: python-socketio's)."""
    return bool(manager.rooms.get(namespace, {}).get(room))


class ResultsManager(socketio.RedisManager):
    """Flask-SocketIO's Redis message queue, with the two gaps above made visible.

    on_restored: set by the web process (booking.lifecycle); called, in the
    listener's green thread, whenever the subscription came back after a loss.
    """

    def __init__(self, url, channel, write_only=False):
        # A publish fails fast rather than stall a task or a handler; the
        # listener's blocking read is not bounded by socket_timeout (redis-py
        # reads pub/sub messages without it).
        # One immediate retry (a reconnect: after CLIENT KILL it re-subscribes at
        # once); redis-py's default backs off for seconds on every attempt.
        super().__init__(url, channel=channel, write_only=write_only,
                         redis_options={"socket_connect_timeout": 3, "socket_timeout": 5,
                                        "retry": Retry(NoBackoff(), 1)})
        self.on_restored = None

    def _restored(self):
        if self.on_restored is not None:
            self.on_restored()

    def _redis_connect(self):
        super()._redis_connect()
        if not self.write_only:
            self.pubsub = WatchedPubSub(self.redis.connection_pool, self._restored,
                                        ignore_subscribe_messages=True)

    def emit_many(self, messages, namespace="/"):
        """Emit [(event, payload, room)] through the queue as one message: one publish (one
        round trip from a worker) and one decode per web process, instead of one of each
        per message. This process's own sockets in those rooms get theirs first. Raises
        PublishFailed like a single emit (write-only: a worker)."""
        message = {"method": "emit", "batch": [list(m) for m in messages],
                   "namespace": namespace, "host_id": self.host_id}
        if not self.write_only:
            self._handle_emit(message)
        self._publish(message)

    def _handle_emit(self, message):
        batch = message.get("batch")
        if batch is None:
            return super()._handle_emit(message)
        namespace = message.get("namespace") or "/"
        for event, payload, room in batch:
            # Most rooms of a batch have no socket on this process (a buyer is on one
            # web process of several): skip encoding a packet for nobody.
            if has_local_sockets(self, room, namespace):
                socketio.Manager.emit(self, event, payload, namespace, room=room)

    def _publish(self, data):
        if not self.write_only:
            # A web process's own emits are handled locally first (its sockets
            # get them); only other processes' copies depend on this publish.
            return super()._publish(data)
        for attempt in (1, 2):
            try:
                if not self.connected:
                    self._redis_connect()
                return self.redis.publish(self.channel, self.json.dumps(data))
            except Exception as exc:
                self.connected = False
                if attempt == 2:
                    raise PublishFailed(str(exc)) from exc
                log.warning("publishing to sockets failed; reconnecting: %s", exc)

    def _redis_listen_with_retries(self):
        """python-socketio's loop, noting a new subscription after a failed one as a restore."""
        retry_sleep = 1
        lost = False
        while True:
            try:
                self._redis_connect()
                self.pubsub.subscribe(self.channel)
                if lost:
                    log.warning("socket message queue subscription restored")
                    self._restored()
                lost = False
                retry_sleep = 1
                yield from self.pubsub.listen()
                lost = True   # listen() ended: no longer subscribed
            except Exception as exc:
                lost = True
                log.error("socket message queue unavailable; retrying in %ss: %s",
                          retry_sleep, exc)
                time.sleep(retry_sleep)
                retry_sleep = min(retry_sleep * 2, 30)
