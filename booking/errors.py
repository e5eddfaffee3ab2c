"""Domain errors and the one JSON error shape of the contract.

Services raise these; the REST layer and the socket layer turn them into
`{"error": {code, message, details}}` through `error_body()`, so the shape is
produced in one place.
"""
import logging

from flask import jsonify
from marshmallow import ValidationError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

log = logging.getLogger(__name__)

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


def error_body(err: BookingError):
    return {"error": err.to_dict()}


def register_error_handlers(app):
    """Answer every error, expected or not, in the contract's shape."""

    @app.errorhandler(BookingError)
    def booking_error(err):
        return jsonify(error_body(err)), err.status

    @app.errorhandler(ValidationError)
    def validation_error(err):
        e = from_validation(err)
        return jsonify(error_body(e)), e.status

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(err):
        e = InvalidRequest("The request body is too large.",
                           limit_bytes=app.config["MAX_CONTENT_LENGTH"])
        return jsonify(error_body(e)), 413

    @app.errorhandler(HTTPException)
    def http_error(err):
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "invalid_request", 409: "conflict", 429: "rate_limited",
                503: "busy"}.get(err.code, "invalid_request" if err.code < 500 else "internal")
        return jsonify(error_body(BookingError(err.description, code=code))), err.code

    @app.errorhandler(OperationalError)
    def database_unavailable(err):
        log.warning("database unavailable: %s", err.orig)
        e = BookingError("The box office is busy; please retry shortly.", code="busy",
                         retry_after_s=2)
        return jsonify(error_body(e)), 503

    @app.errorhandler(Exception)
    def unexpected(err):
        log.exception("unhandled error")
        return jsonify(error_body(BookingError(code="internal"))), 500
