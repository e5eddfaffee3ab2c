#!/usr/bin/env python3
"""How many concurrent Socket.IO connections one web process holds here, and its memory per socket.

    .venv/bin/python bench/sockets_capacity.py [--max 8000] [--step 1000] [--hold 45]

Starts one web process (`python wsgi.py`, the production server: eventlet,
Redis message queue, MariaDB) on a throwaway MariaDB database and a private
Redis namespace, signs up one buyer, then opens authenticated Socket.IO
connections over WebSocket in steps of --step up to --max. After each step it
reads the server's resident memory (VmRSS) and its own count of connected
sockets (/readyz). At the top it holds every socket for --hold seconds (longer
than a ping interval plus timeout, 40 s, so sockets must answer the server's
pings to stay) and counts again. Prints a table and a JSON summary.

The client is bench/sio.py's lean asyncio Socket.IO client (websockets framing,
one coroutine per socket) so that the load generator is not the limit; it answers
pings and nothing else. Both ends need one file descriptor per socket: the
script raises its own soft RLIMIT_NOFILE to the hard limit and the server's
likewise; --max above that limit fails to connect, which is reported.
"""
import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import psutil
import pymysql
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]
from sio import Sio  # noqa: E402

from deploy.local.launcher import cpu_seconds, free_port, raise_nofile  # noqa: E402


def rss_kib(pid):
    return psutil.Process(pid).memory_info().rss // 1024


# --- sockets: bench/sio.py's client (one Socket.IO client for every bench) ------


class Sock:
    """One Socket.IO connection; `ready` is set once the namespace connect is accepted."""

    def __init__(self):
        self.ready = asyncio.Event()
        self.failed = None
        self.closed = False

    async def run(self, host, port, token):
        sio = Sio(host, port, token, lambda name, raw: None)
        try:
            await sio.connect(timeout=60)
        except (ConnectionError, OSError, asyncio.TimeoutError) as err:
            self.failed = str(err)[:120] or type(err).__name__
            self.ready.set()
            return
        self.ready.set()
        try:
            await sio.closed.wait()     # its loop answers the server's pings
        finally:
            self.closed = True
            sio.close()


async def open_many(socks, host, port, token, n, concurrency=200):
    gate = asyncio.Semaphore(concurrency)
    tasks = []

    async def one():
        async with gate:
            sock = Sock()
            socks.append(sock)
            tasks.append(asyncio.ensure_future(sock.run(host, port, token)))
            try:
                await asyncio.wait_for(sock.ready.wait(), 60)
            except asyncio.TimeoutError:
                sock.failed = "timed out"
    await asyncio.gather(*(one() for _ in range(n)))
    return tasks


def server_sockets(url):
    return requests.get(url + "/readyz", timeout=30).json()["instance"]["sockets"]


async def measure(args, url, pid, token):
    host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])
    rows = []
    socks, tasks = [], []
    time.sleep(1)
    base = rss_kib(pid)
    rows.append({"sockets": 0, "server_sockets": server_sockets(url), "rss_mib": base / 1024,
                 "kib_per_socket": None, "failed": 0, "seconds": 0.0})
    print(f"{'sockets':>8} {'server':>8} {'RSS MiB':>9} {'KiB/socket':>11} {'failed':>7} "
          f"{'open s':>7}", flush=True)
    print(f"{0:>8} {rows[0]['server_sockets']:>8} {base / 1024:>9.1f} {'':>11} {0:>7} {'':>7}",
          flush=True)
    target = 0
    while target < args.max:
        step = min(args.step, args.max - target)
        started = time.monotonic()
        tasks += await open_many(socks, host, port, token, step)
        target += step
        await asyncio.sleep(1.0)
        ok = sum(1 for s in socks if s.ready.is_set() and not s.failed and not s.closed)
        failed = sum(1 for s in socks if s.failed)
        rss = rss_kib(pid)
        row = {"sockets": ok, "server_sockets": server_sockets(url), "rss_mib": rss / 1024,
               "kib_per_socket": (rss - base) / ok if ok else None, "failed": failed,
               "seconds": time.monotonic() - started}
        rows.append(row)
        print(f"{ok:>8} {row['server_sockets']:>8} {rss / 1024:>9.1f} "
              f"{row['kib_per_socket'] or 0:>11.1f} {failed:>7} {row['seconds']:>7.1f}",
              flush=True)
        if failed:
            print(f"stopping: {failed} sockets failed, e.g. "
                  f"{next(s.failed for s in socks if s.failed)}", flush=True)
            break
    print(f"holding for {args.hold:.0f}s (server pings every 20 s, drops a socket after 20 s "
          f"more without a pong)", flush=True)
    cpu_before = cpu_seconds(pid)
    await asyncio.sleep(args.hold)
    idle_cpu = (cpu_seconds(pid) - cpu_before) / args.hold
    held = sum(1 for s in socks if s.ready.is_set() and not s.failed and not s.closed)
    held_server = server_sockets(url)
    rss = rss_kib(pid)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return rows, {"held_after_hold": held, "server_sockets_after_hold": held_server,
                  "rss_mib_after_hold": rss / 1024,
                  "server_cpu_share_while_holding": idle_cpu}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max", type=int, default=8000)
    parser.add_argument("--step", type=int, default=1000)
    parser.add_argument("--hold", type=float, default=45.0)
    parser.add_argument("--mysql", default=os.environ.get("BENCH_MYSQL_URL",
                                                          "mysql+pymysql://root@127.0.0.1:3306"))
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL",
                                                          "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    nofile = raise_nofile()
    if args.max + 100 > nofile:
        print(f"note: this process may open {nofile} files; --max {args.max} needs more",
              flush=True)

    name = f"bo_bench_{uuid.uuid4().hex[:8]}"
    namespace = f"bo-bench-{uuid.uuid4().hex[:8]}"
    u = urlparse(args.mysql.replace("mysql+pymysql", "mysql"))
    conn = pymysql.connect(host=u.hostname, port=u.port or 3306, user=u.username or "root",
                           password=u.password or "", autocommit=True)
    conn.cursor().execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    env = dict(os.environ, DATABASE_URL=f"{args.mysql}/{name}?charset=utf8mb4",
               REDIS_URL=args.redis, REDIS_NAMESPACE=namespace, CELERY_QUEUE=f"{namespace}-q",
               SECRET_KEY=uuid.uuid4().hex, LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
               WEB_MAX_CONNECTIONS=str(max(10000, args.max + 100)),
               # Every socket here is the one bench buyer's: lift the per-account
               # cap (10 in production) and the per-IP connect rate.
               MAX_SOCKETS_PER_ACCOUNT=str(args.max + 100),
               IP_RATE_LIMIT="100000/second;6000000/minute")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    web = None
    try:
        subprocess.run([PYTHON, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                       env=env, check=True, capture_output=True, timeout=300)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"{namespace}-web.log", "wb")
        web = subprocess.Popen([PYTHON, "wsgi.py", "--host", "127.0.0.1", "--port", str(port)],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               preexec_fn=raise_nofile)
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or web.poll() is not None:
                raise SystemExit(f"the web process did not start; see {log.name}")
            time.sleep(0.2)
        r = requests.post(url + "/api/v1/users", json={
            "email": f"bench-{uuid.uuid4().hex[:8]}@example.test",
            "password": "correct-horse-battery"}, timeout=30)
        r.raise_for_status()
        server_nofile = psutil.Process(web.pid).rlimit(psutil.RLIMIT_NOFILE)[0]
        print(f"one web process (pid {web.pid}), eventlet max_size "
              f"{env['WEB_MAX_CONNECTIONS']}, its RLIMIT_NOFILE {server_nofile}; "
              f"MAX_SOCKETS_PER_ACCOUNT {env['MAX_SOCKETS_PER_ACCOUNT']}, "
              f"IP_RATE_LIMIT {env['IP_RATE_LIMIT']}; "
              f"{os.cpu_count()} cores", flush=True)
        rows, held = asyncio.run(measure(args, url, web.pid, r.json()["token"]))
        top = max(rows, key=lambda row: row["sockets"])
        summary = {"max_sockets_connected": top["sockets"],
                   "server_rss_mib_at_max": round(top["rss_mib"], 1),
                   "server_rss_mib_idle": round(rows[0]["rss_mib"], 1),
                   "kib_per_socket": round(top["kib_per_socket"] or 0, 1),
                   **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in held.items()},
                   "server_nofile_limit": server_nofile, "cores": os.cpu_count()}
        print(f"held {held['held_after_hold']} of {top['sockets']} sockets through "
              f"{args.hold:.0f}s of pings (server counts {held['server_sockets_after_hold']}); "
              f"server CPU meanwhile {held['server_cpu_share_while_holding']:.1%} of a core")
        print("summary " + json.dumps(summary))
    finally:
        if web is not None:
            web.terminate()
            try:
                web.wait(30)
            except subprocess.TimeoutExpired:
                web.kill()
        conn.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()
        client = redis.Redis.from_url(args.redis)
        keys = list(client.scan_iter(f"{namespace}*"))
        if keys:
            client.delete(*keys)


if __name__ == "__main__":
    main()
