"""The web process: `python wsgi.py --host HOST --port PORT` (Flask-SocketIO on eventlet).

Also the app for Flask's CLI: `flask --app wsgi db upgrade`, `flask --app wsgi booking ...`.
"""
if __name__ == "__main__":
    # First thing, and only when serving: the CLI and the workers stay unpatched.
    import eventlet
    eventlet.monkey_patch()

import argparse  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402

from booking import create_app  # noqa: E402

# Serving registers no `flask db` commands (nor imports Alembic for them).
app = create_app(migrations=__name__ != "__main__")


def log_requests(flask_app):
    """One log line per HTTP request: method, path (never the query), status, milliseconds.

    For `make run`; behind nginx (deploy/) nginx's access log does this.
    """
    from flask import g, request
    access = logging.getLogger("boxoffice.access")

    @flask_app.before_request
    def _started():
        g.access_t0 = time.perf_counter()

    @flask_app.after_request
    def _answered(response):
        ms = (time.perf_counter() - g.get("access_t0", time.perf_counter())) * 1000
        access.info("%s %s %s %.0f ms", request.method, request.path, response.status_code, ms)
        return response


def main():
    parser = argparse.ArgumentParser(description="Serve Boxoffice (HTTP and Socket.IO).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--access-log", action="store_true",
                        help="log one line per HTTP request (make run does)")
    args = parser.parse_args()
    if args.access_log:
        log_requests(app)
    # The embedded mode runs its periodic tasks (sweeps, admissions) in this process
    # every second or so: log their failures, not a trace line per success.
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)

    from booking import gc_tuning, lifecycle, ws_mask
    ws_mask.install()   # unmask frames in C: see booking/ws_mask.py
    gc_tuning.settle()  # start-up is over: see booking/gc_tuning.py
    lifecycle.serve(app, args.host, args.port)


if __name__ == "__main__":
    main()
