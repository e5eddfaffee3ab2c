"""Card processors behind one interface, chosen by configuration (PAYMENT_PROCESSOR).

The checkout (booking.checkout) talks only to this interface, so that a real
provider can be added beside the simulated one without touching checkout code.

Card data: `tokenize()` is what a provider's browser library does (Stripe.js,
say): it turns card details into an opaque token. Only the token, the brand and
the last 4 digits travel further (task messages, database, logs); the number and
the CVC never leave the web process's memory.
"""
from dataclasses import dataclass


class ProcessorUnavailable(Exception):
    """The processor did not answer in time: whether it charged is unknown."""


class TokenInvalid(Exception):
    """A card token that this processor did not issue (or that has expired)."""


@dataclass
class CardToken:
    token: str
    brand: str
    last4: str


@dataclass
class Charge:
    """A processor's answer about one charge (by idempotency key)."""
    status: str              # captured, declined, failed, refunded
    reference: str | None = None
    amount_cents: int = 0
    currency: str = ""
    decline_reason: str | None = None   # card_declined, insufficient_funds, authentication_failed
    # requires_action (3-D Secure): what the buyer's browser needs to show the challenge.
    client_secret: str | None = None


@dataclass
class RefundAnswer:
    """A processor's answer about one refund (by refund key)."""
    status: str              # succeeded, failed
    reference: str | None = None
    reason: str | None = None


@dataclass
class ProcessorRefund:
    """One refund the processor holds for a charge, whoever made it."""
    reference: str           # the processor's id of the refund
    amount_cents: int
    status: str              # succeeded (money on its way back), failed
    refund_key: str | None = None   # our refund key, for refunds we made; None otherwise


class Processor:
    """What checkout needs from a card processor. Every call is idempotent by key."""
    name = "abstract"

    def tokenize(self, *, number, exp_month, exp_year, cvc, name):
        raise NotImplementedError

    def accept_token(self, token_id):
        """A token made by the processor's browser library: its CardToken.

        Raises TokenInvalid (not this processor's, or used), ProcessorUnavailable.
        """
        raise TokenInvalid("this processor tokenizes cards itself")

    def charge(self, *, key, amount_cents, currency, card_token, timeout_s, metadata=None):
        """Authorize and capture; the same key always answers the same charge.

        metadata (hold, event, buyer) is written on the processor's record.
        The answer may be requires_action (the buyer must pass 3-D Secure in the
        browser, with Charge.client_secret) or processing: the payment stays
        pending until the processor's outcome is known.
        Raises ProcessorUnavailable when no answer came within timeout_s.
        """
        raise NotImplementedError

    def refund(self, *, key, timeout_s):
        """Refund the charge made under key (idempotent). Raises ProcessorUnavailable."""
        raise NotImplementedError

    def refund_part(self, *, key, refund_key, amount_cents, timeout_s):
        """Refund amount_cents of the charge made under key, once per refund_key.

        Returns a RefundAnswer (failed: refused, e.g. more than what is left);
        raises ProcessorUnavailable when no answer came (asking again under the
        same refund_key never refunds twice).
        """
        raise NotImplementedError

    def lookup(self, *, key, timeout_s):
        """The charge made under key, or None if there was none."""
        raise NotImplementedError

    def refunds_of(self, *, key, timeout_s):
        """Every refund of the charge made under key ([ProcessorRefund], oldest first),
        ours and those made elsewhere (the processor's dashboard). Raises ProcessorUnavailable."""
        raise NotImplementedError

    def cancel(self, *, key, timeout_s):
        """Give up a charge still waiting on the buyer (an abandoned 3-D Secure challenge).

        Returns the charge's state afterwards (captured if the buyer finished
        first), or None if there was none. Raises ProcessorUnavailable.
        """
        return self.lookup(key=key, timeout_s=timeout_s)


def make_processor(app):
    kind = app.config["PAYMENT_PROCESSOR"]
    if kind == "simulated":
        from .simulated import SimulatedProcessor
        return SimulatedProcessor(app)
    if kind == "stripe":
        from .stripe import StripeProcessor
        return StripeProcessor(app)
    raise RuntimeError(f"unknown PAYMENT_PROCESSOR {kind!r}")


def csp_sources(config):
    """What the pages' Content-Security-Policy must allow for the configured processor:
    {directive: [source, ...]} to add beside 'self' (docs/PAYMENTS.md)."""
    if config["PAYMENT_PROCESSOR"] != "stripe":
        return {}
    js, api = _origin(config["STRIPE_JS_URL"]), _origin(config["STRIPE_API_BASE"])
    frames = [js]
    if js == "https://js.stripe.com":
        frames.append("https://hooks.stripe.com")  # where 3-D Secure challenges are served
    return {"script-src": [js], "frame-src": frames, "connect-src": [api]}


def _origin(url):
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
