"""The organizer's live dashboard: one Socket.IO room per event, fed once a second.

`join_dashboard {event_id}` is for members of the event's organizer (staff or
admin, checked at the join through booking.organizers); the ack carries the
current figures and the socket then gets `dashboard {event_id, ...}` every
second. What it costs the sale does not grow with the watchers:

- each web process runs one loop (started with its first watcher) that sends
  to its own watchers only, one message per watched event a second;
- the figures of an event are computed at most once a second across every web
  process: the process that takes the event's one-second lease in shared state
  computes them (a handful of indexed aggregates, booking.sales) and leaves
  them there; the others read that copy.

`boxoffice_dashboard_computations_total` and `..._seconds` (in /metrics) show
the cost; tests/test_dashboard.py measures it with many watchers.
"""
import json
import logging
import time

from flask import current_app, request, session
from flask_socketio import join_room, leave_room
from marshmallow import ValidationError
from prometheus_client import Counter, Histogram

from . import organizers, sales
from .errors import BookingError, InvalidRequest, Unauthorized, from_validation
from .extensions import db, socketio
from .models import iso_utc, utcnow
from .schemas import EventRefSchema
from .runtime import runtime

log = logging.getLogger(__name__)

INTERVAL_S = 1.0
COMPUTATIONS = Counter("boxoffice_dashboard_computations_total",
                       "Dashboard figures computed (at most one an event a second, all processes)")
COMPUTE_SECONDS = Histogram("boxoffice_dashboard_compute_seconds",
                            "Time to compute one event's dashboard figures",
                            buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1))
_event_ref = EventRefSchema()
_loop_started = {}


def _room(event_id):
    return f"dashboard:{event_id}"


def compute_figures(app, event_id):
    """The dashboard's figures of one event, read now (one call: the cost a second)."""
    from .organizer_api import sale_status
    from .models import Event
    started = time.perf_counter()
    session = db.session
    try:
        event = session.get(Event, event_id)
        if event is None:
            return None
        rt = runtime(app)
        body = {"event_id": event_id, "at": iso_utc(utcnow()), "currency": event.currency,
                "sales": sales.sales_of(session, event_id),
                "activity": sales.activity_of(session, event_id),
                "queue": sale_status(session, event) if event.waiting_room or event.on_sale_at
                else None,
                "latency": sales.latency_of(rt.state, app.config["REDIS_NAMESPACE"], event_id)}
    finally:
        session.rollback()
    COMPUTATIONS.inc()
    COMPUTE_SECONDS.observe(time.perf_counter() - started)
    return body


def figures(app, event_id):
    """The event's figures of this second: computed here if this process holds the lease,
    else the copy another process left in shared state (computed here if there is none)."""
    rt = runtime(app)
    ns = app.config["REDIS_NAMESPACE"]
    redis = getattr(rt.state, "redis", None)
    if redis is None:  # one process: this loop is the only one
        return compute_figures(app, event_id)
    key = f"{ns}:dash:figures:{event_id}"
    if redis.set(f"{ns}:dash:lease:{event_id}", "1", nx=True, px=int(INTERVAL_S * 1000) - 50):
        body = compute_figures(app, event_id)
        if body is not None:
            redis.set(key, json.dumps(body), ex=10)
        return body
    cached = redis.get(key)
    return json.loads(cached) if cached else None


def _watched_events():
    rooms = socketio.server.manager.rooms.get("/", {})
    return [int(r.split(":", 1)[1]) for r, members in list(rooms.items())
            if isinstance(r, str) and r.startswith("dashboard:") and members]


def _loop(app):
    """This process's dashboard loop: the figures of each watched event, once a second."""
    sent = {}
    while True:
        socketio.sleep(INTERVAL_S - (time.time() % INTERVAL_S))
        try:
            with app.app_context():
                for event_id in _watched_events():
                    body = figures(app, event_id)
                    if body is None or sent.get(event_id) == body["at"]:
                        continue
                    sent[event_id] = body["at"]
                    socketio.emit("dashboard", body, to=_room(event_id), ignore_queue=True)
                db.session.remove()
        except Exception:
            log.warning("dashboard figures not sent", exc_info=True)


def _ensure_loop(app):
    if not _loop_started.get(id(app)):
        _loop_started[id(app)] = True
        socketio.start_background_task(_loop, app)


@socketio.on("join_dashboard")
def on_join_dashboard(data=None):
    """Watch an event's live figures (staff or admin of its organizer)."""
    try:
        uid = session.get("bo_uid")
        if uid is None:
            raise Unauthorized("Sign in as a member of the event's organizer.")
        if not isinstance(data, dict):
            raise InvalidRequest("The payload must be a JSON object.")
        try:
            event_id = _event_ref.load(data)["event_id"]
        except ValidationError as err:
            raise from_validation(err) from err
        organizers.authorize_event(db.session, uid, event_id, "staff")
        app = current_app._get_current_object()
        body = figures(app, event_id)
        db.session.remove()
        join_room(_room(event_id))
        _ensure_loop(app)
        return {"ok": True, "event_id": event_id, "figures": body}
    except BookingError as err:
        db.session.remove()
        return {"ok": False, "error": err.to_dict()}


@socketio.on("leave_dashboard")
def on_leave_dashboard(data=None):
    """Stop watching an event's figures."""
    if session.get("bo_uid") is None:
        return {"ok": False, "error": Unauthorized(
            "Sign in as a member of the event's organizer.").to_dict()}
    if isinstance(data, dict) and isinstance(data.get("event_id"), int):
        leave_room(_room(data["event_id"]), sid=request.sid)
    return {"ok": True}
