"""Celery tasks after the sale: sending e-mails from the outbox, settling refunds.

Each task parses its arguments, calls one service and returns; the services
(booking.mail, booking.refunds) hold the rules. Mail is never sent on a
request's path: a committed transaction hands its outbox ids to dispatch(),
and beat hands any row still due to the workers again (dispatch_due_mail).
"""
import logging
import threading

from celery import shared_task
from flask import current_app

from booking import mail
from booking.extensions import db, socketio
from booking.mail_transport import make_transport
from booking.transactions import DatabaseUnavailable
from booking.runtime import runtime

log = logging.getLogger(__name__)


# At most this many rows in one send_mails message (beat's re-dispatch of a backlog).
MAILS_PER_TASK = 50


@shared_task(name="workers.after_sale.send_mails")
def send_mails(outbox_ids):
    """Send these outbox rows' e-mails one after another (the rows one transaction wrote:
    one message to the broker for them all), each unless another delivery has it or sent
    it. A row whose mail fails for a reason of its own stays pending (its lease runs out
    and beat hands it out again), and the others go on."""
    transport = make_transport(current_app.config)
    for n, outbox_id in enumerate(outbox_ids):
        try:
            outcome = mail.deliver_mail(int(outbox_id), transport)
        except DatabaseUnavailable:
            # The rows stay pending; their leases run out and beat hands them out again.
            log.warning("database unavailable; mails %s left for the next round",
                        list(outbox_ids[n:]))
            return
        except Exception:
            log.exception("mail %s failed; beat hands it out again", outbox_id)
            continue
        log.info("mail %s: %s", outbox_id, outcome)


@shared_task(name="workers.after_sale.send_mail")
def send_mail(outbox_id):
    """One row (the message of workers before mails were sent in batches)."""
    send_mails([outbox_id])


@shared_task(name="workers.after_sale.dispatch_due_mail")
def dispatch_due_mail():
    """Hand every due, unleased outbox row to the workers (new, deferred, or left by a dead worker)."""
    ids = mail.due_mail_ids(db.session)
    db.session.rollback()
    for start in range(0, len(ids), MAILS_PER_TASK):
        send_mails.apply_async(args=[ids[start:start + MAILS_PER_TASK]])
    if ids:
        log.info("dispatched %d due mails", len(ids))


@shared_task(name="workers.after_sale.reconcile_refunds")
def reconcile_refunds():
    """Settle refunds whose processor answer never came (booking.refunds)."""
    from booking import refunds
    refunds.reconcile_refunds(runtime())


def dispatch(outbox_ids):
    """Send these rows' mails (call after the transaction that wrote them committed).

    With a broker, one send_mails message for them all (one each cost a worker a
    publish per order: a tenth of its CPU in a flash sale); in the embedded mode,
    in a background thread of this process, so that no request waits on SMTP. A
    failure here loses nothing: the rows are pending, and the next
    dispatch_due_mail takes them.
    """
    if not outbox_ids:
        return
    app = current_app._get_current_object()
    if app.extensions["celery"].conf.task_always_eager:
        def run():
            with app.app_context():
                try:
                    send_mails.apply(args=[list(outbox_ids)], throw=True)
                except Exception:
                    log.exception("in-process mails %s failed", outbox_ids)
        if app.config.get("ROLE") == "web" and socketio.server is not None:
            socketio.start_background_task(run)
        else:
            threading.Thread(target=run, daemon=True).start()
        return
    try:
        send_mails.apply_async(args=[list(outbox_ids)])
    except Exception:
        log.warning("could not enqueue mails %s; beat will", outbox_ids, exc_info=True)


def run_embedded_loop(app):
    """The embedded mode's beat for these tasks (no Celery beat runs there)."""
    interval = app.config["MAIL_RETRY_INTERVAL_SECONDS"]
    ticks = 0
    while True:
        socketio.sleep(interval)
        ticks += 1
        with app.app_context():
            for task in (dispatch_due_mail, reconcile_refunds):
                try:
                    task.apply(throw=True)
                except Exception:
                    log.exception("%s failed", task.name)
