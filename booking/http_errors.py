"""The errors blueprint: every HTTP error, expected or not, answered in the contract's shape."""
import logging

from flask import Blueprint, current_app, jsonify
from marshmallow import ValidationError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .errors import BookingError, Busy, InvalidRequest, from_validation
from .payloads import error_body

log = logging.getLogger(__name__)
bp = Blueprint("errors", __name__)

# An HTTP status raised by Flask or werkzeug (a 404 route, a 405 method) -> the contract's code.
_CODE_OF_STATUS = {401: "unauthorized", 403: "forbidden", 404: "not_found",
                   405: "invalid_request", 409: "conflict", 429: "rate_limited", 503: "busy"}


@bp.app_errorhandler(BookingError)
def booking_error(err):
    return jsonify(error_body(err)), err.status


@bp.app_errorhandler(ValidationError)
def validation_error(err):
    e = from_validation(err)
    return jsonify(error_body(e)), e.status


@bp.app_errorhandler(RequestEntityTooLarge)
def too_large(err):
    e = InvalidRequest("The request body is too large.",
                       limit_bytes=current_app.config["MAX_CONTENT_LENGTH"])
    return jsonify(error_body(e)), 413


@bp.app_errorhandler(HTTPException)
def http_error(err):
    code = _CODE_OF_STATUS.get(err.code, "invalid_request" if err.code < 500 else "internal")
    return jsonify(error_body(BookingError(err.description, code=code))), err.code


@bp.app_errorhandler(OperationalError)
def database_unavailable(err):
    log.warning("database unavailable: %s", err.orig)
    return jsonify(error_body(Busy(retry_after_s=2))), 503


@bp.app_errorhandler(Exception)
def unexpected(err):
    log.exception("unhandled error")
    return jsonify(error_body(BookingError(code="internal"))), 500
