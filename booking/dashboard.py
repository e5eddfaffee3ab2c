"""The organizer's live dashboard: one Socket.IO room per event, fed as the sale changes.

`join_dashboard {event_id}` is for members of the event's organizer (staff or
admin, checked at the join through booking.organizers); the ack carries the
current figures and the socket then gets `dashboard {event_id, ...}` whenever
they change. What it costs the sale does not grow with the watchers:

- the figures of an event are computed at most once a second across every web
  process: the process that takes the event's one-second lease in shared state
  (in-process without Redis) computes them (a handful of indexed aggregates,
  booking.sales) and leaves them there; the others read that copy;
- each web process runs one loop (started with its first watcher) that sends
  to its own watchers only. Every web process receives every committed seat
  change (the seats_changed feed, booking.broadcast); a change committed after
  the figures it last sent makes the loop ask for newer ones at its next tick
  (TICK_S) and keep asking until it has figures computed after the change. So
  a sale shows at once when the figures were not computed in the last second,
  and at most a second later when they were: during a busy sale the figures
  are recomputed once a second (comparing a change's commit time with the
  figures' assumes the machines' clocks agree, as NTP keeps them). With no
  change they are refreshed every IDLE_REFRESH_S (the queue, the per-minute
  chart and the latency window move with the clock).

`boxoffice_dashboard_computations_total` and `..._seconds` (in /metrics) show
the cost; tests/test_dashboard.py measures it with many watchers.
"""
import json
import logging
import threading
import time

from flask import current_app, request, session
from flask_socketio import join_room, leave_room
from marshmallow import ValidationError
from prometheus_client import Counter, Histogram

from . import organizers, sales
from .errors import BookingError, InvalidRequest, Unauthorized, from_validation
from .extensions import db, socketio
from .broadcast import iso_now
from .schemas import EventRefSchema
from .runtime import runtime

log = logging.getLogger(__name__)

INTERVAL_S = 1.0       # at most one computation an event in this time, all processes
TICK_S = 0.1           # how often a process's loop looks for changes
IDLE_REFRESH_S = 5.0   # figures are refreshed this often when no seat changed
COMPUTATIONS = Counter("boxoffice_dashboard_computations_total",
                       "Dashboard figures computed (at most one an event a second, all processes)")
COMPUTE_SECONDS = Histogram("boxoffice_dashboard_compute_seconds",
                            "Time to compute one event's dashboard figures",
                            buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1))
_event_ref = EventRefSchema()
_loops = {}    # id(app) -> (its stop flag, its loop's task)
_changes = {}   # event_id -> committed_at (ISO, ms) of the newest seat change received here


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
        # computed_at (ms, as seat changes' committed_at): the figures include every
        # change committed before it. `at` is the same moment (the contract's field).
        stamp = iso_now()
        body = {"event_id": event_id, "at": stamp, "computed_at": stamp,
                "currency": event.currency,
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
    if redis is None:  # one process: the lease is this process's own
        now = time.monotonic()
        local = app.extensions.setdefault("dashboard_figures", {})  # event_id -> (when, figures)
        taken, body = local.get(event_id, (None, None))
        if taken is None or now - taken >= INTERVAL_S:
            body = compute_figures(app, event_id)
            local[event_id] = (now, body)
        return body
    key = f"{ns}:dash:figures:{event_id}"
    if redis.set(f"{ns}:dash:lease:{event_id}", "1", nx=True, px=int(INTERVAL_S * 1000)):
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


def seats_changed(event_id, committed_at):
    """A committed seat change of the event reached this process (SeatsCoalescer.on_change)."""
    if committed_at > _changes.get(event_id, ""):
        _changes[event_id] = committed_at


def tick(app, sent, now=None):
    """One pass of the loop: newer figures to the watchers here of each event that changed
    since the figures sent last (or was not refreshed for IDLE_REFRESH_S).

    sent: {event_id: (computed_at, monotonic time sent)}, kept by the caller between ticks.
    """
    now = time.monotonic() if now is None else now
    for event_id in _watched_events():
        last_at, last_sent = sent.get(event_id, ("", float("-inf")))
        changed = _changes.get(event_id, "") >= last_at
        if not changed and now - last_sent < IDLE_REFRESH_S:
            continue
        body = figures(app, event_id)
        if body is None or body["computed_at"] <= last_at:
            continue  # another process computed less than a second ago: ask again next tick
        sent[event_id] = (body["computed_at"], now)
        socketio.emit("dashboard", body, to=_room(event_id), ignore_queue=True)


def _loop(app, stop):
    """This process's dashboard loop: a pass every TICK_S, until stop is set."""
    sent = {}
    while True:
        socketio.sleep(TICK_S)
        if stop.is_set():
            return
        try:
            with app.app_context():
                tick(app, sent)
                db.session.remove()
        except Exception:
            log.warning("dashboard figures not sent", exc_info=True)


def _ensure_loop(app):
    if id(app) not in _loops:
        stop = threading.Event()
        _loops[id(app)] = (stop, socketio.start_background_task(_loop, app, stop))


def stop_loops(timeout=5.0):
    """End this process's dashboard loops and wait for them (an app is done with: a
    test's; a loop left running would send figures to the next test's sockets)."""
    loops = list(_loops.values())
    _loops.clear()
    for stop, _task in loops:
        stop.set()
    for _stop, task in loops:
        if hasattr(task, "join"):   # a thread (async_mode "threading")
            task.join(timeout)
        else:                       # a green thread (eventlet)
            task.wait()


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
