#!/usr/bin/env python3
"""The seat map's weight and speed in a browser: join snapshot size and time to a usable map.

    .venv/bin/python bench/seatmap_load.py [--runs 2] [--layouts theatre-2000 arena-20000]

For each example layout in docs/examples/ it makes an event (`booking create-event
--layout`) on a throwaway MariaDB database, starts one web process in the embedded
mode (tasks in-process, no Redis), signs a buyer up, and opens the event page in
headless Chromium (/usr/bin/chromium through Playwright) at 390x844, a fresh browser
context each run (nothing cached). Before each run it prints the machine's load:
this machine is shared, so each figure is taken --runs times.

Figures per run:
- join ack: the bytes of the join_event answer (the Socket.IO packet as received,
  over polling or WebSocket), i.e. the live snapshot;
- REST: the bytes of the event's /api/v1/events/... responses the page fetched;
- usable: ms from navigation start until the map is drawn (#seatmap no longer
  aria-busy) and the join answer has been applied (the task after its arrival);
- long tasks: the sum and the longest of main-thread tasks over 50 ms until then
  (what a buyer feels as jank).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from loadgen import Throwaway, flask_cli, machine_load, say  # noqa: E402
from tests.harness import Cluster, sign_up  # noqa: E402

CHROMIUM = os.environ.get("BROWSER_TESTS_CHROMIUM", "/usr/bin/chromium")
PRICES = {"theatre-2000": {"Premium": 8500, "Standard": 5500, "Restricted": 2500},
          "arena-20000": {"Floor": 9500, "Lower Centre": 7500, "Lower Side": 5500,
                          "Upper": 4500, "Restricted": 2500}}

# Runs before the page's scripts: notes when the join answer arrives (a Socket.IO
# ack packet "43<id>[{...}]" carrying the snapshot) and the long tasks.
PROBE = r"""
(() => {
  const bench = window.__bench = { ackAt: null, ackBytes: 0, usableAt: null, longTasks: [] };
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) bench.longTasks.push([e.startTime, e.duration]);
    }).observe({ type: "longtask", buffered: true });
  } catch (err) { /* no long task timing */ }
  function look(text) {
    if (typeof text !== "string" || bench.ackAt !== null) return;
    for (const packet of text.split("\x1e")) {
      if (/^43\d+\[/.test(packet) && packet.includes('"ok":true')
          && (packet.includes('"seats"') || packet.includes('"board"'))) {
        const bytes = new TextEncoder().encode(packet).length;
        setTimeout(() => { bench.ackAt = performance.now(); bench.ackBytes = bytes; }, 0);
      }
    }
  }
  const Socket = window.WebSocket;
  window.WebSocket = class extends Socket {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (e) => look(e.data));
    }
  };
  const send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.send = function (...args) {
    this.addEventListener("load", () => { try { look(this.responseText); } catch (err) { /* binary */ } });
    return send.apply(this, args);
  };
})();
"""

USABLE = """() => {
  const b = window.__bench;
  const map = document.querySelector("#seatmap");
  if (b.ackAt !== null && map && !map.hasAttribute("aria-busy")) {
    if (b.usableAt === null) b.usableAt = performance.now();
    return true;
  }
  return false;
}"""


def make_event(env, layout):
    file = ROOT / "docs" / "examples" / f"{layout}.json"
    args = ["booking", "create-event", "--name", f"Bench {layout}", "--venue", layout,
            "--starts-at", "2030-01-01T19:00:00Z", "--layout", str(file)]
    for tier, cents in PRICES.get(layout, {}).items():
        args += ["--tier-price", f"{tier}={cents}"]
    out = flask_cli(env, *args, "--price-cents", "5000")
    if out.returncode != 0:
        raise RuntimeError(f"create-event failed: {out.stderr[-2000:]}")
    return int(out.stdout.strip().splitlines()[-1])


def measure(browser, base_url, email, password, event_id):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True, locale="en-GB")
    try:
        r = context.request.post(base_url + "/api/v1/session",
                                 data={"email": email, "password": password})
        assert r.status == 200, r.text()
        context.add_init_script(PROBE)
        page = context.new_page()
        rest = {}

        def on_response(response):
            if "/api/v1/events/" in response.url:
                try:
                    rest[response.url.split("/api/v1")[1]] = len(response.body())
                except Exception:  # a redirect or an aborted body
                    pass
        page.on("response", on_response)
        page.goto(f"{base_url}/events/{event_id}")
        page.wait_for_function(USABLE, polling="raf", timeout=120_000)
        bench = page.evaluate("window.__bench")
        usable = bench["usableAt"]
        long_tasks = [d for start, d in bench["longTasks"] if start <= usable]
        return {"join_ack_bytes": bench["ackBytes"], "rest_bytes": rest,
                "usable_ms": round(usable), "long_tasks_ms": round(sum(long_tasks)),
                "longest_task_ms": round(max(long_tasks, default=0))}
    finally:
        context.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--layouts", nargs="+", default=["theatre-2000", "arena-20000"])
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    tw = Throwaway(prefix="bo_seatmap")
    cluster = Cluster(dict(tw.env, REDIS_URL="", LOG_LEVEL="WARNING"), tempfile.mkdtemp())
    results = []
    try:
        out = flask_cli(tw.env, "db", "upgrade")
        if out.returncode != 0:
            raise RuntimeError(f"db upgrade failed: {out.stderr[-2000:]}")
        events = {layout: make_event(tw.env, layout) for layout in args.layouts}
        web = cluster.web()
        password = "correct-horse-battery"
        email = f"bench-{os.getpid()}@example.test"
        sign_up(web.url, email=email, password=password)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            for layout, event_id in events.items():
                for run in range(1, args.runs + 1):
                    load = machine_load()
                    say(f"{layout} run {run}: load average {load['loadavg_1m']} (1 min), "
                        f"{load['loadavg_5m']} (5 min) on {load['cores']} cores")
                    figures = measure(browser, web.url, email, password, event_id)
                    figures.update(layout=layout, run=run, loadavg_1m=load["loadavg_1m"])
                    print(json.dumps(figures), flush=True)
                    results.append(figures)
            browser.close()
    finally:
        cluster.stop()
        tw.close()
    print("\nlayout        join ack bytes   REST bytes   usable ms (each run)   long tasks ms")
    for layout in args.layouts:
        runs = [r for r in results if r["layout"] == layout]
        if not runs:
            continue
        print(f"{layout:<13} {runs[0]['join_ack_bytes']:>14,} {sum(runs[0]['rest_bytes'].values()):>12,}"
              f"   {', '.join(str(r['usable_ms']) for r in runs):<22}"
              f" {', '.join(str(r['long_tasks_ms']) for r in runs)}"
              f"  (median usable {statistics.median(r['usable_ms'] for r in runs):.0f})")


if __name__ == "__main__":
    main()
