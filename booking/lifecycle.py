"""A web process's life: its background loops, serving, and draining on SIGTERM.

Background loops (start_background): the seats_changed flush, the presence
refresh, and either the Redis subscription (seat changes and waiting-room
positions; a resync after it was lost) or, in the embedded mode, the periodic
tasks that Celery beat runs otherwise.

A drain, in order:
1. at once: /readyz answers 503 and new Socket.IO sessions are refused with 503
   (a load balancer retries them on another instance);
2. after DRAIN_NOTICE_SECONDS (time for a readiness probe or a load balancer to
   notice): every socket of this process gets a `draining` event, then its
   transport is dropped, which Socket.IO clients treat as a lost connection:
   they reconnect (through the load balancer, to another
   instance), re-join and re-send what they have no result for;
3. DRAIN_GRACE_SECONDS for handlers still running (an accepted request is in the
   broker before its ack is sent, so nothing accepted is lost even if the ack is);
4. the server stops; if it has not within DRAIN_TIMEOUT_SECONDS, the process exits.
"""
import json
import logging
import os
import signal
import sys
from urllib.parse import parse_qs

from . import catalog, metrics, waiting_room
from .broadcast import subscribe_forever
from .delivery import ResultsManager
from .errors import Busy
from .payloads import error_body
from .extensions import db, socketio
from .runtime import runtime

log = logging.getLogger(__name__)

DRAINING_BODY = json.dumps(error_body(
    Busy("This instance is shutting down; connect again.", retry_after_s=1))).encode()


class DrainGate:
    """WSGI middleware: while the process drains, refuse new Socket.IO sessions.

    A request for /socket.io/ without a `sid` opens a new Engine.IO session
    (the polling handshake or a direct WebSocket); requests of existing sessions
    pass until those sessions are closed.
    """

    def __init__(self, wsgi_app, rt, path="/socket.io"):
        self.wsgi_app = wsgi_app
        self.rt = rt
        self.path = path

    def __call__(self, environ, start_response):
        if self.rt.draining and self._opens_session(environ):
            metrics.CONNECTS_REFUSED.labels("draining").inc()
            start_response("503 Service Unavailable", [
                ("Content-Type", "application/json"), ("Retry-After", "1"),
                ("Content-Length", str(len(DRAINING_BODY))), ("Connection", "close")])
            return [DRAINING_BODY]
        return self.wsgi_app(environ, start_response)

    def _opens_session(self, environ):
        if not environ.get("PATH_INFO", "").startswith(self.path):
            return False
        return "sid" not in parse_qs(environ.get("QUERY_STRING", ""))


def install_drain_gate(app):
    """Put the gate in front of everything (Flask-SocketIO's middleware included)."""
    rt = runtime(app)
    if not isinstance(app.wsgi_app, DrainGate):
        app.wsgi_app = DrainGate(app.wsgi_app, rt)


def begin_drain(app):
    """Mark the process as draining and run the drain in the background; idempotent."""
    rt = runtime(app)
    if rt.draining:
        return False
    rt.draining = True
    metrics.DRAINS.inc()
    log.info("draining: readiness off, new sockets refused")
    socketio.start_background_task(_drain, app)
    return True


def start_background(app):
    """Start this web process's background loops (call once, when serving)."""
    rt = runtime(app)
    socketio.start_background_task(rt.coalescer.run_forever)
    socketio.start_background_task(_refresh_presence, app)
    manager = socketio.server.manager
    if isinstance(manager, ResultsManager):
        # Results published while this process's subscription was down are
        # lost: its sockets re-send what has no answer (docs/API.md, "Recovery").
        manager.on_restored = lambda: socketio.start_background_task(
            ask_to_resend, "subscription_restored")
    if app.config["REDIS_URL"]:
        socketio.start_background_task(subscribe_forever, socketio, app.config["REDIS_URL"],
                                       app.config["REDIS_NAMESPACE"], rt.coalescer,
                                       lambda: _resync(app), lambda m: _tell_positions(app, m))
    else:
        socketio.start_background_task(_sweep_inline, app)


def ask_to_resend(reason):
    """Tell every socket of this process to re-send the requests it has no result for."""
    count = len(socketio.server.eio.sockets)
    log.warning("%s: asking %d sockets to re-send unanswered requests", reason, count)
    metrics.RESEND_NOTICES.labels(reason).inc()
    # ignore_queue: this process's own sockets only (the others' subscriptions are fine).
    socketio.emit("resend", {"reason": reason}, namespace="/", ignore_queue=True)


def _refresh_presence(app):
    """Keep 'last seen' fresh for every buyer connected here, for the disconnect sweep."""
    rt = runtime(app)
    interval = max(0.5, min(5.0, app.config["DISCONNECT_GRACE_SECONDS"] / 3))
    while True:
        socketio.sleep(interval)
        try:
            rt.presence.touch([u for u, n in rt.local_users.items() if n > 0])
            rt.sockets.touch([(u, sid) for sid, u in list(rt.local_sids.items())])
            rt.watchers.touch([(ip, sid) for sid, ip in list(rt.local_watchers.items())])
        except Exception:
            log.warning("presence refresh failed", exc_info=True)


def _sweep_inline(app):
    """The embedded mode's beat: the same periodic tasks, in this process."""
    from workers.tasks import admit_waiting_buyers, reconcile_payments, sweep_holds
    interval = min(app.config["SWEEP_INTERVAL_SECONDS"], app.config["ADMISSION_INTERVAL_SECONDS"])
    sweep_every = max(1, round(app.config["SWEEP_INTERVAL_SECONDS"] / interval))
    every = max(1, round(app.config["RECONCILE_INTERVAL_SECONDS"] / interval))
    ticks = 0
    while True:
        socketio.sleep(interval)
        ticks += 1
        for task, due in ((admit_waiting_buyers, True), (sweep_holds, ticks % sweep_every == 0),
                          (reconcile_payments, ticks % every == 0)):
            if due:
                try:
                    task.apply(throw=True)
                except Exception:
                    log.exception("%s failed", task.name)


def _tell_positions(app, message):
    """A waiting room's positions, to the sockets of this process's queued buyers."""
    local = runtime(app).local_users
    try:
        for n, (user_id, payload) in enumerate(
                waiting_room.position_updates(message, only=local), 1):
            socketio.emit("queue_update", payload, to=f"user:{user_id}", ignore_queue=True)
            if n % 50 == 0:
                socketio.sleep(0)  # let hold requests in between: a full update is long
    except Exception:
        log.exception("queue positions not delivered")


def _resync(app):
    """Re-send full snapshots of watched events (after seat-change messages may have been lost)."""
    rt = runtime(app)
    rt.coalescer.forget_boards()
    rooms = socketio.server.manager.rooms.get("/", {})
    event_ids = [int(r.split(":", 1)[1]) for r in list(rooms) if str(r).startswith("event:")]
    with app.app_context():
        for event_id in event_ids:
            rt.coalescer.add(event_id, catalog.seat_states(db.session, event_id),
                             "1970-01-01T00:00:00Z")
        db.session.remove()


def bound_database_waits(app):
    """A serving web process's database round trips give up after WEB_DB_TIMEOUT_SECONDS
    (PyMySQL's connect, read and write timeouts), so that no handler, and no ack,
    waits on a stalled database connection: the error answers `busy`."""
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("mysql"):
        return
    from sqlalchemy import event
    seconds = app.config["WEB_DB_TIMEOUT_SECONDS"]
    with app.app_context():
        engine = db.engine

        @event.listens_for(engine, "do_connect")
        def _bounded(dialect, conn_rec, cargs, cparams):
            for name in ("connect_timeout", "read_timeout", "write_timeout"):
                cparams[name] = seconds

        engine.dispose()   # connections made before this point have no bound


def serve(app, host, port):
    """Run the eventlet server until SIGTERM or SIGINT, then drain and exit."""
    install_drain_gate(app)
    bound_database_waits(app)

    def on_signal(signum, frame):
        begin_drain(app)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    start_background(app)
    if app.config["REDIS_URL"]:
        socketio.start_background_task(_watch_redis_restarts, app)
    else:
        from workers.after_sale import run_embedded_loop
        socketio.start_background_task(run_embedded_loop, app)
    max_connections = app.config["WEB_MAX_CONNECTIONS"]
    log.info("serving on http://%s:%d (at most %d connections)", host, port, max_connections)
    try:
        # max_size: eventlet's per-process connection cap (its default is 1024).
        # Each connection is one file descriptor: RLIMIT_NOFILE must be higher.
        socketio.run(app, host=host, port=port, max_size=max_connections, log_output=False,
                     use_reloader=False, debug=False)
    finally:
        metrics.process_exited()
        log.info("stopped")


def close_sockets(app, reason="server_draining"):
    """Tell every socket of this process to reconnect, then close it; returns how many."""
    server = socketio.server
    count = len(server.eio.sockets)
    log.info("%s: asking %d sockets to reconnect",
             "draining" if reason == "server_draining" else reason, count)
    if count:
        # ignore_queue: this process's own sockets only, not the whole cluster's.
        socketio.emit("draining", {"reconnect": True, "reason": reason},
                      namespace="/", ignore_queue=True)
        socketio.sleep(0.2)  # let the notices leave before the close packets
        # The transport is dropped without a close packet: Socket.IO clients
        # (browser and python alike) take a lost transport as a cue to
        # reconnect, whereas after a Socket.IO disconnect or an Engine.IO close
        # packet python-socketio stays away. wait=False: a polling client that
        # stopped polling would never collect anything, and waiting would stall.
        eio = server.eio
        for sid, sock in list(eio.sockets.items()):
            try:
                sock.close(wait=False, abort=True, reason=eio.reason.SERVER_DISCONNECT)
            except Exception:
                log.debug("closing socket %s failed", sid, exc_info=True)
            eio.sockets.pop(sid, None)
    return count


def _drain(app):
    """Let the load balancer notice readiness is off, send sockets away, then stop."""
    timeout = app.config["DRAIN_TIMEOUT_SECONDS"]
    _exit_after(timeout)
    socketio.sleep(app.config["DRAIN_NOTICE_SECONDS"])
    try:
        close_sockets(app)
    except Exception:
        log.exception("draining: closing sockets failed")
    socketio.sleep(app.config["DRAIN_GRACE_SECONDS"])
    log.info("draining: stopping the server")
    socketio.stop()


def _exit_after(seconds):
    """A last resort: leave even if a connection keeps the server from stopping."""
    def leave(signum, frame):
        log.warning("draining: not stopped after %.0fs; exiting", seconds)
        metrics.process_exited()
        sys.stderr.flush()
        os._exit(1)
    # SIGALRM interrupts the hub's wait even if no green thread ever runs again.
    signal.signal(signal.SIGALRM, leave)
    signal.alarm(max(1, int(seconds)))


def _watch_redis_restarts(app, interval_s=2.0):
    """When Redis comes back empty (a restart: new run_id), send every socket away to
    reconnect. Redis held the queue of accepted requests and their ledger; clients
    re-send what they have no answer for (API.md), and each repeat is answered from
    its durable record or performed if it was lost."""
    rt = runtime(app)
    last = None
    while True:
        try:
            run_id = rt.state.redis.info("server")["run_id"]
        except Exception:
            run_id = None  # down: readiness says so; wait for it to come back
        if run_id and last and run_id != last and not rt.draining:
            log.warning("Redis restarted (run_id %s -> %s): sockets asked to reconnect",
                        last, run_id)
            try:
                close_sockets(app, reason="redis_restarted")
            except Exception:
                log.exception("sending sockets away after a Redis restart failed")
        last = run_id or last
        socketio.sleep(interval_s)
