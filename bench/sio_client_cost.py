#!/usr/bin/env python3
"""CPU per received message of three asyncio Socket.IO clients, against a real local server.

    .venv/bin/python bench/sio_client_cost.py [--messages 20000] [--seats 4] [--repeat 2]

The server is python-socketio on eventlet (the production stack of a web process)
in its own process; on `blast` it emits --messages `seats_changed` events shaped like
the product's (--seats seats, committed_at and sent_at) to the asking socket. Each
client runs alone in a fresh process and reports the CPU (user + system, getrusage)
it spent from asking to receiving the last message, divided by the messages:

- python-socketio: python-socketio's `AsyncClient` (aiohttp WebSocket transport), a
  handler per event (every packet is parsed as JSON by the library);
- websockets: the `websockets` library frames; Engine.IO/Socket.IO packets read
  lazily (the event name from the first bytes, no JSON parse), as the bench needs;
- hand-written: bench/sio.py's `Sio` before it used `websockets` (kept below as
  `HandFramedSio`, only for this comparison).

Prints one JSON line per run and a table. The load average before each run is printed
with it: other processes share the cores.
"""
import argparse
import asyncio
import base64
import json
import os
import resource
import struct
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]

from deploy.local.launcher import free_port  # noqa: E402

CLIENTS = ("python-socketio", "websockets", "hand-written")


# --- the server ---------------------------------------------------------------

def serve(port, seats):
    import eventlet
    eventlet.monkey_patch()
    import socketio

    sio = socketio.Server(async_mode="eventlet", cors_allowed_origins=[])

    def payload(i):
        now = datetime.now(timezone.utc).isoformat()
        return {"event_id": 1, "seats": [{"id": i * seats + k, "version": i + 1,
                                          "status": "held"} for k in range(seats)],
                "committed_at": now, "sent_at": now}

    @sio.on("blast")
    def blast(sid, data):
        for i in range(int(data["n"])):
            sio.emit("seats_changed", payload(i), to=sid)
            if i % 50 == 0:
                eventlet.sleep(0)
        return {"ok": True}

    app = socketio.WSGIApp(sio)
    eventlet.wsgi.server(eventlet.listen(("127.0.0.1", port)), app, log_output=False)


# --- the hand-written framing (the bench's client before it used websockets) ---------

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


class HandFramedSio:
    """Engine.IO 4 over a WebSocket framed by hand (masking, fragments): the old client."""

    def __init__(self, host, port, on_event):
        self.host, self.port, self.on_event = host, port, on_event
        self.acks, self.next_id = {}, 0

    async def connect(self):
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.writer = writer
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                      f"Host: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        await reader.readuntil(b"\r\n\r\n")
        await self._read(reader)                     # 0{...} open
        writer.write(_frame("40"))
        while not (await self._read(reader))[1].startswith(b"40"):
            pass
        self.task = asyncio.ensure_future(self._loop(reader))

    @staticmethod
    async def _read(reader):
        parts, first_op = [], None
        while True:
            head = await reader.readexactly(2)
            fin, opcode, length = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await reader.readexactly(8))[0]
            data = await reader.readexactly(length)
            if opcode >= 0x8:
                return opcode, data
            first_op = first_op if first_op is not None else opcode
            parts.append(data)
            if fin:
                return first_op, b"".join(parts) if len(parts) > 1 else parts[0]

    async def _loop(self, reader):
        with_suppress = (asyncio.IncompleteReadError, ConnectionError, OSError)
        try:
            while True:
                op, data = await self._read(reader)
                if op == 0x8:
                    break
                if data[:2] == b"42":
                    q = data.find(b'"', 4)
                    self.on_event(data[4:q].decode(), data)
                elif data[:2] == b"43":
                    i = 2
                    while data[i:i + 1].isdigit():
                        i += 1
                    fut = self.acks.pop(int(data[2:i]), None)
                    if fut is not None and not fut.done():
                        fut.set_result(json.loads(data[i:])[0])
                elif data == b"2":
                    self.writer.write(_frame("3"))
        except with_suppress:
            pass

    def emit(self, event, data):
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.acks[self.next_id] = fut
        self.writer.write(_frame(f"42{self.next_id}" + json.dumps([event, data])))
        return fut

    async def close(self):
        self.task.cancel()
        self.writer.close()


# --- the clients ------------------------------------------------------------------

def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _measure(connect, n):
    """connect(on_message) -> (emit, close); (cpu s, wall s) from asking to the n-th message."""
    got = 0
    done = asyncio.get_running_loop().create_future()

    def on_message():
        nonlocal got
        got += 1
        if got == n and not done.done():
            done.set_result(None)
    emit, close = await connect(on_message)
    await asyncio.sleep(0.5)   # let the connection settle (upgrades, first pings)
    cpu0, t0 = _cpu(), time.monotonic()
    await emit("blast", {"n": n})
    await asyncio.wait_for(done, 600)
    cpu, wall = _cpu() - cpu0, time.monotonic() - t0
    await close()
    return cpu, wall


async def run_python_socketio(url, n):
    import socketio

    async def connect(on_message):
        sio = socketio.AsyncClient(reconnection=False)
        sio.on("seats_changed", lambda data: on_message())
        await sio.connect(url, transports=["websocket"])
        return (lambda e, d: sio.call(e, d, timeout=600)), sio.disconnect
    return await _measure(connect, n)


async def run_websockets(url, n):
    from sio import Sio

    async def connect(on_message):
        host, port = url.removeprefix("http://").split(":")
        sio = Sio(host, int(port), None, lambda name, raw: on_message())
        await sio.connect()

        async def close():
            sio.close()
        return (lambda e, d: sio.emit(e, d)), close
    return await _measure(connect, n)


async def run_hand_written(url, n):
    async def connect(on_message):
        host, port = url.removeprefix("http://").split(":")
        sio = HandFramedSio(host, int(port), lambda name, raw: on_message())
        await sio.connect()
        return sio.emit, sio.close
    return await _measure(connect, n)


RUNNERS = {"python-socketio": run_python_socketio, "websockets": run_websockets,
           "hand-written": run_hand_written}


def client_main(kind, url, n):
    cpu, wall = asyncio.run(RUNNERS[kind](url, n))
    print(json.dumps({"client": kind, "messages": n, "cpu_s": round(cpu, 3),
                      "wall_s": round(wall, 3), "us_per_message": round(cpu / n * 1e6, 1)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--seats", type=int, default=4, help="seats per seats_changed")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each client")
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.seats)
    if args.client:
        return client_main(args.client, args.url, args.messages)

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port),
                               "--seats", str(args.seats)], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        import requests
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/socket.io/?EIO=4&transport=polling", timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.2)
        for rep in range(args.repeat):
            for kind in args.clients.split(","):
                load = os.getloadavg()
                out = subprocess.run([sys.executable, __file__, "--client", kind, "--url", url,
                                      "--messages", str(args.messages)], cwd=ROOT,
                                     capture_output=True, text=True, timeout=900)
                if out.returncode != 0:
                    raise SystemExit(f"{kind} failed:\n{out.stderr[-3000:]}")
                row = json.loads(out.stdout.strip().splitlines()[-1])
                row.update(run=rep + 1, loadavg_1m_before=round(load[0], 2))
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        server.terminate()
        server.wait(10)
    print(f"\n{args.messages} seats_changed of {args.seats} seats each, {os.cpu_count()} cores")
    print(f"{'client':<16} {'run':>3} {'load 1m':>8} {'CPU s':>7} {'wall s':>7} {'µs/msg':>7}")
    for r in rows:
        print(f"{r['client']:<16} {r['run']:>3} {r['loadavg_1m_before']:>8} {r['cpu_s']:>7} "
              f"{r['wall_s']:>7} {r['us_per_message']:>7}")


if __name__ == "__main__":
    main()
