"""Celery tasks: each runs one service in one transaction, commits, then sends.

Every task is safe to run twice (requests are recorded by request_id), which is
what makes acks_late and redelivery after a lost worker safe.
"""
import logging
import time

from celery import shared_task
from flask import current_app

from booking import holds
from booking.errors import BookingError, Busy
from booking.extensions import db
from booking.transactions import DatabaseUnavailable, run_transaction

log = logging.getLogger(__name__)

DB_RETRIES = 30  # about a minute of waiting for the database, then `busy`


def _runtime():
    return current_app.extensions["boxoffice"]


def send(outcome, items=()):
    """Record answered requests and send results, seat changes and notices (after commit)."""
    rt = _runtime()
    rt.ledger.finish_many(outcome.results)
    rt.broadcaster.results(outcome.results)
    rt.broadcaster.seats(outcome.seat_changes())
    for user_id, event, payload in outcome.notices:
        rt.broadcaster.to_user(user_id, event, payload)
    rt.metrics.results(outcome.results, {
        (i["user_id"], i["request_id"]): i.get("received_at") for i in items})


def _answer_unrecorded(items, err):
    """Answer each request with err; nothing was recorded, so the same request_id may be re-sent."""
    rt = _runtime()
    results = []
    for item in items:
        event = "hold_result" if item["kind"] == "hold" else "release_result"
        results.append((item["user_id"], item["request_id"], event,
                        holds.result_payload(item["request_id"], False, err)))
        rt.ledger.forget(item["user_id"], item["request_id"])
    rt.broadcaster.results(results)
    rt.metrics.results(results)


@shared_task(bind=True, name="workers.tasks.process_requests", max_retries=DB_RETRIES)
def process_requests(self, items):
    """Decide a batch of hold and release requests in one transaction, then answer each."""
    rt = _runtime()
    try:
        outcome = run_transaction(lambda s: holds.process_requests(s, items, rt.settings))
    except Busy as err:
        _answer_unrecorded(items, err)
        return
    except DatabaseUnavailable as exc:
        if self.request.retries >= self.max_retries or self.request.is_eager:
            _answer_unrecorded(items, Busy("The box office database is unavailable.", retry_after_s=5))
            return
        log.warning("database unavailable; retrying %d requests", len(items))
        raise self.retry(countdown=min(2.0, 0.25 * 2 ** self.request.retries), exc=exc)
    except Exception:
        # A bug, not a transient state: answer every request rather than leave
        # buyers waiting; nothing was committed or recorded.
        log.exception("batch of %d requests failed", len(items))
        _answer_unrecorded(items, BookingError(code="internal"))
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
    rt = _runtime()
    while True:
        outcome = run_transaction(lambda s: holds.release_expired(s))
        send(outcome)
        if not outcome.seats:
            break
    holders = holds.holders(db.session)
    db.session.rollback()  # end the read transaction
    if not holders:
        return
    seen = rt.presence.last_seen(list(holders))
    cutoff = time.time() - current_app.config["DISCONNECT_GRACE_SECONDS"]
    gone = [h for user, hold_ids in holders.items()
            if user in seen and seen[user] < cutoff for h in hold_ids]
    if gone:
        log.info("releasing %d holds of departed buyers", len(gone))
        send(run_transaction(lambda s: holds.release_holds(s, gone, "released")))


@shared_task(name="workers.tasks.requeue_overdue_requests")
def requeue_overdue_requests():
    """Enqueue again accepted requests that no worker answered in REQUEUE_AFTER_SECONDS."""
    rt = _runtime()
    items = rt.ledger.overdue(current_app.config["REQUEUE_AFTER_SECONDS"])
    if items:
        log.warning("re-enqueueing %d overdue requests", len(items))
        batch_max = current_app.config["REQUEST_BATCH_MAX"]
        for start in range(0, len(items), batch_max):
            process_requests.apply_async(args=[items[start:start + batch_max]])
