"""Domain errors and the contract's table of error codes.

Services raise these; nothing here knows the web framework. The transports
turn them into the contract's error object through booking.payloads (REST:
the errors blueprint, booking.http_errors; sockets: acks and results).
"""
from marshmallow import ValidationError

# code -> (HTTP status, default user-facing message)
ERRORS = {
    "invalid_request": (422, "The request is not valid."),
    "unauthorized": (401, "Please sign in."),
    "forbidden": (403, "You may not do that."),
    "not_found": (404, "Not found."),
    "conflict": (409, "That conflicts with the current state."),
    "seat_unavailable": (409, "A seat you asked for was just taken."),
    "hold_expired": (409, "Your hold has expired."),
    "hold_not_owned": (403, "That hold is not yours."),
    "limit_exceeded": (409, "That is more than allowed."),
    "payment_declined": (402, "The card was declined."),
    "payment_error": (502, "The payment could not be processed; nothing was charged."),
    "rate_limited": (429, "Too many requests; slow down."),
    "busy": (503, "The box office is busy; please retry shortly."),
    "internal": (500, "Something went wrong on our side."),
}

# User-facing messages of domain errors, by what went wrong: each is worded
# once, here, whichever layer finds it (see BookingError.of).
MESSAGES = {
    "no_event": "No such event.",
    "no_hold": "No such hold.",
    "no_order": "No such order.",
    "seats_not_in_event": "Those seats are not part of this event.",
    "seats_per_order": "At most {max} seats per order.",
    "open_holds": "At most {max} open holds at a time.",
    "sockets": "At most {max} connections per account; close another tab or device first.",
    "anonymous_sockets": "At most {max} signed-out connections from one address; sign in "
                         "to see seats change live.",
    "queue_sign_in": "Sign in to take your place in this event's waiting room.",
    "hold_paying": "A payment for this hold is already in progress.",
    "hold_paying_release": "This hold is being paid for and cannot be released now.",
    "hold_paid": "This hold has been paid for already.",
    "hold_released": "This hold was released.",
    "charge_refunded": "The hold could not be sold, so the charge was refunded.",
    "key_reused": "That idempotency key was used for another hold.",
    "email_taken": "An account with that email exists.",
    "not_admitted": "Wait for your turn in the waiting room first.",
    "not_on_sale": "This event is not on sale yet.",
    "no_best_seats": "There are not {wanted} seats left that match what you asked for.",
}


class BookingError(Exception):
    """A failure the caller is told about, with a contract error code."""
    code = "internal"

    def __init__(self, message=None, code=None, **details):
        self.code = code or self.code
        self.message = message or ERRORS[self.code][1]
        self.details = details
        super().__init__(self.message)

    http_status = None  # overrides the code's usual status (400 for a non-object body)

    @property
    def status(self):
        return self.http_status or ERRORS[self.code][0]

    @classmethod
    def of(cls, key, **details):
        """The error worded by MESSAGES[key] (formatted with details, which it carries)."""
        return cls(MESSAGES[key].format(**details), **details)

    def to_dict(self):
        return {"code": self.code, "message": self.message, "details": self.details}


class InvalidRequest(BookingError):
    code = "invalid_request"


class MalformedRequest(InvalidRequest):
    """A body that is not JSON or not an object."""
    http_status = 400


class Unauthorized(BookingError):
    code = "unauthorized"


class Forbidden(BookingError):
    code = "forbidden"


class NotFound(BookingError):
    code = "not_found"


class Conflict(BookingError):
    code = "conflict"


class SeatUnavailable(BookingError):
    code = "seat_unavailable"


class HoldExpired(BookingError):
    code = "hold_expired"


class HoldNotOwned(BookingError):
    code = "hold_not_owned"


class LimitExceeded(BookingError):
    code = "limit_exceeded"


class RateLimited(BookingError):
    code = "rate_limited"


class Busy(BookingError):
    code = "busy"


class PaymentDeclined(BookingError):
    code = "payment_declined"


class PaymentError(BookingError):
    code = "payment_error"


def from_validation(err: ValidationError):
    """An InvalidRequest whose details.fields maps each bad field to its messages."""
    messages = err.messages
    if not isinstance(messages, dict):
        messages = {"_schema": messages}
    fields = {}

    def flatten(prefix, value):
        # A nested schema reports {"card": {"number": [...]}}: clients get
        # "card.number". A list reports {"seat_ids": {0: [...]}}: the messages
        # stay under "seat_ids", naming the item.
        if isinstance(value, dict) and any(isinstance(k, int) for k in value):
            # Items that are objects name their own fields: "price_tiers.1.price_cents".
            for k, msgs in value.items():
                if isinstance(msgs, dict):
                    flatten(f"{prefix}.{k}", msgs)
            plain = [f"Item {k}: {m}" for k, msgs in value.items() if not isinstance(msgs, dict)
                     for m in (msgs if isinstance(msgs, list) else [msgs])]
            if plain:
                fields[prefix] = plain
        elif isinstance(value, dict):
            for key, inner in value.items():
                flatten(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            fields[prefix] = value if isinstance(value, list) else [value]
    flatten("", messages)
    return InvalidRequest("Some fields are not valid.", fields=fields)
