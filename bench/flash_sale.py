#!/usr/bin/env python3
"""A flash sale through the whole product, measured from the buyers' side and the server's.

    .venv/bin/python bench/flash_sale.py [--seats 12000] [--buyers 2000] [--duration 120]
        [--web 2] [--workers 2] [--processes 4]

What it does, in order (everything it starts it stops; its database is dropped):
1. a throwaway MariaDB database and Redis namespace (bench/database.py Throwaway);
2. bench/db_limit.py on that database: the raw atomic-claim limit of MariaDB here;
3. `deploy/local/cluster up` (N web, M workers of prefork concurrency 2, beat,
   nginx) with a private run folder and port under bench/results/<ts>/cluster;
4. `booking create-event` with --seats seats (rows of 50; row A is the front);
5. C buyer accounts, and C sockets through nginx, spread over --processes
   load-generator processes; every buyer joins the event (so every buyer is
   also a watcher that receives every seats_changed);
6. the sale: each buyer picks 1 to 4 seats (adjacent where it can) in a section
   chosen with a skew (front rows wanted most), holds, then pays; a share pays
   with a declining card first (then half retry with a good card, half give
   up and release), a share cancels (release), a share walks away and lets the
   hold expire; a refused hold makes the buyer look elsewhere. After an order
   the connection shops again as the next buyer. Until sold out or --duration;
7. a drain: no new requests, wait for the results of every accepted one;
8. `booking audit`, a direct check for seats sold twice, the report.

Buyers keep one seat map per load-generator process (from one socket's
seats_changed; every other socket only reads the timestamps of each message to
measure lag) and pick seats that map shows available, so they race each other
on stale views, as browsers do.

With --dashboards N, N accounts of an organizer that runs the event watch its live
dashboard during the sale (bench/dashboards.py); the report adds what they received
and what computing the figures cost. With --best-share F, a share F of the hold
requests ask for the best N seats instead of naming them.

Figures (stdout, bench/results/<ts>-flash_sale/report.json, report.md, plot.png):
holds requested/accepted/shed per second, holds granted per second (mean over
the sale and best 5 s), click-to-hold_result p50/p95/p99 (clients and the
server's boxoffice_click_to_result_seconds), seats_changed lag (commit time in
the message and the web process's send time, against each watcher's receipt)
p50/p99 over all watchers, payments per second, time to sell out, CPU of each
process group, requests accepted vs answered, the audit verdict, and the
pipeline's holds per second as a fraction of the raw database limit.
"""
import argparse
import asyncio
import contextlib
import math
import os
import random
import sys
import threading
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import dashboards  # noqa: E402
import db_limit  # noqa: E402
import report as rpt  # noqa: E402
from buyers import ClientPool, Scenario  # noqa: E402
from cpu import CpuMeter, pids_by_name  # noqa: E402
from database import Throwaway, audit, create_event, make_users, seat_counts, seat_grid  # noqa: E402
from histograms import merge_stats  # noqa: E402
from local_cluster import LocalCluster  # noqa: E402
from runs import (DECLINE_CARD, GOOD_CARD, NO_FUNDS_CARD, machine_load, results_dir,  # noqa: E402
                  say, stop_cleanly_on_signals)
from scrapes import scrape_any  # noqa: E402

PER_ROW = 50


# --- the buyers (run inside the load-generator processes) --------------------

class IndexedSet:
    """A set with O(1) random choice."""

    def __init__(self, items=()):
        self.items, self.pos = [], {}
        for i in items:
            self.add(i)

    def add(self, x):
        if x not in self.pos:
            self.pos[x] = len(self.items)
            self.items.append(x)

    def discard(self, x):
        i = self.pos.pop(x, None)
        if i is None:
            return
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.pos[last] = i

    def __len__(self):
        return len(self.items)

    def choice(self, rng):
        return self.items[rng.randrange(len(self.items))]


def card(number):
    return {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123",
            "name": "Bench Buyer"}


class FlashSale(Scenario):
    """The buyers of one load-generator process."""

    def __init__(self, client):
        super().__init__(client)
        cfg = self.cfg
        grid = cfg["grid"]
        self.where = {}                       # seat id -> (row index, position)
        for r, row in enumerate(grid):
            for i, sid in enumerate(row):
                self.where[sid] = (r, i)
        self.grid = grid
        # Sections by row: the front rows are wanted most.
        cuts = cfg["band_rows"]               # cumulative row fractions
        n = len(grid)
        self.band_of_row = []
        for r in range(n):
            self.band_of_row.append(next(b for b, cut in enumerate(cuts) if r < math.ceil(cut * n)))
        self.bands = [IndexedSet() for _ in cuts]
        self.weights = cfg["band_weights"]
        client.on_change = self._on_change

    def _free_count(self):
        """Seats available on this client's map now (the seats_changed feed)."""
        return sum(len(band) for band in self.bands)

    def _on_change(self, sid, before, after):
        band = self.bands[self.band_of_row[self.where[sid][0]]]
        if after == "available":
            band.add(sid)
        else:
            band.discard(sid)

    async def setup(self):
        c = self.c
        await asyncio.gather(*(b.start(self.cfg["event_id"], timeout=self.cfg["connect_timeout"])
                               for b in c.buyers))

    async def run(self):
        await asyncio.gather(*(self._buyer(b) for b in self.c.buyers))

    def _pick(self):
        """1 to 4 seats, adjacent in a row when possible, in a section chosen with a skew."""
        rng = self.rng
        n = rng.choices((1, 2, 3, 4), weights=self.cfg["party_weights"])[0]
        order = rng.choices(range(len(self.bands)), weights=self.weights)[0]
        for b in [order] + [i for i in range(len(self.bands)) if i != order]:
            band = self.bands[b]
            if not len(band):
                continue
            sid = band.choice(rng)
            r, i = self.where[sid]
            row = self.grid[r]
            picked = [sid]
            for step in (1, -1, 2, -2, 3, -3):
                if len(picked) >= n:
                    break
                j = i + step
                if 0 <= j < len(row) and row[j] in band.pos and row[j] not in picked:
                    picked.append(row[j])
            while len(picked) < min(n, len(band)):
                extra = band.choice(rng)
                if extra not in picked:
                    picked.append(extra)
            return sorted(picked)
        return None

    async def _sleep(self, lo, hi):
        await asyncio.sleep(self.rng.uniform(lo, hi))

    async def _buyer(self, b, admission_token=None, once=False):
        """Shop until the sale ends; with once, until this buyer's checkout is over."""
        cfg, st = self.cfg, self.c.stats
        ev = cfg["event_id"]
        timeout = cfg["result_timeout"]
        extra = {"admission_token": admission_token} if admission_token else {}
        if not once:
            await self._sleep(0, cfg["arrival_spread_s"])
        while not self.stopping:
            # A share of buyers asks for the best seats instead of clicking them.
            best = self.rng.random() < cfg.get("best_share", 0.0)
            kind_of = "best" if best else "click"
            if best:
                party = self.rng.choices((1, 2, 3, 4), weights=cfg["party_weights"])[0]
                ask = {"event_id": ev, "best": {"count": party}, **extra}
            else:
                seats = self._pick()
                if not seats:
                    await self._sleep(0.5, 1.5)
                    continue
                ask = {"event_id": ev, "seat_ids": seats, **extra}
            st.inc("hold_requested")
            st.inc(f"{kind_of}_requested")
            kind, res = await b.request("hold", ask, timeout)
            if self.stopping:
                return
            if kind == "refused":
                err = res.get("error") or {}
                wait = (err.get("details") or {}).get("retry_after_s") or 1
                await self._sleep(0.5 * wait, 1.5 * wait) if err.get("code") in (
                    "busy", "rate_limited") else await self._sleep(0.5, 2)
                continue
            if kind != "result":
                continue
            if not res["ok"]:
                code = res.get("error", {}).get("code")
                st.inc(f"{kind_of}_refused_{code}")
                wanted = ask["best"]["count"] if best else len(ask["seat_ids"])
                if code == "seat_unavailable" and self._free_count() >= wanted:
                    # Not the sale's tail: the map still showed enough free seats.
                    st.inc(f"{kind_of}_refused_while_free")
                taken = (res.get("error", {}).get("details") or {}).get("seat_ids") or []
                for sid in taken:
                    self.c.mark(sid, "held")
                await self._sleep(*cfg["retry_think_s"])
                continue
            st.inc(f"{kind_of}_granted")
            for sid in res["seat_ids"]:
                self.c.mark(sid, "held")
            await self._checkout(b, res["hold_id"])
            if once:
                return

    async def _checkout(self, b, hold_id):
        cfg, st, rng = self.cfg, self.c.stats, self.rng
        timeout = cfg["result_timeout"]
        await self._sleep(*cfg["pay_think_s"])
        if self.stopping:
            return  # the drain: no new requests
        fate = rng.random()
        walk, cancel, decline = cfg["walk_away"], cfg["cancel"], cfg["decline"]
        if fate < walk:
            st.inc("walked_away")
            return
        if fate < walk + cancel:
            st.inc("cancelled")
            await b.request("release", {"hold_id": hold_id}, timeout)
            return
        number = GOOD_CARD
        if fate < walk + cancel + decline:
            number = rng.choice((DECLINE_CARD, NO_FUNDS_CARD))
        for attempt in range(2):
            kind, res = await b.request("pay", {"hold_id": hold_id,
                                                "idempotency_key": os.urandom(12).hex(),
                                                "card": card(number)}, timeout)
            if kind != "result":
                return
            if res["ok"]:
                st.inc("orders")
                await self._sleep(*cfg["after_order_s"])
                return
            if res["error"]["code"] != "payment_declined" or attempt or rng.random() < 0.5:
                st.inc("gave_up_after_decline")
                await b.request("release", {"hold_id": hold_id}, timeout)
                return
            st.inc("retried_after_decline")
            number = GOOD_CARD
            await self._sleep(*cfg["pay_think_s"])
            if self.stopping:
                return


# --- the run (in the parent process) -----------------------------------------

def code_version():
    """The commit measured, and the files of booking/ and workers/ changed but not committed."""
    import subprocess
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "booking", "workers"],
                           cwd=Path(__file__).parent, capture_output=True, text=True).stdout
    return {"commit": head, "uncommitted_product_changes": dirty.split("\n")[:-1]}


def parse_env(pairs):
    out = {}
    for p in pairs or []:
        k, _, v = p.partition("=")
        if not k or not _:
            raise SystemExit(f"--env wants KEY=VALUE, got {p!r}")
        out[k] = v
    return out


def add_arguments(parser):
    parser.add_argument("--seats", type=int, default=12000, help="seats of the event (default "
                        "12000, in rows of 50)")
    parser.add_argument("--buyers", type=int, default=2000, help="socket clients (default 2000)")
    parser.add_argument("--duration", type=float, default=120,
                        help="longest sale in seconds; it ends earlier when sold out")
    parser.add_argument("--web", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="prefork processes per worker")
    parser.add_argument("--processes", type=int, default=4, help="load-generator processes")
    parser.add_argument("--hold-ttl", type=int, default=20,
                        help="HOLD_TTL_SECONDS for the run (default 20, so that walked-away "
                             "holds expire within the sale; the product default is 300)")
    parser.add_argument("--best-share", type=float, default=0.0,
                        help="share of hold requests that ask for the best N seats (best "
                             "available) instead of naming seats (default 0)")
    parser.add_argument("--dashboards", type=int, default=0,
                        help="organizer sockets watching the event's live dashboard during the "
                             "sale (their cost is reported; default 0)")
    parser.add_argument("--dashboard-screenshots", action="store_true",
                        help="also take Chromium screenshots of the live dashboard mid-sale")
    parser.add_argument("--walk-away", type=float, default=0.10)
    parser.add_argument("--cancel", type=float, default=0.10)
    parser.add_argument("--decline", type=float, default=0.10)
    parser.add_argument("--pay-think", default="0.5,2.0", help="seconds before paying, lo,hi")
    parser.add_argument("--drain", type=float, default=30,
                        help="seconds to wait for results of accepted requests after the sale")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--db-limit-seconds", type=float, default=3.0,
                        help="per concurrency level of the raw claim benchmark; 0 skips it")
    parser.add_argument("--env", action="append", metavar="KEY=VALUE",
                        help="extra environment for every cluster process (repeatable), e.g. "
                             "--env MAX_OPEN_HOLDS=4")


class Sale:
    """One flash sale: setup, run (with an optional fault), measure, tear down."""

    def __init__(self, args, out_dir, name="flash_sale", fault=None, extra_env=None,
                 scenario="flash_sale:FlashSale", per_row=PER_ROW, cfg_extra=None):
        self.args, self.out, self.name, self.fault = args, Path(out_dir), name, fault
        self.scenario, self.per_row, self.cfg_extra = scenario, per_row, cfg_extra or {}
        self.seed = args.seed if args.seed is not None else random.randrange(2**31)
        # Every simulated buyer comes from 127.0.0.1 through nginx: the per-IP
        # limit (IP_RATE_LIMIT, 30,000/minute) would cap the whole load generator
        # at 500 requests/s, which is not what a crowd of real buyers meets.
        self.env_overrides = {"HOLD_TTL_SECONDS": str(args.hold_ttl),
                              "IP_RATE_LIMIT": "100000/second;6000000/minute",
                              **parse_env(args.env), **(extra_env or {})}
        self.timeline = []       # one row a second: seat counts, server counters
        self.scrapes = []        # (t, sample)
        self.notes = []
        self.fault_log = {}

    def note(self, text):
        say(text)
        self.notes.append(text)

    # ---- helpers for faults (drills) ----
    def cluster_groups(self):
        try:
            st = self.cluster.state()
        except (OSError, ValueError):
            return {}
        return {"web": [w["pid"] for w in st["web"]],
                "workers": [w["pid"] for w in st["workers"]],
                "beat": [st["beat"]["pid"]] if st.get("beat") else [],
                "nginx": [st["nginx"]["pid"]] if st.get("nginx") else [],
                "after_sale": [st["after_sale"]["pid"]] if st.get("after_sale") else []}

    def run(self):
        a = self.args
        load = machine_load()
        self.note(f"machine before the run: load average {load['loadavg_1m']} (1 min), "
                  f"{load['cores']} cores; busiest: {', '.join(load['top'][:4])}")
        tw = Throwaway()
        self.tw = tw
        self.cluster = None
        pool = None
        result = {"name": self.name, "seed": self.seed, "args": vars(a), "code": code_version(),
                  "env_overrides": self.env_overrides, "machine_before": load}
        try:
            if a.db_limit_seconds > 0:
                say("measuring the raw database claim limit (bench/db_limit.py)")
                result["db_limit"] = db_limit.measure(tw, seconds=a.db_limit_seconds)
            tw.env.update(self.env_overrides)
            self.cluster = LocalCluster(tw.env, self.out / "cluster")
            say(f"cluster up: {a.web} web, {a.workers} workers x{a.concurrency}")
            info = self.cluster.up(a.web, a.workers, a.concurrency)
            rows = max(1, math.ceil(a.seats / self.per_row))
            organizer_id, members = None, []
            if getattr(a, "dashboards", 0) > 0:
                members = make_users(tw, a.dashboards)
                organizer_id, member_emails = dashboards.make_organizer(tw, members)
            event_id = create_event(tw.env, rows, self.per_row, name=self.name,
                                    organizer_id=organizer_id)
            self.event_created(event_id)
            seats_total = rows * self.per_row
            grid = seat_grid(tw, event_id)
            say(f"event {event_id}: {seats_total} seats; creating {a.buyers} buyers")
            users = make_users(tw, a.buyers)
            lb = info["lb"].replace("http://", "")
            host, port = lb.split(":")
            lo, hi = (float(x) for x in a.pay_think.split(","))
            t0_guess = time.time() + 3600   # replaced below; the children read t0 from cfg
            cfg = {"host": host, "port": int(port), "event_id": event_id, "grid": grid,
                   "seed": self.seed, "t0": t0_guess, "drain_s": a.drain,
                   "connect_timeout": 300, "connect_concurrency": 25,
                   "reconnect_timeout": 120, "result_timeout": 90,
                   "band_rows": [0.2, 0.5, 1.0], "band_weights": [0.5, 0.3, 0.2],
                   "party_weights": [0.3, 0.45, 0.1, 0.15],
                   "walk_away": a.walk_away, "cancel": a.cancel, "decline": a.decline,
                   "best_share": getattr(a, "best_share", 0.0),
                   "pay_think_s": (lo, hi), "retry_think_s": (0.1, 0.6),
                   "after_order_s": (0.5, 2.0), "arrival_spread_s": 3.0,
                   **self.cfg_extra}
            # The children's clocks count from t0, fixed now so every series lines up.
            cfg["t0"] = time.time()
            t_connect = time.time()
            pool = ClientPool(self.out, cfg, users, self.scenario, a.processes)
            ready = pool.wait_ready(timeout=600)
            connected = sum(r["connected"] for r in ready)
            self.note(f"{connected} of {a.buyers} buyers connected and joined in "
                      f"{time.time() - t_connect:.0f}s")
            result["connect"] = {"connected": connected, "of": a.buyers, "processes": ready,
                                 "seconds": round(time.time() - t_connect, 1)}
            meter = CpuMeter()
            loadgen_pids = [os.getpid()] + pool.pids

            def groups():
                g = self.cluster_groups()
                g["mariadb"] = pids_by_name("mariadbd")
                g["redis"] = pids_by_name("redis-server")
                g["loadgen"] = loadgen_pids
                return g
            watchers = None
            if members:
                watchers = dashboards.DashboardWatchers(host, int(port), event_id,
                                                        [t for _u, t in members])
                self.note(f"{watchers.start()} of {len(members)} dashboard watchers joined")
            sockets_at_start = scrape_any(self.cluster.web_urls())
            scraped_at_start = time.time()
            before = sockets_at_start
            meter.sample(groups())
            start = time.time()
            self.started_at, self.t0 = start, cfg["t0"]
            sale_start_s = start - cfg["t0"]
            self.sale_starting(event_id)
            pool.start()
            if watchers:
                watchers.count_from_now()
            say(f"sale started: {connected} buyers, {seats_total} seats")
            shots = None
            if members and getattr(a, "dashboard_screenshots", False):
                shots = threading.Thread(target=self._dashboard_screenshots, daemon=True,
                                         args=(info["lb"], member_emails[0], event_id))
            db = tw.connect()
            sold_out_at, fault_thread = None, None
            last_print = 0
            while True:
                now = time.time()
                el = now - start
                try:
                    counts = seat_counts(tw, event_id, db)
                except Exception:
                    counts = None
                    with contextlib.suppress(Exception):
                        db.close()
                    with contextlib.suppress(Exception):
                        db = tw.connect(connect_timeout=2)
                meter.sample(groups(), now)
                row = {"t": round(now - cfg["t0"], 2), "seats": counts}
                if int(el) % 2 == 0:
                    s = scrape_any(self.cluster.web_urls(), timeout=3)
                    if s:
                        self.scrapes.append((now, s))
                        row["queue_depth"] = sum(v for (n, _l), v in s.items()
                                                 if n == "boxoffice_queue_depth")
                        row["sockets"] = sum(v for (n, _l), v in s.items()
                                             if n == "boxoffice_connected_sockets")
                self.timeline.append(row)
                if counts and counts["sold"] >= seats_total and sold_out_at is None:
                    sold_out_at = now
                    self.note(f"sold out after {now - start:.1f}s")
                if shots is not None and not shots.is_alive() and el >= 5 and not \
                        getattr(self, "shots_started", False):
                    self.shots_started = True
                    shots.start()
                if self.fault and fault_thread is None and el >= self.fault.at:
                    fault_thread = threading.Thread(target=self._run_fault, daemon=True)
                    fault_thread.start()
                if el - last_print >= 5:
                    last_print = el
                    say(f"t={el:5.1f}s seats {counts} queue {row.get('queue_depth')} "
                        f"sockets {row.get('sockets')}")
                # A drill's sale runs until its fault has been injected and is over.
                fault_busy = self.fault is not None and (fault_thread is None
                                                         or fault_thread.is_alive())
                if (sold_out_at or el >= a.duration) and not fault_busy:
                    break
                if el >= a.duration + 300 or (sold_out_at and fault_thread is None):
                    self.note("the fault did not finish within 300 s after the sale")
                    break
                time.sleep(max(0.05, 1.0 - (time.time() - now)))
            end = time.time()
            self.ended_at = end
            say("sale over: draining (no new requests; waiting for accepted ones)")
            if watchers:
                watchers.counting = False
            parts = pool.stop(timeout=a.drain + 60)
            after = scrape_any(self.cluster.web_urls())
            if watchers:
                watchers.stop()
                result["dashboards"] = watchers.figures(sockets_at_start, after,
                                                        time.time() - scraped_at_start)
                result["dashboards"]["screenshots"] = getattr(self, "dashboard_shots", None)
            meter.sample(groups())
            with contextlib.suppress(Exception):
                db.close()
            say("running booking audit")
            code, audit_report, audit_err = audit(tw.env, event_id)
            twice = self._sold_twice(event_id)
            self._diagnose_unanswered(parts)
            final_counts = seat_counts(tw, event_id)
            result.update(self._figures(
                parts, before, after, meter, cfg["t0"], start, end, sold_out_at, seats_total,
                final_counts, code, audit_report, audit_err, twice, sale_start_s))
            result["event_id"] = event_id
        finally:
            if pool is not None:
                pool.kill()
            if self.cluster is not None:
                try:
                    say("cluster down")
                    self.cluster.down()
                except Exception as err:
                    self.note(f"cluster down failed: {err}")
            tw.close()
        result["notes"] = self.notes
        result["fault"] = self.fault_log
        result["sale_started_at"] = getattr(self, "started_at", None)
        return result

    def event_created(self, event_id):
        """Hook: the event exists, no buyer has connected yet."""

    def sale_starting(self, event_id):
        """Hook: every buyer is connected (and joined); the sale starts now."""

    def _dashboard_screenshots(self, base_url, email, event_id):
        try:
            self.dashboard_shots = dashboards.screenshots(base_url, email, event_id,
                                                                   self.out)
        except Exception as err:
            self.note(f"dashboard screenshots failed: {err!r}")

    def _run_fault(self):
        try:
            self.fault_log.update(self.fault.inject(self) or {})
        except Exception as err:
            self.fault_log["error"] = repr(err)
            self.note(f"fault failed: {err!r}")

    def _diagnose_unanswered(self, parts):
        """Where each unanswered request got to: decided by a worker (its answer was lost on
        the way) or never decided (the request itself was lost), and what the ledger says."""
        import redis
        lost = [u for p in parts for u in p["unanswered"]]
        if not lost:
            return
        conn = self.tw.connect()
        r = redis.Redis.from_url(self.tw.redis_url, socket_timeout=5)
        with conn.cursor() as cur:
            for u in lost[:200]:
                cur.execute("SELECT event, LEFT(result, 200) FROM request_records WHERE "
                            "user_id=%s AND request_id=%s", (u["uid"], u["request_id"]))
                row = cur.fetchone()
                u["worker_decided"] = bool(row)
                u["recorded_result"] = row[1] if row else None
                try:
                    led = r.get(f"{self.tw.namespace}:req:{u['uid']}:{u['request_id']}")
                    u["ledger"] = (led or b"").decode()[:120] or None
                except Exception as err:
                    u["ledger"] = f"unreadable: {err}"
        conn.close()
        decided = sum(1 for u in lost[:200] if u.get("worker_decided"))
        self.note(f"unanswered: {len(lost)}; {decided} of them decided by a worker (the answer "
                  f"was lost on its way), {min(len(lost), 200) - decided} never decided")

    def _sold_twice(self, event_id):
        conn = self.tw.connect()
        with conn.cursor() as cur:
            cur.execute("SELECT os.seat_id, COUNT(*) FROM order_seats os JOIN orders o ON "
                        "o.id = os.order_id WHERE o.status = 'paid' AND o.event_id = %s "
                        "GROUP BY os.seat_id HAVING COUNT(*) > 1", (event_id,))
            rows = cur.fetchall()
        conn.close()
        return len(rows)

    def _figures(self, parts, before, after, meter, t0, start, end, sold_out_at, seats_total,
                 final_counts, code, audit_report, audit_err, twice, sale_start_s):
        count, series, hist, hist_series = merge_stats([p["stats"] for p in parts])
        s0 = int(sale_start_s)
        s1 = int((sold_out_at or end) - t0) + 1
        window = (sold_out_at or end) - start
        unanswered = [u for p in parts for u in p["unanswered"]]
        accepted = sum(v for k, v in count.items() if k.endswith("_accepted"))
        answered = sum(v for k, v in count.items() if k.endswith("_answered"))
        srv = rpt.server_figures(before, after)
        cpu = rpt.cpu_table(meter, start, sold_out_at or end)
        figures = {
            "window_s": round(window, 1),
            "sold_out_s": round(sold_out_at - start, 1) if sold_out_at else None,
            "seats_total": seats_total, "seats_final": final_counts,
            "clients": {
                "hold_requests_per_s": rpt.rate(rpt.window_sum(series, "hold_requested", s0, s1),
                                                window),
                "hold_accepted_per_s": rpt.rate(rpt.window_sum(series, "hold_accepted", s0, s1),
                                                window),
                "shed_per_s": rpt.rate(rpt.window_sum(series, "shed", s0, s1), window),
                "holds_granted_per_s": rpt.rate(rpt.window_sum(series, "hold_ok", s0, s1), window),
                "holds_granted_best_5s_per_s": rpt.peak_rate(series, "hold_ok", s0, s1),
                "holds_refused_seat_unavailable_per_s": rpt.rate(
                    rpt.window_sum(series, "hold_fail_seat_unavailable", s0, s1), window),
                "payments_per_s": rpt.rate(rpt.window_sum(series, "pay_ok", s0, s1), window),
                "payments_best_5s_per_s": rpt.peak_rate(series, "pay_ok", s0, s1),
                "click_to_hold_result": rpt.q3(hist.get("hold_click_to_result", {})),
                "click_to_payment_result": rpt.q3(hist.get("pay_click_to_result", {})),
                "seats_changed_lag_commit": rpt.q3(hist.get("lag_commit", {})),
                "seats_changed_lag_sent": rpt.q3(hist.get("lag_sent", {})),
                "seats_changed_received": count.get("seats_changed_received", 0),
                "counts": dict(sorted(count.items())),
                "histograms": {name: rpt.q3(h) for name, h in sorted(hist.items())},
            },
            "orders_in_window": rpt.window_sum(series, "pay_ok", s0, s1),
            "server_cpu_ms_per_order": rpt.cpu_per(cpu, rpt.window_sum(series, "pay_ok", s0, s1)),
            "accepted": accepted, "answered": answered, "unanswered": len(unanswered),
            "unanswered_sample": unanswered[:20],
            "first_answer_lost": sum(len(p.get("first_answer_lost", [])) for p in parts),
            "found_finished_by_resend": sum(p.get("found_finished", 0) for p in parts),
            "first_answer_lost_sample": [u for p in parts
                                         for u in p.get("first_answer_lost", [])][:20],
            "resend_refusals": [r for p in parts for r in p["resend_refusals"]][:20],
            "server": srv, "cpu": cpu,
            "audit": {"exit_code": code, "clean": code == 0,
                      "problems": (audit_report or {}).get("problems"),
                      "events": (audit_report or {}).get("events"),
                      "stderr_tail": audit_err if code else ""},
            "seats_sold_twice": twice,
            "timeline": self.timeline,
        }
        figures["_series"] = {"series": series, "hist_series": hist_series,
                              "cpu_samples": meter.samples, "t0": t0, "end": end,
                              "start_s": sale_start_s}
        return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args()
    stop_cleanly_on_signals()
    out = results_dir("flash_sale")
    command = " ".join([".venv/bin/python", "bench/flash_sale.py", *sys.argv[1:]])
    sale = Sale(args, out)
    result = sale.run()
    rpt.summarize(result, out, "Flash sale", command)
    sys.exit(0 if rpt.passed(result) else 1)


if __name__ == "__main__":
    main()
