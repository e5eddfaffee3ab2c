#!/usr/bin/env python3
"""CPU of two pieces of a worker's work, each against the way it was done before.

    .venv/bin/python bench/worker_costs.py [--holds 12000] [--buyers 1000] [--repeat 2]

py-spy (GIL samples of the worker children at `bench/holds.py --rate 600`) put these
at 12.7% and 6.5% of a worker child's CPU; docs/BENCHMARKS.md has the profile.

- finish: the ledger's `finish_many` for batches of 10 and 50 answers shaped like the
  product's (each a hold gained, half as many ended, one counter), 1,000 calls each.
  "script" is today's (booking/state/redis_finish.py, one EVALSHA); "pipeline" is the
  MULTI/EXEC pipeline it replaced, kept below only for this comparison. CPU of this
  process and of redis-server per call.
- sweep read: the departed-buyer check's read with --holds open holds of --buyers buyers
  (and three times as many ended holds) in a throwaway database. "holders" is today's
  (`holds.holders`: each buyer once); "every hold" is the read it replaced, kept below.
  CPU of this process and of MariaDB per call, the mean of 20 calls.

Each part runs --repeat times; the load average before each run is printed. Other
processes share the cores: run it on a quiet machine.
"""
import argparse
import os
import sys
import time
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]

from database import Throwaway, create_event, flask_cli  # noqa: E402
from deploy.local.launcher import cpu_seconds, pids_by_name  # noqa: E402


def _server_cpu(name):
    return sum(cpu_seconds(pid) or 0 for pid in pids_by_name(name))


def _pipeline_finish(redis):
    """RedisState.finish before booking/state/redis_finish.py: one MULTI/EXEC pipeline."""
    def finish(done):
        pipe = redis.pipeline(transaction=True)
        for key, value in done.records.items():
            pipe.set(key, value, ex=done.ttl)
        if done.index_members:
            pipe.zrem(done.index, *done.index_members)
        for group, member in done.group_members:
            pipe.srem(group, member)
        for key, member, expires in done.opened:
            pipe.zadd(key, {member: expires})
            ttl = max(60, int(expires - done.now) + 60)
            pipe.expire(key, ttl, nx=True)
            pipe.expire(key, ttl, gt=True)
        for key, member in done.closed:
            pipe.zrem(key, member)
        for key in {k for k, _m, _e in done.opened} | {k for k, _m in done.closed}:
            pipe.zremrangebyscore(key, "-inf", done.now)
        for key, amount in done.counts.items():
            pipe.incrby(key, amount)
            pipe.expire(key, done.counts_ttl)
        pipe.execute()
    return finish


def measure_finish(redis_url, sizes, calls=1000):
    from booking.state.backends import RedisState
    from booking.state.ledger import RequestLedger
    state = RedisState(redis_url)
    namespace = f"bench-finish-{uuid.uuid4().hex[:8]}"
    ledger = RequestLedger(state, namespace)
    script_finish = state.finish
    serial = iter(range(10**9))

    def batch(n):
        now = time.time()
        answers, opened = [], []
        for _ in range(n):
            i = next(serial)
            rid = f"r{i}"
            answers.append((i % 50, rid, "hold_result", {
                "ok": True, "request_id": rid, "hold_id": i, "event_id": 1, "seat_ids": [1, 2],
                "expires_at": "2030-01-01T00:00:00.000Z", "amount_cents": 5000,
                "currency": "EUR"}))
            opened.append((i % 50, i, now + 20))
        closed = [(uid, hold_id - 1000) for uid, hold_id, _e in opened[: n // 2]]
        return answers, opened, closed

    rows = []
    try:
        for n in sizes:
            for name, finish in (("pipeline", _pipeline_finish(state.redis)),
                                 ("script", script_finish)):
                state.finish = finish
                made = [batch(n) for _ in range(calls + 20)]
                for answers, opened, closed in made[:20]:
                    ledger.finish_many(answers, opened=opened, closed=closed,
                                       counts={f"{namespace}:c": 1})
                cpu0, redis0 = time.process_time(), _server_cpu("redis-server")
                for answers, opened, closed in made[20:]:
                    ledger.finish_many(answers, opened=opened, closed=closed,
                                       counts={f"{namespace}:c": 1})
                cpu1, redis1 = time.process_time(), _server_cpu("redis-server")
                rows.append((f"finish_many, {n} answers", name,
                             1000 * (cpu1 - cpu0) / calls, 1000 * (redis1 - redis0) / calls))
    finally:
        keys = list(state.redis.scan_iter(f"{namespace}*"))
        if keys:
            state.redis.delete(*keys)
    return rows


def _every_hold(session):
    """holds.holders before 38e6fb9: every held hold's id and buyer."""
    import sqlalchemy as sa
    from booking.models import Hold
    out = {}
    for hold_id, user_id in session.execute(
            sa.select(Hold.id, Hold.user_id).where(Hold.status == "held")):
        out.setdefault(user_id, []).append(hold_id)
    return out


def measure_sweep_read(holds_open, buyers, calls=20):
    tw = Throwaway(prefix="bo_wcost")
    try:
        out = flask_cli(tw.env, "db", "upgrade")
        if out.returncode != 0:
            raise RuntimeError(f"db upgrade failed: {out.stderr[-2000:]}")
        event_id = create_event(tw.env, rows=10, per_row=10)
        conn = tw.connect()
        with conn.cursor() as cur:
            tag = uuid.uuid4().hex[:6]
            cur.executemany("INSERT INTO users (email, name, password_hash, created_at) "
                            "VALUES (%s, '', 'x', UTC_TIMESTAMP(6))",
                            [(f"w{tag}-{i}@bench.test",) for i in range(buyers)])
            cur.execute("SELECT MIN(id) FROM users")
            first = cur.fetchone()[0]
            cur.executemany(
                "INSERT INTO holds (user_id, event_id, status, amount_cents, currency, "
                "expires_at, created_at) VALUES (%s, %s, %s, 5000, 'EUR', "
                "UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
                [(first + i % buyers, event_id, "held" if i < holds_open else "expired")
                 for i in range(holds_open * 4)])
            cur.execute("ANALYZE TABLE holds")
            cur.fetchall()
        conn.close()

        from booking import create_app, holds
        from booking.extensions import db
        app = create_app({"SQLALCHEMY_DATABASE_URI": tw.db_url, "REDIS_URL": None,
                          "SECRET_KEY": tw.secret, "SOCKETIO_ASYNC_MODE": "threading"})
        mariadb = psutil.Process(pids_by_name("mariadbd")[0])
        rows = []
        with app.app_context():
            for name, read in (("every hold", _every_hold), ("holders", holds.holders)):
                read(db.session)
                db.session.rollback()
                m0 = sum(mariadb.cpu_times()[:2])
                cpu0 = time.process_time()
                for _ in range(calls):
                    read(db.session)
                    db.session.rollback()
                cpu1 = time.process_time()
                m1 = sum(mariadb.cpu_times()[:2])
                rows.append((f"sweep read, {holds_open} open holds of {buyers} buyers", name,
                             1000 * (cpu1 - cpu0) / calls, 1000 * (m1 - m0) / calls))
            db.session.remove()
        return rows
    finally:
        tw.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--holds", type=int, default=12000)
    parser.add_argument("--buyers", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    print(f"{'what':46} {'how':10} {'this process':>13} {'server':>9}  (ms of CPU per call)")
    for run in range(1, args.repeat + 1):
        print(f"-- run {run}, load average {os.getloadavg()[0]:.2f}")
        for what, how, mine, server in (measure_finish(args.redis, (10, 50))
                                        + measure_sweep_read(args.holds, args.buyers)):
            print(f"{what:46} {how:10} {mine:13.3f} {server:9.3f}", flush=True)


if __name__ == "__main__":
    main()
