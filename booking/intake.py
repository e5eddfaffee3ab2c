"""Intake: what happens between a validated socket request and the workers.

One entry point, submit(): a repeat is answered from the ledger (or the durable
record); a new request is pre-checked (refusing early what a worker would
refuse anyway, so that bad requests never reach one), recorded in flight in
the ledger (where new holds are shed past the backlog's bound, and refused
past the buyer's open holds as the workers recorded them), and handed to the
dispatcher, which returns once the broker has it. A hold costs the web one
Redis round trip and no database read: its pre-checks use this process's
caches, and its rate budgets, repeat lookup, open-hold count and in-flight
mark are one script (RequestLedger.admit).

Handing requests to the workers, many per task: one Celery task costs a worker
a few milliseconds of CPU whatever it carries (its transaction, statements,
commit and publish), so the web process groups requests. A handler hands its
request to the dispatcher and waits only until the broker has it (never for a
worker). A web process sends at most one task message per interval: a request
that finds the last message older than that goes at once (an idle system never
waits), and requests arriving sooner wait for the interval to end and go
together. So the tasks a web process sends a second are bounded whatever the
load, and a busy one sends batches of its request rate times the interval. The
interval is REQUEST_BATCH_INTERVAL_MS from REQUEST_BATCH_FULL_RATE requests a
second on the process up, shorter in proportion below (docs/BENCHMARKS.md, "#13:
one task per interval"). The ack goes out after the publish, so an acknowledged request is
in the broker and survives the web process. route() says which task performs
which request, for the broker and for the embedded mode alike.
"""
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from flask import current_app

from . import catalog, checkout, holds, records, waiting_room
from .errors import BookingError, Busy, InvalidRequest
from .extensions import db, socketio
from .models import utcnow
from .payments import ProcessorUnavailable, TokenInvalid
from .runtime import runtime
from .state.ledger import PENDING, QueueFull, TooManyHolds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Receipt:
    """How a request was taken: queued (its result event follows) or answered again now."""
    outcome: str                 # "accepted" or "repeat"
    queued: bool
    answer: tuple | None = None  # (result event, payload) of a finished request sent again


def submit(kind, user_id, request_id, payload, received_at, ip=None):
    """Take a validated hold, release or pay request; returns a Receipt.

    The request's rate budgets (account, and ip's when given) are counted in
    the same round trip as its ledger lookup (and, for a hold, its begin).
    Raises BookingError: rate-limited, a pre-check failed, the request was shed
    (Busy with retry_after_s) or the buyer's open holds and hold requests in
    flight reach the open-hold limit (LimitExceeded). Redis and database
    errors propagate.
    """
    rt = runtime()
    budgets, labels = rt.rate_limit.budgets(user_id, ip)
    if kind == "hold":
        # Its pre-checks read nothing shared (this process's caches), so one
        # round trip counts, looks up and begins.
        try:
            item = _precheck_hold(user_id, payload)
        except BookingError as err:
            return _refused(rt, err, user_id, request_id, budgets, labels)
        finally:
            _release_connection()  # a cache miss read the database
        item.update(kind=kind, user_id=user_id, request_id=request_id, received_at=received_at)
        return _take(rt, item, budgets, labels)
    # Releases and payments read the hold in the database: only once the
    # budgets are counted, and after a repeat was answered from the ledger.
    outcome, seen = rt.ledger.admit(budgets, user_id, request_id)
    if outcome == "limited":
        raise rt.rate_limit.refusal(seen, labels)
    if outcome == "seen":
        return _repeat(seen)
    try:
        item = _PRECHECKS[kind](user_id, payload)
    except BookingError as err:
        return _recorded(err, user_id, request_id)
    finally:
        # The reads are done: give the pooled connection back before waiting on
        # Redis and the broker. Held until the handler ends, a burst of
        # requests waiting on the dispatcher holds every connection of the
        # pool (5 + 10) and the rest time out after 30 s as `internal`.
        db.session.remove()
    item.update(kind=kind, user_id=user_id, request_id=request_id, received_at=received_at)
    return _take(rt, item, (), ())


def _release_connection():
    """Give the pooled connection back, if this request took one."""
    if db.session.registry.has():
        db.session.remove()


def _repeat(seen):
    if seen == PENDING:
        return Receipt("repeat", queued=True)
    return Receipt("repeat", queued=False, answer=seen)


def _refused(rt, err, user_id, request_id, budgets, labels):
    """A request that failed its pre-checks: a repeat is answered again, else err raised.

    A repeat of a finished request fails the pre-checks (the hold is paid
    now, say): its answer comes from the ledger or, when the shared ledger
    has lost it (Redis restarted), from its durable record.
    """
    outcome, seen = rt.ledger.admit(budgets, user_id, request_id)
    if outcome == "limited":
        raise rt.rate_limit.refusal(seen, labels)
    if outcome == "seen":
        return _repeat(seen)
    return _recorded(err, user_id, request_id)


def _recorded(err, user_id, request_id):
    """The durable record's answer of a repeat the ledger does not know; else raise err."""
    try:
        done = records.recorded(db.session, [(user_id, request_id)])
    finally:
        db.session.remove()
    if not done:
        raise err
    return Receipt("repeat", queued=False, answer=done[(user_id, request_id)])


def _take(rt, item, budgets, labels):
    """Count the budgets, answer a repeat, or record the request in flight and hand it over."""
    user_id, request_id = item["user_id"], item["request_id"]
    _check_deadline(item["received_at"])
    outcome, seen = _begin(rt, item, budgets)
    if outcome == "limited":
        raise rt.rate_limit.refusal(seen, labels)
    if outcome == "seen":
        return _repeat(seen)
    try:
        rt.dispatcher.submit(item)
    except Busy:
        rt.ledger.forget(user_id, request_id)
        raise
    return Receipt("accepted", queued=True)


def _check_deadline(received_at):
    """Busy (nothing done) once the ack has waited ACK_DEADLINE_SECONDS: an ack never
    waits on slow Redis, database or CPU for long; the buyer may send it again."""
    if time.time() - received_at > current_app.config["ACK_DEADLINE_SECONDS"]:
        raise Busy("The box office is very busy; please retry shortly.", retry_after_s=1)


def _begin(rt, item, budgets):
    """Record the request as in flight; new holds only while the backlog is under its bound.

    Releases and payments are never shed: they finish sales and free seats.
    Raises Busy (shed, with retry_after_s) or LimitExceeded (the buyer's open
    holds and hold requests in flight reach MAX_OPEN_HOLDS).
    """
    user_id, request_id = item["user_id"], item["request_id"]
    if item["kind"] != "hold":
        return rt.ledger.admit(budgets, user_id, request_id, item)
    cap = rt.settings.max_open_holds
    try:
        try:
            return rt.ledger.admit(budgets, user_id, request_id, item,
                                   bound=rt.shedding.bound(), holds_cap=cap)
        except TooManyHolds as full:
            if not full.open_holds:
                raise
        # The ledger's count of open holds says no: it is kept by the workers
        # after commit, and one of their updates may have been lost (a hold
        # ended a way that sends no answer, say). Before refusing, count them
        # again from the database (the worker still decides, under lock).
        _rederive_open_holds(rt, user_id)
        return rt.ledger.admit((), user_id, request_id, item,
                               bound=rt.shedding.bound(), holds_cap=cap)
    except QueueFull:
        raise Busy("The box office is very busy; please retry shortly.",
                   retry_after_s=rt.shedding.retry_after()) from None
    except TooManyHolds:
        raise holds.open_holds_limit(rt.settings) from None


def _rederive_open_holds(rt, user_id):
    try:
        held = holds.open_hold_expiries(db.session, user_id, rt.settings)
    finally:
        db.session.remove()
    rt.ledger.reset_open_holds(user_id, held)


def seat_map(event_id):
    """{seat_id: price} of an event, cached in this process (an event's seats never
    change); None when there is no such event.

    Loaded once per process and event, by the first request that needs it: the
    requests arriving meanwhile wait for that load instead of each starting their
    own. At the start of a sale every one of them did (the read yields to other
    green threads), and each web process spent its first two seconds turning the
    same 60,000 rows into dicts while the sale's first requests waited.
    """
    seat_maps = runtime().seat_maps
    if event_id in seat_maps:
        return seat_maps[event_id]
    flight = _seat_map_loads.get(event_id)
    if flight is not None:
        flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return seat_maps.get(event_id)
    flight = _seat_map_loads[event_id] = _Load(threading.Event())
    try:
        prices = catalog.seat_prices(db.session, event_id)
        if prices is not None:
            seat_maps[event_id] = prices
        return prices
    except Exception as err:
        flight.error = err
        raise
    finally:
        del _seat_map_loads[event_id]
        flight.done.set()


@dataclass
class _Load:
    done: threading.Event
    error: Exception | None = None


_seat_map_loads = {}   # event_id -> the load in progress in this process


def _precheck_hold(uid, p):
    """What a hold must satisfy, from this process's caches only: the event and its
    seats, the waiting room's admission, seats per order. The open-hold limit is
    checked with the ledger when the request is taken (intake._begin)."""
    rt = runtime()
    event_id = p["event_id"]
    seats = seat_map(event_id)
    if seats is not None:
        # A gated event: only with this buyer's valid admission token for it.
        waiting_room.check_hold_allowed(rt.gates.get(db.session, event_id), uid,
                                        p.get("admission_token"))
    best = p.get("best")
    seat_ids = p.get("seat_ids", [])
    holds.check_hold_request(rt.settings, event_id, seat_ids, seats, 0,
                             count=best["count"] if best else None)
    item = {"event_id": event_id, "seat_ids": seat_ids}
    if best:
        item["best"] = best  # the worker chooses the seats
    return item


def _precheck_release(uid, p):
    owner, status, _expires_at = holds.hold_state(db.session, p["hold_id"])
    holds.check_release(p["hold_id"], owner, status, uid)
    return {"hold_id": p["hold_id"]}


def _precheck_pay(uid, p):
    known, (owner, status, expires_at) = checkout.keyed_payment_and_hold(
        db.session, uid, p["idempotency_key"], p["hold_id"])
    if known is not None and known[1] != "pending" and not records.recorded(
            db.session, [(uid, p["request_id"])]):
        # Finished under this key, asked by a new request: the worker answers from that
        # payment (the same order_id, or key_reused for another hold), charging nothing.
        # (The same request again is answered from its record, in submit.)
        return {"hold_id": p["hold_id"], "idempotency_key": p["idempotency_key"],
                "card_token": None, "brand": known[2], "last4": known[3]}
    checkout.check_payable(p["hold_id"], owner, status, expires_at, uid, utcnow(),
                           in_progress_ok=True)
    token = _card_token(p)
    return {"hold_id": p["hold_id"], "idempotency_key": p["idempotency_key"],
            "card_token": token.token, "brand": token.brand, "last4": token.last4}


def _card_token(p):
    """The processor's token for the payment's card: made here from the card (the simulated
    processor), or made in the browser by the processor's own fields (Stripe.js) and checked.

    Raises InvalidRequest for a token the processor refuses, Busy when it does not answer.
    """
    processor = runtime().processor
    try:
        if "payment_token" in p:
            return processor.accept_token(p.pop("payment_token"))
        # The card goes no further than this process: only the processor's token,
        # the brand and the last 4 digits travel to the workers.
        return processor.tokenize(**p.pop("card"))
    except TokenInvalid:
        raise InvalidRequest("This card cannot be used with this payment processor; "
                             "enter it again.", fields={"payment_token": ["Not valid."]}) from None
    except ProcessorUnavailable:
        raise Busy("The payment processor did not answer; please try again.",
                   retry_after_s=2) from None


_PRECHECKS = {"hold": _precheck_hold, "release": _precheck_release, "pay": _precheck_pay}


# ------------------------------------------------------------- to the workers

def route(items, batch_max):
    """[(task, args)] performing items: holds and releases in batches, payments in batches
    of their own (a payment waits on the processor; a hold must not wait on it)."""
    from workers import tasks
    batchable = [i for i in items if i["kind"] != "pay"]
    pays = [i for i in items if i["kind"] == "pay"]
    return ([(tasks.process_requests, [batchable[start:start + batch_max]])
             for start in range(0, len(batchable), batch_max)]
            + [(tasks.pay_many, [pays[start:start + batch_max]])
               for start in range(0, len(pays), batch_max)])


def send_to_workers(items, batch_max):
    """Publish items' tasks to the broker (Redis mode)."""
    for task, args in route(items, batch_max):
        # The message's own summary of its arguments, for logs and monitors: Celery
        # otherwise builds a bounded repr of the whole batch on every send (1.5% of a
        # web process's CPU in bench/holds.py).
        task.apply_async(args=args, kwargsrepr="{}", argsrepr=f"({len(args[0])} requests)")


def run_here(items):
    """The embedded mode: perform items' tasks in this process, eagerly."""
    try:
        for task, args in route(items, max(1, len(items))):
            task.apply(args=args, throw=True)
    except Exception:
        log.exception("in-process task failed")


def make_dispatcher(app):
    """Redis mode: batches to the broker; embedded mode: the tasks run in this process."""
    if app.config["REDIS_URL"]:
        batch_max = app.config["REQUEST_BATCH_MAX"]
        return BatchingDispatcher(socketio, lambda items: send_to_workers(items, batch_max),
                                  batch_max, app.config["REQUEST_BATCH_INTERVAL_MS"] / 1000,
                                  app.config["REQUEST_BATCH_FULL_RATE"])
    return InlineDispatcher(socketio, run_here)


class _Ticket:
    __slots__ = ("item", "done", "error")

    def __init__(self, item, done):
        self.item = item
        self.done = done
        self.error = None


class BatchingDispatcher:
    """Groups requests from many handlers into one task message (Redis mode, eventlet)."""

    def __init__(self, socketio, send_batch, batch_max, interval_s=0.0, full_rate=0.0,
                 clock=time.monotonic):
        self.socketio = socketio
        self.send_batch = send_batch
        self.batch_max = batch_max
        # At most one task message per interval. Without it, batches form only
        # while a publish is in flight (~1 ms): under load a web process sent
        # tasks of 1 to 3 requests, the workers spent most of their CPU on the
        # cost of a task rather than on the requests in it, fell behind, and
        # the answers took seconds (docs/BENCHMARKS.md, "#13: one task per interval").
        # The interval grows with this process's request rate, up to interval_s
        # at full_rate requests a second (0: always interval_s): a lightly loaded
        # process makes its requests wait less. full_rate stays low: the workers
        # may be busy with other work (payments) while few requests come here.
        self.interval_s = interval_s
        self.full_rate = full_rate
        self.clock = clock
        self._sent_at = None
        self._rate, self._rate_at = 0.0, clock()   # requests a second, decayed over 1 s
        self._full = socketio.server.eio.create_event()   # a full batch is waiting
        self._queue = deque()
        self._running = False

    def count_request(self, now):
        self._rate, self._rate_at = self.rate(now) + 1.0, now

    def rate(self, now=None):
        """This process's requests a second lately (an exponentially decayed count, 1 s)."""
        now = self.clock() if now is None else now
        return self._rate * math.exp(self._rate_at - now)

    def interval(self, now=None):
        if not self.full_rate:
            return self.interval_s
        return self.interval_s * min(1.0, self.rate(now) / self.full_rate)

    def submit(self, item):
        """Return once the request is in the broker; raise Busy if it could not be sent."""
        ticket = _Ticket(item, self.socketio.server.eio.create_event())
        self.count_request(self.clock())
        self._queue.append(ticket)
        if len(self._queue) >= self.batch_max:
            self._full.set()
        if not self._running:
            self._running = True
            self.socketio.start_background_task(self._drain)
        ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error

    def _wait(self):
        """Seconds until the next message may go: 0 once the interval since the last
        one has passed, or when a full batch is waiting."""
        if self._sent_at is None or len(self._queue) >= self.batch_max:
            return 0.0
        now = self.clock()
        return self._sent_at + self.interval(now) - now

    def _drain(self):
        try:
            while self._queue:
                self._full.clear()
                wait = self._wait()
                if wait > 0:
                    self._full.wait(wait)
                batch = [self._queue.popleft()
                         for _ in range(min(self.batch_max, len(self._queue)))]
                self._sent_at = self.clock()
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
