#!/usr/bin/env python3
"""The web tier's floor: CPU per hold request of the Socket.IO stack with none of the product.

    .venv/bin/python bench/web_floor.py [--sockets 500] [--rate 300] [--duration 30]
        [--server bare|flask] [--repeat 2]

A web process of the product spends about 1.3-1.5 ms of CPU per granted hold at
`bench/holds.py --rate 600` (docs/BENCHMARKS.md). How much of that is the stack it
is built on (eventlet's WSGI and WebSocket server, python-engineio, python-socketio),
whatever the product does? This bench serves the same exchange with nothing else:

- the server, in its own process, is python-socketio on eventlet as in `wsgi.py`
  (frames unmasked in C by booking/ws_mask.py, as the product does). On `hold` it
  returns the product's ack (`{"ok": true, "request_id", "queued": true}`) and emits a
  `hold_result` shaped like the product's to the asking socket. No Redis, no database,
  no validation, no app: the least a web process can do for one hold request.
- `--server flask` adds what the product's hot events keep of Flask: a Flask app and
  Flask-SocketIO around the same server, the handler registered on python-socketio's
  server directly and run inside an app context (booking/sockets.py `_hot_handler`).
- the client is the load generator's own (bench/sio.py): --sockets sockets, open loop,
  --rate requests a second in all, each socket with at most one request waiting for
  its `hold_result`, as `bench/holds.py` sends them.

Prints, per run, the requests answered, the server's and the client's CPU per request
(user + system over the measured window, launcher.cpu_seconds / getrusage), and click-to-result
p50 / p99. The load average before each run is printed with it.
"""
import argparse
import asyncio
import json
import os
import random
import resource
import socket
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]

from deploy.local import launcher  # noqa: E402
from deploy.local.launcher import free_port, raise_nofile  # noqa: E402


# --- the server ---------------------------------------------------------------

def serve(port, kind):
    import eventlet
    eventlet.monkey_patch()
    from booking import ws_mask
    ws_mask.install()

    def answer(emit, sid, data):
        rid = data["request_id"]
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        emit("hold_result", {"ok": True, "request_id": rid, "hold_id": 1, "event_id": 1,
                             "seat_ids": data["seat_ids"], "expires_at": now,
                             "amount_cents": 5000, "currency": "EUR"}, to=sid)
        return {"ok": True, "request_id": rid, "queued": True}

    if kind == "bare":
        import socketio
        sio = socketio.Server(async_mode="eventlet", cors_allowed_origins=[],
                              ping_interval=20, ping_timeout=20)
        sio.on("hold", lambda sid, data: answer(sio.emit, sid, data))
        app = socketio.WSGIApp(sio)
    else:
        from flask import Flask
        from flask_socketio import SocketIO
        app = Flask(__name__)
        fsio = SocketIO(app, async_mode="eventlet", cors_allowed_origins=[],
                        ping_interval=20, ping_timeout=20)

        def handler(sid, data=None, *_extra):
            with app.app_context():
                return answer(fsio.emit, sid, data)
        fsio.server.on("hold", handler, namespace="/")
    eventlet.wsgi.server(eventlet.listen(("127.0.0.1", port), backlog=2048), app,
                         log_output=False)


# --- the client ---------------------------------------------------------------

async def drive(port, sockets, rate, duration):
    from sio import Sio
    sent, latencies = {}, []
    waiting = {}

    def on_event(name, raw):
        if name == "hold_result":
            rid = json.loads(raw[2:])[1]["request_id"]
            started = sent.pop(rid, None)
            if started is not None:
                latencies.append(time.monotonic() - started)
                fut = waiting.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_result(None)
    clients = []
    for _ in range(sockets):
        s = Sio("127.0.0.1", port, None, on_event)
        await s.connect()
        clients.append(s)
    idle = list(clients)
    random.shuffle(idle)
    loop = asyncio.get_running_loop()

    async def one(s):
        rid = uuid.uuid4().hex
        fut = loop.create_future()
        waiting[rid] = fut
        sent[rid] = time.monotonic()
        ack = await s.emit("hold", {"request_id": rid, "event_id": 1, "seat_ids": [1, 2]})
        assert ack.get("ok"), ack
        await fut
        idle.append(s)

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    n, skipped, tasks = 0, 0, set()
    while True:
        now = time.monotonic()
        if now - t0 >= duration:
            break
        due = int((now - t0) * rate)
        while n < due:
            n += 1
            if not idle:
                skipped += 1     # every socket waits for an answer: the server is behind
                continue
            task = asyncio.ensure_future(one(idle.pop()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.sleep(0.002)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    elapsed = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    for s in clients:
        s.close()
    latencies.sort()
    return {"answered": len(latencies), "skipped": skipped, "seconds": round(elapsed, 2),
            "client_cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
            "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1) if latencies else None}


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def run_once(args, log_dir):
    port = free_port()
    server = launcher.Process.spawn(
        "web-floor", [sys.executable, __file__, "--serve", str(port), "--server", args.server],
        dict(os.environ), log_dir, nofile=True)
    try:
        launcher.wait_until(lambda: _listening(port), 30, "the server listening", proc=server)
        load = os.getloadavg()[0]
        before = launcher.cpu_seconds(server.pid)
        result = asyncio.run(drive(port, args.sockets, args.rate, args.duration))
        server_cpu = launcher.cpu_seconds(server.pid) - before
    finally:
        launcher.stop([server], timeout=10)
    answered = max(1, result["answered"])
    return dict(result, server=args.server, sockets=args.sockets, rate=args.rate,
                load_before=round(load, 2), server_cpu_s=round(server_cpu, 2),
                server_ms_per_request=round(1000 * server_cpu / answered, 3),
                client_ms_per_request=round(1000 * result["client_cpu_s"] / answered, 3),
                answered_per_s=round(result["answered"] / result["seconds"], 1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--server", choices=("bare", "flask"), default="bare")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.server)
        return
    raise_nofile()
    rows = []
    log_dir = tempfile.mkdtemp(prefix="web-floor-")
    for _ in range(args.repeat):
        row = run_once(args, log_dir)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(f"\n{'server':6} {'sockets':>7} {'rate':>6} {'load':>5} {'answered/s':>10} "
          f"{'server ms/req':>13} {'client ms/req':>13} {'p50 ms':>7} {'p99 ms':>7}")
    for r in rows:
        print(f"{r['server']:6} {r['sockets']:>7} {r['rate']:>6.0f} {r['load_before']:>5} "
              f"{r['answered_per_s']:>10} {r['server_ms_per_request']:>13} "
              f"{r['client_ms_per_request']:>13} {r['p50_ms']:>7} {r['p99_ms']:>7}")


if __name__ == "__main__":
    main()
