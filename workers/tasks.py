"""Celery tasks: each runs one service in one transaction, commits, then sends.

Every task is safe to run twice (requests are recorded by request_id), which is
what makes acks_late and redelivery after a lost worker safe.
"""
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from celery import shared_task
from celery.exceptions import Retry
from flask import current_app

from booking import checkout, holds, intake, sales, settlement, waiting_room
from booking.errors import BookingError, Busy
from booking.models import utcnow
from booking.outcome import merged
from booking.payloads import reply
from booking.records import RESULT_EVENTS
from booking.runtime import runtime
from booking.state.ledger import open_hold_changes
from booking.delivery import PublishFailed
from booking.extensions import db
from booking.payments import ProcessorUnavailable, TokenInvalid
from booking.transactions import DatabaseUnavailable, run_transaction

log = logging.getLogger(__name__)

DB_RETRIES = 30  # about a minute of waiting for the database, then `busy`


def send(outcome, items=()):
    """Record answered requests and send results, seat changes and notices (after commit)."""
    rt = runtime()
    # Hold answers later than the latency target slow the derived admission
    # rate (waiting_room.AutoRate); payments wait on the processor, not on us.
    target = current_app.config["LATENCY_TARGET_MS"] / 1000
    now = time.time()
    waits = [now - i["received_at"] for i in items
             if i.get("kind") == "hold" and i.get("received_at")]
    # One round trip: the answers, the buyers' open holds gained and ended (what
    # the web's open-hold pre-check reads), the per-second counters, and the
    # per-event latency counts of the organizer's live dashboard (booking.sales).
    opened, closed = open_hold_changes(outcome.results, outcome.notices)
    rt.ledger.finish_many(outcome.results, late=sum(1 for w in waits if w > target),
                          slow=sum(1 for w in waits if w > target / 2),
                          opened=opened, closed=closed,
                          counts=sales.hold_answer_counts(
                              current_app.config["REDIS_NAMESPACE"], items, now))
    # The answers are recorded (ledger and durable record) before they are
    # published: a re-sent request is answered from them. A failed publish is
    # raised after the rest went out (booking.delivery): the task runs again and
    # re-sends them from the records; the client's re-send covers the rest.
    # Answers and notices go out in one publish.
    unsent = None
    try:
        rt.broadcaster.to_users([(user_id, event, payload)
                                 for user_id, _rid, event, payload in outcome.results]
                                + list(outcome.notices))
    except PublishFailed as err:
        unsent = err
    rt.broadcaster.seats(outcome.seat_changes())
    if outcome.mails:
        from workers.after_sale import dispatch
        dispatch(outcome.mails)
    rt.metrics.results(outcome.results, {
        (i["user_id"], i["request_id"]): i.get("received_at") for i in items})
    if unsent is not None:
        raise unsent


def _answer_unrecorded(items, err):
    """Answer each request with err; nothing was recorded, so the same request_id may be re-sent."""
    rt = runtime()
    results = []
    for item in items:
        event = RESULT_EVENTS[item["kind"]]
        results.append((item["user_id"], item["request_id"], event,
                        reply(item["request_id"], err, event=event)))
        rt.ledger.forget(item["user_id"], item["request_id"])
    rt.broadcaster.results(results)
    rt.metrics.results(results)


def _decide(task, items, decide):
    """decide(session) in one transaction: its result, or None once items were answered.

    Busy (the transaction gave up), or the database still unavailable after
    the task's retries: every item is answered with busy and nothing is
    recorded (the same request_id may be sent again). While retries remain,
    the task is retried (Celery's Retry propagates).
    """
    try:
        return run_transaction(decide)
    except Busy as err:
        _answer_unrecorded(items, err)
    except DatabaseUnavailable as exc:
        if task.request.retries >= task.max_retries or task.request.is_eager:
            _answer_unrecorded(items, Busy("The box office database is unavailable.",
                                           retry_after_s=5))
        else:
            log.warning("database unavailable; retrying %d requests", len(items))
            raise task.retry(countdown=min(2.0, 0.25 * 2 ** task.request.retries), exc=exc)
    return None


@shared_task(bind=True, name="workers.tasks.process_requests", max_retries=DB_RETRIES)
def process_requests(self, items):
    """Decide a batch of hold and release requests in one transaction, then answer each."""
    rt = runtime()
    try:
        outcome = _decide(self, items, lambda s: holds.process_requests(s, items, rt.settings))
    except Retry:
        raise
    except Exception:
        # A bug, not a transient state: answer every request rather than leave
        # buyers waiting; nothing was committed or recorded.
        log.exception("batch of %d requests failed", len(items))
        _answer_unrecorded(items, BookingError(code="internal"))
        return
    if outcome is None:
        return
    rt.metrics.batch(len(items))
    try:
        send(outcome, items)
    except Exception as exc:
        # Committed but not sent: run again; the requests are recorded, so the
        # rerun only re-sends their results.
        log.warning("could not send results; retrying", exc_info=True)
        raise self.retry(countdown=1, exc=exc)


@shared_task(name="workers.tasks.sweep_holds")
def sweep_holds():
    """Release holds that expired and holds of buyers gone longer than the grace period."""
    rt = runtime()
    # What had run out when the sweep started, in chunks of release_expired's limit. In
    # a sale holds run out every moment: chasing them until none was left, one sweep
    # ran for seconds of small transactions and kept a worker from the requests. What
    # runs out meanwhile is the next sweep's (a request may take it at once anyway).
    now = utcnow()
    while True:
        outcome = run_transaction(lambda s: holds.release_expired(s, now=now))
        send(outcome)
        if not outcome.seats:
            break
    holders = holds.holders(db.session)
    db.session.rollback()  # end the read transaction
    if not holders:
        return
    seen = rt.presence.last_seen(holders)
    cutoff = time.time() - current_app.config["DISCONNECT_GRACE_SECONDS"]
    gone = [user for user in holders if user in seen and seen[user] < cutoff]
    if gone:
        def release(session):
            hold_ids = holds.held_by(session, gone)
            log.info("releasing %d holds of %d departed buyers", len(hold_ids), len(gone))
            return holds.release_holds(session, hold_ids, "released")
        send(run_transaction(release))


@shared_task(name="workers.tasks.requeue_overdue_requests")
def requeue_overdue_requests():
    """Enqueue again accepted requests that no worker answered in REQUEUE_AFTER_SECONDS."""
    rt = runtime()
    items = rt.ledger.overdue(current_app.config["REQUEUE_AFTER_SECONDS"])
    if items:
        log.warning("re-enqueueing %d overdue requests", len(items))
        intake.send_to_workers(items, current_app.config["REQUEST_BATCH_MAX"])


@shared_task(bind=True, name="workers.tasks.pay", max_retries=DB_RETRIES)
def pay(self, item):
    """One payment (the message of web processes before payments were batched)."""
    _pay(self, [item])


@shared_task(bind=True, name="workers.tasks.pay_many", max_retries=DB_RETRIES)
def pay_many(self, items):
    """Charge holds, each under its buyer's idempotency key, then sell their seats (or give
    them back): one transaction before the charges and one after, for the whole batch."""
    _pay(self, items)


def _pay(task, items):
    # A round's charges are asked at once: as many as the processor is asked at
    # once, so a round waits at most one charge's time (PAYMENT_TIMEOUT_SECONDS).
    unsent = None
    for part in checkout.payment_rounds(items,
                                        max(1, current_app.config["PAYMENT_CONCURRENCY"])):
        try:
            _pay_round(task, part)
        except PublishFailed as err:
            unsent = err   # the other rounds go on
    if unsent is not None:
        # Decided and recorded, answers not all published: run again. The records
        # answer what was decided (sent again), and a payment begun but not charged
        # is charged under its key, which never charges twice.
        log.warning("could not send payments' results; retrying", exc_info=unsent)
        raise task.retry(countdown=1, exc=unsent)


def _pay_round(task, items):
    """Begin, charge and finish one round; raises PublishFailed once the round is done
    if an answer was not published."""
    rt = runtime()
    starts = _decide(task, items, lambda s: checkout.begin_payments(s, items, rt.processor.name))
    if starts is None:
        return
    unsent = None
    answered = [(start, item) for start, item in zip(starts, items) if start.payment_id is None]
    if answered:
        try:
            send(merged(start.outcome for start, _i in answered),
                 [item for _s, item in answered])
        except PublishFailed as err:
            unsent = err   # the round's charges go on
    to_charge = [(start, item) for start, item in zip(starts, items)
                 if start.payment_id is not None]
    if to_charge:
        _charge_and_finish(task, rt, to_charge)
    if unsent is not None:
        raise unsent


def _charge_and_finish(task, rt, to_charge):
    # Their seats stopped expiring (committed): watchers learn it before the charges run.
    rt.broadcaster.seats(merged(start.outcome for start, _i in to_charge).seat_changes())
    charged = []
    for (start, item), charge in zip(to_charge, _charges(rt, to_charge)):
        if isinstance(charge, ProcessorUnavailable):
            # Charged or not, nobody knows yet: the payment stays pending and
            # reconciliation asks the processor by key, then answers the buyer.
            log.warning("processor did not answer for payment %s", start.payment_id)
            continue
        if charge is not None and charge.status in settlement.WAITING:
            # 3-D Secure: the hold stays paying while the buyer answers the challenge;
            # the browser, the webhook or reconciliation settles the payment after.
            settlement.ask_buyer_to_act(rt, item, charge)
            continue
        charged.append((start.payment_id, charge, item))
    if not charged:
        return
    try:
        _finish_payments([(pid, charge, item["request_id"]) for pid, charge, item in charged],
                         [item for _p, _c, item in charged])
    except DatabaseUnavailable as exc:
        # Charged but not recorded: run again; the same keys will not charge twice.
        raise task.retry(countdown=1, exc=exc)


_charge_pool = None


def _charges(rt, to_charge):
    """The processor's answer for each started payment of a round [(start, item)], or the
    ProcessorUnavailable it raised, in order. Asked at once (a processor answers over the
    network: a round waits for its slowest charge, not for the sum of them). Any other
    error fails the task once the round's charges ran: its payments stay pending, and
    reconciliation and the re-send of overdue requests settle them by key."""
    if len(to_charge) == 1:
        return [_charge_or_unavailable(rt, *to_charge[0])]
    global _charge_pool
    if _charge_pool is None:  # in this process (a prefork child makes its own)
        _charge_pool = ThreadPoolExecutor(max(1, current_app.config["PAYMENT_CONCURRENCY"]),
                                          thread_name_prefix="charge")
    app = current_app._get_current_object()

    def charge_in_app(pair):
        with app.app_context():
            return _charge_or_unavailable(rt, *pair)
    return list(_charge_pool.map(charge_in_app, to_charge))


def _charge_or_unavailable(rt, start, item):
    try:
        return _charge(rt, start, item)
    except ProcessorUnavailable as err:
        return err


def _charge(rt, start, item):
    """The processor's answer for a started payment; raises ProcessorUnavailable."""
    timeout = current_app.config["PAYMENT_TIMEOUT_SECONDS"]
    try:
        return rt.processor.charge(key=start.processor_key, amount_cents=start.amount_cents,
                                   currency=start.currency, card_token=item["card_token"],
                                   timeout_s=timeout,
                                   metadata={"hold_id": item["hold_id"],
                                             "user_id": item["user_id"]})
    except TokenInvalid:
        # This token cannot charge (expired, used, or none: a repeat of the key). An
        # earlier attempt under the same key may have: the processor says, by key,
        # whether anything was charged.
        log.info("card token of payment %s refused; asking the processor by key",
                 start.payment_id)
        return rt.processor.lookup(key=start.processor_key, timeout_s=timeout)


def _finish_payment(payment_id, charge, items=(), request_id=None):
    _finish_payments([(payment_id, charge, request_id)], items)


def _finish_payments(entries, items=()):
    outcome = run_transaction(lambda s: checkout.finish_payments(s, entries))
    _refund(outcome.refunds)
    send(outcome, items)


def _refund(keys):
    """Refund captures that cannot become orders; what fails now, reconciliation retries."""
    rt = runtime()
    done = []
    for key in keys:
        try:
            rt.processor.refund(key=key, timeout_s=current_app.config["PAYMENT_TIMEOUT_SECONDS"])
            done.append(key)
        except ProcessorUnavailable:
            log.warning("refund of %s not confirmed; reconciliation will retry", key)
    if done:
        run_transaction(lambda s: checkout.mark_refunded(s, done))


@shared_task(name="workers.tasks.reconcile_payments")
def reconcile_payments():
    """Settle payments whose processor answer never came, and refund orphaned captures."""
    settlement.reconcile(runtime(), current_app.config)


@shared_task(name="workers.tasks.admit_waiting_buyers")
def admit_waiting_buyers(now=None):
    """Move buyers from waiting rooms to admitted at each room's rate, commit, then tell them.

    now: the tick's unix time (beat leaves it out; tests pass it). Returns
    {event_id: buyers admitted}.
    """
    rt = runtime()
    tick = waiting_room.admit_due(db.session, rt.waiting_room, rt.shedding.pressure,
                                  current_app.config, now=now)
    db.session.commit()   # rooms drained empty are turned off
    rt.broadcaster.to_users(tick.notices)
    for message in tick.positions:
        rt.broadcaster.queue_positions(message)
    return tick.admitted
