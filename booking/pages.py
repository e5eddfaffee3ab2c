"""Pages for people (the buyer's website).

The views render page shells; the seat map, holds and payments run in the
browser against the public contract (REST reads and Socket.IO, see API.md),
the same one mobile clients use. Front-end libraries come from node_modules
through a whitelist, and every asset URL carries a content hash so that a
proxy may cache it for a year.
"""
import hashlib
import logging
from datetime import datetime, timezone
from functools import wraps
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   send_file, session, url_for)
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from marshmallow import ValidationError

from . import account_links, accounts, catalog, checkout, sessions, waiting_room
from .config import PROJECT_ROOT
from .errors import Conflict, NotFound, RateLimited, Unauthorized
from .extensions import db
from .forms import LoginForm, LogoutForm, SignupForm
from .models import Event
from .ratelimits import check_sign_in
from .schemas import EventDetailSchema, EventSchema, NewUserSchema

log = logging.getLogger(__name__)
bp = Blueprint("pages", __name__)

NODE_MODULES = PROJECT_ROOT / "node_modules"
# The only files of node_modules the app serves: URL name -> path in node_modules.
VENDOR_FILES = {
    "bootstrap/bootstrap.min.css": "bootstrap/dist/css/bootstrap.min.css",
    "bootstrap/bootstrap.min.css.map": "bootstrap/dist/css/bootstrap.min.css.map",
    "bootstrap/bootstrap.bundle.min.js": "bootstrap/dist/js/bootstrap.bundle.min.js",
    "bootstrap/bootstrap.bundle.min.js.map": "bootstrap/dist/js/bootstrap.bundle.min.js.map",
    "socket.io-client/socket.io.esm.min.js": "socket.io-client/dist/socket.io.esm.min.js",
    "socket.io-client/socket.io.esm.min.js.map":
        "socket.io-client/dist/socket.io.esm.min.js.map",
    "chart.js/chart.umd.min.js": "chart.js/dist/chart.umd.min.js",
    "chart.js/chart.umd.min.js.map": "chart.js/dist/chart.umd.min.js.map",
    # The door scanner: offline signature checks and QR decoding without BarcodeDetector.
    "noble-ed25519/index.js": "@noble/ed25519/index.js",
    "jsqr/jsQR.js": "jsqr/dist/jsQR.js",
}
YEAR = 365 * 24 * 3600

_events_schema = EventSchema(many=True)
_event_schema = EventDetailSchema()
_new_user = NewUserSchema()
_hashes = {}  # path -> (mtime_ns, size, sha256 prefix)


def _content_hash(path: Path):
    """The first 12 hex digits of a file's sha256, recomputed only when the file changes."""
    try:
        st = path.stat()
    except OSError:
        return None
    cached = _hashes.get(path)
    if cached and cached[:2] == (st.st_mtime_ns, st.st_size):
        return cached[2]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    _hashes[path] = (st.st_mtime_ns, st.st_size, digest)
    return digest


def asset_url(filename):
    """URL of a file in static/ with its content hash (?v=...), for far-future caching."""
    digest = _content_hash(Path(current_app.static_folder) / filename)
    return url_for("static", filename=filename, v=digest) if digest else url_for(
        "static", filename=filename)


def vendor_url(name):
    """URL of a whitelisted node_modules file with its content hash."""
    digest = _content_hash(NODE_MODULES / VENDOR_FILES[name])
    if digest is None:
        log.warning("front-end library missing: %s (run npm ci)", VENDOR_FILES[name])
    return url_for("pages.vendor", name=name, v=digest) if digest else url_for(
        "pages.vendor", name=name)


@bp.app_context_processor
def _template_globals():
    return {"asset_url": asset_url, "vendor_url": vendor_url, "logout_form": LogoutForm()}


@bp.app_template_filter("money")
def _money(cents, currency):
    """Money for pages without scripts (the scripts show it in the buyer's locale)."""
    return f"{cents / 100:,.2f} {currency}" if cents is not None else ""


@bp.get("/vendor/<path:name>")
def vendor(name):
    """A whitelisted dist file of bootstrap or socket.io-client from node_modules."""
    relative = VENDOR_FILES.get(name)
    if relative is None:
        abort(404)
    path = NODE_MODULES / relative
    if not path.is_file():
        abort(404)
    versioned = request.args.get("v") == _content_hash(path)
    # A URL with the right content hash never changes meaning: cache it for a year.
    return send_file(path, max_age=YEAR if versioned else 0, conditional=True)


def _safe_next(target):
    """A redirect target on this site only (no scheme, no host), else the event list."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") \
                and not target.startswith("//") and "\\" not in target:
            return target
    return url_for("pages.index")


def sign_in_required(view):
    """Send anonymous visitors to the login page, and back here afterwards."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)
    return wrapper


def _page_config(**extra):
    """Settings the page scripts need, rendered into the page as JSON."""
    cfg = current_app.config
    return {
        "signed_in": current_user.is_authenticated,
        "max_seats": cfg["MAX_SEATS_PER_ORDER"],
        "hold_ttl_seconds": cfg["HOLD_TTL_SECONDS"],
        # Countdowns use the server's clock: the page corrects for the browser's offset.
        "server_now": datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        **extra,
    }


def _payment_config():
    """What the payment window needs: which processor, and Stripe.js's key and address."""
    cfg = current_app.config
    if cfg["PAYMENT_PROCESSOR"] != "stripe":
        return {"processor": cfg["PAYMENT_PROCESSOR"]}
    return {"processor": "stripe", "publishable_key": cfg["STRIPE_PUBLISHABLE_KEY"],
            "js_url": cfg["STRIPE_JS_URL"]}


@bp.get("/")
def index():
    """The list of events."""
    events = _events_schema.dump(catalog.list_events(db.session))
    return render_template("index.html", events=events, page=_page_config())


def _forget_ended_login():
    """A cookie whose session has ended (signed out on another device) makes this browser
    a signed-out visitor: its page's socket then watches read-only, instead of being
    refused as signed out at every reconnect."""
    if not current_user.is_authenticated and session.get("_user_id") is not None:
        session.clear()


@bp.get("/events/<int:event_id>")
def event(event_id):
    """One event: its seat map, holds and the payment window."""
    _forget_ended_login()
    try:
        detail = _event_schema.dump(catalog.get_event(db.session, event_id))
    except NotFound:
        return render_template("not_found.html", what="event", page=_page_config()), 404
    return render_template("event.html", event=detail,
                           page=_page_config(event_id=event_id, event=detail,
                                             payment=_payment_config()))


@bp.get("/events/<int:event_id>/waiting-room")
def waiting_room_page(event_id):
    """The waiting-room page: the buyer's live place in the queue; moves on to the seat map."""
    gate = waiting_room.read_gate(db.session, event_id)
    if gate is None:
        return render_template("not_found.html", what="event", page=_page_config()), 404
    name = db.session.scalar(sa.select(Event.name).where(Event.id == event_id))
    return render_template("waiting_room.html", event_name=name, page=_page_config(
        event_id=event_id, on_sale_at=waiting_room.iso(gate.on_sale_at) if gate.on_sale_at
        else None))


@bp.get("/orders")
@sign_in_required
def orders():
    """The buyer's orders, newest first."""
    return render_template("orders.html", page=_page_config())


@bp.get("/orders/<int:order_id>")
@sign_in_required
def order(order_id):
    """The confirmation of one order; 404 for an unknown order or anyone else's."""
    try:
        checkout.order_of(db.session, current_user.id, order_id)
    except NotFound:
        return render_template("not_found.html", what="order", page=_page_config()), 404
    return render_template("order.html", page=_page_config(order_id=order_id))


@bp.get("/account")
@sign_in_required
def account():
    """The buyer's account: who is signed in, and the two ways of signing out."""
    return render_template("account.html", page=_page_config())


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    """Create an account and sign in."""
    form = SignupForm()
    if form.is_submitted():
        valid = form.validate()
        # The API's own rules, checked even when the form has other errors, so
        # that the buyer sees every problem at once.
        try:
            fields = _new_user.load({"email": form.email.data or "",
                                     "password": form.password.data or "",
                                     "name": form.name.data or ""})
        except ValidationError as err:
            valid = False
            for field, messages in err.messages.items():
                if field in form and form.data.get(field):
                    form[field].errors = list(form[field].errors) + [
                        m for m in messages if m not in form[field].errors]
        if valid:
            try:
                check_sign_in(fields["email"])
                user = accounts.register_user(db.session, **fields)
                outbox_id = account_links.queue_verification(db.session, user)
            except RateLimited as err:
                return render_template("signup.html", form=form, next=request.args.get("next"),
                                       page=_page_config(), error=err.message), 429
            except Conflict as err:
                form.email.errors = [err.message + " Log in instead?"]
            else:
                db.session.commit()
                from .api import dispatch_mail
                dispatch_mail([outbox_id])
                _start_session(user)
                flash("Welcome! Your account is ready.", "success")
                return redirect(_safe_next(request.args.get("next")))
    # 200 even with errors: the page itself is fine, and browsers log any 4xx as an error.
    return render_template("signup.html", form=form, next=request.args.get("next"),
                           page=_page_config())


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in with email and password."""
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        try:
            check_sign_in(form.email.data)
            user = accounts.authenticate(db.session, email=form.email.data,
                                         password=form.password.data)
        except RateLimited as err:
            return render_template("login.html", form=form, error=err.message,
                                   next=request.args.get("next"), page=_page_config()), 429
        except Unauthorized as err:
            error = err.message
        else:
            db.session.commit()  # a rehashed password, if the parameters changed
            _start_session(user)
            return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", form=form, error=error, next=request.args.get("next"),
                           page=_page_config())


def _start_session(user):
    sessions.start_session(user)


@bp.post("/logout")
def logout():
    """Sign out of this browser (a POST with a CSRF token); other devices stay signed in."""
    if LogoutForm().validate_on_submit():
        sessions.sign_out(current_user)
        flash("You are signed out.", "info")
    return redirect(url_for("pages.index"))


@bp.get("/logout")
def logout_page():
    """A typed or followed /logout link: the account page offers the buttons (a GET never
    signs anyone out: a link on another site could)."""
    if current_user.is_authenticated:
        return redirect(url_for("pages.account"), 303)
    return redirect(url_for("pages.index"), 303)


@bp.post("/logout-everywhere")
def logout_everywhere():
    """Sign out on every device: every session, token and socket of the account."""
    if LogoutForm().validate_on_submit():
        sessions.sign_out_everywhere(current_user)
        flash("You are signed out on every device.", "info")
    return redirect(url_for("pages.index"))


@bp.errorhandler(CSRFError)
def csrf_failed(err):
    """A form without a valid CSRF token (often a page left open too long): ask again."""
    flash("That form had expired. Please try again.", "warning")
    if request.endpoint in ("pages.logout", "pages.logout_everywhere"):
        return redirect(url_for("pages.index")), 303
    return redirect(request.full_path.rstrip("?")), 303
