"""Simulated buyers: Socket.IO sockets kept connected, requests that survive reconnects, what they measured.

A Buyer reconnects through the load balancer, re-joins its event and re-sends every
request it has no result for with the same request_id (the recovery rule of
docs/API.md). A ClientProcess holds the buyers of one load-generator process and its
counters; a ClientPool starts those processes (multiprocessing, spawn) and collects
their results. Sockets are bench/sio.py's lean client.
"""
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

from histograms import Stats
from sio import Disconnected, Sio

from deploy.local.launcher import raise_nofile

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


# The recovery rule of docs/API.md ("Recovery"), as the browser (static/js/live.js)
# and the test clients (tests/harness.py) follow it: an accepted request with no
# result this long after it was last sent is sent again with the same request_id
# (then twice as long each time, up to RESEND_MAX_S); at once on `resend` and
# after a reconnect.
RESEND_AFTER_S = 5.0
RESEND_MAX_S = 30.0
NOT_NOW = ("busy", "rate_limited")  # a re-send refused so waits for its next turn


class Request:
    __slots__ = ("rid", "kind", "payload", "sent", "accepted", "result", "done", "resends",
                 "counted", "buyer", "last_sent", "wait")

    def __init__(self, kind, payload, buyer=None):
        self.rid = uuid.uuid4().hex
        self.kind, self.payload = kind, dict(payload, request_id=self.rid)
        self.sent, self.accepted, self.result, self.resends = None, False, None, 0
        self.counted = False
        self.buyer = buyer
        self.last_sent, self.wait = 0.0, RESEND_AFTER_S
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
                self.resend_accepted()
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
            rid = payload.get("request_id")
            c.results_seen[rid] = c.results_seen.get(rid, 0) + 1
            req = self.pending.pop(rid, None)
            if req is None or req.result is not None:
                c.stats.inc("duplicate_results")
                return
            req.result = payload
            if not req.accepted:
                req.accepted = True   # the result can overtake the ack
            c.answered(req, payload, now)
            if not req.done.done():
                req.done.set_result(payload)
        elif name == "resend":
            # This socket's web process lost results (its subscription dropped).
            c.stats.inc("resend_notices")
            self.resend_accepted()
        elif name == "hold_closed":
            c.stats.inc("hold_closed")
        elif name == "draining":
            c.stats.inc("draining_notices")
        elif c.on_other is not None:
            c.on_other(self, name, raw, now)

    def resend_accepted(self):
        """Send again every accepted request of this buyer that has no result yet."""
        for req in list(self.pending.values()):
            if req.accepted and req.result is None:
                self.client.resend(req)

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
                req.last_sent = time.monotonic()
                ack = await asyncio.wait_for(self.sio.emit(req.kind, req.payload), 60)
            except (Disconnected, asyncio.TimeoutError):
                await asyncio.sleep(0.05)
                continue
            if ack.get("ok"):
                if req.accepted and ack.get("queued") is False:
                    # A re-send found it finished: its answer comes again from this
                    # process. If the first never came, it was lost on its way.
                    c.found_finished.setdefault(req.rid, req)
                req.accepted = True
                if req.result is None:
                    c.accepted(req)
            elif not req.accepted:
                self.pending.pop(req.rid, None)
                c.refused(req, ack)
            else:
                c.resend_refused(req, ack)
            return ack
        self.pending.pop(req.rid, None)
        return None

    async def request(self, kind, payload, result_timeout):
        """('refused', ack) | ('result', payload) | ('timeout', None) | ('lost', None)."""
        req = Request(kind, payload, self)
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


class Scenario:
    """The start every scenario of a load-generator process shares (FlashSale, HoldStorm, ...).

    A scenario class is named to the pool as "module:Class"; each process builds one with
    its ClientProcess, then awaits setup() and run(). Its random stream is its own but
    repeatable (the run's --seed and the process's index).
    """

    def __init__(self, client):
        self.c = client
        self.cfg = client.cfg
        self.rng = random.Random(self.cfg["seed"] * 1000 + self.cfg["index"])
        self.stopping = False
        self.extra = {}


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
        self.results_seen = {}    # rid -> result events received (copies included)
        self.found_finished = {}  # rid -> Request a re-send found already finished
        # Seat map kept from one socket's seats_changed: id -> [version, status]
        self.seats = {}
        self.map_buyer = None
        self.on_change = None     # callback(seat_id, old_status, new_status)
        self.on_other = None      # callback(buyer, event name, raw frame, time) for other events

    # the recovery rule -------------------------------------------------------
    def resend(self, req):
        req.resends += 1
        req.wait = min(req.wait * 2, RESEND_MAX_S)
        self.stats.inc("resent")
        asyncio.ensure_future(req.buyer._send(req))

    async def resend_overdue(self):
        """Re-send accepted requests that have had no result for their wait (RESEND_AFTER_S...)."""
        while not self.quit:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for req in list(self.inflight.values()):
                if (req.result is None and req.buyer is not None and req.buyer.ready.is_set()
                        and now - req.last_sent >= req.wait):
                    self.resend(req)

    def resend_refused(self, req, ack):
        """A re-send of an accepted request refused. "Not now" (busy, rate_limited):
        sent again after the retry_after_s it names. Any other refusal is the request's
        answer: it was never performed (docs/API.md, "Recovery")."""
        error = ack.get("error") or {}
        self.resend_refusals.append({"kind": req.kind, "error": error})
        if error.get("code") in NOT_NOW:
            self.stats.inc("resend_refused_not_now")
            after = max(1.0, (error.get("details") or {}).get("retry_after_s") or 2)
            req.last_sent = time.monotonic() - req.wait + after * (0.5 + random.random())
            return
        self.stats.inc(f"{req.kind}_answered_by_resend_refusal_{error.get('code', 'unknown')}")
        req.buyer.pending.pop(req.rid, None)
        if req.result is None:
            payload = {"ok": False, "request_id": req.rid, "error": error}
            req.result = payload
            self.answered(req, payload, time.time())
            if not req.done.done():
                req.done.set_result(payload)

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


def awaiting_answers(c):
    """Whether a request sent is still unanswered: accepted (c.inflight) or with its ack
    still on its way (only in its buyer's pending)."""
    return bool(c.inflight) or any(b.pending for b in c.buyers)


async def drain(c, seconds, poll_s=0.2):
    """Once no new request goes out: wait up to seconds for the answers of what was sent
    (reconnects re-send). Waiting for c.inflight alone left out a request whose ack was
    on its way: the drain ended, the ack came, and the request counted accepted and
    unanswered a moment after it was sent (two payments in a term-web drill, sent 1.2 s
    before the drain ended, each decided and recorded by a worker)."""
    until = time.monotonic() + seconds
    while awaiting_answers(c) and time.monotonic() < until:
        await asyncio.sleep(poll_s)


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
    resender = asyncio.ensure_future(c.resend_overdue())
    while not stop_evt.is_set() and not run.done():
        await asyncio.sleep(0.1)
    scenario.stopping = True
    await drain(c, cfg.get("drain_s", 30))
    run.cancel()
    resender.cancel()
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
    # Found finished by a re-send, and only that copy came: the first answer was lost
    # on its way (published, never delivered), and the re-send made up for it.
    lost_first = [{"kind": r.kind, "uid": r.buyer.uid if r.buyer else None,
                   "request_id": rid, "resends": r.resends}
                  for rid, r in c.found_finished.items() if c.results_seen.get(rid, 0) < 2]
    return {"stats": c.stats.to_json(), "unanswered": unanswered,
            "first_answer_lost": lost_first, "found_finished": len(c.found_finished),
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
