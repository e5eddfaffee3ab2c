#!/usr/bin/env python3
"""A surge: far more buyers than the system can serve, for a gated on-sale.

    .venv/bin/python bench/surge.py [--buyers 2000] [--seats 2000] [--duration 150]
        [--admission-rate auto|N] [--no-waiting-room] [--web 2] [--workers 2]

The flash sale of bench/flash_sale.py, with the event behind its waiting room
(docs/WAITING_ROOM.md): every buyer connects and joins before the on-sale and
waits in the pre-queue; at the on-sale (`booking waiting-room on-sale EVENT
now`, run when every buyer is connected) the queue is drawn and buyers are
admitted at the room's rate (`auto` by default: derived from how the pipeline
keeps up). An admitted buyer joins again (seat map and feed), looks at the map
for --browse seconds (1 to 4: a person picks seats before clicking), shops once
(hold with its admission token, then pay, decline, cancel or walk away, as in
the flash sale) and leaves. Buyers still waiting when the event sells out or the
time runs out are reported as such: queued, not failed.

--no-waiting-room runs the same crowd at the same event with no room (every
buyer clicks at once, shopping again after each order): the control that shows
what the room protects against.

What it reports on top of the flash sale's figures: buyers admitted and still
waiting, the wait from on-sale to admission (p50/p99), position updates
received and any that went up (a position must only fall), the admission rate
and the share of late hold answers over time (from /metrics), and targets for
this run: p99 click→hold_result of the accepted requests under 250 ms, every
refusal a clear answer (busy/rate_limited with retry_after_s), no lost request,
the site up throughout (/readyz), audit clean.
"""
import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import flash_sale  # noqa: E402
from flash_sale import FlashSale, Sale  # noqa: E402
from report import passed, summarize  # noqa: E402
from database import flask_cli  # noqa: E402
from runs import results_dir, say, stop_cleanly_on_signals  # noqa: E402

_TOKEN = re.compile(rb'"admission_token": ?"([^"]+)"')


class SurgeSale(FlashSale):
    """Buyers of one load-generator process: wait, get admitted, shop once, leave."""

    def __init__(self, client):
        super().__init__(client)
        self.admitted = {}        # buyer uid -> future(token)
        self.last_place = {}      # buyer uid -> (seq, ahead)
        self.on_sale_at = None
        client.on_other = self._on_other
        # The seat map comes from the first admitted buyer of this process
        # (waiting buyers get no snapshot and no feed).
        if client.map_buyer is not None:
            client.map_buyer.is_map = False
            client.map_buyer = None

    def _future(self, uid):
        if uid not in self.admitted:
            self.admitted[uid] = asyncio.get_running_loop().create_future()
        return self.admitted[uid]

    def _on_other(self, buyer, name, raw, now):
        st = self.c.stats
        if name == "admitted":
            data = json.loads(raw[2:])[1]
            fut = self._future(buyer.uid)
            if not fut.done():
                fut.set_result(data["admission_token"])
        elif name == "queue_update":
            data = json.loads(raw[2:])[1]
            st.inc("queue_updates", now=now)
            seq, ahead = data.get("seq"), data.get("ahead")
            if seq is None or ahead is None:
                return
            last = self.last_place.get(buyer.uid)
            if last is None or seq > last[0]:
                if last is not None and ahead > last[1]:
                    st.inc("position_rises", now=now)
                self.last_place[buyer.uid] = (seq, ahead)

    async def run(self):
        self.on_sale_at = time.time()
        await asyncio.gather(*(self._surge_buyer(b) for b in self.c.buyers))

    async def _wait_for_admission(self, b):
        """The admission token: from `admitted`, or (a message lost) from a join every ~30 s."""
        fut = self._future(b.uid)
        while not self.stopping:
            try:
                return await asyncio.wait_for(asyncio.shield(fut), self.rng.uniform(20, 40))
            except asyncio.TimeoutError:
                if not b.ready.is_set():
                    continue
                try:
                    raw = await asyncio.wait_for(b.sio.emit(
                        "join_event", {"event_id": self.cfg["event_id"]}, raw=True), 60)
                except Exception:
                    continue
                self.c.stats.inc("waiting_rejoins")
                m = _TOKEN.search(raw)
                if m and not fut.done():
                    self.c.stats.inc("admitted_via_rejoin")
                    fut.set_result(m.group(1).decode())
        return None

    async def _surge_buyer(self, b):
        c, st = self.c, self.c.stats
        token = await self._wait_for_admission(b)
        if token is None:
            return   # still queued when the sale ended (counted as buyers - admitted)
        now = time.time()
        st.inc("admitted", now=now)
        st.observe("admission_wait", (now - self.on_sale_at) * 1000, now)
        # Join again: the seat snapshot and the feed. The first admitted buyer
        # of this process keeps the process's seat map from now on.
        make_map = c.map_buyer is None
        if make_map:
            b.is_map = True
            c.map_buyer = b
        for _ in range(20):
            if not b.ready.is_set():
                await asyncio.sleep(0.2)
                continue
            try:
                raw = await asyncio.wait_for(b.sio.emit(
                    "join_event", {"event_id": self.cfg["event_id"]}, raw=True), 60)
                break
            except Exception:
                await asyncio.sleep(0.2)
        else:
            st.inc("admitted_join_failed")
            return
        if make_map:
            c.apply_snapshot(json.loads(raw)[0]["seats"])
        await self._sleep(*self.cfg["browse_s"])   # looking at the map before the first click
        await self._buyer(b, admission_token=token, once=True)
        st.inc("buyers_done", now=time.time())
        if b is not c.map_buyer and not self.stopping:
            # Gone: this socket's place on the server is freed (no reconnect).
            sio, b.sio = b.sio, None
            b.ready.clear()
            if sio:
                sio.close()


class SurgeRun(Sale):
    """The sale with its event behind a waiting room opened at the start."""

    def __init__(self, args, out_dir):
        gated = not args.no_waiting_room
        super().__init__(args, out_dir, name="surge",
                         scenario="surge:SurgeSale" if gated else "flash_sale:FlashSale",
                         cfg_extra={"arrival_spread_s": 1.0,
                                    "browse_s": tuple(float(x) for x in args.browse.split(","))})
        self.gated = gated
        self.readyz = []          # (t, status) of the load balancer's /readyz during the sale

    def _ops(self, *args):
        out = flask_cli(self.tw.env, "booking", "waiting-room", *args)
        if out.returncode != 0:
            raise RuntimeError(f"waiting-room {args[0]} failed: {out.stderr[-2000:]}")

    def event_created(self, event_id):
        if not self.gated:
            return
        self._ops("on-sale", str(event_id), "2099-01-01T00:00:00Z")
        self._ops("open", str(event_id))
        self._ops("rate", str(event_id), str(self.args.admission_rate))
        self.note(f"event {event_id} gated: waiting room open, admission rate "
                  f"{self.args.admission_rate}, on-sale when every buyer waits")

    def sale_starting(self, event_id):
        if self.gated:
            self._ops("on-sale", str(event_id), "now")


def surge_figures(result, sale):
    """The surge's own figures from the clients' counters and the scraped metrics."""
    c = result["clients"]["counts"]
    wait = result["clients"]["histograms"].get("admission_wait")
    rates, late = [], []
    t0 = sale.started_at
    for t, sample in sale.scrapes:
        r = [v for (n, _l), v in sample.items()
             if n == "boxoffice_waiting_room_admission_rate_per_minute"]
        lr = [v for (n, _l), v in sample.items() if n == "boxoffice_hold_answers_late_ratio"]
        if r:
            rates.append((round(t - t0, 1), round(max(r), 1)))
        if lr:
            late.append((round(t - t0, 1), round(max(lr), 4)))
    refusals = {k: v for k, v in c.items() if "_refused_" in k}
    return {
        "waiting_room": sale.gated,
        "admission_rate_setting": sale.args.admission_rate if sale.gated else None,
        "buyers": sale.args.buyers,
        "admitted": c.get("admitted", 0),
        # Buyers never admitted: still in the queue when the sale ended.
        "still_waiting_at_end": sale.args.buyers - c.get("admitted", 0),
        "buyers_done": c.get("buyers_done", 0),
        "orders": c.get("orders", 0),
        "admission_wait_ms": wait,
        "queue_updates": c.get("queue_updates", 0),
        "position_rises": c.get("position_rises", 0),
        "admitted_via_rejoin": c.get("admitted_via_rejoin", 0),
        "refusals": refusals,
        "result_timeouts": {k: v for k, v in c.items() if k.endswith("_result_timeouts")},
        "admission_rate_per_min_over_time": rates,
        "late_ratio_over_time": late,
        "readyz_failures": [r for r in sale.readyz if r[1] != 200],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    flash_sale.add_arguments(parser)
    parser.set_defaults(buyers=2000, seats=2000, duration=150, db_limit_seconds=0)
    parser.add_argument("--admission-rate", default="auto",
                        help="buyers admitted a minute, or auto (derived; the default)")
    parser.add_argument("--browse", default="1,4",
                        help="seconds an admitted buyer looks at the seat map before the first "
                             "click, lo,hi (default 1,4)")
    parser.add_argument("--no-waiting-room", action="store_true",
                        help="the control: the same crowd with no waiting room")
    args = parser.parse_args()
    stop_cleanly_on_signals()
    out = results_dir("surge" if not args.no_waiting_room else "surge-no-room")
    command = " ".join([".venv/bin/python", "bench/surge.py", *sys.argv[1:]])
    sale = SurgeRun(args, out)
    _watch_readyz(sale)
    result = sale.run()
    surge = surge_figures(result, sale)
    result["surge"] = surge
    summarize(result, out, "Surge" + ("" if sale.gated else " (no waiting room)"), command)
    _print_surge(result)
    rpt_path = Path(out) / "report.json"
    data = json.loads(rpt_path.read_text())
    data["surge"] = surge
    data["surge_targets"] = result["surge_targets"]
    rpt_path.write_text(json.dumps(data, indent=1, default=str))
    sys.exit(0 if passed(result) else 1)


def _watch_readyz(sale):
    """Poll the load balancer (/healthz; /readyz is inside only) once a second during the sale."""
    import threading
    import requests

    def poll():
        while not getattr(sale, "started_at", None):
            time.sleep(0.2)
        lb = sale.cluster.lb if sale.cluster else None
        while lb and not getattr(sale, "ended_at", None):
            t = time.time() - sale.started_at
            try:
                # /readyz is not served through the balancer (inside only): /healthz is.
                code = requests.get(lb + "/healthz", timeout=5).status_code
            except requests.RequestException as err:
                code = f"error: {type(err).__name__}"
            sale.readyz.append((round(t, 1), code))
            if t > sale.args.duration + 120:
                break
            time.sleep(1)
    threading.Thread(target=poll, daemon=True).start()


def _print_surge(result):
    s, c = result["surge"], result["clients"]
    lat = c["click_to_hold_result"]
    refusals = s["refusals"]
    unclear = {k: v for k, v in refusals.items()
               if not any(k.endswith(code) for code in ("_busy", "_rate_limited",
                                                          "_limit_exceeded"))}
    targets = [
        ("p99 click→hold_result of accepted holds < 250 ms", (lat["p99_ms"] or 1e9) < 250,
         lat["p99_ms"]),
        ("site up: /readyz 200 throughout", not s["readyz_failures"],
         len(s["readyz_failures"])),
        ("every refusal a clear answer (busy / rate_limited / limit_exceeded)", not unclear,
         unclear or "none other"),
        ("no request without an answer", result["unanswered"] == 0 and not
         s["result_timeouts"], result["unanswered"]),
        ("positions only fall", s["position_rises"] == 0, s["position_rises"]),
        ("zero seats sold twice", result["seats_sold_twice"] == 0, result["seats_sold_twice"]),
        ("audit clean", result["audit"]["clean"], result["audit"]["exit_code"]),
    ]
    result["surge_targets"] = [{"target": t, "met": bool(m), "measured": v}
                               for t, m, v in targets]
    say("")
    print("== Surge: the crowd ==")
    rows = [("waiting room", f"{'on, rate ' + str(s['admission_rate_setting']) if s['waiting_room'] else 'off (control)'}"),
            ("buyers", s["buyers"]), ("admitted", s["admitted"]),
            ("still waiting at the end (queued)", s["still_waiting_at_end"]),
            ("buyers done shopping", s["buyers_done"]), ("orders", s["orders"]),
            ("wait on-sale→admitted p50 / p99",
             f"{(s['admission_wait_ms'] or {}).get('p50_ms')} / "
             f"{(s['admission_wait_ms'] or {}).get('p99_ms')} ms"),
            ("queue updates received / positions that rose",
             f"{s['queue_updates']} / {s['position_rises']}"),
            ("refusals", s["refusals"] or "none"),
            ("admission rate (per min) over time",
             ", ".join(f"{t}s:{r:.0f}" for t, r in s["admission_rate_per_min_over_time"][::5])),
            ("late share of hold answers over time",
             ", ".join(f"{t}s:{r:.3f}" for t, r in s["late_ratio_over_time"][::5]))]
    for k, v in rows:
        print(f"  {k:<52} {v}")
    print("  surge targets:")
    for t in result["surge_targets"]:
        print(f"    [{'met' if t['met'] else 'MISSED'}] {t['target']} (measured {t['measured']})")


if __name__ == "__main__":
    main()
