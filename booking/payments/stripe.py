"""Stripe behind the processor interface (PAYMENT_PROCESSOR=stripe).

The card never reaches our servers: Stripe.js turns the buyer's card into a
token in the browser, and only the token's id comes to us. A worker makes one
PaymentIntent per processor key (the buyer's idempotency key scoped to the
buyer, sent as Stripe's Idempotency-Key), records the intent's id in
stripe_intents on its own connection, and only then confirms it: a confirmed
intent is therefore always findable by key, whatever dies afterwards.

A confirmation that needs 3-D Secure answers `requires_action` with the
intent's client secret; the buyer's browser shows the challenge with Stripe.js
and Stripe finishes the intent. Whoever learns of the outcome first (the
browser's confirmation relayed by the socket, the webhook, reconciliation)
asks Stripe for the intent's state: nothing a client or an event body says is
taken as the outcome.
"""
import logging

import sqlalchemy as sa
import stripe

from ..extensions import db
from ..models import StripeIntent, utcnow
from . import (CardToken, Charge, Processor, ProcessorRefund, ProcessorUnavailable,
               RefundAnswer, TokenInvalid)

log = logging.getLogger(__name__)

# What Stripe's decline codes mean to the buyer (API.md's reasons, plus 3-D Secure).
DECLINE_REASONS = {
    "insufficient_funds": "insufficient_funds",
    "payment_intent_authentication_failure": "authentication_failed",
    "authentication_required": "authentication_failed",
}
# The metadata marking an intent as ours (one Stripe account may serve other systems).
MARK = "boxoffice"


class StripeProcessor(Processor):
    name = "stripe"

    def __init__(self, app):
        cfg = app.config
        missing = [k for k in ("STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY",
                               "STRIPE_WEBHOOK_SECRET") if not cfg.get(k)]
        if missing:
            raise RuntimeError("PAYMENT_PROCESSOR=stripe needs " + ", ".join(missing))
        self.publishable_key = cfg["STRIPE_PUBLISHABLE_KEY"]
        self.webhook_secret = cfg["STRIPE_WEBHOOK_SECRET"]
        self.timeout_s = cfg["PAYMENT_TIMEOUT_SECONDS"]
        # No retries inside the library: an unanswered call is ProcessorUnavailable,
        # and the caller's own retry (same key) or reconciliation asks again.
        self.client = stripe.StripeClient(
            cfg["STRIPE_SECRET_KEY"], base_addresses={"api": cfg["STRIPE_API_BASE"]},
            http_client=stripe.RequestsClient(timeout=self.timeout_s), max_network_retries=0)
        self.api = self.client.v1
        # The library logs every request at INFO; ours say what happened to a payment.
        logging.getLogger("stripe").setLevel(logging.WARNING)

    # -- cards ---------------------------------------------------------------

    def tokenize(self, **card):
        raise TokenInvalid("card details are entered in Stripe's own fields, never sent here")

    def accept_token(self, token_id):
        """The brand and last 4 of a Stripe.js card token. Raises TokenInvalid, ProcessorUnavailable."""
        with _stripe_errors():
            try:
                token = self.api.tokens.retrieve(token_id)
            except stripe.InvalidRequestError as err:
                raise TokenInvalid(str(err)) from err
        if getattr(token, "used", False) or getattr(token, "type", "card") != "card":
            raise TokenInvalid("token already used or not a card")
        return CardToken(token.id, (token.card.brand or "card").lower()[:20], token.card.last4)

    # -- charging ------------------------------------------------------------

    def charge(self, *, key, amount_cents, currency, card_token, timeout_s, metadata=None):
        """Create (once per key) and confirm the intent; a Charge with status captured,
        declined, failed, requires_action or processing. Raises ProcessorUnavailable."""
        with _stripe_errors():
            intent_id = self._intent_id(key)
            if intent_id is None:
                intent_id = self._create(key, amount_cents, currency, card_token, metadata)
            intent = self._retrieve(intent_id)
            if intent.status == "requires_confirmation":
                try:
                    intent = self.api.payment_intents.confirm(
                        intent_id, options={"idempotency_key": key + ":confirm"})
                except stripe.CardError:
                    intent = self._retrieve(intent_id)
            return _charge_of(intent)

    def _create(self, key, amount_cents, currency, card_token, metadata):
        if not card_token:
            raise TokenInvalid("no card token")
        try:
            token = self.api.tokens.retrieve(card_token)
        except stripe.InvalidRequestError as err:
            raise TokenInvalid(str(err)) from err
        intent = self.api.payment_intents.create(
            {"amount": amount_cents, "currency": currency.lower(),
             "payment_method": token.card.id, "payment_method_types": ["card"],
             "metadata": {MARK: "1", "payment_key": key,
                          **{k: str(v) for k, v in (metadata or {}).items()}}},
            options={"idempotency_key": key})
        try:
            with db.engine.begin() as conn:
                conn.execute(sa.insert(StripeIntent), {
                    "processor_key": key, "intent_id": intent.id, "amount_cents": amount_cents,
                    "currency": currency, "created_at": utcnow()})
        except sa.exc.IntegrityError:
            # The same key ran concurrently and recorded its intent first: that one is
            # the payment's (Stripe answers both creates with it; a server without
            # idempotency keys made a second, unconfirmed one, which moves no money).
            return self._intent_id(key)
        return intent.id

    def lookup(self, *, key, timeout_s):
        """The charge made under key (any state), or None if no intent was ever confirmed."""
        intent_id = self._intent_id(key)
        if intent_id is None:
            return None
        with _stripe_errors():
            intent = self._retrieve(intent_id)
        if intent.status == "requires_confirmation":
            return None  # never confirmed: no money moved (our confirm comes after the record)
        return _charge_of(intent)

    def cancel(self, *, key, timeout_s):
        """Cancel an intent still waiting on the buyer; returns the intent's state afterwards
        (captured if the buyer finished just before). Raises ProcessorUnavailable."""
        intent_id = self._intent_id(key)
        if intent_id is None:
            return None
        with _stripe_errors():
            intent = self._retrieve(intent_id)
            if intent.status in ("requires_action", "requires_confirmation",
                                 "requires_payment_method"):
                try:
                    self.api.payment_intents.cancel(intent_id)
                except stripe.InvalidRequestError:
                    log.info("intent %s could not be cancelled; reading its state", intent_id)
                intent = self._retrieve(intent_id)
        return _charge_of(intent)

    # -- refunds -------------------------------------------------------------

    def refund(self, *, key, timeout_s):
        """Refund whatever is left of the charge made under key (idempotent)."""
        intent_id = self._intent_id(key)
        if intent_id is None:
            return None
        with _stripe_errors():
            intent = self._retrieve(intent_id)
            charge = _latest_charge(intent)
            if intent.status == "succeeded" and charge is not None:
                left = charge.amount - charge.amount_refunded
                if left > 0 and self._refund_by_key(intent_id, key + ":refund") is None:
                    self._create_refund(intent_id, left, key + ":refund")
                intent = self._retrieve(intent_id)
        return _charge_of(intent)

    def refund_part(self, *, key, refund_key, amount_cents, timeout_s):
        """Refund amount_cents of the charge made under key, once per refund_key.

        Returns a RefundAnswer (failed when refused: nothing left to refund, more
        than what is left, no such charge). Raises ProcessorUnavailable when no
        answer came; asking again finds the refund made under refund_key instead
        of making another.
        """
        intent_id = self._intent_id(key)
        if intent_id is None:
            return RefundAnswer("failed", reason="no_charge")
        with _stripe_errors():
            done = self._refund_by_key(intent_id, refund_key)
            if done is not None:
                return _refund_answer(done)
            intent = self._retrieve(intent_id)
            charge = _latest_charge(intent)
            if intent.status != "succeeded" or charge is None:
                return RefundAnswer("failed", reason="not_captured")
            if amount_cents > charge.amount - charge.amount_refunded:
                return RefundAnswer("failed", reason="exceeds_captured")
            try:
                return _refund_answer(self._create_refund(intent_id, amount_cents, refund_key))
            except stripe.InvalidRequestError as err:
                return RefundAnswer("failed", reason=err.code or "refused")

    def _create_refund(self, intent_id, amount_cents, refund_key):
        return self.api.refunds.create(
            {"payment_intent": intent_id, "amount": amount_cents,
             "metadata": {MARK: "1", "refund_key": refund_key}},
            options={"idempotency_key": refund_key})

    def _refund_by_key(self, intent_id, refund_key):
        """The refund made under refund_key, found on the intent (Stripe's idempotency
        keys expire after a day; the refund's metadata does not)."""
        for refund in self.api.refunds.list({"payment_intent": intent_id,
                                             "limit": 100}).auto_paging_iter():
            if _plain(refund.metadata).get("refund_key") == refund_key:
                return refund
        return None

    def refunds_of(self, *, key, timeout_s):
        """Every refund of the intent made under key, oldest first: ours carry our refund
        key in their metadata; one made in Stripe's dashboard carries none."""
        intent_id = self._intent_id(key)
        if intent_id is None:
            return []
        with _stripe_errors():
            found = list(self.api.refunds.list({"payment_intent": intent_id,
                                                "limit": 100}).auto_paging_iter())
        found.sort(key=lambda r: (getattr(r, "created", None) or 0, r.id))
        return [ProcessorRefund(r.id, r.amount,
                                "succeeded" if r.status in ("succeeded", "pending") else "failed",
                                _plain(r.metadata).get("refund_key")) for r in found]

    # -- reading Stripe's records --------------------------------------------

    def intent_state(self, intent_id):
        """The current Charge of one intent (for the webhook and the socket confirmation)."""
        with _stripe_errors():
            return _charge_of(self._retrieve(intent_id))

    def key_of_intent(self, intent_id):
        with db.engine.connect() as conn:
            return conn.scalar(sa.select(StripeIntent.processor_key)
                               .where(StripeIntent.intent_id == intent_id))

    def ledger(self):
        """Every charge of ours Stripe holds: [{idempotency_key, status, amount_cents,
        refunded_cents}], status captured (something kept) or refunded (all given back)."""
        with db.engine.connect() as conn:
            ours = dict(conn.execute(sa.select(StripeIntent.intent_id,
                                               StripeIntent.processor_key)).all())
        if not ours:
            return []
        since = None
        with db.engine.connect() as conn:
            since = conn.scalar(sa.select(sa.func.min(StripeIntent.created_at)))
        entries = []
        with _stripe_errors():
            for intent in self._intents_since(since):
                # Only intents recorded here: we confirm an intent only after recording
                # it, so one we never recorded never took money on our behalf (other
                # systems, or another deployment, may share the account).
                key = ours.get(intent.id)
                if intent.status != "succeeded" or key is None:
                    continue
                charge = _latest_charge(self._retrieve(intent.id))
                refunded = charge.amount_refunded if charge is not None else 0
                entries.append({"idempotency_key": key, "amount_cents": intent.amount,
                                "refunded_cents": refunded, "intent_id": intent.id,
                                "status": "refunded" if refunded >= intent.amount
                                else "captured"})
        return entries

    def _intents_since(self, since):
        params = {"limit": 100}
        if since is not None:
            params["created"] = {"gte": int(since.timestamp()) - 3600}
        try:
            yield from self.api.payment_intents.list(params).auto_paging_iter()
        except stripe.InvalidRequestError:
            # A server that cannot filter by creation time (localstripe): every
            # intent, filtered here by the mark.
            params.pop("created", None)
            yield from self.api.payment_intents.list(params).auto_paging_iter()

    def _intent_id(self, key):
        with db.engine.connect() as conn:
            return conn.scalar(sa.select(StripeIntent.intent_id)
                               .where(StripeIntent.processor_key == key))

    def _retrieve(self, intent_id):
        return self.api.payment_intents.retrieve(intent_id, {"expand": ["latest_charge"]})


class _stripe_errors:
    """Turn 'Stripe did not answer' into ProcessorUnavailable; everything else passes."""

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is None:
            return False
        if isinstance(err, (stripe.APIConnectionError, stripe.RateLimitError)) or (
                isinstance(err, stripe.APIError) and not isinstance(err, stripe.CardError)):
            raise ProcessorUnavailable(f"Stripe did not answer: {err}") from err
        return False


def _plain(obj):
    return obj.to_dict() if obj is not None else {}


def _latest_charge(intent):
    charge = getattr(intent, "latest_charge", None)
    return charge if charge is not None and not isinstance(charge, str) else None


def _charge_of(intent):
    """What a PaymentIntent's current state means to checkout."""
    charge = _latest_charge(intent)
    base = {"reference": intent.id, "amount_cents": intent.amount,
            "currency": (intent.currency or "").upper()}
    if intent.status == "succeeded":
        refunded = charge is not None and charge.amount_refunded >= charge.amount
        return Charge("refunded" if refunded else "captured", **base)
    if intent.status == "requires_action":
        return Charge("requires_action", client_secret=intent.client_secret, **base)
    if intent.status in ("processing", "requires_capture", "requires_confirmation"):
        return Charge("processing", **base)
    error = intent.last_payment_error
    if intent.status == "requires_payment_method" and error:
        code = getattr(error, "decline_code", None) or getattr(error, "code", None) or ""
        return Charge("declined", decline_reason=DECLINE_REASONS.get(code, "card_declined"),
                      **base)
    return Charge("failed", **base)  # canceled, or never given a card


def _refund_answer(refund):
    if refund.status in ("succeeded", "pending"):
        return RefundAnswer("succeeded", reference=refund.id)
    return RefundAnswer("failed", reference=refund.id, reason=refund.status)
