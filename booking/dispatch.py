"""Handing accepted requests to the workers, many per task.

One Celery task costs a few milliseconds of CPU whatever it carries, so the web
process groups requests: a handler hands its request to the dispatcher and waits
only until the broker has it (never for a worker). While one batch is being
published, the next accumulates, so an idle system sends batches of one and a
busy one sends batches of up to REQUEST_BATCH_MAX with no added delay. The ack
goes out after the publish, so an acknowledged request is in the broker and
survives the web process.
"""
import logging
from collections import deque

from .errors import Busy

log = logging.getLogger(__name__)


class _Ticket:
    __slots__ = ("item", "done", "error")

    def __init__(self, item, done):
        self.item = item
        self.done = done
        self.error = None


class BatchingDispatcher:
    """Groups requests from many handlers into one task message (Redis mode, eventlet)."""

    def __init__(self, socketio, send_batch, batch_max, linger_s=0.0):
        self.socketio = socketio
        self.send_batch = send_batch
        self.batch_max = batch_max
        # Under load, wait this long for more requests before publishing, so
        # one task carries many: batches otherwise form only while a publish
        # is in flight (~1 ms), and a backed-up broker fills with tasks of 2-3
        # requests that workers then take one by one.
        self.linger_s = linger_s
        self._queue = deque()
        self._wakeup = None
        self._running = False

    def submit(self, item):
        """Return once the request is in the broker; raise Busy if it could not be sent."""
        ticket = _Ticket(item, self.socketio.server.eio.create_event())
        self._queue.append(ticket)
        if not self._running:
            self._running = True
            self.socketio.start_background_task(self._drain)
        ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error

    def _drain(self):
        try:
            while self._queue:
                if self.linger_s and 1 < len(self._queue) < self.batch_max:
                    self.socketio.sleep(self.linger_s)
                batch = [self._queue.popleft()
                         for _ in range(min(self.batch_max, len(self._queue)))]
                try:
                    self.send_batch([t.item for t in batch])
                except Exception:
                    log.exception("could not enqueue %d requests", len(batch))
                    for t in batch:
                        t.error = Busy("The box office cannot take requests right now.",
                                       retry_after_s=2)
                for t in batch:
                    t.done.set()
        finally:
            self._running = False
            if self._queue:  # raced with a submit that saw _running still True
                self._running = True
                self.socketio.start_background_task(self._drain)


class InlineDispatcher:
    """The embedded mode: run the task in the background of this process, after the ack."""

    def __init__(self, socketio, run_batch):
        self.socketio = socketio
        self.run_batch = run_batch

    def submit(self, item):
        self.socketio.start_background_task(self.run_batch, [item])
