"""One Lua script for several callers in one Redis round trip.

Every hold, release and pay request runs the ledger's admit script once
(booking.state.backends.RedisState.admit). A web process under an on-sale has
many requests ready at the same moment, and each paid for its own round trip:
a send that wakes Redis, a connection check-out (redis-py polls the socket
for stale data first) and a read. ScriptBatch lets the first caller wait one
turn of the event loop, then sends its call and those of every caller that
arrived meanwhile as one pipeline of EVALSHAs; each caller gets its own reply
or its own error. A caller alone is sent at once after that one turn.

Semantics are those of separate calls made in arrival order: Redis runs a
script atomically, one after another, pipelined or not. A connection error
fails every call of the batch, as it would have failed each of them.
"""
import threading
import time

import redis

# A caller waits at most this long for the batch it joined (the pool's socket
# timeout is 5 s): beyond it the round trip is as good as lost.
WAIT_S = 10.0


class _Call:
    __slots__ = ("keys", "args", "reply", "error", "done")

    def __init__(self, keys, args):
        self.keys, self.args = keys, args
        self.reply = self.error = None
        self.done = threading.Event()


class ScriptBatch:
    """Call it like a redis-py Script: batch(keys=[...], args=[...]) -> the script's reply."""

    def __init__(self, client, source):
        self.redis = client
        self.source = source
        self.sha = client.register_script(source).sha
        self._lock = threading.Lock()
        self._waiting = []        # calls of the batch being gathered
        self._gathering = False   # a leader is waiting its turn to send them
        self.sent = 0             # round trips made (pipelines), for tests

    def __call__(self, keys=(), args=()):
        call = _Call(list(keys), list(args))
        with self._lock:
            self._waiting.append(call)
            leader = not self._gathering
            self._gathering = True
        if leader:
            self._lead()
        elif not call.done.wait(WAIT_S):
            raise redis.TimeoutError("a batched script call got no reply in time")
        if call.error is not None:
            raise call.error
        return call.reply

    def _lead(self):
        batch = None
        try:
            time.sleep(0)   # one turn: the requests already ready run up to their call
            with self._lock:
                batch, self._waiting, self._gathering = self._waiting, [], False
            self._send(batch)
        except BaseException as exc:
            if batch is None:
                # Interrupted before the batch was taken: the others must not wait on us.
                with self._lock:
                    batch, self._waiting, self._gathering = self._waiting, [], False
            for call in batch:
                if not call.done.is_set():
                    call.error = exc if isinstance(exc, Exception) else \
                        redis.ConnectionError("the batch's round trip was interrupted")
                    call.done.set()
            raise

    def _send(self, batch):
        pending = batch
        for _attempt in (1, 2):
            pipe = self.redis.pipeline(transaction=False)
            for call in pending:
                pipe.evalsha(self.sha, len(call.keys), *call.keys, *call.args)
            replies = pipe.execute(raise_on_error=False)
            self.sent += 1
            missing = []
            for call, reply in zip(pending, replies):
                if isinstance(reply, redis.exceptions.NoScriptError):
                    missing.append(call)   # Redis restarted or flushed its scripts
                    continue
                if isinstance(reply, Exception):
                    call.error = reply
                else:
                    call.reply = reply
                call.done.set()
            if not missing:
                return
            self.redis.script_load(self.source)
            pending = missing
        raise redis.exceptions.NoScriptError("the script could not be loaded")
