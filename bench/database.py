"""A throwaway MariaDB database and Redis namespace for one run, and what a bench reads or makes in it.

Throwaway follows the conventions of bench/sockets_capacity.py: a database and a
Redis namespace/queue private to one run, dropped afterwards, so a bench never
touches another engineer's data. The ops commands (`flask --app wsgi booking ...`)
create events and audit them; buyers are inserted directly (one Argon2 hash shared).
"""
import json
import os
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlparse

from runs import say

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


class Throwaway:
    """A MariaDB database and a Redis namespace for one run; `close()` drops both."""

    def __init__(self, mysql="mysql+pymysql://root@127.0.0.1:3306",
                 redis_url="redis://127.0.0.1:6379/0", prefix="bo_bench"):
        import pymysql
        self.mysql = mysql
        self.redis_url = redis_url
        tag = uuid.uuid4().hex[:8]
        self.db_name = f"{prefix}_{tag}"
        self.namespace = f"bo-bench-{tag}"
        u = urlparse(mysql.replace("mysql+pymysql", "mysql"))
        self.conn_args = dict(host=u.hostname, port=u.port or 3306, user=u.username or "root",
                              password=u.password or "")
        conn = pymysql.connect(autocommit=True, **self.conn_args)
        conn.cursor().execute(f"CREATE DATABASE {self.db_name} CHARACTER SET utf8mb4")
        conn.close()
        self.db_url = f"{mysql}/{self.db_name}?charset=utf8mb4"
        self.secret = uuid.uuid4().hex + uuid.uuid4().hex
        self.env = dict(os.environ, DATABASE_URL=self.db_url, REDIS_URL=redis_url,
                        REDIS_NAMESPACE=self.namespace, CELERY_QUEUE=f"{self.namespace}-q",
                        SECRET_KEY=self.secret, LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.env.pop("BOXOFFICE_RUN_DIR", None)

    def connect(self, **kw):
        import pymysql
        return pymysql.connect(database=self.db_name, autocommit=True, **self.conn_args, **kw)

    def close(self):
        import pymysql
        import redis
        try:
            conn = pymysql.connect(autocommit=True, connect_timeout=10, **self.conn_args)
            conn.cursor().execute(f"DROP DATABASE IF EXISTS {self.db_name}")
            conn.close()
        except Exception as err:  # the database may be down after a drill gone wrong
            say(f"could not drop {self.db_name}: {err}; drop it by hand")
        try:
            client = redis.Redis.from_url(self.redis_url, socket_timeout=10)
            keys = set(client.scan_iter(f"{self.namespace}*")) | set(
                client.scan_iter(f"*{self.namespace}*"))
            if keys:
                client.delete(*keys)
        except Exception as err:
            say(f"could not clear Redis keys {self.namespace}*: {err}")


def flask_cli(env, *args, timeout=300):
    cli_env = dict(env)
    cli_env.pop("REDIS_URL", None)  # ops commands need only the database
    cli_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.run([PYTHON, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=cli_env,
                          capture_output=True, text=True, timeout=timeout)


def create_event(env, rows, per_row, price_cents=5000, name="Bench night", organizer_id=None):
    out = flask_cli(env, "booking", "create-event", "--name", name, "--venue", "Bench Hall",
                    "--starts-at", "2030-01-01T19:00:00Z", "--rows", str(rows),
                    "--seats-per-row", str(per_row), "--price-cents", str(price_cents),
                    *(["--organizer", str(organizer_id)] if organizer_id else []))
    if out.returncode != 0:
        raise RuntimeError(f"create-event failed: {out.stderr[-2000:]}")
    return int(out.stdout.strip().splitlines()[-1])


def audit(env, event_id=None):
    """Run `booking audit`: (exit code, report dict or None, stderr tail)."""
    args = ["booking", "audit"] + (["--event", str(event_id)] if event_id else [])
    out = flask_cli(env, *args)
    try:
        report = json.loads(out.stdout)
    except ValueError:
        report = None
    return out.returncode, report, out.stderr[-2000:]


def seat_grid(tw, event_id):
    """[[seat_id of row r, seat n]] in row order (rows named A, B, ...; ids ascend)."""
    conn = tw.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT id, `row`, number FROM seats WHERE event_id=%s", (event_id,))
        rows = cur.fetchall()
    conn.close()

    def row_key(name):
        return (len(name), name)
    by_row = defaultdict(list)
    for sid, row, number in rows:
        by_row[row].append((number, sid))
    return [[sid for _n, sid in sorted(by_row[r])] for r in sorted(by_row, key=row_key)]


def seat_counts(tw, event_id, conn=None):
    own = conn is None
    conn = conn or tw.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT status, COUNT(*) FROM seats WHERE event_id=%s GROUP BY status",
                    (event_id,))
        out = dict(cur.fetchall())
    if own:
        conn.close()
    return {k: int(out.get(k, 0)) for k in ("available", "held", "sold")}


def make_users(tw, n):
    """Create n buyer accounts directly (one Argon2 hash shared, for speed); [(id, token)]."""
    sys.path.insert(0, str(ROOT))
    from booking import create_app
    from booking.auth import hash_password, issue_token
    app = create_app({"SQLALCHEMY_DATABASE_URI": tw.db_url, "REDIS_URL": None,
                      "SECRET_KEY": tw.secret, "SOCKETIO_ASYNC_MODE": "threading"})
    pw = hash_password("correct-horse-battery")
    tag = uuid.uuid4().hex[:6]
    conn = tw.connect()
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO users (email, name, password_hash, created_at) "
                        "VALUES (%s, '', %s, UTC_TIMESTAMP(6))",
                        [(f"b{tag}-{i}@bench.test", pw) for i in range(n)])
        cur.execute("SELECT id FROM users WHERE email LIKE %s ORDER BY id", (f"b{tag}-%",))
        ids = [r[0] for r in cur.fetchall()]
    conn.close()

    class _U:   # what issue_token reads of a user: its id and session version (new: 0)
        def __init__(self, i):
            self.id = i
            self.session_version = 0
    with app.app_context():
        return [(i, issue_token(_U(i))) for i in ids]
