"""Fixtures: a throwaway MariaDB database and a private Redis namespace per test session.

Tests talk to the real MariaDB (127.0.0.1:3306) and Redis (127.0.0.1:6379) that
`make test` starts. TEST_MYSQL_URL and TEST_REDIS_URL point them elsewhere.
"""
import contextlib
import os
import subprocess
import sys
import uuid
import warnings
from urllib.parse import urlparse

import pymysql
import pytest
import redis
import sqlalchemy as sa

from tests.harness import ROOT, Buyer, Cluster, sign_up
from tests.netcut import Proxy
# The back office's two organizers and their people (tests/back_office.py).
from tests.back_office import office  # noqa: E402,F401

MYSQL_SERVER = os.environ.get("TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "test-secret-" + uuid.uuid4().hex
# Tests sign many accounts up and in from 127.0.0.1; tests of these limits set their own.
OPEN_LOGIN_LIMITS = {"LOGIN_EMAIL_RATE_LIMIT": "1000/second", "LOGIN_IP_RATE_LIMIT": "1000/second"}


def _mysql_connect():
    u = urlparse(MYSQL_SERVER.replace("mysql+pymysql", "mysql"))
    return pymysql.connect(host=u.hostname, port=u.port or 3306, user=u.username or "root",
                           password=u.password or "", autocommit=True)


def migrate(database_url):
    """Build the schema with the real ops command, in its own process."""
    return ops_command(database_url, "db", "upgrade", real_process=True)


@contextlib.contextmanager
def fresh_mysql_database(prefix):
    """A new MariaDB database built by the migrations; dropped on exit. Yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = _mysql_connect()
    conn.cursor().execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    url = f"{MYSQL_SERVER}/{name}?charset=utf8mb4"
    try:
        migrate(url)
        yield url
    finally:
        _drop_database(conn, name)
        conn.close()


def _drop_database(conn, name):
    """Drop a test database, first ending every other connection to it.

    A connection a finished test left in an open transaction (an app's background
    thread in this process, say) holds a metadata lock that DROP DATABASE waits on for
    up to lock_wait_timeout (a day by default): a fresh-clone run once spent 7 minutes
    here. Such connections are named on stderr and killed."""
    cur = conn.cursor()
    cur.execute("SELECT id, command, time FROM information_schema.processlist "
                "WHERE db = %s AND id <> CONNECTION_ID()", (name,))
    for conn_id, command, idle in cur.fetchall():
        print(f"\n{name}: killing connection {conn_id} ({command}, {idle} s) before the drop",
              file=sys.stderr)
        with contextlib.suppress(pymysql.err.OperationalError, pymysql.err.InternalError):
            cur.execute(f"KILL CONNECTION {int(conn_id)}")
    cur.execute("SET SESSION lock_wait_timeout = 60")
    cur.execute(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture(scope="session")
def mysql_url():
    """A fresh, migrated MariaDB database for this test session, dropped afterwards."""
    with fresh_mysql_database("bo_test") as url:
        yield url


@pytest.fixture(scope="session")
def redis_namespace():
    """A Redis key prefix, pub/sub channel prefix and Celery queue private to this session."""
    ns = f"bo-test-{uuid.uuid4().hex[:10]}"
    yield ns
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{ns}*")) + list(client.scan_iter(f"*{ns}*"))
    if keys:
        client.delete(*set(keys))


def _clean(url):
    """Empty every table of the test database at url.

    On MariaDB a row lock held by a connection a finished test left behind (seen once
    in a fresh-clone run: every later test of that pytest process failed its clean-up
    after 50 s) is not waited out: after 10 s the holders are named in a warning, which
    pytest's summary shows, killed, and the clean-up runs again."""
    engine = sa.create_engine(url)
    try:
        if engine.dialect.name == "sqlite":
            _delete_all(engine)
            return
        try:
            _delete_all(engine, lock_wait_s=10)
        except sa.exc.OperationalError as err:
            if err.orig.args[0] != 1205:   # ER_LOCK_WAIT_TIMEOUT
                raise
            _end_lock_holders(engine)
            _delete_all(engine, lock_wait_s=10)
    finally:
        engine.dispose()


def _delete_all(engine, lock_wait_s=None):
    from booking.extensions import db
    import booking.models  # noqa: F401
    with engine.begin() as conn:
        if lock_wait_s is not None:
            conn.execute(sa.text(f"SET SESSION innodb_lock_wait_timeout = {int(lock_wait_s)}"))
            conn.execute(sa.text("SET FOREIGN_KEY_CHECKS = 0"))
        for table in reversed(db.metadata.sorted_tables):
            conn.execute(table.delete())
        if lock_wait_s is not None:
            conn.execute(sa.text("SET FOREIGN_KEY_CHECKS = 1"))


def _end_lock_holders(engine):
    """Warn about and kill the other connections to this database with a transaction open."""
    with engine.connect() as conn:
        holders = conn.execute(sa.text(
            "SELECT p.id, p.host, p.command, p.time, t.trx_started, t.trx_rows_locked, "
            "t.trx_query, p.info FROM information_schema.innodb_trx t "
            "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
            "WHERE p.db = DATABASE() AND p.id <> CONNECTION_ID()")).all()
        for holder in holders:
            warnings.warn(f"clean_db: killing connection {tuple(holder)}, which held row "
                          "locks after its test", stacklevel=1)
            with contextlib.suppress(sa.exc.OperationalError):
                conn.execute(sa.text(f"KILL CONNECTION {int(holder.id)}"))


@pytest.fixture
def clean_db(mysql_url):
    """The session's MariaDB database, emptied after the test."""
    yield mysql_url
    _clean(mysql_url)


def pytest_configure(config):
    config.addinivalue_line("markers", "app_config(**settings): extra config for the app fixture")


@pytest.fixture
def app(clean_db, request):
    """The app on MariaDB in the one-process mode (tasks in-process), for handler tests."""
    from booking import create_app
    marker = request.node.get_closest_marker("app_config")
    app = create_app({"SQLALCHEMY_DATABASE_URI": clean_db, "REDIS_URL": None,
                      "SECRET_KEY": SECRET, "SOCKETIO_ASYNC_MODE": "threading",
                      "TESTING": True, **OPEN_LOGIN_LIMITS, **(marker.kwargs if marker else {})})
    yield app
    from booking import dashboard
    dashboard.stop_loops()   # a loop of this app would send figures to later tests' sockets
    with app.app_context():
        from booking.extensions import db
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def proc_env(clean_db, redis_namespace):
    """Environment for real web/worker/beat processes of the scaled-out mode."""
    env = dict(os.environ)
    env.update(DATABASE_URL=clean_db, REDIS_URL=REDIS_URL, REDIS_NAMESPACE=redis_namespace,
               CELERY_QUEUE=f"{redis_namespace}-q", SECRET_KEY=SECRET, LOG_LEVEL="INFO",
               PYTHONUNBUFFERED="1", **OPEN_LOGIN_LIMITS)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    client = redis.Redis.from_url(REDIS_URL)
    yield env
    # Leave no queued work for the next test.
    for key in client.scan_iter(f"{redis_namespace}*"):
        client.delete(key)


@pytest.fixture
def cluster(proc_env, tmp_path, request):
    """Start real processes with cluster.web() / .worker() / .beat(); all stopped afterwards."""
    c = Cluster(proc_env, tmp_path)
    yield c
    c.kill()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(c.tails())


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def ops_command(url, *args, real_process=False):
    """Run an ops command (`flask --app wsgi ARGS`) on the database at url; its stdout.

    In this process by default: the same click command through Flask's CLI runner, on a
    bare app with the settings and the database and nothing else (13 ms against 1.8 s
    for a new Python process that imports the app, for most tests' create-event).
    Not create_app(): a second full app in this process would take over the Socket.IO
    server that a test's own app fixture had bound. real_process: the real
    `python -m flask --app wsgi` in a child process."""
    if real_process:
        env = dict(os.environ, DATABASE_URL=url, SECRET_KEY=SECRET)
        env.pop("REDIS_URL", None)
        out = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout
    from flask import Flask
    from booking import commands, config
    from booking.extensions import db
    app = Flask("ops-command")
    app.config.update(config.from_environment())
    app.config.update(SQLALCHEMY_DATABASE_URI=url, REDIS_URL=None, SECRET_KEY=SECRET)
    db.init_app(app)
    commands.init_app(app)
    try:
        result = app.test_cli_runner().invoke(args=list(args))
        assert result.exit_code == 0, (result.stderr, result.exception)
        return result.stdout
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def create_event(url, rows=5, per_row=10, price=2500, name="Test night", layout=None,
                 tier_prices=None, venue="Test Hall", real_process=False):
    """Create an event with the ops command (see ops_command); returns its id.

    layout: a layout file (e.g. ROOT / "docs/examples/arena-20000.json") instead of
    rows x per_row; tier_prices {tier: cents} (tiers without one cost price).
    """
    shape = (["--layout", str(layout)] if layout else
             ["--rows", str(rows), "--seats-per-row", str(per_row)])
    for tier, cents in (tier_prices or {}).items():
        shape += ["--tier-price", f"{tier}={cents}"]
    out = ops_command(url, "booking", "create-event", "--name", name, "--venue", venue,
                      "--starts-at", "2030-01-01T19:00:00Z", *shape, "--price-cents", str(price),
                      real_process=real_process)
    return int(out.strip().splitlines()[-1])


def lapse_hold(url, hold_id):
    """Move a hold's expiry (and its seats') a minute into the past, as if its TTL had run out.

    Expiry is data (holds.expires_at, seats.hold_expires_at): a test lapses a hold
    by writing it instead of sleeping past a short HOLD_TTL_SECONDS on the wall clock.
    """
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE holds SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE "
                             "WHERE id = :h"), {"h": hold_id})
        conn.execute(sa.text("UPDATE seats SET hold_expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 "
                             "MINUTE WHERE hold_id = :h AND status = 'held'"), {"h": hold_id})
    engine.dispose()


@pytest.fixture
def make_users(app):
    """Create n accounts directly (one Argon2 hash shared, for speed); returns [(id, token)]."""
    from booking.auth import hash_password, issue_token
    from booking.extensions import db
    from booking.models import User

    def make(n):
        pw = hash_password("correct-horse-battery")
        with app.app_context():
            users = [User(email=f"u{uuid.uuid4().hex[:12]}@example.test", name="", password_hash=pw)
                     for _ in range(n)]
            db.session.add_all(users)
            db.session.commit()
            return [(u.id, issue_token(u)) for u in users]
    return make


@pytest.fixture
def buyers():
    """Makes connected Buyer clients; disconnects them all afterwards."""
    made = []

    def make(base_url, connect_url=None):
        uid, token = sign_up(base_url)
        buyer = Buyer(base_url, token, uid).connect(connect_url)
        made.append(buyer)
        return buyer
    yield make
    for b in made:
        b.close()


def through(proxy, url):
    """url (a database or Redis URL) pointed at proxy instead of its server."""
    u = urlparse(url)
    return url.replace(f"{u.hostname}:{u.port}", f"127.0.0.1:{proxy.port}", 1)


@pytest.fixture
def db_proxy(clean_db):
    """A proxy to MariaDB the test can cut, stall and restore (tests/netcut.py)."""
    u = urlparse(clean_db.replace("mysql+pymysql", "mysql"))
    proxy = Proxy(u.hostname, u.port or 3306)
    yield proxy
    proxy.cut()


@pytest.fixture
def redis_proxy():
    """A proxy to Redis the test can cut, stall and restore."""
    u = urlparse(REDIS_URL)
    proxy = Proxy(u.hostname, u.port or 6379)
    yield proxy
    proxy.cut()
