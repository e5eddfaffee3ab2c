#!/usr/bin/env python3
"""The raw database limit: how many atomic seat claims a second MariaDB alone allows here.

    .venv/bin/python bench/db_limit.py [--levels 1,2,4,8,16] [--seconds 4] [--seats 100000]

Concurrent PyMySQL connections (one process each, so the client's GIL is not the
limit) do nothing but DESIGN.md's atomic claim on a table shaped like `seats`:

    UPDATE bench_claim_seats SET status='held', holder=%s, version=version+1
     WHERE id IN (...) AND status='available'

committed when every row matched, rolled back otherwise (all or nothing), 1 seat
per claim or 2 to 4 (40%), like the hold benchmarks. No ORM, no Celery, no
Redis: the claim rate here is what the pipeline's holds per second can be
compared with. Each concurrency level runs --seconds on a fresh table (all seats
available again) in a throwaway database, dropped afterwards. The load
generator (these processes) shares the machine's cores with MariaDB, exactly as
the pipeline's workers do. Prints a table and JSON; writes
bench/results/<timestamp>-db_limit/db_limit.json unless --no-write.
"""
import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from database import Throwaway  # noqa: E402
from runs import machine_load, results_dir, say  # noqa: E402

TABLE = """CREATE TABLE bench_claim_seats (
  id INT PRIMARY KEY,
  event_id INT NOT NULL,
  status VARCHAR(10) NOT NULL DEFAULT 'available',
  holder INT NULL,
  hold_expires_at DATETIME(6) NULL,
  version INT NOT NULL DEFAULT 0,
  KEY ix_status_expires (status, hold_expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


def _claimer(conn_args, db, seats, seconds, seed, go, out_q):
    import pymysql
    conn = pymysql.connect(database=db, autocommit=False, **conn_args)
    cur = conn.cursor()
    # The app runs its transactions at READ COMMITTED (booking/__init__.py).
    cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    rng = random.Random(seed)
    ok = refused = 0
    go.wait()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        n = rng.randint(2, 4) if rng.random() < 0.4 else 1
        ids = rng.sample(range(1, seats + 1), n)
        marks = ",".join(["%s"] * n)
        cur.execute(f"UPDATE bench_claim_seats SET status='held', holder=%s, "
                    f"hold_expires_at=UTC_TIMESTAMP(6) + INTERVAL 300 SECOND, "
                    f"version=version+1 WHERE id IN ({marks}) AND status='available'",
                    [seed, *sorted(ids)])
        if cur.rowcount == n:
            conn.commit()
            ok += 1
        else:
            conn.rollback()
            refused += 1
    conn.close()
    out_q.put((ok, refused))


def measure(tw, levels=(1, 2, 4, 8, 16), seconds=4.0, seats=100_000):
    """[{connections, claims_per_s, refused_per_s}] and the best, on tw's database."""
    conn = tw.connect()
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS bench_claim_seats")
    cur.execute(TABLE)
    rows = []
    ctx = mp.get_context("fork")
    try:
        for level in levels:
            cur.execute("TRUNCATE bench_claim_seats")
            for start in range(1, seats + 1, 10_000):
                cur.execute("INSERT INTO bench_claim_seats (id, event_id) SELECT seq, 1 FROM "
                            f"seq_{start}_to_{min(seats, start + 9_999)}")
            go, out_q = ctx.Event(), ctx.Queue()
            procs = [ctx.Process(target=_claimer, args=(tw.conn_args, tw.db_name, seats, seconds,
                                                        i + 1, go, out_q)) for i in range(level)]
            for p in procs:
                p.start()
            time.sleep(0.5)   # connected and waiting
            t = time.monotonic()
            go.set()
            got = [out_q.get(timeout=seconds + 60) for _ in procs]
            elapsed = time.monotonic() - t
            for p in procs:
                p.join(10)
            ok, refused = sum(g[0] for g in got), sum(g[1] for g in got)
            row = {"connections": level, "claims": ok, "claims_per_s": round(ok / elapsed, 1),
                   "refused_per_s": round(refused / elapsed, 1), "seconds": round(elapsed, 2)}
            rows.append(row)
            say(f"db_limit: {level:>3} connections: {row['claims_per_s']:>8.1f} claims/s "
                f"({row['refused_per_s']} refused/s)")
    finally:
        cur.execute("DROP TABLE IF EXISTS bench_claim_seats")
        conn.close()
    best = max(rows, key=lambda r: r["claims_per_s"])
    return {"levels": rows, "best_claims_per_s": best["claims_per_s"],
            "best_connections": best["connections"], "seats": seats, "seconds_per_level": seconds,
            "statement": "UPDATE ... SET status='held' WHERE id IN (1-4 ids) AND "
                         "status='available'; COMMIT if all matched else ROLLBACK"}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,2,4,8,16",
                        help="concurrent connections to try (default 1,2,4,8,16)")
    parser.add_argument("--seconds", type=float, default=4.0, help="per level (default 4)")
    parser.add_argument("--seats", type=int, default=100_000)
    parser.add_argument("--mysql", default=os.environ.get("BENCH_MYSQL_URL",
                                                          "mysql+pymysql://root@127.0.0.1:3306"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    load = machine_load()
    tw = Throwaway(mysql=args.mysql, prefix="bo_dblimit")
    try:
        result = measure(tw, levels, args.seconds, args.seats)
    finally:
        tw.close()
    result["machine_before"] = load
    print("db_limit " + json.dumps({k: result[k] for k in ("best_claims_per_s",
                                                          "best_connections")}))
    if not args.no_write:
        out = results_dir("db_limit")
        (out / "db_limit.json").write_text(json.dumps(result, indent=1))
        say(f"wrote {out / 'db_limit.json'}")


if __name__ == "__main__":
    main()
