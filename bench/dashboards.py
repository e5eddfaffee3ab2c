"""Organizers watching a sale's live dashboard while the bench runs (flash_sale.py --dashboards N).

What it adds to a sale, so that the dashboard's cost on the sale can be measured:
- an organizer whose admin and staff are N bench accounts, and the sale's event under it
  (`booking organizer create`, then the staff memberships in one INSERT);
- N Socket.IO clients, one per member, that `join_dashboard` the event before the sale
  starts and count every `dashboard` message: how many, the gap between two messages
  to one watcher, and the lag from the figures' `at` to the watcher's receipt;
- optionally (--dashboard-screenshots) Chromium pages of the dashboard at 1280 x 800 and
  390 x 844, taken while the sale runs, into the run's folder.

The server side of the cost comes from /metrics (boxoffice_dashboard_computations_total
and boxoffice_dashboard_compute_seconds) and from comparing the sale's CPU per order with
and without watchers.
"""
import asyncio
import contextlib
import json
import threading
import time
from datetime import datetime
from pathlib import Path

from database import flask_cli
from collections import Counter

from histograms import bucket_ms
from report import q3
from runs import say
from scrapes import metric_delta
from sio import Sio

PASSWORD = "correct-horse-battery"   # bench/database.py make_users gives every account this one


def make_organizer(tw, users):
    """An organizer with users[0] as admin and the rest as staff; returns its id and the emails."""
    conn = tw.connect()
    ids = [uid for uid, _token in users]
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, email FROM users WHERE id IN ({','.join(['%s'] * len(ids))})",
                    ids)
        email_of = dict(cur.fetchall())
    out = flask_cli(tw.env, "booking", "organizer", "create",
                    "--name", f"Bench organizer {tw.namespace}", "--admin-email", email_of[ids[0]])
    if out.returncode != 0:
        raise RuntimeError(f"organizer create failed: {out.stderr[-2000:]}")
    organizer_id = int(out.stdout.strip().splitlines()[-1])
    if len(ids) > 1:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO memberships (organizer_id, user_id, role, created_at) "
                            "VALUES (%s, %s, 'staff', UTC_TIMESTAMP(6))",
                            [(organizer_id, uid) for uid in ids[1:]])
        conn.commit()
    conn.close()
    return organizer_id, [email_of[i] for i in ids]


def _parse_at(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class DashboardWatchers:
    """N dashboard sockets on one asyncio loop in a thread of the bench's own process."""

    def __init__(self, host, port, event_id, tokens):
        self.host, self.port, self.event_id, self.tokens = host, port, event_id, tokens
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.socks = []
        self.joined = 0
        self.refused = []
        self.messages = 0
        self.lag = Counter()     # {bucket ms: count}
        self.gap = Counter()
        self.last_at = {}
        self.counting = False

    def start(self, timeout=60):
        """Connect and join every watcher; returns how many joined."""
        self.thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._join_all(), self.loop)
        fut.result(timeout)
        return self.joined

    async def _join_all(self):
        await asyncio.gather(*(self._join(i, t) for i, t in enumerate(self.tokens)))

    async def _join(self, i, token):
        sock = Sio(self.host, self.port, token, lambda name, raw, i=i: self._on_event(i, name, raw))
        try:
            await sock.connect()
            ack = await asyncio.wait_for(sock.emit("join_dashboard", {"event_id": self.event_id}),
                                         30)
        except Exception as err:
            self.refused.append(repr(err)[:200])
            return
        self.socks.append(sock)
        if ack.get("ok"):
            self.joined += 1
        else:
            self.refused.append(json.dumps(ack.get("error"))[:200])

    def _on_event(self, i, name, raw):
        if name != "dashboard" or not self.counting:
            return
        now = time.time()
        body = json.loads(raw[2:])[1]
        self.messages += 1
        with contextlib.suppress(KeyError, ValueError, TypeError):
            self.lag[bucket_ms(1000 * (now - _parse_at(body["at"])))] += 1
        if i in self.last_at:
            self.gap[bucket_ms(1000 * (now - self.last_at[i]))] += 1
        self.last_at[i] = now

    def count_from_now(self):
        self.loop.call_soon_threadsafe(setattr, self, "counting", True)

    def stop(self):
        def close_all():
            self.counting = False
            for s in self.socks:
                s.close()
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(close_all)
            time.sleep(0.2)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def figures(self, before, after, window_s):
        """What the watchers saw, and what computing the figures cost the web processes."""
        computations = metric_delta(before, after, "boxoffice_dashboard_computations_total")
        seconds = metric_delta(before, after, "boxoffice_dashboard_compute_seconds_sum")
        return {
            "watchers": len(self.tokens), "joined": self.joined, "refused": self.refused[:5],
            "messages": self.messages,
            "messages_per_watcher_per_s": round(self.messages / max(1, self.joined)
                                                / max(window_s, 1e-9), 2),
            "gap_between_messages": q3(self.gap),
            "lag_at_to_receipt": q3(self.lag),
            "computations": int(computations),
            "computations_per_s": round(computations / max(window_s, 1e-9), 2),
            # Wall time (boxoffice_dashboard_compute_seconds): the queries' round trips
            # and waits included, so on a saturated machine it is far above the CPU the
            # figures cost; that is read from the CPU per order with and without watchers.
            "compute_wall_s": round(seconds, 3),
            "compute_wall_ms_mean": round(1000 * seconds / computations, 2) if computations
            else None,
        }


def screenshots(base_url, email, event_id, out_dir):
    """The live dashboard in Chromium at desktop and phone size, signed in as an organizer."""
    from playwright.sync_api import sync_playwright
    shots = []
    out_dir = Path(out_dir)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            for name, size in (("desktop", (1280, 800)), ("phone", (390, 844))):
                page = browser.new_page(viewport={"width": size[0], "height": size[1]})
                page.goto(f"{base_url}/login")
                page.fill("input[name=email]", email)
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_load_state("networkidle")
                page.goto(f"{base_url}/manage/events/{event_id}/live")
                page.wait_for_timeout(4000)   # a few of the once-a-second updates
                path = out_dir / f"dashboard-{name}.png"
                page.screenshot(path=str(path), full_page=True)
                shots.append(str(path))
                page.close()
        finally:
            browser.close()
    say(f"dashboard screenshots: {', '.join(shots)}")
    return shots
