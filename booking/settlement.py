"""Settling a payment from the processor's own record, whoever asks first.

A payment whose outcome the charging worker did not see (3-D Secure sent the
buyer to a challenge; the worker died; the answer timed out) is settled by the
first of: the buyer's browser saying it finished (relayed by the socket), the
processor's webhook, or reconciliation. Each of them only names the payment:
the outcome is read from the processor, and checkout.finish_payment applies it
under the hold's locks, so exactly one order per hold results whichever wins,
and a success that can no longer become an order is refunded.
"""
import logging
from datetime import timedelta

import sqlalchemy as sa

from . import checkout
from .extensions import db
from .models import Payment, utcnow
from .payments import ProcessorUnavailable

log = logging.getLogger(__name__)

# Outcomes that are not final: the payment stays pending meanwhile.
WAITING = ("requires_action", "processing")
ACTION_EVENT = "payment_action"


def _finish(payment_id, charge, items=(), request_id=None):
    from workers.tasks import _finish_payment
    _finish_payment(payment_id, charge, items, request_id)


def ask_buyer_to_act(rt, item, charge):
    """Send the buyer's browser what it needs to show the processor's challenge."""
    if charge.status != "requires_action" or not charge.client_secret:
        return
    rt.broadcaster.to_user(item["user_id"], ACTION_EVENT, {
        "request_id": item["request_id"], "hold_id": item["hold_id"],
        "client_secret": charge.client_secret})


def settle_key(rt, key, timeout_s):
    """Read the charge made under processor key and apply it if it is final.

    Returns the charge's status ('unknown' for a payment not ours, 'waiting'
    while the buyer or the processor is not done, 'none' while no charge
    exists: only reconciliation, past the processor timeout, concludes from
    that that there will be none). Raises ProcessorUnavailable.
    """
    payment_id = db.session.scalar(sa.select(Payment.id).where(Payment.processor_key == key))
    db.session.rollback()
    if payment_id is None:
        return "unknown"
    charge = rt.processor.lookup(key=key, timeout_s=timeout_s)
    if charge is None:
        return "none"
    if charge.status in WAITING:
        return "waiting"
    _finish(payment_id, charge)
    return charge.status


def note_processor_refund(rt, key, timeout_s):
    """A refund made at the processor (in Stripe's dashboard, say), reported by its webhook.

    A charge fully refunded there that never became an order is recorded as
    refunded. A refunded order is reported (logged here, and by the audit,
    which compares every order with the processor's refunds) for the
    organizer to settle: its tickets are not voided behind their back.
    Raises ProcessorUnavailable.
    """
    from .transactions import run_transaction
    charge = rt.processor.lookup(key=key, timeout_s=timeout_s)
    if charge is None:
        return "none"
    order_id = db.session.scalar(sa.select(Payment.order_id).where(Payment.processor_key == key))
    db.session.rollback()
    if charge.status == "refunded" and order_id is None:
        run_transaction(lambda s: checkout.mark_refunded(s, [key]))
    elif order_id is not None:
        log.warning("order %s was refunded at the processor (%s); the audit reports it",
                    order_id, charge.status)
    return charge.status


def payment_key(session, user_id, hold_id, idempotency_key):
    """The processor key of this buyer's payment for this hold. Raises NotFound."""
    from .errors import NotFound
    key = checkout.processor_key(user_id, idempotency_key)
    hold = session.scalar(sa.select(Payment.hold_id).where(Payment.processor_key == key))
    if hold is None or hold != hold_id:
        raise NotFound("No such payment for this hold.", hold_id=hold_id)
    return key


def reconcile(rt, config, now=None):
    """Settle payments left pending, cancel abandoned challenges, refund orphaned captures.

    A payment pending past twice the processor timeout is looked up; one still
    waiting on the buyer's 3-D Secure challenge after PAYMENT_ACTION_TIMEOUT_SECONDS
    is cancelled at the processor (its hold goes back, and the sweep releases
    it once expired). What the processor does not answer now, the next run retries.
    """
    now = now or utcnow()
    timeout = config["PAYMENT_TIMEOUT_SECONDS"]
    abandon_before = now - timedelta(seconds=config["PAYMENT_ACTION_TIMEOUT_SECONDS"])
    pending, orphans = checkout.unsettled_payments(db.session, pending_older_than_s=timeout * 2,
                                                   now=now)
    started = dict(db.session.execute(sa.select(Payment.id, Payment.created_at).where(
        Payment.id.in_([p for p, _k in pending]))).all()) if pending else {}
    db.session.rollback()
    for payment_id, key in pending:
        try:
            charge = rt.processor.lookup(key=key, timeout_s=timeout)
            if charge is not None and charge.status in WAITING:
                if started.get(payment_id, now) > abandon_before:
                    continue
                log.info("payment %s waited on the buyer too long; cancelling", payment_id)
                charge = rt.processor.cancel(key=key, timeout_s=timeout)
                if charge is not None and charge.status in WAITING:
                    continue
        except ProcessorUnavailable:
            continue
        log.info("reconciling payment %s: processor says %s", payment_id,
                 charge.status if charge else "no charge")
        _finish(payment_id, charge)
    from workers.tasks import _refund
    _refund(orphans)
