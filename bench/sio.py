"""A lean asyncio Socket.IO client for the load generator: `websockets` frames, lazy parsing.

Engine.IO 4 / Socket.IO 5 over one WebSocket. The `websockets` library does the
framing (masking, fragments, control frames); this module reads each packet's first
bytes and hands event packets to on_event(name, raw_bytes) undecoded: most sockets of a
bench only count `seats_changed` or read two timestamps from its end, and parse JSON
only when they must (results, acks, the one map socket per client process).
python-socketio's AsyncClient parses every packet; bench/sio_client_cost.py measures
what that costs (docs/BENCHMARKS.md, "The load generator's client").
"""
import asyncio
import contextlib
import json

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import WebSocketException


class Disconnected(Exception):
    """The socket is not (or no longer) connected: the emit or its ack is lost."""


class Sio:
    """One Socket.IO connection: connect with a token, emit with acks, receive events.

    on_event(name, raw_bytes) gets every event packet undecoded (the whole `42[...]`).
    """

    def __init__(self, host, port, token, on_event):
        self.host, self.port, self.token = host, port, token
        self.on_event = on_event
        self.ws = None
        self.acks = {}
        self.next_id = 0
        self.connected = False
        self.reader_task = None
        self.closed = asyncio.Event()
        self._sends = set()

    async def connect(self, timeout=30):
        """Open the WebSocket and the Socket.IO session; ConnectionError if refused."""
        self.closed = asyncio.Event()
        url = f"ws://{self.host}:{self.port}/socket.io/?EIO=4&transport=websocket"
        try:
            self.ws = await ws_connect(url, open_timeout=timeout, compression=None,
                                       ping_interval=None, max_size=None, max_queue=None)
        except (WebSocketException, asyncio.TimeoutError) as err:
            raise ConnectionError(str(err)) from None
        # One deadline for the whole handshake: the server's pings would otherwise keep
        # a connect that is never answered waiting for ever.
        deadline = asyncio.get_running_loop().time() + timeout

        def left():
            return max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            opened = await asyncio.wait_for(self.ws.recv(decode=False), left())
            if not opened.startswith(b"0"):
                raise ConnectionError(f"unexpected {opened[:60]!r}")
            auth = json.dumps({"token": self.token}) if self.token else ""
            await self.ws.send("40" + auth)
            while True:
                data = await asyncio.wait_for(self.ws.recv(decode=False), left())
                if data.startswith(b"40"):
                    break
                if data.startswith(b"44"):
                    raise ConnectionError(f"refused: {data[2:200]!r}")
                if data == b"2":
                    await self.ws.send("3")
        except WebSocketException as err:
            await self.ws.close()
            raise ConnectionError(str(err)) from None
        except BaseException:
            await self.ws.close()
            raise
        self.connected = True
        self.reader_task = asyncio.ensure_future(self._loop())

    async def _loop(self):
        ws = self.ws
        try:
            while True:
                data = await ws.recv(decode=False)
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
                    self._send("3")
                elif data[:2] == b"41" or data[:1] == b"1":
                    break
        except (WebSocketException, ConnectionError, OSError):
            pass
        finally:
            self._lost()

    def _send(self, text):
        task = asyncio.ensure_future(self.ws.send(text))
        self._sends.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task):
        self._sends.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._lost()

    def _lost(self):
        self.connected = False
        for fut, _raw in self.acks.values():
            if not fut.done():
                fut.set_exception(Disconnected())
        self.acks.clear()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                asyncio.ensure_future(self.ws.close())
        self.closed.set()

    def emit(self, event, data, raw=False):
        """Send with an ack id; returns a future for the ack (its bytes if raw)."""
        if not self.connected:
            raise Disconnected()
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.acks[self.next_id] = (fut, raw)
        self._send(f"42{self.next_id}" + json.dumps([event, data]))
        return fut

    def close(self):
        if self.reader_task:
            self.reader_task.cancel()
        if not self.closed.is_set():
            self._lost()
