"""POST /webhooks/stripe: Stripe's events about our payments (PAYMENT_PROCESSOR=stripe).

Who asks: only Stripe, proven by the Stripe-Signature header (an HMAC of the
body with the endpoint's signing secret, STRIPE_WEBHOOK_SECRET, and a
timestamp no older than 5 minutes); anything else is 400 and changes nothing.

Stripe delivers each event at least once, in any order: an event id already
applied is acknowledged and skipped, and an event only names the intent to
settle; its outcome is read from Stripe afresh (booking.settlement), so a
`payment_failed` arriving after a `succeeded` cannot undo a sale. An event
that could not be applied answers 503, and Stripe delivers it again later.
"""
import logging

import sqlalchemy as sa
import stripe
from flask import Blueprint, current_app, jsonify, request

from . import settlement
from .errors import Busy, InvalidRequest, NotFound
from .payloads import error_body
from .extensions import db
from .models import StripeEvent, utcnow
from .payments import ProcessorUnavailable
from .transactions import run_transaction
from .runtime import runtime

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__)

# Events about a PaymentIntent: each settles that intent from Stripe's record.
INTENT_EVENTS = ("payment_intent.succeeded", "payment_intent.payment_failed",
                 "payment_intent.canceled", "payment_intent.requires_action",
                 "payment_intent.processing")
REFUND_EVENTS = ("charge.refunded", "charge.refund.updated")


def _rt():
    return runtime()


@bp.post("/webhooks/stripe")
def stripe_webhook():
    processor = _rt().processor
    if processor.name != "stripe":
        raise NotFound("No such endpoint.")
    try:
        event = stripe.Webhook.construct_event(
            request.get_data(), request.headers.get("Stripe-Signature", ""),
            processor.webhook_secret)
    except (ValueError, stripe.SignatureVerificationError) as err:
        raise InvalidRequest("The event's signature or body is not valid.") from err
    if _seen(event.id):
        return jsonify({"ok": True, "duplicate": True})
    try:
        outcome = apply_event(event)
    except ProcessorUnavailable:
        log.warning("Stripe did not answer while applying %s; Stripe will send it again",
                    event.id)
        busy = Busy("Stripe did not answer; send the event again.", retry_after_s=5)
        return jsonify(error_body(busy)), 503
    _remember(event)
    return jsonify({"ok": True, "outcome": outcome})


def apply_event(event):
    """Apply one verified event; returns what it did. Raises ProcessorUnavailable."""
    obj = event.data.object.to_dict()
    timeout = current_app.config["PAYMENT_TIMEOUT_SECONDS"]
    rt = _rt()
    if event.type in INTENT_EVENTS:
        key = rt.processor.key_of_intent(obj.get("id")) or (obj.get("metadata") or {}).get("payment_key")
        return settlement.settle_key(rt, key, timeout) if key else "unknown"
    if event.type in REFUND_EVENTS:
        intent_id = obj.get("payment_intent")
        key = rt.processor.key_of_intent(intent_id) if intent_id else None
        return settlement.note_processor_refund(rt, key, timeout) if key else "unknown"
    return "ignored"


def _seen(event_id):
    found = db.session.scalar(sa.select(StripeEvent.id).where(StripeEvent.id == event_id))
    db.session.rollback()
    return found is not None


def _remember(event):
    def write(session):
        try:
            with session.begin_nested():
                session.add(StripeEvent(id=event.id, type=event.type, received_at=utcnow()))
        except sa.exc.IntegrityError:
            pass  # applied concurrently by another delivery: applying is idempotent
    run_transaction(write)
