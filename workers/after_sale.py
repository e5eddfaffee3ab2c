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


@shared_task(name="workers.after_sale.send_mail")
def send_mail(outbox_id):
    """Send one outbox row's e-mail, unless another delivery of this task has it or sent it."""
    try:
        outcome = mail.deliver_mail(int(outbox_id), make_transport(current_app.config))
    except DatabaseUnavailable:
        # The row stays pending; its lease runs out and beat hands it out again.
        log.warning("database unavailable; mail %s left for the next round", outbox_id)
        return
    log.info("mail %s: %s", outbox_id, outcome)


@shared_task(name="workers.after_sale.dispatch_due_mail")
def dispatch_due_mail():
    """Hand every due, unleased outbox row to the workers (new, deferred, or left by a dead worker)."""
    ids = mail.due_mail_ids(db.session)
    db.session.rollback()
    for outbox_id in ids:
        send_mail.apply_async(args=[outbox_id])
    if ids:
        log.info("dispatched %d due mails", len(ids))


@shared_task(name="workers.after_sale.reconcile_refunds")
def reconcile_refunds():
    """Settle refunds whose processor answer never came (booking.refunds)."""
    from booking import refunds
    refunds.reconcile_refunds(runtime())


def dispatch(outbox_ids):
    """Send these rows' mails (call after the transaction that wrote them committed).

    With a broker, one task each; in the embedded mode, in a background thread
    of this process, so that no request waits on SMTP. A failure here loses
    nothing: the rows are pending, and the next dispatch_due_mail takes them.
    """
    if not outbox_ids:
        return
    app = current_app._get_current_object()
    if app.extensions["celery"].conf.task_always_eager:
        def run():
            with app.app_context():
                for outbox_id in outbox_ids:
                    try:
                        send_mail.apply(args=[outbox_id], throw=True)
                    except Exception:
                        log.exception("in-process mail %s failed", outbox_id)
        if app.config.get("ROLE") == "web" and socketio.server is not None:
            socketio.start_background_task(run)
        else:
            threading.Thread(target=run, daemon=True).start()
        return
    try:
        for outbox_id in outbox_ids:
            send_mail.apply_async(args=[outbox_id])
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
