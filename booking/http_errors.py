"""The errors blueprint: every HTTP error, expected or not, answered in the contract's shape.

Machines get the contract's JSON error (API.md, "Errors"): everything under /api/,
the webhooks, the operations endpoints, and any client that does not ask for HTML.
A person's browser (a navigation: Accept names text/html above JSON) outside those
gets an HTML page instead (templates/error.html), with the same status and the
strict CSP every page carries.
"""
import logging

from flask import Blueprint, current_app, jsonify, render_template, request
from markupsafe import escape
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

# Paths for programs, answered in JSON whatever the Accept header says.
_MACHINE_PREFIXES = ("/api/", "/webhooks/", "/socket.io/", "/static/", "/vendor/")
_MACHINE_PATHS = ("/healthz", "/readyz", "/metrics")

# What a person reads, by status (the JSON's message is for programs' logs).
_PAGES = {
    400: ("That request did not work", "Something in it was not right. Go back and try again."),
    401: ("Please log in", "This page needs you to be signed in."),
    403: ("Not allowed", "Your account cannot open this page."),
    404: ("We could not find that page",
          "It may have been removed, or the link is wrong."),
    405: ("That address does not work that way",
          "This address is not a page to open. Use the buttons on the site instead."),
    413: ("That was too large", "What you sent is larger than the box office accepts."),
    429: ("Too many requests", "You are going faster than the box office allows. "
                               "Wait a few seconds and try again."),
    500: ("Something went wrong on our side",
          "It is not your fault and nothing was charged for it. Please try again."),
    503: ("The box office is very busy", "Please try again in a few seconds."),
}


def wants_page():
    """True when a person's browser asked: HTML named in Accept above JSON, outside the API."""
    path = request.path
    if path.startswith(_MACHINE_PREFIXES) or path in _MACHINE_PATHS:
        return False
    accept = request.accept_mimetypes
    html = max((q for value, q in accept if value == "text/html"), default=0)
    return html > accept["application/json"]


def _answer(status, err):
    """The error as a page or as the contract's JSON; err is a BookingError."""
    if not wants_page():
        return jsonify(error_body(err)), status
    title, text = _PAGES.get(status, _PAGES[500 if status >= 500 else 400])
    if status < 500 and status not in (404, 405) and err.message:
        text = err.message
    try:
        from .pages import _page_config
        return render_template("error.html", status=status, title=title, message=text,
                               page=_page_config()), status
    except Exception:  # noqa: BLE001 - the page itself failed (the database is down, say)
        log.warning("error page %s could not be rendered; answering a plain one", status,
                    exc_info=True)
        body = (f"<!doctype html><html lang=\"en\"><meta charset=\"utf-8\">"
                f"<title>{escape(title)} · Boxoffice</title><h1>{escape(title)}</h1>"
                f"<p>{escape(text)}</p><p><a href=\"/\">See all events</a></p></html>")
        return body, status, {"Content-Type": "text/html; charset=utf-8"}


@bp.app_errorhandler(BookingError)
def booking_error(err):
    return _answer(err.status, err)


@bp.app_errorhandler(ValidationError)
def validation_error(err):
    e = from_validation(err)
    return _answer(e.status, e)


@bp.app_errorhandler(RequestEntityTooLarge)
def too_large(err):
    e = InvalidRequest("The request body is too large.",
                       limit_bytes=current_app.config["MAX_CONTENT_LENGTH"])
    return _answer(413, e)


@bp.app_errorhandler(HTTPException)
def http_error(err):
    code = _CODE_OF_STATUS.get(err.code, "invalid_request" if err.code < 500 else "internal")
    return _answer(err.code, BookingError(err.description, code=code))


@bp.app_errorhandler(OperationalError)
def database_unavailable(err):
    log.warning("database unavailable: %s", err.orig)
    return _answer(503, Busy(retry_after_s=2))


@bp.app_errorhandler(Exception)
def unexpected(err):
    log.exception("unhandled error")
    return _answer(500, BookingError(code="internal"))
