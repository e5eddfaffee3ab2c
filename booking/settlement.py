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


def note_processor_refund(rt, key, timeout_s, send=None):
    """A refund made at the processor (in Stripe's dashboard, say), reported by its webhook.

    A charge fully refunded there that never became an order is recorded as
    refunded. For an order, every refund the processor holds that is not
    recorded here yet becomes a refund record through the one refund module
    (booking.refunds.record_processor_refunds): the refunded tickets turn void
    and their seats available, as for a refund made in the back office. A
    refund we made ourselves, echoed back, and the same event twice change
    nothing. Returns the charge's status. Raises ProcessorUnavailable.
    """
    from . import refunds
    from .transactions import run_transaction
    charge = rt.processor.lookup(key=key, timeout_s=timeout_s)
    if charge is None:
        return "none"
    order_id = db.session.scalar(sa.select(Payment.order_id).where(Payment.processor_key == key))
    db.session.rollback()
    if order_id is None:
        if charge.status == "refunded":
            run_transaction(lambda s: checkout.mark_refunded(s, [key]))
        return charge.status
    if send is None:
        from workers.tasks import send
    refunds.record_processor_refunds(rt, key, send, timeout_s)
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
    """Settle payments left pending, cancel abandoned challenges, refund orphaned captures,
    and refund captures found under the key of a payment we recorded as failed.

    A payment pending past twice the processor timeout is looked up; one still
    waiting on the buyer's 3-D Secure challenge after PAYMENT_ACTION_TIMEOUT_SECONDS
    is cancelled at the processor (its hold goes back, and the sweep releases
    it once expired). What the processor does not answer now, the next run retries.
    """
    now = now or utcnow()
    timeout = config["PAYMENT_TIMEOUT_SECONDS"]
    abandon_before = now - timedelta(seconds=config["PAYMENT_ACTION_TIMEOUT_SECONDS"])
    pending, failed, orphans = checkout.unsettled_payments(
        db.session, pending_older_than_s=timeout * 2, now=now)
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
    _recheck_failed(rt, failed, timeout, now)
    from workers.tasks import _refund
    _refund(orphans)


def _recheck_failed(rt, failed, timeout, now):
    """Ask the processor, by key, about payments that failed without its word on a charge
    (a refused token, no charge found, an error): a capture found there cannot become an
    order any more (the buyer was told it failed) and is refunded through finish_payment.
    The rest are marked checked, so each is asked about once."""
    from .transactions import run_transaction
    checked = []
    for payment_id, key in failed:
        try:
            charge = rt.processor.lookup(key=key, timeout_s=timeout)
            if charge is not None and charge.status in WAITING:
                charge = rt.processor.cancel(key=key, timeout_s=timeout)
        except ProcessorUnavailable:
            continue
        if charge is not None and charge.status == "captured":
            log.warning("failed payment %s has a capture at the processor; refunding it",
                        payment_id)
            _finish(payment_id, charge)
        elif charge is None or charge.status not in WAITING:
            checked.append(payment_id)
    if checked:
        run_transaction(lambda s: checkout.mark_checked(s, checked, now))
