"""Shared parts of the benchmarks: a throwaway database, the local cluster, buyers, figures.

Not a benchmark by itself: bench/holds.py, bench/flash_sale.py and bench/drills.py
use it. What is here:

- Throwaway: a MariaDB database and a Redis namespace/queue private to one run
  (the conventions of bench/sockets_capacity.py), dropped afterwards.
- LocalCluster: deploy/local/cluster up/status/scale/down with its own run folder
  and a free port, so a bench never touches another engineer's cluster.
- Sio/Buyer: a minimal asyncio Socket.IO (Engine.IO 4 over WebSocket) client.
  python-socketio's client costs ~57 us per received message (DESIGN.md), and
  with 2,000 watchers each receiving every seats_changed the load generator
  would use the cores the server needs. This client reads a frame, looks at
  its first bytes and parses JSON only when it must (results, acks, and the
  one "map" socket per client process that keeps the seat map). A Buyer
  reconnects through the load balancer, re-joins, and re-sends every request
  it has no result for with the same request_id (API.md's recovery rule).
- Stats: counters and latency histograms per second, mergeable across processes.
- CPU of process groups (psutil), Prometheus scrapes, the audit command.
"""
import asyncio
import base64
import contextlib
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLUSTER = ROOT / "deploy" / "local" / "cluster"
sys.path.insert(0, str(ROOT))
from deploy.local.launcher import (cpu_seconds, free_port, pids_by_name,  # noqa: E402,F401
                                   raise_nofile, tree_pids)
RESULTS = ROOT / "bench" / "results"

GOOD_CARD = "4242424242424242"
DECLINE_CARD = "4000000000000002"
NO_FUNDS_CARD = "4000000000009995"


def say(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def stop_cleanly_on_signals():
    """SIGTERM/SIGINT end the run through its `finally` (cluster down, database dropped).

    A bench started in the background by a non-interactive shell inherits an
    ignored SIGINT; restore it, and turn SIGTERM into SystemExit.
    """
    def _exit(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def results_dir(name):
    path = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine_load():
    """What else runs here: 1-minute load average and the busiest other processes."""
    load1, load5, _ = os.getloadavg()
    top = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"],
                         capture_output=True, text=True).stdout.splitlines()[:6]
    return {"loadavg_1m": round(load1, 2), "loadavg_5m": round(load5, 2), "cores": os.cpu_count(),
            "top": [t.strip() for t in top]}


# --- the throwaway database and Redis namespace ------------------------------

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


def create_event(env, rows, per_row, price_cents=5000, name="Bench night"):
    out = flask_cli(env, "booking", "create-event", "--name", name, "--venue", "Bench Hall",
                    "--starts-at", "2030-01-01T19:00:00Z", "--rows", str(rows),
                    "--seats-per-row", str(per_row), "--price-cents", str(price_cents))
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

    class _U:
        def __init__(self, i):
            self.id = i
    with app.app_context():
        return [(i, issue_token(_U(i))) for i in ids]


# --- the local cluster -------------------------------------------------------

class LocalCluster:
    """deploy/local/cluster with a private run folder and port."""

    def __init__(self, env, run_dir):
        self.run_dir = Path(run_dir)
        self.env = dict(env, BOXOFFICE_RUN_DIR=str(self.run_dir))
        self.port = free_port()
        self.info = None

    def _run(self, *args, timeout=400):
        out = subprocess.run([PYTHON, str(CLUSTER), *args], cwd=ROOT, env=self.env,
                             capture_output=True, text=True, timeout=timeout)
        with open(self.run_dir.parent / "cluster-commands.log", "a") as log:
            log.write(f"$ cluster {' '.join(args)}\n{out.stderr}\n")
        if out.returncode != 0:
            raise RuntimeError(f"cluster {' '.join(args)} failed:\n{out.stderr[-3000:]}")
        self.info = json.loads(out.stdout)
        return self.info

    def up(self, web, workers, concurrency=2):
        return self._run("up", "--web", str(web), "--workers", str(workers), "--port",
                         str(self.port), "--worker-concurrency", str(concurrency))

    def status(self):
        return self._run("status", timeout=60)

    def scale(self, **counts):
        args = ["scale"]
        for k, v in counts.items():
            args += [f"--{k}", str(v)]
        return self._run(*args)

    def down(self):
        if not (self.run_dir / "cluster.json").exists():
            return None
        return self._run("down", timeout=300)

    @property
    def lb(self):
        return self.info["lb"]

    def state(self):
        """The cluster's own state file (entries with start times, logs)."""
        return json.loads((self.run_dir / "cluster.json").read_text())


# --- CPU of process groups ---------------------------------------------------

class CpuMeter:
    """CPU seconds used by groups of processes (each root and its descendants)."""

    def __init__(self):
        self.seen = {}    # (group, pid) -> [baseline cpu, latest cpu]
        self.samples = []  # (t, {group: cpu seconds since start})

    def sample(self, groups, t=None):
        totals = {}
        for group, roots in groups.items():
            for p in tree_pids(roots):
                cpu = cpu_seconds(p)
                if cpu is None:
                    continue
                key = (group, p)
                if key not in self.seen:
                    # First sample: the baseline. A process first seen later
                    # started since (a replaced worker, a restarted server).
                    self.seen[key] = [cpu if not self.samples else 0.0, cpu]
                else:
                    self.seen[key][1] = cpu
            totals[group] = sum(last - first for (g, _p), (first, last) in self.seen.items()
                                if g == group)
        self.samples.append((t if t is not None else time.time(), totals))
        return totals


# --- Prometheus --------------------------------------------------------------

def scrape(url, timeout=10):
    """{(name, ((label, value), ...)): value} of one /metrics scrape, or None."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families
    try:
        text = requests.get(url + "/metrics", timeout=timeout).text
    except Exception:
        return None
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric_sum(sample, name, **labels):
    if not sample:
        return 0.0
    return sum(v for (n, lab), v in sample.items() if n == name
               and all(dict(lab).get(k) == val for k, val in labels.items()))


def metric_delta(before, after, name, **labels):
    return metric_sum(after, name, **labels) - metric_sum(before, name, **labels)


def histogram_delta(before, after, name, **labels):
    """[(le, count)] of a histogram between two scrapes (cumulative buckets)."""
    buckets = defaultdict(float)
    for sample, sign in ((after, 1), (before, -1)):
        for (n, lab), v in (sample or {}).items():
            d = dict(lab)
            if n == f"{name}_bucket" and all(d.get(k) == val for k, val in labels.items()):
                buckets[float(d["le"])] += sign * v
    return sorted(buckets.items())


def histogram_quantile(buckets, q):
    """Prometheus-style linear interpolation inside the bucket holding quantile q."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            span = c - prev_c
            return prev_le + (le - prev_le) * ((rank - prev_c) / span if span else 0)
        prev_le, prev_c = le, c
    return prev_le


def histogram_mean_buckets(buckets):
    """{le: count in that bucket} (not cumulative)."""
    out, prev = {}, 0.0
    for le, c in buckets:
        out[le] = c - prev
        prev = c
    return out


# --- statistics --------------------------------------------------------------

def bucket_ms(ms):
    """Histogram key in ms: 1 ms steps below 100, 5 below 1 s, 50 below 10 s, then 1 s."""
    if ms < 0:
        return 0
    if ms < 100:
        return int(ms)
    if ms < 1000:
        return int(ms // 5 * 5)
    if ms < 10000:
        return int(ms // 50 * 50)
    return int(ms // 1000 * 1000)


def quantiles(hist, qs=(0.5, 0.95, 0.99)):
    """{q: ms} from {bucket ms: count}; None when empty."""
    total = sum(hist.values())
    if not total:
        return {q: None for q in qs}
    keys = sorted(hist)
    out = {}
    for q in qs:
        rank, acc = q * total, 0
        for k in keys:
            acc += hist[k]
            if acc >= rank:
                out[q] = k
                break
    return out


class Stats:
    """Per-second counters and latency histograms of one client process."""

    def __init__(self, t0):
        self.t0 = t0
        self.count = Counter()                  # name -> n
        self.series = defaultdict(Counter)      # second -> name -> n
        self.hist = defaultdict(Counter)        # name -> bucket -> n
        self.hist_series = defaultdict(lambda: defaultdict(Counter))  # name -> sec -> b -> n

    def inc(self, name, n=1, now=None):
        self.count[name] += n
        sec = int((now or time.time()) - self.t0)
        self.series[sec][name] += n

    def observe(self, name, ms, now=None):
        b = bucket_ms(ms)
        self.hist[name][b] += 1
        sec = int((now or time.time()) - self.t0)
        self.hist_series[name][sec][b] += 1

    def to_json(self):
        return {"count": dict(self.count),
                "series": {str(s): dict(c) for s, c in self.series.items()},
                "hist": {n: {str(b): c for b, c in h.items()} for n, h in self.hist.items()},
                "hist_series": {n: {str(s): {str(b): c for b, c in h.items()}
                                    for s, h in per.items()}
                                for n, per in self.hist_series.items()}}


def merge_stats(parts):
    """Merge Stats.to_json() of every client process."""
    count, series = Counter(), defaultdict(Counter)
    hist, hist_series = defaultdict(Counter), defaultdict(lambda: defaultdict(Counter))
    for p in parts:
        count.update(p["count"])
        for s, c in p["series"].items():
            series[int(s)].update(c)
        for n, h in p["hist"].items():
            hist[n].update({int(b): v for b, v in h.items()})
        for n, per in p["hist_series"].items():
            for s, h in per.items():
                hist_series[n][int(s)].update({int(b): v for b, v in h.items()})
    return count, series, hist, hist_series


# --- a minimal Socket.IO client over WebSocket --------------------------------

def _mask(data, key):
    n = len(data)
    if not n:
        return data
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def _frame(text, opcode=0x1):
    data = text.encode() if isinstance(text, str) else text
    key = os.urandom(4)
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + key + _mask(data, key)


class Disconnected(Exception):
    pass


class Sio:
    """One Socket.IO connection: connect with a token, emit with acks, receive events.

    on_event(name, raw_bytes) gets every event packet undecoded ('42[...]' minus '42').
    """

    def __init__(self, host, port, token, on_event):
        self.host, self.port, self.token = host, port, token
        self.on_event = on_event
        self.writer = None
        self.acks = {}
        self.next_id = 0
        self.connected = False
        self.reader_task = None
        self.closed = asyncio.Event()

    async def connect(self, timeout=30):
        self.closed = asyncio.Event()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), timeout)
        self.writer = writer
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                          f"Host: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                          f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            status = head.split(b"\r\n", 1)[0]
            if b" 101 " not in status:
                raise ConnectionError(status.decode(errors="replace"))
            _op, opened = await asyncio.wait_for(self._read(reader), timeout)
            if not opened.startswith(b"0"):
                raise ConnectionError(f"unexpected {opened[:60]!r}")
            writer.write(_frame("40" + json.dumps({"token": self.token})))
            while True:
                _op, data = await asyncio.wait_for(self._read(reader), timeout)
                if data.startswith(b"40"):
                    break
                if data.startswith(b"44"):
                    raise ConnectionError(f"refused: {data[2:200]!r}")
                if data == b"2":
                    writer.write(_frame("3"))
        except BaseException:
            writer.close()
            raise
        self.connected = True
        self.reader_task = asyncio.ensure_future(self._loop(reader))

    @staticmethod
    async def _read(reader):
        """One WebSocket message (continuation frames joined): (opcode, payload)."""
        parts, first_op = [], None
        while True:
            head = await reader.readexactly(2)
            fin, opcode, length = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await reader.readexactly(8))[0]
            data = await reader.readexactly(length)
            if opcode >= 0x8:   # control frames may come between fragments
                return opcode, data
            first_op = first_op if first_op is not None else opcode
            parts.append(data)
            if fin:
                return first_op, b"".join(parts) if len(parts) > 1 else parts[0]

    async def _loop(self, reader):
        try:
            while True:
                op, data = await self._read(reader)
                if op == 0x8:
                    break
                if op == 0x9:
                    self.writer.write(_frame(data, 0xA))
                    continue
                if data[:2] == b"42":
                    q = data.find(b'"', 4)          # 42["name",{...}]
                    self.on_event(data[4:q].decode(), data)
                elif data[:2] == b"43":
                    i = 2
                    while data[i:i + 1].isdigit():
                        i += 1
                    entry = self.acks.pop(int(data[2:i]), None)
                    if entry is not None and not entry[0].done():
                        # raw: the caller wants bytes (a join ack's snapshot is large
                        # and most sockets need only its first bytes).
                        entry[0].set_result(data[i:] if entry[1] else json.loads(data[i:])[0])
                elif data == b"2":
                    self.writer.write(_frame("3"))
                elif data[:2] == b"41" or data[:1] == b"1":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._lost()

    def _lost(self):
        self.connected = False
        for fut, _raw in self.acks.values():
            if not fut.done():
                fut.set_exception(Disconnected())
        self.acks.clear()
        with contextlib.suppress(Exception):
            self.writer.close()
        self.closed.set()

    def emit(self, event, data, raw=False):
        """Send with an ack id; returns a future for the ack (its bytes if raw)."""
        if not self.connected:
            raise Disconnected()
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.acks[self.next_id] = (fut, raw)
        self.writer.write(_frame(f"42{self.next_id}" + json.dumps([event, data])))
        return fut

    def close(self):
        if self.reader_task:
            self.reader_task.cancel()
        self._lost()


_ISO_CACHE = {}


def iso_epoch(value):
    t = _ISO_CACHE.get(value)
    if t is None:
        if len(_ISO_CACHE) > 20000:
            _ISO_CACHE.clear()
        t = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        _ISO_CACHE[value] = t
    return t


_COMMITTED = re.compile(rb'"committed_at": ?"([^"]+)"')
_SENT = re.compile(rb'"sent_at": ?"([^"]+)"')
RESULT_EVENTS = {"hold": "hold_result", "release": "release_result", "pay": "payment_result"}


class Request:
    __slots__ = ("rid", "kind", "payload", "sent", "accepted", "result", "done", "resends",
                 "counted")

    def __init__(self, kind, payload):
        self.rid = uuid.uuid4().hex
        self.kind, self.payload = kind, dict(payload, request_id=self.rid)
        self.sent, self.accepted, self.result, self.resends = None, False, None, 0
        self.counted = False
        self.done = asyncio.get_running_loop().create_future()


class Buyer:
    """One buyer's socket, kept connected; requests survive reconnects (re-sent, same id)."""

    def __init__(self, client, uid, token):
        self.client = client      # the ClientProcess this buyer belongs to
        self.uid, self.token = uid, token
        self.sio = None
        self.event_id = None      # joined event, re-joined on reconnect
        self.pending = {}         # rid -> Request accepted (or sent) and unanswered
        self.is_map = False       # parses seats_changed fully for the process's seat map
        self.ready = asyncio.Event()
        self.reconnecting = None
        self.connects = 0

    async def start(self, event_id=None, timeout=120):
        self.event_id = event_id
        await self._connect_loop(timeout, first=True)

    async def _connect_loop(self, timeout, first=False):
        c = self.client
        deadline = time.monotonic() + timeout
        delay = 0.2
        while time.monotonic() < deadline and not c.quit:
            sio = Sio(c.host, c.port, self.token, self._on_event)
            try:
                async with c.connect_gate:
                    await sio.connect(timeout=30)
                    self.sio = sio
                    if self.event_id is not None:
                        raw = await asyncio.wait_for(sio.emit(
                            "join_event", {"event_id": self.event_id}, raw=True), 120)
                        if not re.match(rb'\[\{"ok": ?true', raw):
                            raise ConnectionError(f"join refused: {raw[:300]!r}")
                        c.stats.inc("joins")
                        if self.is_map:
                            c.apply_snapshot(json.loads(raw)[0]["seats"])
                self.connects += 1
                if not first:
                    c.stats.inc("reconnects")
                self.ready.set()
                asyncio.ensure_future(self._watch(sio))
                for req in list(self.pending.values()):
                    if req.accepted:
                        req.resends += 1
                        c.stats.inc("resent")
                        asyncio.ensure_future(self._send(req))
                return True
            except (OSError, ConnectionError, asyncio.TimeoutError, Disconnected) as err:
                sio.close()
                c.stats.inc("connect_failures")
                c.last_error = str(err)[:200]
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(2.0, delay * 2)
        return False

    async def _watch(self, sio):
        await sio.closed.wait()
        if self.sio is not sio or self.client.quit:
            return
        self.ready.clear()
        self.client.stats.inc("disconnects")
        if self.is_map:
            self.client.map_lost(self)
        await self._connect_loop(self.client.reconnect_timeout)

    def _on_event(self, name, raw):
        c = self.client
        now = time.time()
        if name == "seats_changed":
            c.on_seats_changed(self, raw, now)
        elif name in ("hold_result", "release_result", "payment_result"):
            payload = json.loads(raw[2:])[1]
            req = self.pending.pop(payload.get("request_id"), None)
            if req is None or req.result is not None:
                c.stats.inc("duplicate_results")
                return
            req.result = payload
            if not req.accepted:
                req.accepted = True   # the result can overtake the ack
            c.answered(req, payload, now)
            if not req.done.done():
                req.done.set_result(payload)
        elif name == "hold_closed":
            c.stats.inc("hold_closed")
        elif name == "draining":
            c.stats.inc("draining_notices")
        elif c.on_other is not None:
            c.on_other(self, name, raw, now)

    async def _send(self, req):
        """Emit until acked (reconnects re-send); returns the ack or None if we gave up."""
        c = self.client
        for _attempt in range(20):
            if req.result is not None:   # answered meanwhile (a re-send raced its result)
                return {"ok": True, "request_id": req.rid, "queued": False}
            if not self.ready.is_set():
                try:
                    await asyncio.wait_for(self.ready.wait(), c.reconnect_timeout)
                except asyncio.TimeoutError:
                    return None
            try:
                self.pending[req.rid] = req
                if req.sent is None:
                    req.sent = time.time()
                ack = await asyncio.wait_for(self.sio.emit(req.kind, req.payload), 60)
            except (Disconnected, asyncio.TimeoutError):
                await asyncio.sleep(0.05)
                continue
            if ack.get("ok"):
                req.accepted = True
                if req.result is None:
                    c.accepted(req)
            elif not req.accepted:
                self.pending.pop(req.rid, None)
                c.refused(req, ack)
            else:
                c.stats.inc("resend_refused")
                c.resend_refusals.append({"kind": req.kind, "error": ack.get("error")})
            return ack
        self.pending.pop(req.rid, None)
        return None

    async def request(self, kind, payload, result_timeout):
        """('refused', ack) | ('result', payload) | ('timeout', None) | ('lost', None)."""
        req = Request(kind, payload)
        ack = await self._send(req)
        if ack is None:
            return "lost", None
        if not ack.get("ok"):
            return "refused", ack
        if req.result is not None:
            return "result", req.result
        try:
            return "result", await asyncio.wait_for(asyncio.shield(req.done), result_timeout)
        except asyncio.TimeoutError:
            self.client.stats.inc(f"{kind}_result_timeouts")
            return "timeout", None

    def close(self):
        if self.sio:
            self.sio.close()


class ClientProcess:
    """The buyers of one load-generator process and what they measured."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.host, self.port = cfg["host"], cfg["port"]
        self.t0 = cfg["t0"]
        self.stats = Stats(cfg["t0"])
        self.quit = False
        self.reconnect_timeout = cfg.get("reconnect_timeout", 90)
        self.connect_gate = asyncio.Semaphore(cfg.get("connect_concurrency", 50))
        self.buyers = []
        self.inflight = {}        # rid -> Request, accepted and unanswered (every buyer)
        self.last_error = None
        self.resend_refusals = []
        # Seat map kept from one socket's seats_changed: id -> [version, status]
        self.seats = {}
        self.map_buyer = None
        self.on_change = None     # callback(seat_id, old_status, new_status)
        self.on_other = None      # callback(buyer, event name, raw frame, time) for other events

    # counters -----------------------------------------------------------------
    def accepted(self, req):
        self.inflight[req.rid] = req
        if not req.counted:
            req.counted = True
            self.stats.inc(f"{req.kind}_accepted")

    def refused(self, req, ack):
        code = (ack.get("error") or {}).get("code", "unknown")
        self.stats.inc(f"{req.kind}_refused_{code}")
        if code == "busy":
            self.stats.inc("shed")

    def answered(self, req, payload, now):
        self.inflight.pop(req.rid, None)
        if not req.counted:
            # The result overtook its ack (both leave the same web process,
            # by different paths): it was accepted all the same.
            req.counted = True
            self.stats.inc(f"{req.kind}_accepted")
        kind = req.kind
        if payload.get("ok"):
            self.stats.inc(f"{kind}_ok", now=now)
        else:
            code = (payload.get("error") or {}).get("code", "unknown")
            self.stats.inc(f"{kind}_fail_{code}", now=now)
        self.stats.inc(f"{kind}_answered", now=now)
        self.stats.observe(f"{kind}_click_to_result", (now - req.sent) * 1000, now)

    # the seat map -------------------------------------------------------------
    def apply_snapshot(self, seats):
        for s in seats:
            self._apply(s["id"], s["version"], s["status"])

    def _apply(self, sid, version, status):
        old = self.seats.get(sid)
        if old is None or old[0] < version:
            before = old[1] if old else None
            self.seats[sid] = [version, status]
            if self.on_change and before != status:
                self.on_change(sid, before, status)

    def mark(self, sid, status):
        """A local guess (a refusal named the seat taken) until a newer version says otherwise."""
        old = self.seats.get(sid)
        if old and old[1] != status:
            before = old[1]
            old[1] = status
            if self.on_change:
                self.on_change(sid, before, status)

    def map_lost(self, buyer):
        if self.map_buyer is buyer:
            buyer.is_map = False
            self.map_buyer = None
            for b in self.buyers:
                if b.ready.is_set() and b.event_id is not None:
                    b.is_map = True
                    self.map_buyer = b
                    # A fresh snapshot for the new map socket.
                    asyncio.ensure_future(self._resnapshot(b))
                    break

    async def _resnapshot(self, b):
        with contextlib.suppress(Exception):
            ack = await asyncio.wait_for(b.sio.emit("join_event", {"event_id": b.event_id}), 60)
            if ack.get("ok"):
                self.apply_snapshot(ack["seats"])

    def on_seats_changed(self, buyer, raw, now):
        m = _COMMITTED.search(raw, max(0, len(raw) - 160))
        s = _SENT.search(raw, max(0, len(raw) - 100))
        self.stats.inc("seats_changed_received", now=now)
        if m:
            self.stats.observe("lag_commit", (now - iso_epoch(m.group(1).decode())) * 1000, now)
        if s:
            self.stats.observe("lag_sent", (now - iso_epoch(s.group(1).decode())) * 1000, now)
        if buyer.is_map:
            data = json.loads(raw[2:])[1]
            for seat in data["seats"]:
                self._apply(seat["id"], seat["version"], seat["status"])


def run_client_process(cfg, users, scenario, out_path, ready_q, go_evt, stop_evt):
    """Entry point of one load-generator process (multiprocessing target)."""
    raise_nofile()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    import importlib
    module, func = scenario.rsplit(":", 1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    body = getattr(importlib.import_module(module), func)
    result = asyncio.run(_client_main(cfg, users, body, ready_q, go_evt, stop_evt))
    Path(out_path).write_text(json.dumps(result))


async def _client_main(cfg, users, body, ready_q, go_evt, stop_evt):
    c = ClientProcess(cfg)
    loop = asyncio.get_running_loop()
    c.buyers = [Buyer(c, uid, tok) for uid, tok in users]
    if c.buyers and cfg.get("event_id") and cfg.get("join", True):
        c.buyers[0].is_map = True
        c.map_buyer = c.buyers[0]
    scenario = body(c)
    started = time.monotonic()
    await scenario.setup()
    oks = sum(1 for b in c.buyers if b.ready.is_set())
    ready_q.put({"pid": os.getpid(), "connected": oks, "of": len(c.buyers),
                 "seconds": round(time.monotonic() - started, 1), "last_error": c.last_error})
    while not go_evt.is_set():
        if stop_evt.is_set():
            break
        await asyncio.sleep(0.05)
    run = asyncio.ensure_future(scenario.run())
    while not stop_evt.is_set() and not run.done():
        await asyncio.sleep(0.1)
    scenario.stopping = True
    # Stop issuing; wait for the results of what was accepted (reconnects re-send).
    drain_until = time.monotonic() + cfg.get("drain_s", 30)
    while c.inflight and time.monotonic() < drain_until:
        await asyncio.sleep(0.2)
    run.cancel()
    with contextlib.suppress(BaseException):
        await run
    unanswered = [{"kind": r.kind, "uid": next((b.uid for b in c.buyers if r.rid in b.pending),
                                                None),
                   "request_id": r.rid, "age_s": round(time.time() - (r.sent or time.time()), 1),
                   "resends": r.resends} for r in c.inflight.values()]
    c.quit = True
    for b in c.buyers:
        b.close()
    await asyncio.sleep(0)
    del loop
    return {"stats": c.stats.to_json(), "unanswered": unanswered,
            "resend_refusals": c.resend_refusals[:50],
            "connected_at_end": sum(1 for b in c.buyers if b.ready.is_set()),
            "extra": getattr(scenario, "extra", {})}


class ClientPool:
    """Starts load-generator processes, waits for them to be ready, starts and stops them."""

    def __init__(self, out_dir, cfg, users, scenario, processes):
        import multiprocessing as mp
        self.ctx = mp.get_context("spawn")
        self.ready_q = self.ctx.Queue()
        self.go = self.ctx.Event()
        self.stop_evt = self.ctx.Event()
        self.procs, self.outs = [], []
        shares = [users[i::processes] for i in range(processes)]
        for i, share in enumerate(shares):
            out = Path(out_dir) / f"client-{i}.json"
            self.outs.append(out)
            # daemon: they die with a parent that exits normally; a parent
            # killed outright leaves them to finish their drain and exit.
            p = self.ctx.Process(target=run_client_process,
                                 args=(dict(cfg, index=i, processes=processes), share,
                                       scenario, str(out), self.ready_q, self.go,
                                       self.stop_evt), daemon=True)
            p.start()
            self.procs.append(p)

    @property
    def pids(self):
        return [p.pid for p in self.procs if p.pid]

    def wait_ready(self, timeout):
        import queue
        got, deadline = [], time.monotonic() + timeout
        while len(got) < len(self.procs) and time.monotonic() < deadline:
            try:
                got.append(self.ready_q.get(timeout=1))
            except queue.Empty:
                if not all(p.is_alive() for p in self.procs):
                    raise RuntimeError("a load-generator process died while connecting")
        if len(got) < len(self.procs):
            raise RuntimeError(f"only {len(got)} of {len(self.procs)} client processes ready "
                               f"after {timeout}s")
        return got

    def start(self):
        self.go.set()

    def stop(self, timeout):
        self.stop_evt.set()
        deadline = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
        parts = []
        for out in self.outs:
            with contextlib.suppress(OSError, ValueError):
                parts.append(json.loads(out.read_text()))
        return parts

    def kill(self):
        for p in self.procs:
            if p.is_alive():
                p.kill()
