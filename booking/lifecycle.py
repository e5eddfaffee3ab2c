"""Serving a web process and draining it on SIGTERM."""
import logging
import signal

from .extensions import socketio
from .sockets import start_background

log = logging.getLogger(__name__)


def serve(app, host, port, max_connections=10000):
    """Run the eventlet server until SIGTERM or SIGINT, then drain and exit."""
    rt = app.extensions["boxoffice"]
    rt.draining = False

    def drain(signum, frame):
        if rt.draining:
            return
        rt.draining = True
        log.info("draining: readiness off, disconnecting sockets")
        socketio.start_background_task(_drain, app)

    signal.signal(signal.SIGTERM, drain)
    signal.signal(signal.SIGINT, drain)
    start_background(app)
    log.info("serving on http://%s:%d", host, port)
    # max_size: eventlet's per-process connection cap (its default is 1024).
    socketio.run(app, host=host, port=port, max_size=max_connections, log_output=False,
                 use_reloader=False, debug=False)


def _drain(app):
    """Let the load balancer notice readiness is off, tell sockets to go, then stop."""
    socketio.sleep(app.config.get("DRAIN_NOTICE_SECONDS", 1.0))
    server = socketio.server
    sids = [sid for sid, _eio in list(server.manager.get_participants("/", None))]
    log.info("draining: disconnecting %d sockets", len(sids))
    for sid in sids:
        try:
            server.disconnect(sid, namespace="/")
        except Exception:
            log.debug("disconnect of %s failed", sid, exc_info=True)
    socketio.sleep(0.5)  # in-flight acks finish
    socketio.stop()
