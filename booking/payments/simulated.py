"""The built-in simulated card processor, with the test cards of API.md.

It behaves like an outside processor: it keeps its own ledger of charges and
refunds (table sim_charges, written on its own connection, never inside the
checkout's transaction), answers the same charge for the same idempotency key,
and can be asked later what happened to a key. It never stores a card number:
its token carries only what a simulator needs (brand, last 4, the card's
behaviour), signed so that it cannot be forged.
"""
import secrets
import time

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..extensions import db
from ..models import SimCharge, SimRefund, utcnow
from . import (CardToken, Charge, Processor, ProcessorRefund, ProcessorUnavailable,
               RefundAnswer, TokenInvalid)
from .cards import brand, cvc_valid, digits_only, luhn_valid

# Test cards (API.md): behaviour by number.
BEHAVIOUR = {
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
    "4000000000000119": "processor_error",
    "4000000000003220": "slow",
}
SLOW_SECONDS = 5.0
TOKEN_MAX_AGE_S = 3600


class SimulatedProcessor(Processor):
    name = "simulated"

    def __init__(self, app):
        self.signer = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="sim-card-token")
        self.slow_seconds = app.config.get("SIM_SLOW_SECONDS", SLOW_SECONDS)
        self.config = app.config

    def tokenize(self, *, number, exp_month, exp_year, cvc, name):
        """A signed token for a card; TokenInvalid for anything that is not one.

        The edge's schema refuses such input first; this is the processor's own
        check, so that no input can make it fail with anything else."""
        number = digits_only(number) if isinstance(number, str) else ""
        if not luhn_valid(number) or not cvc_valid(cvc, brand(number)):
            raise TokenInvalid("not a valid card")
        card = {"b": brand(number), "l4": number[-4:],
                "x": BEHAVIOUR.get(number, "approve"), "n": secrets.token_hex(4)}
        return CardToken(self.signer.dumps(card), card["b"], card["l4"])

    def _card(self, token):
        if not isinstance(token, str):
            raise TokenInvalid("no card token")
        try:
            return self.signer.loads(token, max_age=TOKEN_MAX_AGE_S)
        except BadSignature as err:
            raise TokenInvalid() from err

    def charge(self, *, key, amount_cents, currency, card_token, timeout_s, metadata=None):
        card = self._card(card_token)
        existing = self.lookup(key=key, timeout_s=timeout_s)
        if existing is not None:
            return existing
        behaviour = card["x"]
        if behaviour == "processor_error":
            # The processor failed before charging: nothing recorded, nothing charged.
            return Charge("failed", amount_cents=amount_cents, currency=currency)
        status, reason = "captured", None
        if behaviour in ("card_declined", "insufficient_funds"):
            status, reason = "declined", behaviour
        row = {"idempotency_key": key, "amount_cents": amount_cents, "currency": currency,
               "status": status, "decline_reason": reason, "brand": card["b"],
               "last4": card["l4"], "reference": "sim_ch_" + secrets.token_hex(8),
               "created_at": utcnow()}
        try:
            with db.engine.begin() as conn:
                conn.execute(sa.insert(SimCharge), row)
        except sa.exc.IntegrityError:
            # The same key charged concurrently: that charge is the answer.
            return self.lookup(key=key, timeout_s=timeout_s)
        if behaviour == "slow":
            # The charge is made; the answer takes SLOW_SECONDS to come back.
            if self.slow_seconds > timeout_s:
                time.sleep(timeout_s)
                raise ProcessorUnavailable(f"no answer within {timeout_s}s")
            time.sleep(self.slow_seconds)
        return _charge(row)

    def refund(self, *, key, timeout_s):
        with db.engine.begin() as conn:
            conn.execute(sa.update(SimCharge).where(
                SimCharge.idempotency_key == key, SimCharge.status == "captured")
                .values(status="refunded", refunded_at=utcnow(),
                        refunded_cents=SimCharge.amount_cents))
        return self.lookup(key=key, timeout_s=timeout_s)

    def refund_part(self, *, key, refund_key, amount_cents, timeout_s):
        # SIM_REFUND_MODE (simulator only, read at each call so tests can flip
        # it): ok; refuse (the processor declines every refund); timeout (the
        # refund is made but its answer never comes back).
        mode = self.config.get("SIM_REFUND_MODE", "ok")
        if mode == "refuse":
            return RefundAnswer("failed", reason="refused_by_processor")
        with db.engine.begin() as conn:
            done = conn.execute(sa.select(SimRefund.reference).where(
                SimRefund.refund_key == refund_key)).scalar()
            if done is None:
                charge = conn.execute(sa.select(SimCharge).where(
                    SimCharge.idempotency_key == key).with_for_update()).mappings().first()
                if charge is None or charge["status"] not in ("captured",):
                    return RefundAnswer("failed", reason="no_captured_charge")
                left = charge["amount_cents"] - charge["refunded_cents"]
                if amount_cents <= 0 or amount_cents > left:
                    return RefundAnswer("failed", reason="exceeds_captured_amount")
                done = "sim_re_" + secrets.token_hex(8)
                conn.execute(sa.insert(SimRefund), {
                    "refund_key": refund_key, "charge_key": key, "amount_cents": amount_cents,
                    "reference": done, "created_at": utcnow()})
                refunded = charge["refunded_cents"] + amount_cents
                conn.execute(sa.update(SimCharge).where(SimCharge.id == charge["id"]).values(
                    refunded_cents=refunded, refunded_at=utcnow(),
                    status="refunded" if refunded == charge["amount_cents"] else "captured"))
        if mode == "timeout":
            raise ProcessorUnavailable("refund answer lost (SIM_REFUND_MODE=timeout)")
        return RefundAnswer("succeeded", reference=done)

    def lookup(self, *, key, timeout_s):
        with db.engine.connect() as conn:
            row = conn.execute(sa.select(SimCharge).where(SimCharge.idempotency_key == key)
                               ).mappings().first()
        return _charge(row) if row else None

    def refunds_of(self, *, key, timeout_s):
        with db.engine.connect() as conn:
            rows = conn.execute(sa.select(SimRefund.reference, SimRefund.amount_cents,
                                          SimRefund.refund_key)
                                .where(SimRefund.charge_key == key).order_by(SimRefund.id)).all()
        return [ProcessorRefund(ref, amount, "succeeded", refund_key)
                for ref, amount, refund_key in rows]

    def ledger(self):
        """Every charge the processor knows: [{key, status, amount_cents}] (for the audit)."""
        with db.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(
                SimCharge.idempotency_key, SimCharge.status, SimCharge.amount_cents,
                SimCharge.refunded_cents)).mappings()]


def _charge(row):
    return Charge(row["status"], reference=row["reference"], amount_cents=row["amount_cents"],
                  currency=row["currency"], decline_reason=row["decline_reason"])
