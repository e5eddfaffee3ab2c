"""Boxoffice: an online box office for on-sales with far more buyers than seats."""
import logging
import sys

from flask import Flask

from . import config as config_module
from .extensions import csrf, db, login_manager, socketio


def _configure_logging(app):
    level = getattr(logging, str(app.config["LOG_LEVEL"]).upper(), logging.INFO)
    root = logging.getLogger()
    if not any(getattr(h, "_boxoffice", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"))
        handler._boxoffice = True
        root.addHandler(handler)
    root.setLevel(level)
    # Request bodies are never logged; engineio/socketio payload logging stays off.
    for noisy in ("engineio", "socketio", "werkzeug", "amqp", "kombu"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _sqlite_foreign_keys(engine):
    """SQLite checks foreign keys only when asked, per connection."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA foreign_keys=ON")


def create_app(config=None, role="web", migrations=None):
    """Build the app. role is 'web' (serves HTTP and sockets) or 'worker' (Celery side).

    migrations: whether `flask db` (Flask-Migrate, Alembic) is registered; by default
    for the web role only. A serving process (wsgi.py) passes False: importing
    Alembic costs every process start about 0.4 s of CPU, for commands it never runs.
    """
    app = Flask(__name__, instance_path=str(config_module.INSTANCE_DIR),
                template_folder=str(config_module.PROJECT_ROOT / "templates"),
                static_folder=str(config_module.PROJECT_ROOT / "static"))
    app.config.update(config_module.from_environment())
    if config:
        app.config.update(config)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"timeout": 30}}
    elif app.config["SQLALCHEMY_DATABASE_URI"].startswith("mysql"):
        # Every plain read sees the latest commit: decisions are taken on rows
        # locked FOR UPDATE, and reads after a lock must not see an older snapshot.
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = dict(
            app.config["SQLALCHEMY_ENGINE_OPTIONS"], isolation_level="READ COMMITTED",
            # A web process serves hundreds of green threads: a waiting one
            # should fail fast as `busy` (3 s), not sit 30 s for a connection.
            pool_recycle=3600, pool_size=20, max_overflow=20, pool_timeout=3,
            # A connection comes back after its transaction ended: SQLAlchemy's
            # Connection.close() rolls back one still open itself. The pool's own
            # ROLLBACK on return was one more round trip after every COMMIT, 1.3
            # of the 11.9 a worker's task makes (docs/BENCHMARKS.md).
            pool_reset_on_return=None)
        if "ssl" not in app.config["SQLALCHEMY_DATABASE_URI"].partition("?")[2]:
            # TLS to MySQL is asked for in DATABASE_URL (PyMySQL's ssl_ca=...,
            # ssl_verify_cert=true). Without it, PyMySQL would try TLS
            # opportunistically: unverified, and ~10 ms of CPU per connection
            # to build an SSL context (a fifth of a web process's CPU under an
            # on-sale, measured with py-spy), even against a server without TLS.
            app.config["SQLALCHEMY_ENGINE_OPTIONS"].setdefault(
                "connect_args", {}).setdefault("ssl_disabled", True)
    app.config["ROLE"] = role
    app.json.sort_keys = False
    _configure_logging(app)
    from . import startup_checks
    startup_checks.run(app)

    db.init_app(app)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        with app.app_context():
            _sqlite_foreign_keys(db.engine)
    if migrations is None:
        migrations = role == "web"
    if migrations:
        from flask_migrate import Migrate
        Migrate(app, db, directory=str(config_module.PROJECT_ROOT / "migrations"),
                render_as_batch=True)
    login_manager.init_app(app)
    from . import sessions; sessions.init_app(app)  # noqa: E702
    csrf.init_app(app)
    from . import auth  # noqa: F401  (registers the user loaders)

    from . import http_errors, security_headers
    app.register_blueprint(http_errors.bp)
    security_headers.init_app(app)

    from .jobs import celery_init_app
    celery_init_app(app)

    _init_runtime(app, role)

    from . import (api, api_tickets, commands, manage, ops, organizer_api, pages,
                   pages_account, pages_door, webhooks)
    # The JSON API takes JSON bodies or bearer tokens, never form posts; Stripe's
    # webhooks are proven by their signature, not by a session.
    for bp in (webhooks.bp, api.bp, api_tickets.bp, organizer_api.bp):
        csrf.exempt(bp)
    for bp in (webhooks.bp, api.bp, api_tickets.bp, organizer_api.bp, manage.bp, ops.bp,
               pages.bp, pages_door.bp, pages_account.bp):
        app.register_blueprint(bp)
    commands.init_app(app)
    return app


def _init_runtime(app, role):
    """Build the process's Runtime (shared state, broadcasting, dispatching) for the role and mode."""
    # The handlers must be declared before the first socketio.init_app():
    # Flask-SocketIO keeps them for every later init_app only if no server
    # existed when they were declared.
    from . import dashboard, sockets  # noqa: F401
    from .broadcast import Broadcaster, SeatsCoalescer
    from .delivery import ResultsManager
    from .holds import Settings
    from .intake import make_dispatcher
    from .metrics import Metrics
    from .payments import make_processor
    from .ratelimits import RequestLimits
    from .runtime import Runtime
    from .state.backends import make_state
    from .state.ledger import RequestLedger
    from .state.presence import Presence, SocketSlots
    from .state.shedding import LoadShedding
    from .waiting_room import GateCache, make_room_store

    redis_url = app.config["REDIS_URL"]
    namespace = app.config["REDIS_NAMESPACE"]
    # Results and other socket events travel through Flask-SocketIO's message
    # queue (booking.delivery: a lost subscription or publish is made visible).
    queue_url = (app.config["SOCKETIO_MESSAGE_QUEUE_URL"] or redis_url) if redis_url else None
    queue_options = {"client_manager": ResultsManager(
        queue_url, channel=f"{namespace}-socketio", write_only=role == "worker")
        if queue_url else None}
    if role == "worker":
        # A write-only emitter: workers only publish to the message queue.
        # async_mode='threading' keeps eventlet out of the prefork worker.
        socketio.init_app(None, async_mode="threading", **queue_options)
    else:
        socketio.init_app(app, **queue_options,
                          async_mode=app.config.get("SOCKETIO_ASYNC_MODE"),
                          # None: only the page's own origin may open a socket.
                          cors_allowed_origins=app.config.get("CORS_ALLOWED_ORIGINS"),
                          max_http_buffer_size=64 * 1024,
                          ping_interval=20, ping_timeout=20,
                          always_connect=False)
        sockets.register_hot_events(app)
    state = make_state(app)
    ledger = RequestLedger(state, namespace)
    shedding = LoadShedding(ledger, app.config)
    metrics = Metrics()
    coalescer = None
    if role == "web":
        coalescer = SeatsCoalescer(socketio, app.config["SEATS_CHANGED_INTERVAL_MS"] / 1000,
                                   local_only=bool(redis_url))
        coalescer.on_flush = metrics.seats_changed
        coalescer.on_change = dashboard.seats_changed
    rt = app.extensions["boxoffice"] = Runtime(
        settings=Settings(hold_ttl_seconds=app.config["HOLD_TTL_SECONDS"],
                          max_seats_per_order=app.config["MAX_SEATS_PER_ORDER"],
                          max_open_holds=app.config["MAX_OPEN_HOLDS"],
                          avoid_single_seats=app.config["BEST_AVOID_SINGLE_SEATS"]),
        state=state,
        ledger=ledger,
        presence=Presence(state, app.config["DISCONNECT_GRACE_SECONDS"], namespace),
        sockets=SocketSlots(state, namespace, app.config["MAX_SOCKETS_PER_ACCOUNT"]),
        # The same counting, keyed by client IP, for signed-out visitors' sockets.
        watchers=SocketSlots(state, f"{namespace}:anonymous",
                             app.config["MAX_ANONYMOUS_SOCKETS_PER_IP"]),
        shedding=shedding,
        rate_limit=RequestLimits(app, state),
        broadcaster=Broadcaster(socketio, redis_url=redis_url, namespace=namespace,
                                coalescer=coalescer),
        metrics=metrics,
        processor=make_processor(app),
        waiting_room=make_room_store(app, state),
        gates=GateCache(),
        coalescer=coalescer,
        dispatcher=make_dispatcher(app) if role == "web" else None,
    )
    from . import metrics as metrics_module, ratelimits
    ratelimits.init_app(app)
    metrics_module.SCRAPE_SOURCES["waiting_rooms"] = (
        lambda: rt.waiting_room.stats(rt.waiting_room.known_events()))
    metrics_module.SCRAPE_SOURCES["shedding"] = rt.shedding.pressure

