"""Serving a web process and draining it on SIGTERM.

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
import logging
import os
import signal
import sys
from urllib.parse import parse_qs

from . import metrics
from .extensions import socketio
from .sockets import start_background

log = logging.getLogger(__name__)

DRAINING_BODY = (b'{"error": {"code": "busy", "message": "This instance is shutting down; '
                 b'connect again.", "details": {"retry_after_s": 1}}}')


def _seconds(app, name, default):
    value = os.environ.get(name)
    if value not in (None, ""):
        return float(value)
    return float(app.config.get(name, default))


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
        if getattr(self.rt, "draining", False) and self._opens_session(environ):
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
    rt = app.extensions["boxoffice"]
    if not hasattr(rt, "draining"):
        rt.draining = False
    if not isinstance(app.wsgi_app, DrainGate):
        app.wsgi_app = DrainGate(app.wsgi_app, rt)


def begin_drain(app):
    """Mark the process as draining and run the drain in the background; idempotent."""
    rt = app.extensions["boxoffice"]
    if getattr(rt, "draining", False):
        return False
    rt.draining = True
    metrics.DRAINS.inc()
    log.info("draining: readiness off, new sockets refused")
    socketio.start_background_task(_drain, app)
    return True


def serve(app, host, port, max_connections=10000):
    """Run the eventlet server until SIGTERM or SIGINT, then drain and exit."""
    install_drain_gate(app)

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
    timeout = _seconds(app, "DRAIN_TIMEOUT_SECONDS", 30.0)
    _exit_after(timeout)
    socketio.sleep(_seconds(app, "DRAIN_NOTICE_SECONDS", 1.0))
    try:
        close_sockets(app)
    except Exception:
        log.exception("draining: closing sockets failed")
    socketio.sleep(_seconds(app, "DRAIN_GRACE_SECONDS", 1.0))
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
    rt = app.extensions["boxoffice"]
    last = None
    while True:
        try:
            run_id = rt.state.redis.info("server")["run_id"]
        except Exception:
            run_id = None  # down: readiness says so; wait for it to come back
        if run_id and last and run_id != last and not getattr(rt, "draining", False):
            log.warning("Redis restarted (run_id %s -> %s): sockets asked to reconnect",
                        last, run_id)
            try:
                close_sockets(app, reason="redis_restarted")
            except Exception:
                log.exception("sending sockets away after a Redis restart failed")
        last = run_id or last
        socketio.sleep(interval_s)
